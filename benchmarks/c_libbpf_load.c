// SPDX-License-Identifier: Apache-2.0
/*
 * c_libbpf_load.c - the libbpf side of bench_libbpf_load.py.
 *
 *   long cref_libbpf_load(const char *path, int rounds)
 *
 * Opens, loads and closes the object *rounds* times with libbpf (maps pinned
 * by name go nowhere: the benchmark objects pin nothing) and returns the
 * thread CPU time spent, in nanoseconds, or -errno.  Thread CPU time counts
 * user and kernel time of this thread (the verifier runs in our syscall),
 * not time spent waiting, so a busy shared machine moves it less.
 *
 * Built by the benchmark: cc -O2 -shared -fPIC -o .build/c_libbpf_load.so ... -lbpf
 *
 * With -DCREF_MAIN it is also the cold-start reference, a program:
 *
 *   c_libbpf_load OBJ        open + load + close OBJ once, exit 0 (or 1 with the error)
 *
 * which bench_libbpf_load.py::test_cold_start_vs_libbpf runs as a process
 * beside "python -c 'import bpfload; bpfload.load(OBJ).close()'".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <bpf/libbpf.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

long cref_libbpf_load(const char *path, int rounds)
{
	long start;
	int i, err;

	libbpf_set_print(quiet);
	start = now_ns();
	for (i = 0; i < rounds; i++) {
		struct bpf_object *obj = bpf_object__open_file(path, NULL);
		if (!obj)
			return -errno;
		err = bpf_object__load(obj);
		bpf_object__close(obj);
		if (err)
			return err;
	}
	return now_ns() - start;
}

#ifdef CREF_MAIN
int main(int argc, char **argv)
{
	long ns;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJ\n", argv[0]);
		return 2;
	}
	ns = cref_libbpf_load(argv[1], 1);
	if (ns < 0) {
		fprintf(stderr, "%s: libbpf could not load it: errno %ld\n", argv[1], -ns);
		return 1;
	}
	return 0;
}
#endif
