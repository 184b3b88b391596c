// NEON (AdvSIMD) decode kernels for AArch64. AdvSIMD is part of the ARMv8-A base architecture, so this file is
// built with the default flags and the dispatch (decode.cc) needs no run-time check.
//
// Paths, picked per layer (codes are read one per sub-vector with an unaligned 32-bit load, which holds any code:
// ssvq_format.h; 4 weights are one 128-bit register and their 4 sign bits one nibble):
//   d % 4 == 0   d / 4 row loads per sub-vector; its sign bits start on a nibble boundary, so each register takes
//                one nibble -> lane mask -> XOR of the IEEE sign bit. d = 4, 8, 16 are unrolled.
//   d = 1, 2     4 / d sub-vectors fill one register (lane loads); their 4 sign bits are again one nibble.
//   other d      registers of 4 weights with their 4 sign bits read at any bit offset, the last d % 4 weights of
//                each sub-vector one by one (d = 3: all of them).
// The results are bit-exact with decode_ref: the kernels only move bits.
#include <arm_neon.h>

#include <cstring>

#include "decode.h"
#include "ssvq_format.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the streams are read as little-endian words");

namespace ssvq {
namespace {

constexpr uint32_t kSignBit = 0x80000000u;

// Code v of the b-bit index stream: one 32-bit read, bounded at the end of the stream.
inline uint32_t read_code(const uint8_t* s, int64_t nbytes, int64_t v, int bits) {
    const int64_t bit = v * bits, byte = bit >> 3;
    uint32_t w = 0;
    if (byte + 4 <= nbytes) {
        std::memcpy(&w, s + byte, 4);
    } else {
        for (int64_t i = byte; i < nbytes; ++i) w |= uint32_t(s[i]) << (8 * (i - byte));
    }
    return (w >> (bit & 7)) & ((1u << bits) - 1u);
}

inline bool sign_bit(const uint8_t* s, int64_t e) { return (s[e >> 3] >> (e & 7)) & 1; }

// Flips the sign of lane l where bit l of `nib` is set (bits above 3 are ignored).
inline float32x4_t flip_signs(float32x4_t x, uint32_t nib) {
    const int32x4_t to_top = {31, 30, 29, 28};
    const uint32x4_t m = vandq_u32(vshlq_u32(vdupq_n_u32(nib), to_top), vdupq_n_u32(kSignBit));
    return vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(x), m));
}

// 4 sign bits at a nibble-aligned weight index e.
inline uint32_t nibble_at(const uint8_t* s, int64_t e) { return uint32_t(s[e >> 3]) >> (e & 4); }

// One sub-vector weight by weight: tails and d = 3.
inline void scalar_weights(const DecodeArgs& a, const float* row, int64_t e, int64_t count, float* dst) {
    for (int64_t j = 0; j < count; ++j) {
        uint32_t x;
        std::memcpy(&x, &row[j], 4);
        if (a.signs != nullptr && sign_bit(a.signs, e + j)) x ^= kSignBit;
        std::memcpy(&dst[j], &x, 4);
    }
}

inline const float* row_of(const DecodeArgs& a, int64_t v, int64_t d) {
    return a.codebook + int64_t(read_code(a.indices, a.index_bytes, v, a.bits)) * d;
}

// d % 4 == 0; kD = d for the unrolled sizes, 0 for any other multiple of 4.
template <int kD, bool kSigns>
void decode_quads(const DecodeArgs& a, int64_t v0, int64_t v1, float* dst) {
    const int64_t d = kD > 0 ? kD : a.d;
    for (int64_t v = v0; v < v1; ++v, dst += d) {
        const float* row = row_of(a, v, d);
#pragma GCC unroll 4
        for (int64_t j = 0; j < d; j += 4) {
            float32x4_t x = vld1q_f32(row + j);
            if constexpr (kSigns) x = flip_signs(x, nibble_at(a.signs, v * d + j));
            vst1q_f32(dst + j, x);
        }
    }
}

// d = 1 or 2: 4 / d sub-vectors per register. v0 * d must be a multiple of 4 (the caller aligns it).
template <int kD, bool kSigns>
int64_t decode_narrow(const DecodeArgs& a, int64_t v0, int64_t v1, float* dst) {
    static_assert(kD == 1 || kD == 2, "4 / d sub-vectors per register");
    constexpr int kPer = 4 / kD;
    const float* cb = a.codebook;
    int64_t v = v0;
    for (; v + kPer <= v1; v += kPer, dst += 4) {
        float32x4_t x;
        if constexpr (kD == 1) {
            x = vdupq_n_f32(0.f);
            x = vld1q_lane_f32(cb + read_code(a.indices, a.index_bytes, v, a.bits), x, 0);
            x = vld1q_lane_f32(cb + read_code(a.indices, a.index_bytes, v + 1, a.bits), x, 1);
            x = vld1q_lane_f32(cb + read_code(a.indices, a.index_bytes, v + 2, a.bits), x, 2);
            x = vld1q_lane_f32(cb + read_code(a.indices, a.index_bytes, v + 3, a.bits), x, 3);
        } else {
            x = vcombine_f32(vld1_f32(row_of(a, v, 2)), vld1_f32(row_of(a, v + 1, 2)));
        }
        if constexpr (kSigns) x = flip_signs(x, nibble_at(a.signs, v * kD));
        vst1q_f32(dst, x);
    }
    return v;
}

// Any d: registers of 4 weights whose sign bits sit at any bit offset, then the d % 4 weights left.
template <bool kSigns>
void decode_any(const DecodeArgs& a, int64_t v0, int64_t v1, float* dst) {
    const int64_t d = a.d, full = d / 4 * 4;
    for (int64_t v = v0; v < v1; ++v, dst += d) {
        const float* row = row_of(a, v, d);
        for (int64_t j = 0; j < full; j += 4) {
            float32x4_t x = vld1q_f32(row + j);
            if constexpr (kSigns) {
                const int64_t e = v * d + j;
                uint32_t s = a.signs[e >> 3];
                if ((e & 7) > 4) s |= uint32_t(a.signs[(e >> 3) + 1]) << 8;  // the register's bits cross a byte
                x = flip_signs(x, s >> (e & 7));
            }
            vst1q_f32(dst + j, x);
        }
        scalar_weights(a, row + full, v * d + full, d - full, dst + full);
    }
}

template <bool kSigns>
void decode_vectors(const DecodeArgs& a, int64_t v0, int64_t v1, float* dst) {
    const int64_t d = a.d;
    if (d == 1 || d == 2) {
        int64_t v = v0;
        for (; v < v1 && (v * d) % 4 != 0; ++v, dst += d) scalar_weights(a, row_of(a, v, d), v * d, d, dst);
        const int64_t done = d == 1 ? decode_narrow<1, kSigns>(a, v, v1, dst) : decode_narrow<2, kSigns>(a, v, v1, dst);
        dst += (done - v) * d;
        for (v = done; v < v1; ++v, dst += d) scalar_weights(a, row_of(a, v, d), v * d, d, dst);
        return;
    }
    switch (d) {
        case 4: return decode_quads<4, kSigns>(a, v0, v1, dst);
        case 8: return decode_quads<8, kSigns>(a, v0, v1, dst);
        case 16: return decode_quads<16, kSigns>(a, v0, v1, dst);
        default:
            if (d % 4 == 0) return decode_quads<0, kSigns>(a, v0, v1, dst);
            return decode_any<kSigns>(a, v0, v1, dst);
    }
}

// Exact binary16 -> binary32 of 4 values (zero-extended to 32 bits), in integer arithmetic like
// format::f16_bits_to_f32_bits: no dependence on FPCR (flush-to-zero, default NaN) and NaN payloads kept as they are.
inline float32x4_t widen4(uint32x4_t h) {
    const uint32x4_t em = vandq_u32(h, vdupq_n_u32(0x7fffu));
    const uint32x4_t sign = vshlq_n_u32(vandq_u32(h, vdupq_n_u32(0x8000u)), 16);
    const uint32x4_t shifted = vshlq_n_u32(em, 13);
    const uint32x4_t normal = vaddq_u32(shifted, vdupq_n_u32(112u << 23));  // rebias the exponent 15 -> 127
    const uint32x4_t special = vorrq_u32(shifted, vdupq_n_u32(0x7f800000u)); // inf / NaN: exponent all ones
    // subnormal: mant * 2^-24, both steps exact (the product is a normal float)
    const uint32x4_t sub = vreinterpretq_u32_f32(vmulq_f32(vcvtq_f32_u32(em), vdupq_n_f32(0x1p-24f)));
    uint32x4_t r = vbslq_u32(vcgeq_u32(em, vdupq_n_u32(0x7c00u)), special, normal);
    r = vbslq_u32(vcltq_u32(em, vdupq_n_u32(0x0400u)), sub, r);
    return vreinterpretq_f32_u32(vorrq_u32(r, sign));
}

}  // namespace

void decode_range_neon(const DecodeArgs& a, int64_t v_begin, int64_t v_end, float* dst) {
    if (v_begin >= v_end) return;
    if (a.signs != nullptr) {
        decode_vectors<true>(a, v_begin, v_end, dst);
    } else {
        decode_vectors<false>(a, v_begin, v_end, dst);
    }
}

void decode_neon(const DecodeArgs& a) { decode_range_neon(a, 0, a.n_vec, a.out); }

void widen_f16_neon(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vld1q_u16(src + i);
        vst1q_f32(dst + i, widen4(vmovl_u16(vget_low_u16(h))));
        vst1q_f32(dst + i + 4, widen4(vmovl_high_u16(h)));
    }
    widen_f16_ref(src + i, dst + i, n - i);
}

}  // namespace ssvq
