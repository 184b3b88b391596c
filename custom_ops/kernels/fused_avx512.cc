// AVX-512 fused kernels (F, BW, DQ, VL, VNNI; BMI2 for pdep). Like decode_avx512.cc, every function carries a
// target attribute instead of the file being built with -mavx512*, and the dispatch (fused.cc) only calls in when
// cpu_has_avx512_vnni().
//
// Packed blocks these kernels read (docs/format.md; d = 8, b = log2(k) bits per code):
//   8 codes   = 8 * b bits = exactly b bytes        -> pdep spreads them to one code per byte
//   64 signs  = 8 bytes                             -> one __mmask64, bit i negates byte i
//   1 codeword of d = 8 int8 magnitudes = one qword -> 16 codewords (k <= 16) fill two zmm: the lookup table
// so a group of 8 sub-vectors (64 weights) decodes with one permute and one masked subtract.
//
// Int8 results agree bit for bit with fused_generic.inc: same integer sums, vcvtdq2ps and vfmadd rounding, the
// same max/min selection for the activations, and vcvtps2dq under the default round-to-nearest-even MXCSR mode,
// which is what std::nearbyint uses.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fused.h"

#define SSVQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,bmi2")))

namespace ssvq {
namespace {

constexpr int64_t kGroup = 64;  // weights per decode group: 8 sub-vectors of d = 8
static_assert(kGroup == 8 * 8, "a group is 8 codewords of 8 bytes");


inline uint64_t pdep_mask(int bits) { return 0x0101010101010101ull * ((1ull << bits) - 1ull); }

SSVQ_AVX512 inline __m512 activate(__m512 y, Activation a) {
    if (a == Activation::kNone) return y;
    y = _mm512_max_ps(y, _mm512_setzero_ps());  // y > 0 ? y : 0, as apply_activation
    if (a == Activation::kRelu6) y = _mm512_min_ps(y, _mm512_set1_ps(6.f));
    return y;
}

inline __mmask16 lane_mask(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u); }

// The two registers of the 16-entry int8 codeword table (entries >= k are zero).
struct QTable {
    __m512i lo, hi;
};

SSVQ_AVX512 inline QTable load_qtable(const int8_t* codebook_q, int bits) {
    alignas(64) int8_t t[128] = {};
    std::memcpy(t, codebook_q, size_t(8) << bits);
    return {_mm512_load_si512(t), _mm512_load_si512(t + 64)};
}

template <int B>
inline uint64_t load_le(const uint8_t* p) {  // B <= 8 bytes, little-endian; a constant size, so no libc call
    uint64_t w = 0;
    std::memcpy(&w, p, B);
    return w;
}

// The 64 int8 magnitudes of a decode group: 8 codes of B bits from the B bytes at idx.
template <int B>
SSVQ_AVX512 inline __m512i group_magnitudes(const uint8_t* idx, const QTable& t) {
    const uint64_t codes = _pdep_u64(load_le<B>(idx), pdep_mask(B));
    const __m512i sel = _mm512_cvtepu8_epi64(_mm_cvtsi64_si128(int64_t(codes)));
    return _mm512_permutex2var_epi64(t.lo, sel, t.hi);
}

// ---- decode ---------------------------------------------------------------------------------------------------

template <int B>
SSVQ_AVX512 void decode_s8_groups(const PackedWeight& w, int64_t g_begin, int64_t g_end, int8_t* dst) {
    const __m512i zero = _mm512_setzero_si512();
    if constexpr (B <= 4) {
        const QTable t = load_qtable(w.codebook_q, B);
        for (int64_t g = g_begin; g < g_end; ++g, dst += kGroup) {
            __m512i v = group_magnitudes<B>(w.indices + g * B, t);
            if (w.signs != nullptr) v = _mm512_mask_sub_epi8(v, _cvtu64_mask64(load_le<8>(w.signs + 8 * g)), zero, v);
            _mm512_storeu_si512(dst, v);
        }
    } else {
        for (int64_t g = g_begin; g < g_end; ++g, dst += kGroup) {
            const uint64_t codes = _pdep_u64(load_le<B>(w.indices + g * B), pdep_mask(B));
            const __m512i sel = _mm512_cvtepu8_epi64(_mm_cvtsi64_si128(int64_t(codes)));
            __m512i v = _mm512_i64gather_epi64(sel, reinterpret_cast<const long long*>(w.codebook_q), 8);
            if (w.signs != nullptr) v = _mm512_mask_sub_epi8(v, _cvtu64_mask64(load_le<8>(w.signs + 8 * g)), zero, v);
            _mm512_storeu_si512(dst, v);
        }
    }
}

void decode_s8_avx512(const PackedWeight& w, int64_t e_begin, int64_t e_end, int8_t* out) {
    if (w.d != 8 || w.bits > 8) return decode_s8_ref(w, e_begin, e_end, out);
    // Head up to the first group boundary, whole groups, tail.
    const int64_t g_begin = (e_begin + kGroup - 1) / kGroup, g_end = e_end / kGroup;
    if (g_begin >= g_end) return decode_s8_ref(w, e_begin, e_end, out);
    decode_s8_ref(w, e_begin, g_begin * kGroup, out);
    int8_t* dst = out + (g_begin * kGroup - e_begin);
    switch (w.bits) {
        case 1: decode_s8_groups<1>(w, g_begin, g_end, dst); break;
        case 2: decode_s8_groups<2>(w, g_begin, g_end, dst); break;
        case 3: decode_s8_groups<3>(w, g_begin, g_end, dst); break;
        case 4: decode_s8_groups<4>(w, g_begin, g_end, dst); break;
        case 5: decode_s8_groups<5>(w, g_begin, g_end, dst); break;
        case 6: decode_s8_groups<6>(w, g_begin, g_end, dst); break;
        case 7: decode_s8_groups<7>(w, g_begin, g_end, dst); break;
        default: decode_s8_groups<8>(w, g_begin, g_end, dst); break;
    }
    decode_s8_ref(w, g_end * kGroup, e_end, out + (g_end * kGroup - e_begin));
}

// fp32: the SSVQDecode AVX-512 kernel on the byte-aligned sub-range of whole sub-vectors, the rest by _ref.
void decode_f32_avx512(const PackedWeight& w, int64_t e_begin, int64_t e_end, float* out) {
    const int64_t v0 = (e_begin + w.d - 1) / w.d, v1 = e_end / w.d;
    if (v1 - v0 < 16 || (v0 * w.bits) % 8 != 0 || (v0 * w.d) % 8 != 0)
        return decode_f32_ref(w, e_begin, e_end, out);
    decode_f32_ref(w, e_begin, v0 * w.d, out);
    const int64_t index_offset = v0 * w.bits / 8;
    const DecodeArgs args{w.codebook_f32,
                          w.indices + index_offset,
                          w.index_bytes - index_offset,
                          w.signs != nullptr ? w.signs + v0 * w.d / 8 : nullptr,
                          w.bits,
                          w.d,
                          v1 - v0,
                          out + (v0 * w.d - e_begin)};
    decode_avx512(args);
    decode_f32_ref(w, v1 * w.d, e_end, out + (v1 * w.d - e_begin));
}

// ---- activations ------------------------------------------------------------------------------------------------

SSVQ_AVX512 void minmax_avx512(const float* x, int64_t n, float* lo, float* hi) {
    __m512 a = _mm512_set1_ps(*lo), b = _mm512_set1_ps(*hi);
    __m512 a2 = a, b2 = b;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 v = _mm512_loadu_ps(x + i), u = _mm512_loadu_ps(x + i + 16);
        a = _mm512_min_ps(a, v);
        b = _mm512_max_ps(b, v);
        a2 = _mm512_min_ps(a2, u);
        b2 = _mm512_max_ps(b2, u);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = lane_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        a = _mm512_mask_min_ps(a, m, a, v);
        b = _mm512_mask_max_ps(b, m, b, v);
    }
    *lo = _mm512_reduce_min_ps(_mm512_min_ps(a, a2));
    *hi = _mm512_reduce_max_ps(_mm512_max_ps(b, b2));
}

SSVQ_AVX512 inline __m512i quantize16_u8(__m512 x, __m512 inv, __m512i zp) {
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x, inv)), zp);
    return _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
}

SSVQ_AVX512 void pack_u8_quads_avx512(const float* x, int64_t ldx, int64_t K, int64_t P, float inv_scale,
                                      int32_t zero_point, uint8_t* xq, int64_t ldq) {
    const int64_t Kq = (K + 3) / 4;
    const __m512 inv = _mm512_set1_ps(inv_scale);
    const __m512i zp = _mm512_set1_epi32(zero_point);
    for (int64_t kq = 0; kq < Kq; ++kq) {
        uint8_t* dst = xq + kq * ldq * 4;
        const float* rows[4];
        for (int t = 0; t < 4; ++t) rows[t] = 4 * kq + t < K ? x + (4 * kq + t) * ldx : nullptr;
        for (int64_t p = 0; p < ldq; p += 16) {
            const __mmask16 m = p < P ? lane_mask(P - p) : __mmask16(0);
            __m512i word = _mm512_setzero_si512();
            for (int t = 0; t < 4; ++t) {
                const __m512i q = rows[t] != nullptr ? quantize16_u8(_mm512_maskz_loadu_ps(m, rows[t] + p), inv, zp) : zp;
                word = _mm512_or_si512(word, _mm512_slli_epi32(q, 8 * t));
            }
            _mm512_storeu_si512(dst + 4 * p, word);
        }
    }
}

SSVQ_AVX512 void quantize_row_s8_avx512(const float* x, int64_t K, int64_t Kpad, float inv_scale, int8_t* xs,
                                        uint8_t* xu) {
    const __m512 inv = _mm512_set1_ps(inv_scale);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), bias = _mm512_set1_epi32(128);
    for (int64_t k = 0; k < Kpad; k += 16) {
        const __mmask16 in = k < K ? lane_mask(K - k) : __mmask16(0), out = lane_mask(Kpad - k);
        __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(in, x + k), inv));
        q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
        _mm_mask_storeu_epi8(xs + k, out, _mm512_cvtepi32_epi8(q));
        if (xu != nullptr) _mm_mask_storeu_epi8(xu + k, out, _mm512_cvtepi32_epi8(_mm512_add_epi32(q, bias)));
    }
}

// 16 rows x 16 quads (16 x 64 bytes) -> 16 quads x 16 rows: a 16x16 transpose of dwords, for every block of the
// (ldn rounded) output. Partial blocks load zeros past `rows` / `Kq` (masked loads) and store only quads < Kq: the
// columns up to ldn come out zero without a separate pass.
SSVQ_AVX512 void transpose_quads_avx512(const int8_t* w, int64_t ldw, int64_t rows, int64_t Kq, int8_t* wt,
                                        int64_t ldn) {
    const __m512i idx_lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i idx_hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int64_t n0 = 0; n0 < ldn; n0 += 16) {
        for (int64_t kq0 = 0; kq0 < Kq; kq0 += 16) {
            const __mmask16 quads = lane_mask(Kq - kq0);
            __m512i r[16], s[16];
            for (int i = 0; i < 16; ++i)
                r[i] = n0 + i < rows ? _mm512_maskz_loadu_epi32(quads, w + (n0 + i) * ldw + 4 * kq0)
                                     : _mm512_setzero_si512();
            // Four rounds of interleaving pairs (i, i + 8) transpose a 16x16 matrix of dwords.
            for (int round = 0; round < 4; ++round) {
                for (int i = 0; i < 8; ++i) {
                    s[2 * i] = _mm512_permutex2var_epi32(r[i], idx_lo, r[i + 8]);
                    s[2 * i + 1] = _mm512_permutex2var_epi32(r[i], idx_hi, r[i + 8]);
                }
                for (int i = 0; i < 16; ++i) r[i] = s[i];
            }
            for (int i = 0; i < 16 && kq0 + i < Kq; ++i) _mm512_storeu_si512(wt + ((kq0 + i) * ldn + n0) * 4, r[i]);
        }
    }
}

// ---- conv tiles: rows of weights x 16-pixel vectors -----------------------------------------------------------------

// The register-blocked dot products: acc[r][v] += sum over kq of dpbusd(vec[kq][v], bcast[r][kq]), where
// kBcastSigned: vec is uint8 (activations), bcast int8 (weights); else vec is int8 (weights), bcast uint8.
template <int R, int V, bool kBcastSigned>
SSVQ_AVX512 __attribute__((always_inline)) inline void accumulate_u8s8(const uint8_t* vec, int64_t vec_stride,
                                                                      const uint8_t* bcast, int64_t bcast_stride,
                                                                      int64_t Kq, __m512i (&acc)[R][V]) {
    for (int64_t kq = 0; kq < Kq; ++kq, vec += vec_stride) {
        __m512i x[V];
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) x[v] = _mm512_loadu_si512(vec + 64 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            int32_t q;
            std::memcpy(&q, bcast + r * bcast_stride + 4 * kq, 4);
            const __m512i b = _mm512_set1_epi32(q);
            if constexpr (kBcastSigned) {
#pragma GCC unroll 8
                for (int v = 0; v < V; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], x[v], b);
            } else {
#pragma GCC unroll 8
                for (int v = 0; v < V; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], b, x[v]);
            }
        }
    }
}

// accumulate_u8s8 from zero in a leaf function of plain scalars, the sums stored to sums[r][v][16].
template <int R, int V, bool kBcastSigned>
SSVQ_AVX512 __attribute__((noinline)) void dot_u8s8(const uint8_t* vec, int64_t vec_stride, const uint8_t* bcast,
                                                   int64_t bcast_stride, int64_t Kq, int32_t* sums) {
    __m512i acc[R][V];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_si512();
    accumulate_u8s8<R, V, kBcastSigned>(vec, vec_stride, bcast, bcast_stride, Kq, acc);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) _mm512_store_si512(sums + 16 * (r * V + v), acc[r][v]);
}

template <int R, int V>
SSVQ_AVX512 __attribute__((noinline)) void dot_f32(const float* x, int64_t ldx, const __mmask16* m, const float* w,
                                                  int64_t ldw, int64_t K, float* sums) {
    __m512 acc[R][V];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k, x += ldx) {
        __m512 xv[V];
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) xv[v] = _mm512_maskz_loadu_ps(m[v], x + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m512 b = _mm512_set1_ps(w[r * ldw + k]);
#pragma GCC unroll 8
            for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(b, xv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) _mm512_store_ps(sums + 16 * (r * V + v), acc[r][v]);
}

template <int R, int V>
SSVQ_AVX512 void conv_u8_block(const ConvU8TileArgs& a, int64_t r0, int64_t p0) {
    alignas(64) int32_t sums[R][V][16];
    dot_u8s8<R, V, true>(a.xq + p0 * 4, a.ldq * 4, reinterpret_cast<const uint8_t*>(a.w + r0 * a.ldw), a.ldw, a.Kq,
                         &sums[0][0][0]);
    for (int r = 0; r < R; ++r) {
        const int64_t o = r0 + r;
        const __m512i comp = _mm512_set1_epi32(a.comp[o]);
        const __m512 mult = _mm512_set1_ps(a.mult[o]), bias = _mm512_set1_ps(a.bias[o]);
        float* yr = a.y + o * a.ldy + p0;
        for (int v = 0; v < V; ++v) {
            const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(sums[r][v]), comp));
            const __m512 y = activate(_mm512_fmadd_ps(f, mult, bias), a.activation);
            _mm512_mask_storeu_ps(yr + 16 * v, lane_mask(a.P - p0 - 16 * v), y);
        }
    }
}

template <int R, int V>
SSVQ_AVX512 void conv_f32_block(const ConvF32TileArgs& a, int64_t r0, int64_t p0) {
    __mmask16 m[V];
    for (int v = 0; v < V; ++v) m[v] = lane_mask(a.P - p0 - 16 * v);
    alignas(64) float sums[R][V][16];
    dot_f32<R, V>(a.x + p0, a.ldx, m, a.w + r0 * a.ldw, a.ldw, a.K, &sums[0][0][0]);
    for (int r = 0; r < R; ++r) {
        const int64_t o = r0 + r;
        const __m512 mult = _mm512_set1_ps(a.mult[o]), bias = _mm512_set1_ps(a.bias[o]);
        float* yr = a.y + o * a.ldy + p0;
        for (int v = 0; v < V; ++v)
            _mm512_mask_storeu_ps(yr + 16 * v, m[v],
                                  activate(_mm512_fmadd_ps(_mm512_load_ps(sums[r][v]), mult, bias), a.activation));
    }
}

// Rows in blocks of kR, pixels in blocks of kV vectors; remainders get the matching smaller instantiation.
// Up to 24 accumulators in registers: the loops over them carry `#pragma GCC unroll` so GCC 12 unrolls them early
// enough to split the accumulator arrays into registers; without it (or with tree PRE on, see CMakeLists.txt) every
// accumulator went through the stack on each iteration, 2-3x slower.
template <typename Args, template <int, int> class Block, int kR, int kV>
struct Tiler {
    template <int R>
    static void rows_of(const Args& a, int64_t r0, int64_t p0, int nv) {
        switch (nv) {
            case 1: Block<R, 1>::run(a, r0, p0); break;
            case 2: if constexpr (kV >= 2) Block<R, 2>::run(a, r0, p0); break;
            case 3: if constexpr (kV >= 3) Block<R, 3>::run(a, r0, p0); break;
            default: if constexpr (kV >= 4) Block<R, 4>::run(a, r0, p0); break;
        }
    }
    template <int R = kR>
    static void tail_rows(const Args& a, int64_t r0, int64_t p0, int nv, int64_t nr) {
        if constexpr (R >= 1) {
            if (nr == R) return rows_of<R>(a, r0, p0, nv);
            if constexpr (R > 1) tail_rows<R - 1>(a, r0, p0, nv, nr);
        }
    }
    static void run(const Args& a, int64_t rows, int64_t P) {
        for (int64_t p0 = 0; p0 < P; p0 += 16 * kV) {
            const int nv = int(std::min<int64_t>(kV, (P - p0 + 15) / 16));
            int64_t r0 = 0;
            for (; r0 + kR <= rows; r0 += kR) rows_of<kR>(a, r0, p0, nv);
            if (r0 < rows) tail_rows(a, r0, p0, nv, rows - r0);
        }
    }
};

template <int R, int V>
struct ConvU8Block {
    SSVQ_AVX512 static void run(const ConvU8TileArgs& a, int64_t r0, int64_t p0) { conv_u8_block<R, V>(a, r0, p0); }
};
template <int R, int V>
struct ConvF32Block {
    SSVQ_AVX512 static void run(const ConvF32TileArgs& a, int64_t r0, int64_t p0) { conv_f32_block<R, V>(a, r0, p0); }
};

void conv_u8_tile_avx512(const ConvU8TileArgs& a) { Tiler<ConvU8TileArgs, ConvU8Block, 6, 4>::run(a, a.rows, a.P); }
void conv_f32_tile_avx512(const ConvF32TileArgs& a) { Tiler<ConvF32TileArgs, ConvF32Block, 8, 3>::run(a, a.rows, a.P); }

// ---- depthwise: 16 outputs per vector, borders by masked loads (no padded copy) --------------------------------------

// Lanes l of a 16-float load starting at element `start` of a row of W floats that lie inside the row.
inline __mmask16 row_mask(int64_t start, int64_t W) {
    const int64_t lo = std::max<int64_t>(0, -start), hi = std::min<int64_t>(16, W - start);
    if (hi <= lo) return 0;
    return __mmask16(((1u << (hi - lo)) - 1u) << lo);
}

template <int kStride>
SSVQ_AVX512 void dwconv_rows(const DwConvArgs& a) {
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512 mult = _mm512_set1_ps(a.mult), bias = _mm512_set1_ps(a.bias);
    constexpr int kV = 4;
    for (int64_t oy = 0; oy < a.Ho; ++oy) {
        for (int64_t ox0 = 0; ox0 < a.Wo; ox0 += 16 * kV) {
            const int nv = int(std::min<int64_t>(kV, (a.Wo - ox0 + 15) / 16));
            __m512 acc[kV] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int64_t i = 0; i < a.kh; ++i) {
                const int64_t iy = oy * a.sh - a.pt + i * a.dh;
                if (iy < 0 || iy >= a.H) continue;
                const float* row = a.x + iy * a.W;
                for (int64_t j = 0; j < a.kw; ++j) {
                    const __m512 wv = _mm512_set1_ps(a.w[i * a.kw + j]);
                    for (int v = 0; v < nv; ++v) {
                        // masked-off lanes are never read, so a start before the row is fine
                        const int64_t start = (ox0 + 16 * v) * kStride - a.pl + j * a.dw;
                        __m512 x;
                        if (start >= 0 && start + 16 * kStride <= a.W) {  // interior: no mask to compute
                            x = _mm512_loadu_ps(row + start);
                            if constexpr (kStride == 2)
                                x = _mm512_permutex2var_ps(x, evens, _mm512_loadu_ps(row + start + 16));
                        } else if constexpr (kStride == 1) {
                            x = _mm512_maskz_loadu_ps(row_mask(start, a.W), row + start);
                        } else {
                            const __m512 lo = _mm512_maskz_loadu_ps(row_mask(start, a.W), row + start);
                            const __m512 hi = _mm512_maskz_loadu_ps(row_mask(start + 16, a.W), row + start + 16);
                            x = _mm512_permutex2var_ps(lo, evens, hi);
                        }
                        acc[v] = _mm512_fmadd_ps(wv, x, acc[v]);
                    }
                }
            }
            for (int v = 0; v < nv; ++v)
                _mm512_mask_storeu_ps(a.y + oy * a.Wo + ox0 + 16 * v, lane_mask(a.Wo - ox0 - 16 * v),
                                      activate(_mm512_fmadd_ps(acc[v], mult, bias), a.activation));
        }
    }
}

void dwconv_f32_avx512(const DwConvArgs& a) {
    if (a.sw == 1) return dwconv_rows<1>(a);
    if (a.sw == 2) return dwconv_rows<2>(a);
    dwconv_f32_ref(a);
}

// ---- uint8 NHWC activations ----------------------------------------------------------------------------------------

// 16 floats in output units -> 16 uint8: clamp(nearbyint(y) + zp, lo, hi), as requantize_u8 in the generic set.
// Capping y at 512 first keeps vcvtps2dq in range (above it the result is hi either way); below -2^31 it returns
// INT_MIN, which the max with lo takes care of.
struct U8Out {
    __m512i zp, lo, hi;
};

SSVQ_AVX512 inline U8Out u8_out(int32_t zp, int32_t lo, int32_t hi) {
    return {_mm512_set1_epi32(zp), _mm512_set1_epi32(lo), _mm512_set1_epi32(hi)};
}

SSVQ_AVX512 inline __m128i requantize16(__m512 y, const U8Out& o) {
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_min_ps(y, _mm512_set1_ps(512.f))), o.zp);
    return _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, o.lo), o.hi));
}

SSVQ_AVX512 void requantize_u8_avx512(const float* y, int64_t ldy, int64_t rows, int64_t cols, int32_t zero_point,
                                      int32_t lo, int32_t hi, uint8_t* out, int64_t ldo) {
    const U8Out o = u8_out(zero_point, lo, hi);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; c += 16) {
            const __mmask16 m = lane_mask(cols - c);
            _mm_mask_storeu_epi8(out + r * ldo + c, m, requantize16(_mm512_maskz_loadu_ps(m, y + r * ldy + c), o));
        }
}

// Channels [c0, c0 + 16 * V) of output rows [oy_begin, oy_end), kTaps = kh * kw taps with their weights in registers
// (kFull: all 16 * V channels exist, unmasked loads).
// Taps outside the image read `zp_row` (the zero point), and acc starts at -x_zero_point * sum(w): the integer
// sum(x * w) - zp * sum(w) = sum((x - zp) * w) over the taps inside, exact in float like the generic kernel's.
template <int kTaps, int V, bool kFull>
SSVQ_AVX512 void dw_u8_channels(const DwU8NhwcArgs& a, int64_t c0, const uint8_t* zp_row) {
    __mmask16 m[V];
    __m512 w[kTaps][V], start[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
        m[v] = lane_mask(a.C - c0 - 16 * v);
        __m512 sum = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int t = 0; t < kTaps; ++t) {
            w[t][v] = _mm512_maskz_loadu_ps(m[v], a.w + t * a.ldc + c0 + 16 * v);
            sum = _mm512_add_ps(sum, w[t][v]);
        }
        start[v] = _mm512_mul_ps(sum, _mm512_set1_ps(-a.x_zero_point));
    }
    const U8Out out = u8_out(a.y_zero_point, a.y_lo, a.y_hi);
    // Output columns [ox_lo, ox_hi) read only columns inside the image: fixed tap offsets from one base pointer.
    const int64_t span_w = (a.kw - 1) * a.dw;
    const int64_t ox_lo = std::min(a.Wo, (a.pl + a.sw - 1) / a.sw);
    const int64_t last_ix0 = a.W - 1 - span_w + a.pl;  // a column's first tap starts at most here (+ pl)
    const int64_t ox_hi = std::max(ox_lo, std::min(a.Wo, last_ix0 >= 0 ? last_ix0 / a.sw + 1 : 0));
    int64_t offsets[kTaps];
    for (int64_t i = 0, t = 0; i < a.kh; ++i)
        for (int64_t j = 0; j < a.kw; ++j, ++t) offsets[t] = (i * a.dh * a.W + j * a.dw) * a.ldc;
    const uint8_t* rows[kTaps];  // per kernel row i: row iy of the image (nullptr outside)
    for (int64_t oy = a.oy_begin; oy < a.oy_end; ++oy) {
        bool all_rows = true;
        for (int64_t i = 0; i < a.kh; ++i) {
            const int64_t iy = oy * a.sh - a.pt + i * a.dh;
            rows[i] = iy >= 0 && iy < a.H ? a.x + iy * a.W * a.ldc + c0 : nullptr;
            all_rows = all_rows && rows[i] != nullptr;
        }
        const uint8_t* top = a.x + (oy * a.sh - a.pt) * a.W * a.ldc + c0;  // row of kernel row 0 (may lie outside)
        for (int64_t ox = 0; ox < a.Wo; ++ox) {
            const uint8_t* xs[kTaps];
            const bool interior = all_rows && ox >= ox_lo && ox < ox_hi;
            if (interior) {
                const uint8_t* base = top + (ox * a.sw - a.pl) * a.ldc;
#pragma GCC unroll 32
                for (int t = 0; t < kTaps; ++t) xs[t] = base + offsets[t];
            } else {
                for (int64_t i = 0, t = 0; i < a.kh; ++i)
                    for (int64_t j = 0; j < a.kw; ++j, ++t) {
                        const int64_t ix = ox * a.sw - a.pl + j * a.dw;
                        xs[t] = rows[i] != nullptr && ix >= 0 && ix < a.W ? rows[i] + ix * a.ldc : zp_row + c0;
                    }
            }
            __m512 acc[V];
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) acc[v] = start[v];
#pragma GCC unroll 32
            for (int t = 0; t < kTaps; ++t)
#pragma GCC unroll 4
                for (int v = 0; v < V; ++v) {
                    const __m128i b = kFull ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(xs[t] + 16 * v))
                                            : _mm_maskz_loadu_epi8(m[v], xs[t] + 16 * v);
                    acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), w[t][v], acc[v]);
                }
            uint8_t* yp = a.y + (oy * a.Wo + ox) * a.ldc + c0;
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) {
                const __m512 y = _mm512_fmadd_ps(acc[v], _mm512_maskz_loadu_ps(m[v], a.mult + c0 + 16 * v),
                                                 _mm512_maskz_loadu_ps(m[v], a.bias + c0 + 16 * v));
                _mm_mask_storeu_epi8(yp + 16 * v, m[v], requantize16(y, out));
            }
        }
    }
}

// 3x3 depthwise, dilation 1, stride kS, 16 channels at a time. Inside the image, kR neighbouring output pixels share
// their input columns: each is loaded and converted once for all the pixels that use it.
template <int kS, int kR>
SSVQ_AVX512 inline void dw3x3_strip(const uint8_t* const* rows, int64_t C, __mmask16 m, const __m512* w, __m512 start,
                                    __m512 mult, __m512 bias, const U8Out& out, uint8_t* y) {
    constexpr int kCols = (kR - 1) * kS + 3;
    __m512 acc[kR];
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) acc[r] = start;
#pragma GCC unroll 3
    for (int i = 0; i < 3; ++i)
#pragma GCC unroll 16
        for (int u = 0; u < kCols; ++u) {
            const __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, rows[i] + u * C)));
#pragma GCC unroll 8
            for (int r = 0; r < kR; ++r) {
                const int j = u - r * kS;
                if (j >= 0 && j < 3) acc[r] = _mm512_fmadd_ps(x, w[i * 3 + j], acc[r]);
            }
        }
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r)
        _mm_mask_storeu_epi8(y + r * C, m, requantize16(_mm512_fmadd_ps(acc[r], mult, bias), out));
}

template <int kS>
SSVQ_AVX512 void dw3x3_u8(const DwU8NhwcArgs& a, const uint8_t* zp_row) {
    constexpr int kR = 4;
    const U8Out out = u8_out(a.y_zero_point, a.y_lo, a.y_hi);
    const int64_t ox_lo = std::min(a.Wo, (a.pl + kS - 1) / kS);  // first column whose taps all lie inside
    const int64_t ox_hi = std::max(ox_lo, std::min(a.Wo, a.W - 3 + a.pl >= 0 ? (a.W - 3 + a.pl) / kS + 1 : 0));
    for (int64_t c0 = 0; c0 < a.C; c0 += 16) {
        const __mmask16 m = lane_mask(a.C - c0);
        __m512 w[9], sum = _mm512_setzero_ps();
        for (int t = 0; t < 9; ++t) {
            w[t] = _mm512_maskz_loadu_ps(m, a.w + t * a.ldc + c0);
            sum = _mm512_add_ps(sum, w[t]);
        }
        const __m512 start = _mm512_mul_ps(sum, _mm512_set1_ps(-a.x_zero_point));
        const __m512 mult = _mm512_maskz_loadu_ps(m, a.mult + c0), bias = _mm512_maskz_loadu_ps(m, a.bias + c0);
        for (int64_t oy = a.oy_begin; oy < a.oy_end; ++oy) {
            const uint8_t* rows[3];
            bool all_rows = true;
            for (int i = 0; i < 3; ++i) {
                const int64_t iy = oy * a.sh - a.pt + i * a.dh;
                rows[i] = iy >= 0 && iy < a.H ? a.x + iy * a.W * a.ldc + c0 : nullptr;
                all_rows = all_rows && rows[i] != nullptr;
            }
            uint8_t* yrow = a.y + oy * a.Wo * a.ldc + c0;
            for (int64_t ox = 0; ox < a.Wo;) {
                if (all_rows && ox >= ox_lo && ox + kR <= ox_hi) {
                    const int64_t ix = ox * kS - a.pl;
                    const uint8_t* at[3] = {rows[0] + ix * a.ldc, rows[1] + ix * a.ldc, rows[2] + ix * a.ldc};
                    dw3x3_strip<kS, kR>(at, a.ldc, m, w, start, mult, bias, out, yrow + ox * a.ldc);
                    ox += kR;
                    continue;
                }
                __m512 acc = start;  // one pixel at the border: taps outside read the zero point
                for (int i = 0; i < 3; ++i)
                    for (int j = 0; j < 3; ++j) {
                        const int64_t ix = ox * kS - a.pl + j;
                        const bool inside = rows[i] != nullptr && ix >= 0 && ix < a.W;
                        const uint8_t* p = inside ? rows[i] + ix * a.ldc : zp_row + c0;
                        const __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)));
                        acc = _mm512_fmadd_ps(x, w[i * 3 + j], acc);
                    }
                _mm_mask_storeu_epi8(yrow + ox * a.ldc, m, requantize16(_mm512_fmadd_ps(acc, mult, bias), out));
                ++ox;
            }
        }
    }
}

template <int kTaps>
SSVQ_AVX512 void dw_u8_taps(const DwU8NhwcArgs& a, const uint8_t* zp_row) {
    int64_t c0 = 0;
    for (; c0 + 32 <= a.C; c0 += 32) dw_u8_channels<kTaps, 2, true>(a, c0, zp_row);
    for (; c0 < a.C; c0 += 16) dw_u8_channels<kTaps, 1, false>(a, c0, zp_row);
}

void dwconv_u8_nhwc_avx512(const DwU8NhwcArgs& a) {
    const std::vector<uint8_t> zp_row(size_t(a.C + 64), uint8_t(a.x_zero_point));
    if (a.kh == 3 && a.kw == 3 && a.dw == 1 && a.sw == 1) return dw3x3_u8<1>(a, zp_row.data());
    if (a.kh == 3 && a.kw == 3 && a.dw == 1 && a.sw == 2) return dw3x3_u8<2>(a, zp_row.data());
    switch (a.kh * a.kw) {  // the other common kernels: 3x3, 5x5 and 1-D 3 / 5 taps; the rest by the generic loop
        case 9: return dw_u8_taps<9>(a, zp_row.data());
        case 25: return dw_u8_taps<25>(a, zp_row.data());
        case 3: return dw_u8_taps<3>(a, zp_row.data());
        case 5: return dw_u8_taps<5>(a, zp_row.data());
        default: return dwconv_u8_nhwc_ref(a);
    }
}

// ---- gemm -----------------------------------------------------------------------------------------------------------

// Float: MB rows of X x NB rows of W, each pair a 16-lane partial sum over k, reduced at the end.
template <int MB, int NB>
SSVQ_AVX512 void gemm_f32_block(const GemmF32Args& a, int64_t m0, int64_t n0) {
    __m512 acc[MB][NB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < a.K; k += 16) {
        const __mmask16 m = lane_mask(a.K - k);
        __m512 x[MB];
#pragma GCC unroll 8
        for (int i = 0; i < MB; ++i) x[i] = _mm512_maskz_loadu_ps(m, a.x + (m0 + i) * a.ldx + k);
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) {
            const __m512 w = _mm512_maskz_loadu_ps(m, a.w + (n0 + j) * a.ldw + k);
#pragma GCC unroll 8
            for (int i = 0; i < MB; ++i) acc[i][j] = _mm512_fmadd_ps(x[i], w, acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) {
            const int64_t n = n0 + j;
            a.y[(m0 + i) * a.ldy + n] =
                apply_activation(std::fma(_mm512_reduce_add_ps(acc[i][j]), a.mult[n], a.bias[n]), a.activation);
        }
}

template <int MB, int NB>
struct GemmF32Block {
    SSVQ_AVX512 static void run(const GemmF32Args& a, int64_t m0, int64_t n0) { gemm_f32_block<MB, NB>(a, m0, n0); }
};

void gemm_f32_avx512(const GemmF32Args& a) { gemm_f32_blocks<GemmF32Block>(a); }

// The uint8-output tile (io "uint8_nhwc", x_scale all ones, no activation): the accumulators start at -comp and go
// straight from registers through the requantization, no round trip through memory (small K is epilogue-bound).
template <int R, int V>
SSVQ_AVX512 __attribute__((noinline)) void gemm_u8q_block(const GemmU8TileArgs& a, int64_t m0, int64_t n0) {
    __mmask16 m[V];
    __m512i acc[R][V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
        m[v] = lane_mask(a.N - n0 - 16 * v);
        const __m512i comp = _mm512_maskz_loadu_epi32(m[v], a.comp + n0 + 16 * v);
        const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), comp);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][v] = start;
    }
    accumulate_u8s8<R, V, false>(reinterpret_cast<const uint8_t*>(a.wt + n0 * 4), a.ldn * 4, a.xu + m0 * a.ldx, a.ldx,
                                 a.Kq, acc);
    const U8Out o = u8_out(a.y_zero_point, a.y_lo, a.y_hi);
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
        const int64_t n = n0 + 16 * v;
        const __m512 ws = _mm512_maskz_loadu_ps(m[v], a.w_scale + n), bias = _mm512_maskz_loadu_ps(m[v], a.bias + n);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
            _mm_mask_storeu_epi8(a.yq + (m0 + r) * a.ldyq + n, m[v],
                                 requantize16(_mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][v]), ws, bias), o));
    }
}

// Int8 tile: R rows of X (broadcast uint8 quads) x V vectors of 16 weight columns (int8 quads).
template <int R, int V>
SSVQ_AVX512 void gemm_u8_block(const GemmU8TileArgs& a, int64_t m0, int64_t n0) {
    if (a.yq != nullptr) return gemm_u8q_block<R, V>(a, m0, n0);
    alignas(64) int32_t sums[R][V][16];
    dot_u8s8<R, V, false>(reinterpret_cast<const uint8_t*>(a.wt + n0 * 4), a.ldn * 4, a.xu + m0 * a.ldx, a.ldx, a.Kq,
                          &sums[0][0][0]);
    for (int v = 0; v < V; ++v) {
        const int64_t n = n0 + 16 * v;
        const __mmask16 m = lane_mask(a.N - n);
        const __m512i comp = _mm512_maskz_loadu_epi32(m, a.comp + n);
        const __m512 ws = _mm512_maskz_loadu_ps(m, a.w_scale + n), bias = _mm512_maskz_loadu_ps(m, a.bias + n);
        for (int r = 0; r < R; ++r) {
            const __m512 mult = _mm512_mul_ps(_mm512_set1_ps(a.x_scale[m0 + r]), ws);
            const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(sums[r][v]), comp));
            _mm512_mask_storeu_ps(a.y + (m0 + r) * a.ldy + n, m,
                                  activate(_mm512_fmadd_ps(f, mult, bias), a.activation));
        }
    }
}

template <int R, int V>
struct GemmU8Block {
    SSVQ_AVX512 static void run(const GemmU8TileArgs& a, int64_t r0, int64_t p0) { gemm_u8_block<R, V>(a, r0, p0); }
};

void gemm_u8_tile_avx512(const GemmU8TileArgs& a) { Tiler<GemmU8TileArgs, GemmU8Block, 6, 4>::run(a, a.M, a.N); }

// The lookup-table GEMV: per weight row, groups of 64 weights = 8 codes -> 8 table entries (one permute),
// the row's 64 sign bits negate the matching activation bytes, VNNI multiplies the int8 magnitudes (as unsigned,
// 0..127) with the signed activations. NR weight rows x MB activation rows per pass for independent accumulators.
template <int NR, int MB, int B>
SSVQ_AVX512 void gemv_lut_rows(const GemvLutArgs& a, const QTable& t, int64_t n0) {
    const PackedWeight& w = *a.w;
    const int64_t groups = a.K / kGroup;
    const __m512i zero = _mm512_setzero_si512();
    __m512i acc[NR][MB];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
        for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_setzero_si512();
    const uint8_t* idx[NR];
    const uint8_t* sgn[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
        idx[r] = w.indices + (n0 + r) * groups * B;
        sgn[r] = w.signs + (n0 + r) * groups * 8;
    }
    for (int64_t g = 0; g < groups; ++g) {
        __m512i x[MB];
#pragma GCC unroll 8
        for (int i = 0; i < MB; ++i) x[i] = _mm512_loadu_si512(a.xs + i * a.ldx + g * kGroup);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) {
            const __m512i cw = group_magnitudes<B>(idx[r] + g * B, t);
            const __mmask64 neg = _cvtu64_mask64(load_le<8>(sgn[r] + 8 * g));
#pragma GCC unroll 8
            for (int i = 0; i < MB; ++i)
                acc[r][i] = _mm512_dpbusd_epi32(acc[r][i], cw, _mm512_mask_sub_epi8(x[i], neg, zero, x[i]));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
        const int64_t n = n0 + r;
#pragma GCC unroll 8
        for (int i = 0; i < MB; ++i) {
            const float mult = a.x_scale[i] * a.w_scale[n];
            const float s = float(_mm512_reduce_add_epi32(acc[r][i]));
            a.y[i * a.ldy + n] = apply_activation(std::fma(s, mult, a.bias[n]), a.activation);
        }
    }
}

template <int MB, int B>
SSVQ_AVX512 void gemv_lut_mb(const GemvLutArgs& a, int64_t n_begin, int64_t n_end) {
    const QTable t = load_qtable(a.w->codebook_q, B);
    constexpr int NR = MB == 1 ? 4 : 2;
    int64_t n = n_begin;
    for (; n + NR <= n_end; n += NR) gemv_lut_rows<NR, MB, B>(a, t, n);
    for (; n < n_end; ++n) gemv_lut_rows<1, MB, B>(a, t, n);
}

template <int MB>
void gemv_lut_bits(const GemvLutArgs& a, int64_t n_begin, int64_t n_end) {
    switch (a.w->bits) {
        case 1: gemv_lut_mb<MB, 1>(a, n_begin, n_end); break;
        case 2: gemv_lut_mb<MB, 2>(a, n_begin, n_end); break;
        case 3: gemv_lut_mb<MB, 3>(a, n_begin, n_end); break;
        default: gemv_lut_mb<MB, 4>(a, n_begin, n_end); break;
    }
}

void gemv_lut_avx512(const GemvLutArgs& a, int64_t n_begin, int64_t n_end) {
    for (int64_t m0 = 0; m0 < a.M; m0 += 4) {
        GemvLutArgs part = a;
        part.M = std::min<int64_t>(4, a.M - m0);
        part.xs = a.xs + m0 * a.ldx;
        part.y = a.y + m0 * a.ldy;
        part.x_scale = a.x_scale + m0;
        switch (part.M) {
            case 1: gemv_lut_bits<1>(part, n_begin, n_end); break;
            case 2: gemv_lut_bits<2>(part, n_begin, n_end); break;
            case 3: gemv_lut_bits<3>(part, n_begin, n_end); break;
            default: gemv_lut_bits<4>(part, n_begin, n_end); break;
        }
    }
}

}  // namespace

bool cpu_has_avx512_vnni() {
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("bmi2");
}

const FusedKernelSet& avx512_fused_kernels() {
    static const FusedKernelSet set{"avx512vnni",          cpu_has_avx512_vnni,
                                    decode_s8_avx512,      decode_f32_avx512,     minmax_avx512,
                                    pack_u8_quads_avx512,  quantize_row_s8_avx512, transpose_quads_avx512,
                                    conv_f32_tile_avx512,  conv_u8_tile_avx512,   dwconv_f32_avx512,
                                    gemm_f32_avx512,       gemm_u8_tile_avx512,   gemv_lut_avx512,
                                    true,                  requantize_u8_avx512,  dwconv_u8_nhwc_avx512};
    return set;
}

}  // namespace ssvq
