// Scalar reference kernels: the plainest possible transcription of docs/ssvq_op.md, the oracle for the SIMD ones.
#include <cstring>

#include "decode.h"
#include "ssvq_format.h"

namespace ssvq {
namespace {

// Value i of a b-bit LSB-first stream, read bit by bit.
uint32_t read_code(const uint8_t* stream, int64_t i, int bits) {
    uint32_t code = 0;
    const int64_t first = i * bits;
    for (int t = 0; t < bits; ++t) code |= uint32_t(format::stream_bit(stream, first + t)) << t;
    return code;
}

}  // namespace

void decode_range_ref(const DecodeArgs& a, int64_t v_begin, int64_t v_end) {
    for (int64_t v = v_begin; v < v_end; ++v) {
        const float* row = a.codebook + int64_t(read_code(a.indices, v, a.bits)) * a.d;
        for (int64_t j = 0; j < a.d; ++j) {
            const int64_t e = v * a.d + j;
            uint32_t x;
            std::memcpy(&x, &row[j], 4);
            if (a.signs != nullptr && format::stream_bit(a.signs, e)) x ^= 0x80000000u;
            std::memcpy(&a.out[e], &x, 4);
        }
    }
}

void decode_ref(const DecodeArgs& a) { decode_range_ref(a, 0, a.n_vec); }

void widen_f16_ref(const uint16_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t x = format::f16_bits_to_f32_bits(src[i]);
        std::memcpy(&dst[i], &x, 4);
    }
}

}  // namespace ssvq
