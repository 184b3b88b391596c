// C++ mirror of the SSVQ packed format, version 1 (docs/format.md; Python: ssvq_deploy/format/).
//
// One layer of N = prod(shape) weights, cut into n_vec = N / d runs ("vectors") of d consecutive weights:
//   codebook  [k, d] float16 (float32 also accepted by the op)      k * d * 2 bytes
//   indices   uint8 stream, n_vec codes of b = log2(k) bits          ceil(n_vec * b / 8) bytes
//   signs     uint8 stream, N bits, 1 = negative (SSVQ only)         ceil(N / 8) bytes
// Bits per weight: b / d (indices) + 1 (signs, SSVQ) + codebook overhead k * d * 16 / N.
// Bit order of both streams: LSB-first; stream bit j is bit (j % 8) of byte (j / 8), value i of a b-bit stream
// occupies stream bits [i*b, (i+1)*b) with its least significant bit first; unused high bits of the last byte are 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace ssvq {
namespace format {

inline constexpr int64_t kFormatVersion = 1;
inline constexpr int kMaxIndexBits = 16;
inline constexpr int64_t kMinK = 2;
inline constexpr int64_t kMaxK = int64_t{1} << kMaxIndexBits;
// Guards the bit arithmetic (N * b must fit comfortably in 64 bits); far above any real layer.
inline constexpr int64_t kMaxNumel = int64_t{1} << 48;
inline constexpr const char* kLayoutFlat = "flat";

static_assert(kMaxK == 65536, "docs/format.md: 2 <= k <= 65536");
// A code starts at any bit of a byte, so it spans at most (7 + 16) bits: one unaligned 32-bit read holds it.
static_assert(7 + kMaxIndexBits <= 32, "a code must fit in one 32-bit read");
static_assert(kMaxNumel <= std::numeric_limits<int64_t>::max() / kMaxIndexBits, "stream bit offsets fit in int64");
static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4, "decode flips the IEEE-754 sign bit");

// Bytes holding `count` values of `bits` bits each (bits.py: packed_nbytes).
constexpr int64_t packed_nbytes(int64_t count, int bits) { return (count * bits + 7) / 8; }
static_assert(packed_nbytes(8, 1) == 1 && packed_nbytes(9, 1) == 2 && packed_nbytes(3, 5) == 2, "LSB-first packing");

// log2(k) for a valid k, else -1.
constexpr int index_bits(int64_t k) {
    if (k < kMinK || k > kMaxK || (k & (k - 1)) != 0) return -1;
    int b = 0;
    while ((int64_t{1} << b) < k) ++b;
    return b;
}
static_assert(index_bits(2) == 1 && index_bits(16) == 4 && index_bits(65536) == 16, "log2");
static_assert(index_bits(1) == -1 && index_bits(3) == -1 && index_bits(131072) == -1, "k validity");

constexpr int64_t index_nbytes(int64_t numel, int64_t d, int64_t k) { return packed_nbytes(numel / d, index_bits(k)); }
constexpr int64_t sign_nbytes(int64_t numel) { return packed_nbytes(numel, 1); }

// Stream bit j (LSB-first).
inline int stream_bit(const uint8_t* stream, int64_t j) { return (stream[j >> 3] >> (j & 7)) & 1; }

// Exact IEEE-754 binary16 -> binary32 widening, bit pattern in and out. Subnormals become normal floats, infinities
// stay infinite and NaNs keep their sign and payload (shifted up 13 bits, the quiet bit is not forced), like
// numpy's float16 -> float32 cast.
constexpr uint32_t f16_bits_to_f32_bits(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return sign | 0x7f800000u | (mant << 13);        // inf / nan
    if (exp != 0) return sign | ((exp + 112u) << 23) | (mant << 13);  // normal: rebias 15 -> 127
    if (mant == 0) return sign;                                        // +-0
    int e = 113;                                                       // subnormal: normalise
    while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --e;
    }
    return sign | (uint32_t(e) << 23) | ((mant & 0x3ffu) << 13);
}
static_assert(f16_bits_to_f32_bits(0x3c00) == 0x3f800000u, "1.0");
static_assert(f16_bits_to_f32_bits(0xc000) == 0xc0000000u, "-2.0");
static_assert(f16_bits_to_f32_bits(0x0001) == 0x33800000u, "smallest subnormal 2^-24");
static_assert(f16_bits_to_f32_bits(0x03ff) == 0x387fc000u, "largest subnormal");
static_assert(f16_bits_to_f32_bits(0x7c00) == 0x7f800000u && f16_bits_to_f32_bits(0xfc00) == 0xff800000u, "inf");
static_assert(f16_bits_to_f32_bits(0x7e00) == 0x7fc00000u && f16_bits_to_f32_bits(0x7c01) == 0x7f802000u, "nan");

// ---- validation: each returns "" when fine, else "expected ..., got ..." (the op prefixes the node) ----

inline std::string dims_str(const std::vector<int64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

inline std::string check_k(int64_t k) {
    if (index_bits(k) < 0) return "expected k a power of two in 2..65536, got k=" + std::to_string(k);
    return {};
}

inline std::string check_format_version(int64_t version) {
    if (version != kFormatVersion)
        return "expected format_version=" + std::to_string(kFormatVersion) + ", got " + std::to_string(version);
    return {};
}

inline std::string check_layout(const std::string& layout) {
    if (layout != kLayoutFlat) return std::string("expected layout=\"") + kLayoutFlat + "\", got \"" + layout + "\"";
    return {};
}

// Checks shape and d; on success stores N = prod(shape) in *numel.
inline std::string check_shape_d(const std::vector<int64_t>& shape, int64_t d, int64_t* numel) {
    int64_t n = 1;
    for (int64_t dim : shape) {
        if (dim < 0) return "expected non-negative shape dims, got shape=" + dims_str(shape);
        if (dim != 0 && n > kMaxNumel / dim)
            return "expected at most " + std::to_string(kMaxNumel) + " weights, got shape=" + dims_str(shape);
        n *= dim;
    }
    if (n == 0) return "expected a non-empty weight, got shape=" + dims_str(shape);
    if (d < 1) return "expected d >= 1, got d=" + std::to_string(d);
    if (n % d != 0)
        return "expected d dividing the N=" + std::to_string(n) + " weights of shape=" + dims_str(shape) +
               ", got d=" + std::to_string(d);
    *numel = n;
    return {};
}

// A packed stream of `count` values of `bits` bits: exact size and zero padding.
inline std::string check_stream(const char* label, const uint8_t* data, int64_t nbytes, int64_t count, int bits) {
    const int64_t need = packed_nbytes(count, bits);
    if (nbytes != need)
        return std::string("expected ") + label + " of " + std::to_string(need) + " bytes (" + std::to_string(count) +
               " x " + std::to_string(bits) + "-bit values), got " + std::to_string(nbytes) + " bytes";
    const int spare = int(nbytes * 8 - count * bits);
    if (spare > 0 && (data[nbytes - 1] >> (8 - spare)) != 0)
        return std::string("expected zero padding bits in the last byte of ") + label + ", got byte value " +
               std::to_string(int(data[nbytes - 1])) + " with " + std::to_string(spare) + " padding bits";
    return {};
}

inline std::string check_codebook_shape(const std::vector<int64_t>& dims, int64_t k, int64_t d) {
    if (dims.size() != 2 || dims[0] != k || dims[1] != d)
        return "expected codebook of shape [" + std::to_string(k) + ", " + std::to_string(d) + "], got " +
               dims_str(dims);
    return {};
}

}  // namespace format
}  // namespace ssvq
