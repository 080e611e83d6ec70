/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * legacy_maps.h - the legacy map definition (struct bpf_map_def in a
 * "maps" section), which libbpf >= 1.0 no longer provides.
 *
 * bpfload tells legacy from custom (bpfm.h) definitions by the size of the
 * symbol in "maps": this struct must stay exactly 20 bytes.
 */
#ifndef __LEGACY_MAPS_H
#define __LEGACY_MAPS_H

#include <linux/types.h>

struct bpf_map_def_legacy {
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
};

_Static_assert(sizeof(struct bpf_map_def_legacy) == 20,
	       "bpfload tells legacy from custom map definitions by size: keep 20 bytes");

#endif /* __LEGACY_MAPS_H */
