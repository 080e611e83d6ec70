// SPDX-License-Identifier: Apache-2.0
/*
 * libbpf_driver.c - the reference side of tests/test_libbpf_compat.py.
 *
 *   libbpf_driver OBJECT PIN_DIR
 *
 * Opens OBJECT with libbpf (maps pinned by name go under PIN_DIR instead
 * of /sys/fs/bpf), loads it, pins every loaded program at PIN_DIR/prog_NAME
 * and every map at PIN_DIR/map_NAME ('.' -> '_', which bpffs refuses) so
 * that the test can read translated instructions and map contents after
 * this process exits, and prints one tab-separated line per map and
 * program, as the kernel reports them (BPF_OBJ_GET_INFO_BY_FD):
 *
 *   map  NAME  KERNEL_NAME  TYPE  KEY_SIZE  VALUE_SIZE  MAX_ENTRIES  FLAGS  BTF_KEY  BTF_VALUE  ID
 *   prog NAME  KERNEL_NAME  TYPE  TAG(hex)  XLATED_LEN  ID
 *
 * Exit status 0 on success; on failure libbpf's messages and ours go to
 * stderr (LIBBPF_DEBUG=1 adds libbpf's debug output).
 *
 * Built by the test: cc -O1 -o DRIVER tests/libbpf_driver.c -lbpf
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int debug;

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !debug)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *map;
	char path[4096];
	int err;

	if (argc != 3) {
		fprintf(stderr, "usage: %s OBJECT PIN_DIR\n", argv[0]);
		return 2;
	}
	debug = getenv("LIBBPF_DEBUG") != NULL;
	libbpf_set_print(print_fn);
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);

	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = argv[2]);
	obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) {
		fprintf(stderr, "driver: bpf_object__open_file(%s): %s\n", argv[1], strerror(errno));
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "driver: bpf_object__load(%s): %s\n", argv[1], strerror(-err));
		bpf_object__close(obj);
		return 1;
	}

	bpf_object__for_each_map(map, obj) {
		struct bpf_map_info info;
		__u32 len = sizeof(info);
		int fd = bpf_map__fd(map);

		memset(&info, 0, sizeof(info));
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
			fprintf(stderr, "driver: map %s: no info\n", bpf_map__name(map));
			bpf_object__close(obj);
			return 1;
		}
		snprintf(path, sizeof(path), "%s/map_%s", argv[2], bpf_map__name(map));
		for (char *c = path + strlen(argv[2]) + 1; *c; c++)
			if (*c == '.')
				*c = '_';
		if (bpf_obj_pin(fd, path)) {
			fprintf(stderr, "driver: pin %s: %s\n", path, strerror(errno));
			bpf_object__close(obj);
			return 1;
		}
		printf("map\t%s\t%s\t%u\t%u\t%u\t%u\t%u\t%u\t%u\t%u\n", bpf_map__name(map),
		       info.name, info.type, info.key_size, info.value_size, info.max_entries,
		       info.map_flags, info.btf_key_type_id, info.btf_value_type_id, info.id);
	}

	bpf_object__for_each_program(prog, obj) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);
		int i;

		if (fd < 0)	/* not autoloaded */
			continue;
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
			fprintf(stderr, "driver: program %s: no info\n", bpf_program__name(prog));
			bpf_object__close(obj);
			return 1;
		}
		snprintf(path, sizeof(path), "%s/prog_%s", argv[2], bpf_program__name(prog));
		if (bpf_obj_pin(fd, path)) {
			fprintf(stderr, "driver: pin %s: %s\n", path, strerror(errno));
			bpf_object__close(obj);
			return 1;
		}
		printf("prog\t%s\t%s\t%u\t", bpf_program__name(prog), info.name, info.type);
		for (i = 0; i < BPF_TAG_SIZE; i++)
			printf("%02x", info.tag[i]);
		printf("\t%u\t%u\n", info.xlated_prog_len, info.id);
	}
	fflush(stdout);
	bpf_object__close(obj);
	return 0;
}
