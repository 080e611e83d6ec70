"""Every committed BPF object must have been built from its current source."""
import importlib.util

from conftest import BPF_DIR


def _manifest():
    spec = importlib.util.spec_from_file_location("bpf_manifest", BPF_DIR / "manifest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_objects_match_sources():
    m = _manifest()
    assert list(BPF_DIR.glob("*.bpf.c")), "no BPF sources found"
    assert m.problems() == []


def test_manifest_detects_a_stale_object(tmp_path, monkeypatch):
    m = _manifest()
    src = tmp_path / "x.bpf.c"
    src.write_text("int x;\n")
    (tmp_path / "include").mkdir()
    (tmp_path / "x.bpf.o").write_bytes(b"obj")
    monkeypatch.setattr(m, "HERE", tmp_path)
    monkeypatch.setattr(m, "MANIFEST", tmp_path / "MANIFEST")
    m.write()
    assert m.problems() == []
    src.write_text("int x = 1;\n")
    assert any("source or headers changed" in p for p in m.problems())
    m.write()
    (tmp_path / "x.bpf.o").write_bytes(b"edited")
    assert any("object differs" in p for p in m.problems())
    (tmp_path / "x.bpf.o").unlink()
    assert any("missing" in p for p in m.problems())
