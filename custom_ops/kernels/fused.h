// Kernels of the fused ops SSVQConv / SSVQGemm (docs/ssvq_op.md): decode weight tiles, quantize activations, and
// multiply, for one tile at a time. The ops (ops/ssvq_conv.cc, ops/ssvq_gemm.cc) own the tiling, the threads and
// the buffers; a kernel only sees pointers and sizes that are already validated.
//
// Every function exists in a scalar `_ref` version (fused_ref.cc) and, per architecture, SIMD versions: on x86-64 the
// same source compiled for AVX2+FMA (fused_avx2.cc) and hand-written AVX-512 VNNI versions (fused_avx512.cc); on
// AArch64 hand-written NEON versions (fused_neon.cc) whose int8 inner products use SDOT in the `neon_dotprod` set
// (fused_neon_dotprod.cc). A FusedKernelSet bundles one of each; fused_kernel_sets() lists them best first and the
// ops pick one per session ("ssvq.kernels" session config).
//
// Numerics (docs/ssvq_op.md "Numerics"):
//   float  decoded fp32 weights, fp32 activations, fp32 accumulation (order unspecified): a float tolerance.
//   int8   codebook magnitudes quantized per layer to q = round(|c| * 127 / max|c|) (int8, 0..127; VQ: signed),
//          w = +-q by the sign bit; activations quantized per image (conv, uint8 asymmetric) or per row (gemm,
//          int8 symmetric); products summed exactly in int32; one rounding per output in the epilogue
//          y = fma(float(acc), mult, bias). The int8 functions of every set agree bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "decode.h"

namespace ssvq {

enum class Activation : int { kNone = 0, kRelu = 1, kRelu6 = 2 };

// One packed weight, read-only. `bits` = log2(k).
struct PackedWeight {
    const uint8_t* indices;  // [index_bytes] n_vec codes, LSB-first
    int64_t index_bytes;
    const uint8_t* signs;  // [sign_bytes] one bit per weight, 1 = negative; nullptr = VQ
    int64_t sign_bytes;
    int bits;
    int64_t d;
    int64_t numel;
    const float* codebook_f32;  // [k, d] widened codebook (float numerics)
    const int8_t* codebook_q;   // [k, d] quantized codebook (int8 numerics): SSVQ 0..127, VQ -127..127
};

// Epilogue constants per output channel (conv: per output channel; gemm: per output column).
struct Epilogue {
    const float* mult;      // [M] y = fma(acc, mult[o], bias[o]); float: scale (1 when absent); int8: see below
    const float* bias;      // [M] (zeros when absent)
    Activation activation;
};

// ---- conv (NCHW, one image, one group) ----

// Y[o, p] = act(fma(sum_c W[o, c] * X[c, p], mult[o], bias[o])) for o in [0, rows), p in [0, P).
struct ConvF32TileArgs {
    const float* w;     // [rows, K] decoded weights, row stride ldw
    int64_t ldw;
    const float* x;     // [K, P] activations (pointwise input or im2col buffer), row stride ldx
    int64_t ldx;
    float* y;           // [rows, P] output, row stride ldy
    int64_t ldy;
    int64_t rows, K, P;
    const float* mult;  // [rows]
    const float* bias;  // [rows]
    Activation activation;
};

// Activations of one image packed for VNNI: quads of 4 consecutive reduction indices per pixel,
// xq[kq][p][4] = uint8 of X[4*kq + t, p] (row kq has stride ldq = P rounded up to 16 pixels, in quads).
// Reduction indices beyond K hold the zero point; the weight tile holds zeros there.
struct ConvU8TileArgs {
    const int8_t* w;       // [rows, Kq*4] int8 weights, row stride ldw (bytes, multiple of 4)
    int64_t ldw;
    const uint8_t* xq;     // [Kq][ldq][4]
    int64_t ldq;           // quads per kq row (pixels, rounded up to 16)
    float* y;              // [rows, P], row stride ldy
    int64_t ldy;
    int64_t rows, Kq, P;
    const int32_t* comp;   // [rows] zero_point * sum_k W[o, k], subtracted from the int32 accumulator
    const float* mult;     // [rows] x_scale * w_scale * scale[o]
    const float* bias;     // [rows]
    Activation activation;
};

// Depthwise conv of one channel plane (any kernel / stride / padding / dilation), float.
struct DwConvArgs {
    const float* x;  // [H, W]
    float* y;        // [Ho, Wo]
    const float* w;  // [kh, kw]
    int64_t H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw;
    float mult, bias;
    Activation activation;
    float* scratch;  // dwconv_scratch_floats(...) floats: room for a zero-padded copy of x
};

// Depthwise conv of uint8 NHWC activations (io "uint8_nhwc"), output rows [oy_begin, oy_end) of one image, every
// channel: acc[c] = sum over the taps inside the image of (x - x_zero_point) * w[tap][c], summed in float (exact:
// integer products, |acc| < 2^24 while taps <= 512), then requantized like the GEMM's uint8 output:
// Y = clamp(nearbyint(fma(acc, mult[c], bias[c])) + y_zero_point, y_lo, y_hi).
struct DwU8NhwcArgs {
    const uint8_t* x;  // [H, W, ldc], channels [0, C) of each pixel
    uint8_t* y;        // [Ho, Wo, ldc]
    const float* w;    // [kh * kw, ldc] int8 weights as floats
    int64_t H, W, C, ldc, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw;
    int64_t oy_begin, oy_end;
    const float* mult;  // [C] x_scale * w_scale[c] / y_scale
    const float* bias;  // [C] bias[c] / y_scale
    float x_zero_point;
    int32_t y_zero_point, y_lo, y_hi;  // y_lo / y_hi: the activation's clamp in uint8 (0 / 255 without one)
};

// ---- gemm (rows of X times rows of W) ----

// Y[m, n] = act(fma(sum_k X[m, k] * W[n, k], mult[n], bias[n])) for m < M, n < N.
struct GemmF32Args {
    const float* x;  // [M, K], row stride ldx
    int64_t ldx;
    const float* w;  // [N, K] decoded rows, row stride ldw
    int64_t ldw;
    float* y;        // [M, N], row stride ldy
    int64_t ldy;
    int64_t M, N, K;
    const float* mult;  // [N]
    const float* bias;  // [N]
    Activation activation;
};

// int8 gemm over a tile of weight columns: y[m, n] = act(fma(float(sum_k W[n,k] * xs8[m,k]), x_scale[m] *
// w_scale[n], bias[n])). X rows are given as uint8 = int8 + 128, W as quads wt[kq][n][4] (int8), and the
// accumulator is corrected by comp[n] = 128 * sum_k W[n, k].
struct GemmU8TileArgs {
    const uint8_t* xu;      // [M, Kq*4] uint8 (= int8 + 128; 128 beyond K), row stride ldx (bytes)
    int64_t ldx;
    const int8_t* wt;       // [Kq][ldn][4] int8 weights, quad-transposed
    int64_t ldn;            // columns per kq row (N tile rounded up to 16)
    float* y;               // [M, N] output, row stride ldy
    int64_t ldy;
    int64_t M, N, Kq;
    const int32_t* comp;    // [N]
    const float* x_scale;   // [M]
    const float* w_scale;   // [N] codebook scale * scale[n]
    const float* bias;      // [N]
    Activation activation;
    // uint8 output instead of y (sets with gemm_u8_writes_uint8; x_scale == nullptr there stands for all ones):
    // yq[m, n] = clamp(nearbyint(y[m, n]) + y_zero_point, y_lo, y_hi), y computed as above in output units
    uint8_t* yq = nullptr;  // [M, N], row stride ldyq
    int64_t ldyq = 0;
    int32_t y_zero_point = 0, y_lo = 0, y_hi = 255;
};

// The batch-1 GEMV lookup-table kernel: rows [n_begin, n_end) of the packed weight against the int8 rows of X.
// The quantized codebook is the table, kept in registers; each code selects its entry, each sign bit negates the
// matching input byte, VNNI sums. Integer result identical to the tile path.
struct GemvLutArgs {
    const PackedWeight* w;  // SSVQ with d = 8 and k <= 16 (see gemv_lut_supported)
    const int8_t* xs;       // [M, K] int8 rows, row stride ldx (K rounded up to 64, zero padded)
    int64_t ldx;
    float* y;               // [M, N], row stride ldy
    int64_t ldy;
    int64_t M, K;
    const float* x_scale;   // [M]
    const float* w_scale;   // [N]
    const float* bias;      // [N]
    Activation activation;
};

struct FusedKernelSet {
    const char* name;  // "avx512vnni", "avx2" (x86-64), "neon_dotprod", "neon" (AArch64), "ref"
    bool (*supported)();

    // weight elements [e_begin, e_end) decoded to int8 (+-q) / fp32, written contiguously to out
    void (*decode_s8)(const PackedWeight&, int64_t e_begin, int64_t e_end, int8_t* out);
    void (*decode_f32)(const PackedWeight&, int64_t e_begin, int64_t e_end, float* out);

    void (*minmax)(const float* x, int64_t n, float* lo, float* hi);
    // conv activations -> uint8 quads: xq[kq][p][t] = q(x[(4kq+t)*ldx + p]); rows >= K get zero_point
    void (*pack_u8_quads)(const float* x, int64_t ldx, int64_t K, int64_t P, float inv_scale, int32_t zero_point,
                          uint8_t* xq, int64_t ldq);
    // gemm activations: a row of K floats -> int8 symmetric (x * inv_scale rounded, clamped to +-127),
    // zero-padded to Kpad; also writes uint8 = int8 + 128 to xu (128-padded) when xu != nullptr
    void (*quantize_row_s8)(const float* x, int64_t K, int64_t Kpad, float inv_scale, int8_t* xs, uint8_t* xu);
    // int8 weight rows [rows][ldw] -> quad-transposed [Kq][ldn][4]
    void (*transpose_quads)(const int8_t* w, int64_t ldw, int64_t rows, int64_t Kq, int8_t* wt, int64_t ldn);

    void (*conv_f32_tile)(const ConvF32TileArgs&);
    void (*conv_u8_tile)(const ConvU8TileArgs&);
    void (*dwconv_f32)(const DwConvArgs&);
    void (*gemm_f32)(const GemmF32Args&);
    void (*gemm_u8_tile)(const GemmU8TileArgs&);
    void (*gemv_lut)(const GemvLutArgs&, int64_t n_begin, int64_t n_end);  // nullptr: no LUT kernel in this set
    bool gemm_u8_writes_uint8;  // gemm_u8_tile honours GemmU8TileArgs::yq (else: float y, then requantize_u8)
    // uint8 NHWC activations: rows x cols floats in output units (row stride ldy) -> clamp(nearbyint(y) + zp, lo, hi)
    void (*requantize_u8)(const float* y, int64_t ldy, int64_t rows, int64_t cols, int32_t zero_point, int32_t lo,
                          int32_t hi, uint8_t* out, int64_t ldo);
    void (*dwconv_u8_nhwc)(const DwU8NhwcArgs&);
};

// Floats of DwConvArgs::scratch: the zero-padded plane the AVX-512 kernel reads without bounds checks.
inline int64_t dwconv_scratch_floats(int64_t Ho, int64_t Wo, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                     int64_t dh, int64_t dw) {
    const int64_t wo16 = (Wo + 15) / 16 * 16;
    return ((Ho - 1) * sh + (kh - 1) * dh + 1) * ((wo16 - 1) * sw + (kw - 1) * dw + 1 + 16);
}

// True when the GEMV lookup-table kernel handles this weight (SSVQ, d = 8, k <= 16, K % 64 == 0).
bool gemv_lut_supported(const PackedWeight& w, int64_t K);

// The scalar reference functions, also the building blocks of the other sets' remainders.
void decode_s8_ref(const PackedWeight&, int64_t e_begin, int64_t e_end, int8_t* out);
void decode_f32_ref(const PackedWeight&, int64_t e_begin, int64_t e_end, float* out);
void minmax_ref(const float* x, int64_t n, float* lo, float* hi);
void pack_u8_quads_ref(const float* x, int64_t ldx, int64_t K, int64_t P, float inv_scale, int32_t zero_point,
                       uint8_t* xq, int64_t ldq);
void quantize_row_s8_ref(const float* x, int64_t K, int64_t Kpad, float inv_scale, int8_t* xs, uint8_t* xu);
void transpose_quads_ref(const int8_t* w, int64_t ldw, int64_t rows, int64_t Kq, int8_t* wt, int64_t ldn);
void conv_f32_tile_ref(const ConvF32TileArgs&);
void conv_u8_tile_ref(const ConvU8TileArgs&);
void dwconv_f32_ref(const DwConvArgs&);
void gemm_f32_ref(const GemmF32Args&);
void gemm_u8_tile_ref(const GemmU8TileArgs&);
void gemv_lut_ref(const GemvLutArgs&, int64_t n_begin, int64_t n_end);
void requantize_u8_ref(const float* y, int64_t ldy, int64_t rows, int64_t cols, int32_t zero_point, int32_t lo,
                       int32_t hi, uint8_t* out, int64_t ldo);
void dwconv_u8_nhwc_ref(const DwU8NhwcArgs&);

// The float GEMM's block order, shared by the SIMD sets: 4 rows of X x 4 rows of W with single-row-of-W tails, then
// the remaining rows of X 1 x 8 with single tails. Block<MB, NB>::run(a, m0, n0) computes one MB x NB block.
template <template <int, int> class Block>
void gemm_f32_blocks(const GemmF32Args& a) {
    int64_t m0 = 0;
    for (; m0 + 4 <= a.M; m0 += 4) {
        int64_t n0 = 0;
        for (; n0 + 4 <= a.N; n0 += 4) Block<4, 4>::run(a, m0, n0);
        for (; n0 < a.N; ++n0) Block<4, 1>::run(a, m0, n0);
    }
    for (; m0 < a.M; ++m0) {
        int64_t n0 = 0;
        for (; n0 + 8 <= a.N; n0 += 8) Block<1, 8>::run(a, m0, n0);
        for (; n0 < a.N; ++n0) Block<1, 1>::run(a, m0, n0);
    }
}

// The one rounding rule of the int8 epilogue and the activation, shared by every set (bit-exact agreement).
inline float apply_activation(float y, Activation a) {
    if (a == Activation::kNone) return y;
    y = y > 0.f ? y : 0.f;  // same selection as vmaxps(y, 0): NaN and -0 become +0
    if (a == Activation::kRelu6) y = y < 6.f ? y : 6.f;
    return y;
}

// Quantization parameters of one image / row (docs/ssvq_op.md): computed the same way everywhere.
struct U8Quant {
    float scale, inv_scale;
    int32_t zero_point;
};
U8Quant u8_quant_params(float lo, float hi);  // asymmetric uint8 over [min(lo,0), max(hi,0)]
struct S8Quant {
    float scale, inv_scale;
};
S8Quant s8_quant_params(float absmax);  // symmetric int8, +-127

// x86-64 only (fused_avx2.cc, fused_avx512.cc).
bool cpu_has_avx2();
bool cpu_has_avx512_vnni();
const FusedKernelSet& avx512_fused_kernels();

// AArch64 only (fused_neon.cc): `neon` needs nothing beyond ARMv8-A; `neon_dotprod` needs HWCAP_ASIMDDP (ARMv8.2 SDOT).
bool cpu_has_neon_dotprod();
const FusedKernelSet& neon_fused_kernels();
const FusedKernelSet& neon_dotprod_fused_kernels();

const FusedKernelSet* fused_kernel_sets(size_t* count);  // best first; the last is `ref`
const FusedKernelSet& best_fused_kernels();
const FusedKernelSet* find_fused_kernels(const char* name);  // nullptr when unknown

}  // namespace ssvq
