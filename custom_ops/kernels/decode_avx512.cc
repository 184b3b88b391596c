// AVX-512 decode kernels. Every function here carries a target attribute instead of the whole file being built
// with -mavx512f, so no AVX-512 code can leak into inline functions shared with the rest of the library; the
// dispatch (decode.cc) only calls in when cpu_has_avx512().
//
// Paths, picked per layer (the remainder after the last full group always goes to decode_range_ref):
//   d = 4, 8, 16  groups of 8 vectors, whose 8 codes fill exactly b bytes; b is a template parameter (1..16) so
//                 the codes come out of one 64/128-bit word with constant shifts; codewords are 128/256/512-bit row
//                 loads (d = 4 only from k = 16 on; smaller codebooks take the permute path below).
//   d = 1, 2, 4   groups of 16 vectors (2b bytes of codes) spread over d zmm registers; codes are unpacked per lane
//                 (byte shuffle for b <= 8, 32-bit gather above), codewords come from a register permute when the
//                 codebook fits in 16 or 32 floats, else from a gather.
//   any other d   one vector at a time with masked loads/stores of 16 floats.
// Signs: 16 consecutive sign bits are exactly an AVX-512 lane mask; a masked XOR flips the IEEE sign bit.
#include <immintrin.h>

#include <array>
#include <cstring>
#include <utility>

#include "decode.h"
#include "ssvq_format.h"

#define SSVQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

namespace ssvq {
namespace {

constexpr uint32_t kSignBit = 0x80000000u;

// Little-endian load of up to 8 bytes at `byte`, never reading at or past `nbytes`.
inline uint64_t load_u64_bounded(const uint8_t* p, int64_t nbytes, int64_t byte) {
    uint64_t w = 0;
    if (byte + 8 <= nbytes) {
        std::memcpy(&w, p + byte, 8);
    } else {
        for (int64_t i = byte; i < nbytes; ++i) w |= uint64_t(p[i]) << (8 * (i - byte));
    }
    return w;
}

template <int N>
inline uint64_t load_le(const uint8_t* p) {  // N <= 8 bytes, little-endian
    uint64_t w = 0;
    std::memcpy(&w, p, N);
    return w;
}

SSVQ_AVX512 inline __m512 flip_signs(__m512 v, __mmask16 m) {
    const __m512i x = _mm512_castps_si512(v);
    return _mm512_castsi512_ps(_mm512_mask_xor_epi32(x, m, x, _mm512_set1_epi32(int(kSignBit))));
}

// ---- d = 4 / 8 / 16: groups of 8 vectors = B bytes of codes -------------------------------------------------------

template <int B>
struct Codes8 {  // the 8 B-bit codes of a group, from exactly B bytes
    uint32_t c[8];
    explicit Codes8(const uint8_t* p) {
        constexpr uint32_t mask = (1u << B) - 1u;
        if constexpr (B <= 8) {
            const uint64_t w = load_le<B>(p);
            for (int i = 0; i < 8; ++i) c[i] = uint32_t(w >> (i * B)) & mask;
        } else {
            const unsigned __int128 w = (unsigned __int128)load_le<8>(p) |
                                        ((unsigned __int128)load_le<B - 8>(p + 8) << 64);
            for (int i = 0; i < 8; ++i) c[i] = uint32_t(w >> (i * B)) & mask;
        }
    }
};

template <int D, int B, bool kSigns>
SSVQ_AVX512 int64_t decode_rows(const DecodeArgs& a) {
    static_assert(D == 4 || D == 8 || D == 16, "rows of 128, 256 or 512 bits");
    const int64_t groups = a.n_vec / 8;
    const float* cb = a.codebook;
    for (int64_t g = 0; g < groups; ++g) {
        const Codes8<B> codes(a.indices + g * B);
        float* out = a.out + g * 8 * D;
        uint64_t s[(D + 7) / 8] = {};  // the group's 8*D sign bits
        if constexpr (kSigns) std::memcpy(s, a.signs + g * D, D);
        if constexpr (D == 4) {
            for (int p = 0; p < 2; ++p) {
                const uint32_t* c = codes.c + 4 * p;
                __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(cb + c[0] * 4));
                v = _mm512_insertf32x4(v, _mm_loadu_ps(cb + c[1] * 4), 1);
                v = _mm512_insertf32x4(v, _mm_loadu_ps(cb + c[2] * 4), 2);
                v = _mm512_insertf32x4(v, _mm_loadu_ps(cb + c[3] * 4), 3);
                if constexpr (kSigns) v = flip_signs(v, __mmask16(s[0] >> (16 * p)));
                _mm512_storeu_ps(out + 16 * p, v);
            }
        } else if constexpr (D == 8) {
            for (int p = 0; p < 4; ++p) {
                __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(cb + codes.c[2 * p] * 8)),
                                              _mm256_loadu_ps(cb + codes.c[2 * p + 1] * 8), 1);
                if constexpr (kSigns) v = flip_signs(v, __mmask16(s[0] >> (16 * p)));
                _mm512_storeu_ps(out + 16 * p, v);
            }
        } else {
            for (int i = 0; i < 8; ++i) {
                __m512 v = _mm512_loadu_ps(cb + codes.c[i] * 16);
                if constexpr (kSigns) v = flip_signs(v, __mmask16(s[i / 4] >> (16 * (i % 4))));
                _mm512_storeu_ps(out + 16 * i, v);
            }
        }
    }
    return groups * 8;
}

using GroupKernel = int64_t (*)(const DecodeArgs&);

template <int D, bool kSigns, int... Bs>
constexpr auto make_table(std::integer_sequence<int, Bs...>) {
    return std::array<GroupKernel, sizeof...(Bs)>{decode_rows<D, Bs + 1, kSigns>...};
}

// kRowKernels[log2(d) - 2][signs][bits - 1] for d = 4, 8, 16
const std::array<GroupKernel, 16> kRowKernels[3][2] = {
    {make_table<4, false>(std::make_integer_sequence<int, 16>{}),
     make_table<4, true>(std::make_integer_sequence<int, 16>{})},
    {make_table<8, false>(std::make_integer_sequence<int, 16>{}),
     make_table<8, true>(std::make_integer_sequence<int, 16>{})},
    {make_table<16, false>(std::make_integer_sequence<int, 16>{}),
     make_table<16, true>(std::make_integer_sequence<int, 16>{})},
};

// ---- d = 1, 2, 4: groups of 16 vectors = 2*bits bytes of codes, D zmm registers of output ------------------------

enum class Source { kPermute16, kPermute32, kGather };

template <int D, bool kSigns, Source kSrc>
SSVQ_AVX512 int64_t decode_small_d(const DecodeArgs& a) {
    static_assert(D == 1 || D == 2 || D == 4, "16 / D vectors per register");
    constexpr int kShiftD = D == 1 ? 0 : D == 2 ? 1 : 2;
    const int b = a.bits;
    const int64_t group_bytes = 2 * b;
    // Lane tables, per register z of a group: byte offset and bit shift of the lane's code, and the byte-shuffle
    // control that gathers that code's two bytes into the lane (b <= 8: a code spans at most 2 of the 16 bytes).
    alignas(64) int32_t offs[D][16], shifts[D][16], jcol[16];
    alignas(64) uint8_t shuf[D][64];
    for (int z = 0; z < D; ++z) {
        for (int l = 0; l < 16; ++l) {
            const int u = z * (16 / D) + l / D;  // vector within the group
            const int bit = u * b;
            offs[z][l] = bit >> 3;
            shifts[z][l] = bit & 7;
            const bool two = (bit & 7) + b > 8;
            shuf[z][4 * l + 0] = uint8_t(bit >> 3);
            shuf[z][4 * l + 1] = two ? uint8_t((bit >> 3) + 1) : 0x80;
            shuf[z][4 * l + 2] = 0x80;
            shuf[z][4 * l + 3] = 0x80;
        }
    }
    for (int l = 0; l < 16; ++l) jcol[l] = l % D;
    const __m512i jv = _mm512_load_si512(jcol);
    const __m512i code_mask = _mm512_set1_epi32((1 << b) - 1);
    const int64_t kd = (int64_t(1) << b) * D;
    __m512 cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
    if constexpr (kSrc != Source::kGather) {
        cb0 = _mm512_maskz_loadu_ps(__mmask16(kd >= 16 ? 0xffff : (1u << kd) - 1), a.codebook);
        if (kd > 16) cb1 = _mm512_maskz_loadu_ps(__mmask16(kd >= 32 ? 0xffff : (1u << (kd - 16)) - 1), a.codebook + 16);
    }
    // Full groups whose code reads stay inside the stream: 16 bytes (shuffle) or up to 2b + 3 bytes (gather).
    const int64_t read_span = b <= 8 ? 16 : group_bytes + 4;
    int64_t groups = a.n_vec / 16;
    while (groups > 0 && (groups - 1) * group_bytes + read_span > a.index_bytes) --groups;

    for (int64_t g = 0; g < groups; ++g) {
        const uint8_t* src = a.indices + g * group_bytes;
        __m512i chunk = _mm512_setzero_si512();
        if (b <= 8) chunk = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
        for (int z = 0; z < D; ++z) {
            __m512i word;
            if (b <= 8) {
                word = _mm512_shuffle_epi8(chunk, _mm512_load_si512(shuf[z]));
            } else {
                word = _mm512_i32gather_epi32(_mm512_load_si512(offs[z]), src, 1);
            }
            const __m512i code = _mm512_and_si512(_mm512_srlv_epi32(word, _mm512_load_si512(shifts[z])), code_mask);
            const __m512i vidx = _mm512_add_epi32(_mm512_slli_epi32(code, kShiftD), jv);
            __m512 v;
            if constexpr (kSrc == Source::kPermute16) {
                v = _mm512_permutexvar_ps(vidx, cb0);
            } else if constexpr (kSrc == Source::kPermute32) {
                v = _mm512_permutex2var_ps(cb0, vidx, cb1);
            } else {
                v = _mm512_i32gather_ps(vidx, a.codebook, 4);
            }
            const int64_t e0 = (g * 16 + int64_t(z) * (16 / D)) * D;  // first weight of this register
            if constexpr (kSigns) {
                uint16_t m;
                std::memcpy(&m, a.signs + e0 / 8, 2);
                v = flip_signs(v, m);
            }
            _mm512_storeu_ps(a.out + e0, v);
        }
    }
    return groups * 16;
}

template <int D, bool kSigns>
SSVQ_AVX512 int64_t decode_small_d_dispatch(const DecodeArgs& a) {
    const int64_t kd = (int64_t(1) << a.bits) * D;
    if (kd <= 16) return decode_small_d<D, kSigns, Source::kPermute16>(a);
    if (kd <= 32) return decode_small_d<D, kSigns, Source::kPermute32>(a);
    return decode_small_d<D, kSigns, Source::kGather>(a);
}

// ---- any d: one vector at a time, 16 floats per masked load/store ---------------------------------------------

template <bool kSigns>
SSVQ_AVX512 int64_t decode_generic(const DecodeArgs& a) {
    const int b = a.bits;
    const uint32_t code_mask = (1u << b) - 1u;
    const int64_t d = a.d;
    const int64_t sign_bytes = format::sign_nbytes(a.n_vec * d);
    for (int64_t v = 0; v < a.n_vec; ++v) {
        const int64_t bit = v * b;
        const uint32_t code = uint32_t(load_u64_bounded(a.indices, a.index_bytes, bit >> 3) >> (bit & 7)) & code_mask;
        const float* row = a.codebook + int64_t(code) * d;
        for (int64_t j0 = 0; j0 < d; j0 += 16) {
            const int64_t cnt = d - j0 < 16 ? d - j0 : 16;
            const __mmask16 m = __mmask16(cnt == 16 ? 0xffffu : (1u << cnt) - 1u);
            const int64_t e = v * d + j0;
            __m512 x = _mm512_maskz_loadu_ps(m, row + j0);
            if constexpr (kSigns) {
                const uint64_t s = load_u64_bounded(a.signs, sign_bytes, e >> 3) >> (e & 7);
                x = flip_signs(x, __mmask16(s) & m);
            }
            _mm512_mask_storeu_ps(a.out + e, m, x);
        }
    }
    return a.n_vec;
}

}  // namespace

bool cpu_has_avx512() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

void decode_avx512(const DecodeArgs& a) {
    const bool signs = a.signs != nullptr;
    int64_t done;
    switch (a.d) {
        case 8: done = kRowKernels[1][signs][a.bits - 1](a); break;
        case 16: done = kRowKernels[2][signs][a.bits - 1](a); break;
        case 1: done = signs ? decode_small_d_dispatch<1, true>(a) : decode_small_d_dispatch<1, false>(a); break;
        case 2: done = signs ? decode_small_d_dispatch<2, true>(a) : decode_small_d_dispatch<2, false>(a); break;
        case 4:  // a register permute while the codebook fits in 32 floats, else 128-bit row loads
            done = a.bits <= 3 ? (signs ? decode_small_d_dispatch<4, true>(a) : decode_small_d_dispatch<4, false>(a))
                               : kRowKernels[0][signs][a.bits - 1](a);
            break;
        default: done = signs ? decode_generic<true>(a) : decode_generic<false>(a); break;
    }
    if (done < a.n_vec) decode_range_ref(a, done, a.n_vec);
}

SSVQ_AVX512 void widen_f16_avx512(const uint16_t* src, float* dst, int64_t n) {
    const __m512i exp_mask = _mm512_set1_epi32(0x7c00), mant_mask = _mm512_set1_epi32(0x3ff);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
        __m512 f = _mm512_cvtph_ps(h);  // exact for all finite values and infinities, subnormals included
        // vcvtph2ps quiets signalling NaNs; keep the payload bit for bit like the reference instead.
        const __m512i w = _mm512_cvtepu16_epi32(h);
        const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(w, exp_mask), exp_mask) &
                              _mm512_test_epi32_mask(w, mant_mask);
        if (nan) {
            const __m512i bits = _mm512_or_si512(
                _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x8000)), 16),
                                _mm512_set1_epi32(0x7f800000)),
                _mm512_slli_epi32(_mm512_and_si512(w, mant_mask), 13));
            f = _mm512_mask_mov_ps(f, nan, _mm512_castsi512_ps(bits));
        }
        _mm512_storeu_ps(dst + i, f);
    }
    widen_f16_ref(src + i, dst + i, n - i);
}

}  // namespace ssvq
