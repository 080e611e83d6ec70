/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * bpfm.h - bpfload's "custom" map-definition form.
 *
 * A custom definition is a struct bpfm_map_custom placed in the "maps"
 * section, exactly like the legacy struct bpf_map_def (legacy_maps.h) but
 * 36 bytes long instead of 20: bpfload tells the two forms apart by the
 * size of the symbol in "maps" (20 = legacy, 36 = custom), so this struct
 * must stay packed to exactly 36 bytes (nine 4-byte fields, no padding).
 *
 * Fields beyond the legacy ones:
 *
 *   pinning      0 = not pinned, 1 = pin by name (LIBBPF_PIN_BY_NAME).
 *   map_id       the definition's own id (-1 = none); only used to name it
 *                from relation_id.
 *   relation_id  inner map: the map_id of its outer map;
 *                outer map (ARRAY_OF_MAPS / HASH_OF_MAPS): the map_id of the
 *                inner map that serves as the template for the outer map's
 *                inner_map_fd;
 *                -1 = no relation.
 *   inner_index  inner map: its slot (key) in the outer map, written into the
 *                outer map after creation; NO_PREPOPULATE (-1) = created but
 *                put in no slot.  Ignored for maps that are not inner maps.
 *
 * All inner maps of one outer map must be compatible with its template
 * (same type, key/value size, max_entries, flags), as the kernel requires.
 */
#ifndef __BPFM_H
#define __BPFM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct bpfm_map_custom {
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 pinning;
	__u32 map_flags;
	__s32 map_id;
	__s32 relation_id;
	__s32 inner_index;
};

_Static_assert(sizeof(struct bpfm_map_custom) == 36,
	       "bpfload tells custom from legacy map definitions by size: keep 36 bytes");

/* inner_index: create the inner map but do not put it in its outer map */
#define NO_PREPOPULATE (-1)
#define BMAP_DEFAULT_MAX_ENTRIES 1024

#define BMAP_BASE(map_name, map_type, k_type, v_type, max_em, pin, flag,	\
		  map_idx, relation_idx, inner_idx)				\
	struct bpfm_map_custom map_name SEC("maps") = {			\
		.type = map_type,						\
		.key_size = sizeof(k_type),					\
		.value_size = sizeof(v_type),					\
		.max_entries = max_em,						\
		.pinning = pin,							\
		.map_flags = flag,						\
		.map_id = map_idx,						\
		.relation_id = relation_idx,					\
		.inner_index = inner_idx,					\
	}

/* A plain map: 1024 entries, not pinned, no flags, no id, no relation. */
#define BMAP_COM_EXT0(map_name, map_type, k_type, v_type)			\
	BMAP_BASE(map_name, map_type, k_type, v_type,				\
		  BMAP_DEFAULT_MAX_ENTRIES, 0, 0, -1, -1, NO_PREPOPULATE)

#endif /* __BPFM_H */
