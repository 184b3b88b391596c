// The `neon` fused kernel set for AArch64 (AdvSIMD is ARMv8-A baseline: no run-time check), and the registration of
// `neon_dotprod`, which swaps in the SDOT int8 micro-kernels of fused_neon_dotprod.cc where HWCAP_ASIMDDP says so.
//
// What each function does here (the rest of the contract is in fused.h):
//   decode_s8        d in {1, 2, 4, 8, 16}: 16 weights per register (16 / d codewords + two sign bytes); other d
//                    go to the scalar loop (the kernel report names it, see fused_common.cc)
//   decode_f32       decode_range_neon (decode_neon.cc) on whole sub-vectors, the partial ones at the ends by _ref
//   int8 conv/gemm   16 pixels / columns per block; quads de-interleaved by LD4, widened to 16 bits, SMLAL by lane
//                    into int32 (exact for any int8 x uint8)
//   gemv_lut         the packed codes and signs decoded 16 weights at a time, SMULL / SMLAL2 / SADALP
//   float conv/gemm  FMLA register blocks (4 rows x 16 pixels; 4 x 4 dot products for gemm)
//   dwconv           4 outputs per register for stride 1 and 2 (LD2 picks the even inputs), borders scalar;
//                    stride > 2 goes to the scalar kernel (flagged in the kernel report)
// The int8 functions agree bit for bit with the scalar set; the float ones to a rounding tolerance.
#include <arm_neon.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "fused.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the streams are read as little-endian words");

namespace ssvq {

// fused_neon_dotprod.cc (built with -march=armv8.2-a+dotprod): only reached through the neon_dotprod set.
void conv_u8_tile_neon_dotprod(const ConvU8TileArgs&);
void gemm_u8_tile_neon_dotprod(const GemmU8TileArgs&);
void gemv_lut_neon_dotprod(const GemvLutArgs&, int64_t n_begin, int64_t n_end);

#include "fused_neon.inc"

namespace {

// ---- int8 micro-kernels without dot-product instructions -------------------------------------------------------

// acc[0..3] (lanes 0-3, 4-7, 8-11, 12-15) += lanes of lo / hi (lanes 0-7 / 8-15) times element T of b.
template <int T>
inline void mla_lane(int32x4_t* acc, int16x8_t lo, int16x8_t hi, int16x4_t b) {
    acc[0] = vmlal_lane_s16(acc[0], vget_low_s16(lo), b, T);
    acc[1] = vmlal_high_lane_s16(acc[1], lo, b, T);
    acc[2] = vmlal_lane_s16(acc[2], vget_low_s16(hi), b, T);
    acc[3] = vmlal_high_lane_s16(acc[3], hi, b, T);
}

// sums[r * 16 + l] = sum over kq, t of vec[kq][l][t] * bcast[r][4 kq + t] for 16 lanes l, exact in int32.
// kVecSigned: vec is int8 (gemm weights) and bcast uint8 (activations); else vec uint8 (conv activations), bcast int8.
template <int R, bool kVecSigned>
__attribute__((noinline)) void dot_mlal(const uint8_t* vec, int64_t vec_stride, const uint8_t* bcast,
                                        int64_t bcast_stride, int64_t Kq, int32_t* sums) {
    int32x4_t acc[R][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) acc[r][v] = vdupq_n_s32(0);
    for (int64_t kq = 0; kq < Kq; ++kq, vec += vec_stride) {
        const uint8x16x4_t q = vld4q_u8(vec);  // q.val[t] = element t of the 16 quads
        int16x8_t lo[4], hi[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
            if constexpr (kVecSigned) {
                lo[t] = vmovl_s8(vget_low_s8(vreinterpretq_s8_u8(q.val[t])));
                hi[t] = vmovl_high_s8(vreinterpretq_s8_u8(q.val[t]));
            } else {
                lo[t] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(q.val[t])));
                hi[t] = vreinterpretq_s16_u16(vmovl_high_u8(q.val[t]));
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            uint32_t b;
            std::memcpy(&b, bcast + r * bcast_stride + 4 * kq, 4);
            const int16x4_t bw = kVecSigned ? vget_low_s16(vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(b))))
                                            : vget_low_s16(vmovl_s8(vcreate_s8(b)));
            mla_lane<0>(acc[r], lo[0], hi[0], bw);
            mla_lane<1>(acc[r], lo[1], hi[1], bw);
            mla_lane<2>(acc[r], lo[2], hi[2], bw);
            mla_lane<3>(acc[r], lo[3], hi[3], bw);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) vst1q_s32(sums + r * 16 + 4 * v, acc[r][v]);
}

struct Smlal {
    static constexpr int kConvRows = 4, kGemmRows = 4;  // 16 accumulators + 8 widened inputs
    template <int R>
    static void conv_dot(const uint8_t* xq, int64_t xq_stride, const int8_t* w, int64_t ldw, int64_t Kq,
                         int32_t* sums) {
        dot_mlal<R, false>(xq, xq_stride, reinterpret_cast<const uint8_t*>(w), ldw, Kq, sums);
    }
    static int32_t conv_correction(const int8_t*, int64_t) { return 0; }
    template <int R>
    static void gemm_dot(const int8_t* wt, int64_t wt_stride, const uint8_t* xu, int64_t ldx, int64_t Kq,
                         int32_t* sums) {
        dot_mlal<R, true>(reinterpret_cast<const uint8_t*>(wt), wt_stride, xu, ldx, Kq, sums);
    }
    static void gemm_correction(const int8_t*, int64_t, int64_t, int32_t* corr) { std::memset(corr, 0, 16 * 4); }
    // Two products of |values| <= 127 sum to at most 32258: exact in int16 before the widening pairwise add.
    static int32x4_t gemv_step(int32x4_t acc, int8x16_t w, int8x16_t x) {
        return vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x));
    }
};

// ---- decode ---------------------------------------------------------------------------------------------------

template <int D, bool kSigns>
void decode_s8_chunks(const PackedWeight& w, int64_t c_begin, int64_t c_end, int8_t* dst) {
    for (int64_t e = c_begin; e < c_end; e += 16, dst += 16) vst1q_s8(dst, weights16<D, kSigns>(w, e));
}

template <int D>
void decode_s8_chunks(const PackedWeight& w, int64_t c_begin, int64_t c_end, int8_t* dst) {
    if (w.signs != nullptr) {
        decode_s8_chunks<D, true>(w, c_begin, c_end, dst);
    } else {
        decode_s8_chunks<D, false>(w, c_begin, c_end, dst);
    }
}

// ---- activations ----------------------------------------------------------------------------------------------

// 16 floats (count of them valid, the rest read as 0) -> uint8 q = clamp(round(x * inv) + zp, 0, 255).
inline uint8x16_t quantize16_u8(const float* src, int64_t count, float32x4_t inv, float32x4_t zp) {
    alignas(16) float tmp[16] = {};
    if (count < 16) {
        for (int64_t i = 0; i < count; ++i) tmp[i] = src[i];
        src = tmp;
    }
    const float32x4_t lo = vdupq_n_f32(0.f), hi = vdupq_n_f32(255.f);
    uint16x4_t h[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
        const float32x4_t r = vaddq_f32(vrndnq_f32(vmulq_f32(vld1q_f32(src + 4 * v), inv)), zp);
        h[v] = vmovn_u32(vcvtq_u32_f32(vminq_f32(vmaxq_f32(r, lo), hi)));  // integral after the clamp: exact
    }
    return vcombine_u8(vmovn_u16(vcombine_u16(h[0], h[1])), vmovn_u16(vcombine_u16(h[2], h[3])));
}

// Lanes l < count of q, zp elsewhere.
inline uint8x16_t keep_first(uint8x16_t q, int64_t count, uint8x16_t zp) {
    const uint8x16_t iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return vbslq_u8(vcltq_u8(iota, vdupq_n_u8(uint8_t(count < 16 ? count : 16))), q, zp);
}

// ---- float micro-kernels --------------------------------------------------------------------------------------

// sums[(r * V + v) * 4 + l] = sum over k of w[r][k] * x[k][4 v + l], k ascending, one FMLA per product.
template <int R, int V>
__attribute__((noinline)) void dot_f32(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t K,
                                       float* sums) {
    float32x4_t acc[R][V];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][v] = vdupq_n_f32(0.f);
    for (int64_t k = 0; k < K; ++k, x += ldx) {
        float32x4_t xv[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) xv[v] = vld1q_f32(x + 4 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const float b = w[r * ldw + k];
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) acc[r][v] = vfmaq_n_f32(acc[r][v], xv[v], b);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) vst1q_f32(sums + (r * V + v) * 4, acc[r][v]);
}

template <int R, int V>
void conv_f32_block(const ConvF32TileArgs& a, int64_t r0, int64_t p0) {
    alignas(16) float sums[R * V * 4];
    dot_f32<R, V>(a.x + p0, a.ldx, a.w + r0 * a.ldw, a.ldw, a.K, sums);
    for (int r = 0; r < R; ++r) {
        const int64_t o = r0 + r;
        const float32x4_t mult = vdupq_n_f32(a.mult[o]), bias = vdupq_n_f32(a.bias[o]);
        float* yr = a.y + o * a.ldy + p0;
        for (int v = 0; v < V; ++v)
            vst1q_f32(yr + 4 * v, activate(vfmaq_f32(bias, vld1q_f32(sums + (r * V + v) * 4), mult), a.activation));
    }
}

// Float dot products of MB rows of X with NB rows of W: 4 partial sums per pair, reduced at the end.
template <int MB, int NB>
void gemm_f32_block(const GemmF32Args& a, int64_t m0, int64_t n0) {
    float32x4_t acc[MB][NB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) acc[i][j] = vdupq_n_f32(0.f);
    const int64_t K4 = a.K / 4 * 4;
    for (int64_t k = 0; k < K4; k += 4) {
        float32x4_t x[MB];
#pragma GCC unroll 8
        for (int i = 0; i < MB; ++i) x[i] = vld1q_f32(a.x + (m0 + i) * a.ldx + k);
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) {
            const float32x4_t w = vld1q_f32(a.w + (n0 + j) * a.ldw + k);
#pragma GCC unroll 8
            for (int i = 0; i < MB; ++i) acc[i][j] = vfmaq_f32(acc[i][j], x[i], w);
        }
    }
    for (int i = 0; i < MB; ++i) {
        const float* xr = a.x + (m0 + i) * a.ldx;
        for (int j = 0; j < NB; ++j) {
            const int64_t n = n0 + j;
            const float* wr = a.w + n * a.ldw;
            float s = vaddvq_f32(acc[i][j]);
            for (int64_t k = K4; k < a.K; ++k) s = std::fma(xr[k], wr[k], s);
            a.y[(m0 + i) * a.ldy + n] = activate1(std::fma(s, a.mult[n], a.bias[n]), a.activation);
        }
    }
}

// One depthwise output by the scalar rule (borders).
inline float dw_output(const DwConvArgs& a, int64_t oy, int64_t ox) {
    float acc = 0.f;
    for (int64_t i = 0; i < a.kh; ++i) {
        const int64_t iy = oy * a.sh - a.pt + i * a.dh;
        if (iy < 0 || iy >= a.H) continue;
        for (int64_t j = 0; j < a.kw; ++j) {
            const int64_t ix = ox * a.sw - a.pl + j * a.dw;
            if (ix < 0 || ix >= a.W) continue;
            acc = std::fma(a.w[i * a.kw + j], a.x[iy * a.W + ix], acc);
        }
    }
    return activate1(std::fma(acc, a.mult, a.bias), a.activation);
}

template <int kStride>
void dwconv_rows(const DwConvArgs& a) {
    const float32x4_t mult = vdupq_n_f32(a.mult), bias = vdupq_n_f32(a.bias);
    // 4 outputs from ox on are interior when every tap's load (4 * kStride floats) lies inside the row.
    const int64_t first = (a.pl + kStride - 1) / kStride;
    const int64_t span = (a.kw - 1) * a.dw + 4 * kStride;
    for (int64_t oy = 0; oy < a.Ho; ++oy) {
        float* yr = a.y + oy * a.Wo;
        int64_t ox = 0;
        for (; ox < a.Wo && ox < first; ++ox) yr[ox] = dw_output(a, oy, ox);
        for (; ox + 4 <= a.Wo && ox * kStride - a.pl + span <= a.W; ox += 4) {
            float32x4_t acc = vdupq_n_f32(0.f);
            for (int64_t i = 0; i < a.kh; ++i) {
                const int64_t iy = oy * a.sh - a.pt + i * a.dh;
                if (iy < 0 || iy >= a.H) continue;
                const float* row = a.x + iy * a.W + ox * kStride - a.pl;
                for (int64_t j = 0; j < a.kw; ++j) {
                    const float* p = row + j * a.dw;
                    const float32x4_t x = kStride == 1 ? vld1q_f32(p) : vld2q_f32(p).val[0];
                    acc = vfmaq_n_f32(acc, x, a.w[i * a.kw + j]);
                }
            }
            vst1q_f32(yr + ox, activate(vfmaq_f32(bias, acc, mult), a.activation));
        }
        for (; ox < a.Wo; ++ox) yr[ox] = dw_output(a, oy, ox);
    }
}

void decode_s8_neon(const PackedWeight& w, int64_t e_begin, int64_t e_end, int8_t* out) {
    const int64_t c_begin = (e_begin + 15) / 16 * 16, c_end = e_end / 16 * 16;
    if (16 % w.d != 0 || c_begin >= c_end) return decode_s8_ref(w, e_begin, e_end, out);
    decode_s8_ref(w, e_begin, c_begin, out);
    int8_t* dst = out + (c_begin - e_begin);
    switch (w.d) {
        case 1: decode_s8_chunks<1>(w, c_begin, c_end, dst); break;
        case 2: decode_s8_chunks<2>(w, c_begin, c_end, dst); break;
        case 4: decode_s8_chunks<4>(w, c_begin, c_end, dst); break;
        case 8: decode_s8_chunks<8>(w, c_begin, c_end, dst); break;
        default: decode_s8_chunks<16>(w, c_begin, c_end, dst); break;
    }
    decode_s8_ref(w, c_end, e_end, out + (c_end - e_begin));
}

void decode_f32_neon(const PackedWeight& w, int64_t e_begin, int64_t e_end, float* out) {
    const int64_t v0 = (e_begin + w.d - 1) / w.d, v1 = e_end / w.d;
    if (v0 >= v1) return decode_f32_ref(w, e_begin, e_end, out);
    decode_f32_ref(w, e_begin, v0 * w.d, out);
    const DecodeArgs args{w.codebook_f32, w.indices, w.index_bytes, w.signs, w.bits, w.d, w.numel / w.d, nullptr};
    decode_range_neon(args, v0, v1, out + (v0 * w.d - e_begin));
    decode_f32_ref(w, v1 * w.d, e_end, out + (v1 * w.d - e_begin));
}

void minmax_neon(const float* x, int64_t n, float* lo, float* hi) {
    // x < a ? x : a and x > b ? x : b, like the scalar loop (a NaN input is skipped, never selected).
    float32x4_t a0 = vdupq_n_f32(*lo), b0 = vdupq_n_f32(*hi), a1 = a0, b1 = b0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t u = vld1q_f32(x + i), v = vld1q_f32(x + i + 4);
        a0 = vbslq_f32(vcltq_f32(u, a0), u, a0);
        b0 = vbslq_f32(vcgtq_f32(u, b0), u, b0);
        a1 = vbslq_f32(vcltq_f32(v, a1), v, a1);
        b1 = vbslq_f32(vcgtq_f32(v, b1), v, b1);
    }
    a0 = vbslq_f32(vcltq_f32(a1, a0), a1, a0);
    b0 = vbslq_f32(vcgtq_f32(b1, b0), b1, b0);
    alignas(16) float la[4], lb[4];
    vst1q_f32(la, a0);
    vst1q_f32(lb, b0);
    float a = *lo, b = *hi;
    for (int l = 0; l < 4; ++l) {
        a = la[l] < a ? la[l] : a;
        b = lb[l] > b ? lb[l] : b;
    }
    for (; i < n; ++i) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

void pack_u8_quads_neon(const float* x, int64_t ldx, int64_t K, int64_t P, float inv_scale, int32_t zero_point,
                        uint8_t* xq, int64_t ldq) {
    const int64_t Kq = (K + 3) / 4;
    const float32x4_t inv = vdupq_n_f32(inv_scale), zpf = vdupq_n_f32(float(zero_point));
    const uint8x16_t zp = vdupq_n_u8(uint8_t(zero_point));
    for (int64_t kq = 0; kq < Kq; ++kq) {
        uint8_t* dst = xq + kq * ldq * 4;
        const float* rows[4];
        for (int t = 0; t < 4; ++t) rows[t] = 4 * kq + t < K ? x + (4 * kq + t) * ldx : nullptr;
        int64_t p = 0;
        for (; p + 16 <= ldq; p += 16) {
            uint8x16x4_t q;
            const int64_t count = p < P ? P - p : 0;
            for (int t = 0; t < 4; ++t)
                q.val[t] = rows[t] != nullptr && count > 0
                               ? keep_first(quantize16_u8(rows[t] + p, count, inv, zpf), count, zp)
                               : zp;
            vst4q_u8(dst + 4 * p, q);  // interleaves the 4 rows into quads
        }
        for (; p < ldq; ++p) {  // ldq not a multiple of 16: the last pixels by the scalar rule
            for (int t = 0; t < 4; ++t) {
                uint8_t v = uint8_t(zero_point);
                if (rows[t] != nullptr && p < P) {
                    const float r = std::nearbyint(rows[t][p] * inv_scale) + float(zero_point);
                    v = uint8_t(r <= 0.f ? 0 : r >= 255.f ? 255 : int32_t(r));
                }
                dst[4 * p + t] = v;
            }
        }
    }
}

void quantize_row_s8_neon(const float* x, int64_t K, int64_t Kpad, float inv_scale, int8_t* xs, uint8_t* xu) {
    const float32x4_t inv = vdupq_n_f32(inv_scale), lo = vdupq_n_f32(-127.f), hi = vdupq_n_f32(127.f);
    const uint8x16_t iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    int64_t k = 0;
    for (; k + 16 <= Kpad; k += 16) {
        const int64_t count = k < K ? min_of<int64_t>(16, K - k) : 0;
        alignas(16) float tmp[16] = {};
        const float* src = x + k;
        if (count < 16) {
            for (int64_t i = 0; i < count; ++i) tmp[i] = src[i];
            src = tmp;
        }
        int16x4_t h[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
            const float32x4_t r = vrndnq_f32(vmulq_f32(vld1q_f32(src + 4 * v), inv));
            h[v] = vmovn_s32(vcvtq_s32_f32(vminq_f32(vmaxq_f32(r, lo), hi)));
        }
        int8x16_t q = vcombine_s8(vmovn_s16(vcombine_s16(h[0], h[1])), vmovn_s16(vcombine_s16(h[2], h[3])));
        q = vbslq_s8(vcltq_u8(iota, vdupq_n_u8(uint8_t(count))), q, vdupq_n_s8(0));  // zeros past K
        vst1q_s8(xs + k, q);
        if (xu != nullptr) vst1q_u8(xu + k, veorq_u8(vreinterpretq_u8_s8(q), vdupq_n_u8(0x80)));  // q + 128
    }
    quantize_row_s8_ref(x + k, K > k ? K - k : 0, Kpad - k, inv_scale, xs + k, xu != nullptr ? xu + k : nullptr);
}

// 4 rows x 4 quads -> 4 quads x 4 rows: a 4x4 transpose of 32-bit words.
void transpose_quads_neon(const int8_t* w, int64_t ldw, int64_t rows, int64_t Kq, int8_t* wt, int64_t ldn) {
    const int64_t rows4 = rows / 4 * 4, kq4 = Kq / 4 * 4;
    for (int64_t n0 = 0; n0 < rows4; n0 += 4) {
        for (int64_t kq0 = 0; kq0 < kq4; kq0 += 4) {
            uint32x4_t r[4];
            for (int i = 0; i < 4; ++i)
                r[i] = vreinterpretq_u32_s8(vld1q_s8(w + (n0 + i) * ldw + 4 * kq0));
            const uint32x4_t t0 = vtrn1q_u32(r[0], r[1]), t1 = vtrn2q_u32(r[0], r[1]);
            const uint32x4_t t2 = vtrn1q_u32(r[2], r[3]), t3 = vtrn2q_u32(r[2], r[3]);
            const uint64x2_t u0 = vreinterpretq_u64_u32(t0), u1 = vreinterpretq_u64_u32(t1);
            const uint64x2_t u2 = vreinterpretq_u64_u32(t2), u3 = vreinterpretq_u64_u32(t3);
            const uint64x2_t out[4] = {vtrn1q_u64(u0, u2), vtrn1q_u64(u1, u3), vtrn2q_u64(u0, u2), vtrn2q_u64(u1, u3)};
            for (int j = 0; j < 4; ++j) vst1q_s8(wt + ((kq0 + j) * ldn + n0) * 4, vreinterpretq_s8_u64(out[j]));
        }
    }
    // Remainders (and the zero columns up to ldn) by the scalar loop.
    for (int64_t kq = 0; kq < Kq; ++kq) {
        int8_t* dst = wt + kq * ldn * 4;
        const int64_t n_from = kq < kq4 ? rows4 : 0;
        for (int64_t n = n_from; n < rows; ++n) std::memcpy(dst + 4 * n, w + n * ldw + 4 * kq, 4);
        std::memset(dst + 4 * rows, 0, size_t(4 * (ldn - rows)));
    }
}

void conv_f32_tile_neon(const ConvF32TileArgs& a) {
    constexpr int kR = 4, kV = 4;  // 16 accumulators
    const int64_t P4 = a.P / 4 * 4;
    for (int64_t p0 = 0; p0 < P4; p0 += 4 * kV) {
        const int nv = int(min_of<int64_t>(kV, (P4 - p0) / 4));
        for (int64_t r0 = 0; r0 < a.rows; r0 += kR) {
            with_count<kR>(int(min_of<int64_t>(kR, a.rows - r0)), [&](auto rc) {
                with_count<kV>(nv, [&](auto vc) {
                    conv_f32_block<decltype(rc)::value, decltype(vc)::value>(a, r0, p0);
                });
            });
        }
    }
    for (int64_t o = 0; o < a.rows; ++o) {  // the last P % 4 pixels
        const float* wr = a.w + o * a.ldw;
        for (int64_t p = P4; p < a.P; ++p) {
            float acc = 0.f;
            for (int64_t k = 0; k < a.K; ++k) acc = std::fma(wr[k], a.x[k * a.ldx + p], acc);
            a.y[o * a.ldy + p] = activate1(std::fma(acc, a.mult[o], a.bias[o]), a.activation);
        }
    }
}

void conv_u8_tile_neon(const ConvU8TileArgs& a) { conv_u8_tile_with<Smlal>(a); }

void dwconv_f32_neon(const DwConvArgs& a) {
    if (a.sw == 1) return dwconv_rows<1>(a);
    if (a.sw == 2) return dwconv_rows<2>(a);
    dwconv_f32_ref(a);
}

template <int MB, int NB>
struct GemmF32Block {
    static void run(const GemmF32Args& a, int64_t m0, int64_t n0) { gemm_f32_block<MB, NB>(a, m0, n0); }
};

void gemm_f32_neon(const GemmF32Args& a) { gemm_f32_blocks<GemmF32Block>(a); }

void gemm_u8_tile_neon(const GemmU8TileArgs& a) { gemm_u8_tile_with<Smlal>(a); }

void gemv_lut_neon(const GemvLutArgs& a, int64_t n_begin, int64_t n_end) { gemv_lut_with<Smlal>(a, n_begin, n_end); }

}  // namespace

bool cpu_has_neon_dotprod() {
#if defined(__linux__) && defined(AT_HWCAP)
    constexpr unsigned long kHwcapAsimdDp = 1ul << 20;  // HWCAP_ASIMDDP, <asm/hwcap.h>
    return (getauxval(AT_HWCAP) & kHwcapAsimdDp) != 0;
#else
    return false;
#endif
}

const FusedKernelSet& neon_fused_kernels() {
    static const FusedKernelSet set{"neon",
                                    [] { return true; },  // AdvSIMD is baseline on ARMv8-A
                                    decode_s8_neon,
                                    decode_f32_neon,
                                    minmax_neon,
                                    pack_u8_quads_neon,
                                    quantize_row_s8_neon,
                                    transpose_quads_neon,
                                    conv_f32_tile_neon,
                                    conv_u8_tile_neon,
                                    dwconv_f32_neon,
                                    gemm_f32_neon,
                                    gemm_u8_tile_neon,
                                    gemv_lut_neon,
                                    false,  // gemm_u8_tile writes float tiles; requantize_u8 follows
                                    requantize_u8_ref,  // portable C++: -O3 vectorises it with AdvSIMD
                                    dwconv_u8_nhwc_ref};
    return set;
}

// The neon set with the int8 inner products on SDOT.
const FusedKernelSet& neon_dotprod_fused_kernels() {
    static const FusedKernelSet set = [] {
        FusedKernelSet s = neon_fused_kernels();
        s.name = "neon_dotprod";
        s.supported = cpu_has_neon_dotprod;
        s.conv_u8_tile = conv_u8_tile_neon_dotprod;
        s.gemm_u8_tile = gemm_u8_tile_neon_dotprod;
        s.gemv_lut = gemv_lut_neon_dotprod;
        return s;
    }();
    return set;
}

}  // namespace ssvq
