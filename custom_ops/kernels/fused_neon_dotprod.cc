// The int8 micro-kernels of the `neon_dotprod` set: SDOT (ARMv8.2 dot product, HWCAP_ASIMDDP) on the quad layouts,
// which are exactly SDOT's 4-byte groups. This file alone is built with -march=armv8.2-a+dotprod (CMakeLists.txt); the
// set (fused_neon.cc) only reaches it where cpu_has_neon_dotprod(), and everything else it needs comes from
// fused_neon.inc with internal linkage.
//
// SDOT multiplies int8 by int8, while one side of each product is uint8 (conv activations 0..255, gemm activations
// stored as int8 + 128). That side is flipped to int8 by x ^ 0x80 = x - 128, and the sum regains 128 * (sum of the
// int8 weights) through the comp value of the epilogue: sdot - (comp - 128 * sum w) == sum w * x - comp, exactly.
#include <arm_neon.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "fused.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "fused_neon_dotprod.cc must be built with -march=armv8.2-a+dotprod (see CMakeLists.txt)"
#endif

namespace ssvq {

#include "fused_neon.inc"

namespace {

// sums[r * 16 + l] = sum over kq, t of int8(vec[kq][l][t]) * int8(bcast[r][4 kq + t]), with the uint8 side (vec
// when kFlipVec, else bcast) flipped to int8 first.
template <int R, bool kFlipVec>
__attribute__((noinline)) void dot_sdot(const uint8_t* vec, int64_t vec_stride, const uint8_t* bcast,
                                        int64_t bcast_stride, int64_t Kq, int32_t* sums) {
    int32x4_t acc[R][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) acc[r][v] = vdupq_n_s32(0);
    const uint8x16_t flip = vdupq_n_u8(0x80);
    for (int64_t kq = 0; kq < Kq; ++kq, vec += vec_stride) {
        int8x16_t x[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
            uint8x16_t u = vld1q_u8(vec + 16 * v);
            if constexpr (kFlipVec) u = veorq_u8(u, flip);
            x[v] = vreinterpretq_s8_u8(u);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            uint32_t b;
            std::memcpy(&b, bcast + r * bcast_stride + 4 * kq, 4);
            if constexpr (!kFlipVec) b ^= 0x80808080u;
            const int8x16_t bv = vreinterpretq_s8_u32(vdupq_n_u32(b));
#pragma GCC unroll 4
            for (int v = 0; v < 4; ++v) acc[r][v] = vdotq_s32(acc[r][v], x[v], bv);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) vst1q_s32(sums + r * 16 + 4 * v, acc[r][v]);
}

struct Sdot {
    static constexpr int kConvRows = 5, kGemmRows = 5;  // 20 accumulators + 4 inputs + 5 broadcasts
    template <int R>
    static void conv_dot(const uint8_t* xq, int64_t xq_stride, const int8_t* w, int64_t ldw, int64_t Kq,
                         int32_t* sums) {
        dot_sdot<R, true>(xq, xq_stride, reinterpret_cast<const uint8_t*>(w), ldw, Kq, sums);
    }
    // 128 * the sum of one weight row
    static int32_t conv_correction(const int8_t* w, int64_t bytes) {
        const int8x16_t ones = vdupq_n_s8(1);
        int32x4_t s = vdupq_n_s32(0);
        int64_t i = 0;
        for (; i + 16 <= bytes; i += 16) s = vdotq_s32(s, vld1q_s8(w + i), ones);
        int32_t sum = vaddvq_s32(s);
        for (; i < bytes; ++i) sum += w[i];
        return int32_t(uint32_t(sum) * 128u);
    }
    template <int R>
    static void gemm_dot(const int8_t* wt, int64_t wt_stride, const uint8_t* xu, int64_t ldx, int64_t Kq,
                         int32_t* sums) {
        dot_sdot<R, false>(reinterpret_cast<const uint8_t*>(wt), wt_stride, xu, ldx, Kq, sums);
    }
    // 128 * the sums of 16 weight columns (quad-transposed: 64 bytes per kq)
    static void gemm_correction(const int8_t* wt, int64_t wt_stride, int64_t Kq, int32_t* corr) {
        const int8x16_t ones = vdupq_n_s8(1);
        int32x4_t s[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
        for (int64_t kq = 0; kq < Kq; ++kq, wt += wt_stride)
            for (int v = 0; v < 4; ++v) s[v] = vdotq_s32(s[v], vld1q_s8(wt + 16 * v), ones);
        for (int v = 0; v < 4; ++v) vst1q_s32(corr + 4 * v, vshlq_n_s32(s[v], 7));
    }
    static int32x4_t gemv_step(int32x4_t acc, int8x16_t w, int8x16_t x) { return vdotq_s32(acc, w, x); }
};

}  // namespace

void conv_u8_tile_neon_dotprod(const ConvU8TileArgs& a) { conv_u8_tile_with<Sdot>(a); }
void gemm_u8_tile_neon_dotprod(const GemmU8TileArgs& a) { gemm_u8_tile_with<Sdot>(a); }
void gemv_lut_neon_dotprod(const GemvLutArgs& a, int64_t n_begin, int64_t n_end) {
    gemv_lut_with<Sdot>(a, n_begin, n_end);
}

}  // namespace ssvq
