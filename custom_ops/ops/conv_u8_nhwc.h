// SSVQConv with io "uint8_nhwc" (docs/ssvq_op.md): static uint8 activations in NHWC between fused convolutions,
// int8 weights decoded tile by tile from the packed form. Paths, chosen at kernel creation:
//   conv1x1_u8nhwc      1x1, stride 1, no padding, group 1: the NHWC rows are the GEMM's rows as they are
//   dwconv_u8nhwc       one input channel per group, one output channel per group: direct kernel over channels,
//                       weights quantized per channel (9 taps of a shared codebook lose too much to a per-layer scale)
//   conv_im2col_u8nhwc  everything else: uint8 rows of the receptive field per pixel chunk, then the GEMM
// The GEMM runs blocks of 64 output channels (decoded to int8, quad-transposed) against chunks of pixel rows into a
// small float tile, which requantize_u8 turns into the uint8 output.
#pragma once

#include <string>
#include <vector>

#include "fused_common.h"

namespace ssvq {

// Conv attributes of one node (weight shape [M, C/group, kH, kW]).
struct ConvGeometry {
    int64_t M = 0, Cg = 0, kh = 1, kw = 1, group = 1;
    int64_t sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0, pb = 0, pr = 0;
};
ConvGeometry read_geometry(const OrtKernelInfo* info, const std::vector<int64_t>& shape);

// Output size of one spatial axis (ONNX Conv); < 1 when the padded input is smaller than the dilated kernel.
inline int64_t conv_output_size(int64_t in, int64_t pad_begin, int64_t pad_end, int64_t kernel, int64_t stride,
                                int64_t dilation) {
    const int64_t padded = in + pad_begin + pad_end, span = dilation * (kernel - 1) + 1;
    return padded < span ? 0 : (padded - span) / stride + 1;
}

// The static quantization of X and Y (attributes x_scale, x_zero_point, y_scale, y_zero_point).
struct U8Io {
    float x_scale = 1.f, y_scale = 1.f;
    int32_t x_zero_point = 0, y_zero_point = 0;
};
// Reads io; returns false for "float_nchw" (and checks that no quantization attribute is given), true for
// "uint8_nhwc" with `io` filled in and validated.
bool read_u8_io(const OrtKernelInfo* info, Numerics numerics, U8Io* io);

class ConvU8Nhwc {
   public:
    ConvU8Nhwc(const FusedKernelSet& kernels, const PreparedWeight& w, const ConvGeometry& geo, const U8Io& io);
    int path_id() const { return path_; }
    const char* path_name() const;
    const std::string& notes() const { return notes_; }
    int64_t extra_bytes() const {  // mult, bias, comp, dw_inv
        return int64_t(sizeof(float) * (mult_.size() + bias_.size() + dw_inv_.size()) + sizeof(int32_t) * comp_.size());
    }
    // x [N, H, W, C] uint8 -> y [N, Ho, Wo, M] uint8
    void run(const Ort::KernelContext& context, const uint8_t* x, int64_t N, int64_t H, int64_t W, int64_t Ho,
             int64_t Wo, uint8_t* y) const;

   private:
    enum Path { kPointwise = 3, kDepthwise = 4, kIm2col = 5 };  // report ids after SSVQConv's float_nchw paths
    void gemm(const Ort::KernelContext& context, const uint8_t* x, int64_t N, int64_t H, int64_t W, int64_t Ho,
              int64_t Wo, uint8_t* y) const;
    void depthwise(const Ort::KernelContext& context, const uint8_t* x, int64_t N, int64_t H, int64_t W, int64_t Ho,
                   int64_t Wo, uint8_t* y) const;
    // The quad-transposed int8 weights [Kpad / 4][ldn][4] of output channels [o0, o0 + cols) (one GEMM block),
    // decoded in one call (its whole 64-weight groups take the vector decode), in the NHWC rows' reduction order.
    void decode_block(int64_t o0, int64_t cols, int8_t* wt, int64_t ldn) const;
    // uint8 rows [count][ldr] of the receptive fields of pixels [p0, p0 + count) of one image, group g
    void im2col_rows(const uint8_t* x, int64_t H, int64_t W, int64_t Wo, int64_t g, int64_t p0, int64_t count,
                     uint8_t* rows, int64_t ldr) const;

    const FusedKernelSet& kernels_;
    const PreparedWeight& w_;
    const ConvGeometry geo_;
    const U8Io io_;
    Path path_ = kIm2col;
    int64_t K_ = 0, Kpad_ = 0;      // reduction length per group (Cg * kh * kw) and rounded up to quads
    // The requantization (docs/ssvq_op.md): Y = clamp(nearbyint(fma(acc, mult, bias)) + y_zero_point, lo, hi)
    std::vector<float> mult_;       // [M] x_scale * w_scale[o] / y_scale
    std::vector<float> bias_;       // [M] bias[o] / y_scale
    std::vector<int32_t> comp_;     // [M] x_zero_point * row sum (GEMM paths)
    std::vector<float> dw_inv_;     // [M] depthwise: 127 / max |w| of the channel (per-channel int8 weights)
    int32_t lo_ = 0, hi_ = 255;     // the activation as a clamp in uint8
    std::string notes_;
};

}  // namespace ssvq
