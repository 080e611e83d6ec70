/* Little-endian accessors for 8-byte `struct bpf_insn` slots.
 *
 * Compute only: used by bpfload/_core/insn.pyx.  Every accessor takes a
 * pointer to the first byte of one slot; callers bounds-check the slot index
 * before calling (BPFL_DEBUG_ASSERT re-checks it in a BPFLOAD_DEBUG=1 build).
 *
 * Layout (include/uapi/linux/bpf.h, little-endian target):
 *   byte 0     code
 *   byte 1     dst_reg (low nibble) | src_reg (high nibble)
 *   bytes 2-3  off (s16)
 *   bytes 4-7  imm (s32)
 */
#ifndef BPFLOAD_BPF_INSN_H
#define BPFLOAD_BPF_INSN_H

#include <stdint.h>

#ifndef BPFLOAD_DEBUG
#define BPFLOAD_DEBUG 0
#endif

#if BPFLOAD_DEBUG
#include <assert.h>
#define BPFL_DEBUG_ASSERT(cond) assert(cond)
#else
#define BPFL_DEBUG_ASSERT(cond) ((void)0)
#endif

#define BPFL_INSN_SZ 8
#define BPFL_LD_IMM64 0x18          /* BPF_LD | BPF_IMM | BPF_DW */
#define BPFL_CALL 0x85              /* BPF_JMP | BPF_CALL */
#define BPFL_PSEUDO_MAP_FD 1
#define BPFL_PSEUDO_MAP_VALUE 2
#define BPFL_PSEUDO_CALL 1
#define BPFL_PSEUDO_FUNC 4

static inline uint8_t bpfl_code(const uint8_t *p) { return p[0]; }
static inline uint8_t bpfl_dst(const uint8_t *p) { return p[1] & 0x0f; }
static inline uint8_t bpfl_src(const uint8_t *p) { return p[1] >> 4; }

static inline int16_t bpfl_off(const uint8_t *p)
{
    return (int16_t)(uint16_t)((uint16_t)p[2] | ((uint16_t)p[3] << 8));
}

static inline int32_t bpfl_imm(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[4] | ((uint32_t)p[5] << 8) |
                     ((uint32_t)p[6] << 16) | ((uint32_t)p[7] << 24));
}

static inline void bpfl_set_src(uint8_t *p, uint8_t src)
{
    p[1] = (uint8_t)((p[1] & 0x0f) | (uint8_t)(src << 4));
}

static inline void bpfl_set_imm(uint8_t *p, int32_t imm)
{
    uint32_t v = (uint32_t)imm;
    p[4] = (uint8_t)v;
    p[5] = (uint8_t)(v >> 8);
    p[6] = (uint8_t)(v >> 16);
    p[7] = (uint8_t)(v >> 24);
}

#endif /* BPFLOAD_BPF_INSN_H */
