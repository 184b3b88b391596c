// SSVQConv: Conv (+ folded BatchNormalization as scale/bias) (+ Relu / Relu6) over a packed weight that stays
// packed: tiles of weight rows are decoded into a per-thread buffer just before they are used. Contract:
// docs/ssvq_op.md. Paths, chosen at kernel creation from the attributes:
//   pointwise  1x1, stride 1, no padding, group 1: one GEMM per image over the NCHW activations in place
//   depthwise  one input channel per group, float numerics: per-channel direct conv on a zero-padded plane
//   im2col     everything else (first conv, grouped, strided, dilated; depthwise under int8): columns per group
// Work is split over ORT's intra-op thread pool in (weight-row block x pixel block) items.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "conv_u8_nhwc.h"
#include "fused_common.h"
#include "fused_ops.h"
#include "ssvq_format.h"

namespace ssvq {
namespace {

constexpr const char* kOpName = "SSVQConv";
constexpr int64_t kRowBlock = 48;     // weight rows per work item (multiple of both tilers' row blocks, 6 and 8)
constexpr int64_t kPixelBlock = 256;  // pixels per work item
constexpr int64_t kParallelMin = 1 << 16;  // elements below which quantizing an image stays on one thread

enum class Path { kPointwise = 0, kDepthwise = 1, kIm2col = 2 };

}  // namespace

ConvGeometry read_geometry(const OrtKernelInfo* info, const std::vector<int64_t>& shape) {
    if (shape.size() != 4) throw OpError{"expected shape [M, C/group, kH, kW], got " + format::dims_str(shape)};
    ConvGeometry g;
    g.M = shape[0];
    g.Cg = shape[1];
    g.kh = shape[2];
    g.kw = shape[3];
    std::vector<int64_t> strides{1, 1}, dilations{1, 1}, pads{0, 0, 0, 0};
    try_attribute(info, "strides", &strides);
    try_attribute(info, "dilations", &dilations);
    try_attribute(info, "pads", &pads);
    try_attribute(info, "group", &g.group);
    if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1)
        throw OpError{"expected strides of 2 values >= 1, got " + format::dims_str(strides)};
    if (dilations.size() != 2 || dilations[0] < 1 || dilations[1] < 1)
        throw OpError{"expected dilations of 2 values >= 1, got " + format::dims_str(dilations)};
    if (pads.size() != 4 || *std::min_element(pads.begin(), pads.end()) < 0)
        throw OpError{"expected pads [top, left, bottom, right] >= 0, got " + format::dims_str(pads)};
    if (g.group < 1 || g.M % g.group != 0)
        throw OpError{"expected group >= 1 dividing the " + std::to_string(g.M) + " output channels, got group=" +
                      std::to_string(g.group)};
    std::string auto_pad = "NOTSET";
    try_attribute(info, "auto_pad", &auto_pad);
    if (auto_pad != "NOTSET") throw OpError{"expected auto_pad NOTSET (explicit pads), got \"" + auto_pad + "\""};
    g.sh = strides[0];
    g.sw = strides[1];
    g.dh = dilations[0];
    g.dw = dilations[1];
    g.pt = pads[0];
    g.pl = pads[1];
    g.pb = pads[2];
    g.pr = pads[3];
    return g;
}

namespace {

class SSVQConvKernel {
   public:
    SSVQConvKernel(const OpConfig& config, const OrtKernelInfo* info, std::string node)
        : kernels_(*config.kernels),
          node_(std::move(node)),
          weight_(prepare_weight(info, kernels_)),
          geo_(read_geometry(info, weight_->shape)),
          u8_(make_u8(info, kernels_, *weight_, geo_)),
          report_(config, kOpName, node_, *weight_) {
        if (u8_) return;
        const bool pointwise = geo_.kh == 1 && geo_.kw == 1 && geo_.sh == 1 && geo_.sw == 1 && geo_.pt == 0 &&
                               geo_.pl == 0 && geo_.pb == 0 && geo_.pr == 0 && geo_.group == 1;
        if (pointwise) path_ = Path::kPointwise;
        else if (geo_.Cg == 1 && weight_->numerics == Numerics::kFloat) path_ = Path::kDepthwise;
        else path_ = Path::kIm2col;
        const bool f32 = weight_->numerics == Numerics::kFloat;
        path_name_ = path_ == Path::kPointwise ? (f32 ? "conv1x1_f32" : "conv1x1_int8")
                     : path_ == Path::kDepthwise ? "dwconv_f32"
                                                 : (f32 ? "conv_im2col_f32" : "conv_im2col_int8");
        // (the depthwise path decodes one channel's few taps at a time: its decode is no tile decode)
        const std::string decode = path_ == Path::kDepthwise ? "" : tile_decode_notes(kernels_, *weight_);
        const std::string depthwise = path_ == Path::kDepthwise ? depthwise_notes(kernels_, geo_.sw) : "";
        if (!decode.empty()) notes_ += decode + "; ";
        if (!depthwise.empty()) notes_ += depthwise + "; ";
        if (path_ == Path::kIm2col && geo_.Cg == 1) notes_ += "depthwise under int8 numerics goes through im2col; ";
    }

    // Y [N, M, Ho, Wo] float (io "float_nchw") or [N, Ho, Wo, M] uint8 (io "uint8_nhwc"); unknown sizes stay -1
    static void infer_output(ShapeInference& ctx) {
        using Dim = Ort::ShapeInferContext::SymbolicInteger;
        const Ort::ShapeInferContext::Shape& x = ctx.input_shape(0);
        const std::vector<int64_t> shape = ctx.attribute_or("shape", std::vector<int64_t>{});
        if (x.size() != 4 || shape.size() != 4) throw OpError{"expected a 4-D X and shape [M, C/group, kH, kW]"};
        const bool nhwc = ctx.attribute_or("io", std::string("float_nchw")) == "uint8_nhwc";
        const std::vector<int64_t> strides = ctx.attribute_or("strides", std::vector<int64_t>{1, 1});
        const std::vector<int64_t> dilations = ctx.attribute_or("dilations", std::vector<int64_t>{1, 1});
        const std::vector<int64_t> pads = ctx.attribute_or("pads", std::vector<int64_t>{0, 0, 0, 0});
        if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4)
            throw OpError{"expected strides and dilations of 2 values and pads of 4"};
        Ort::ShapeInferContext::Shape y(4, Dim(int64_t(-1)));
        y[0] = x[0];
        y[nhwc ? 3 : 1] = Dim(shape[0]);
        for (int a = 0; a < 2; ++a) {
            const Dim& in = x[nhwc ? 1 + a : 2 + a];
            if (!in.IsInt() || in.AsInt() < 0 || strides[size_t(a)] < 1) continue;
            y[nhwc ? 1 + a : 2 + a] = Dim(conv_output_size(in.AsInt(), pads[size_t(a)], pads[size_t(a) + 2],
                                                           shape[size_t(2 + a)], strides[size_t(a)],
                                                           dilations[size_t(a)]));
        }
        ctx.set_output(y, nhwc ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    }

    OrtStatus* ComputeV2(OrtKernelContext* raw) noexcept {
        return guarded(kOpName, node_, [&] {
            Ort::KernelContext context(raw);
            const TensorView x = view_of(context.GetInput(0));
            if (u8_) return run_u8(context, x);
            if (x.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || x.dims.size() != 4)
                throw OpError{std::string("expected X as a 4-D float32 tensor [N, C, H, W], got ") + type_name(x.type) +
                              " of shape " + format::dims_str(x.dims)};
            const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3];
            int64_t Ho = 0, Wo = 0;
            output_size(x.dims, C, H, W, &Ho, &Wo);
            Ort::UnownedValue out = context.GetOutput(0, std::vector<int64_t>{N, geo_.M, Ho, Wo});
            float* y = out.GetTensorMutableData<float>();
            const float* xd = static_cast<const float*>(x.data);
            report_.ran(int(path_), path_name_, notes_);
            for (int64_t n = 0; n < N; ++n) {
                const float* xn = xd + n * C * H * W;
                float* yn = y + n * geo_.M * Ho * Wo;
                switch (path_) {
                    case Path::kPointwise: pointwise(context, xn, C, H * W, yn); break;
                    case Path::kDepthwise: depthwise(context, xn, H, W, Ho, Wo, yn); break;
                    case Path::kIm2col: im2col_conv(context, xn, H, W, Ho, Wo, yn); break;
                }
            }
        });
    }

   private:
    // The io "uint8_nhwc" path (nullptr for "float_nchw"). It folds scale, bias and the row sums into constants of
    // its own, so the weight's float_nchw copies are released (and the kernel report counts what stays).
    static std::unique_ptr<const ConvU8Nhwc> make_u8(const OrtKernelInfo* info, const FusedKernelSet& kernels,
                                                     PreparedWeight& w, const ConvGeometry& geo) {
        U8Io io;
        if (!read_u8_io(info, w.numerics, &io)) return nullptr;
        auto path = std::make_unique<const ConvU8Nhwc>(kernels, w, geo, io);
        w.release_epilogue();
        w.extra_bytes += path->extra_bytes();
        return path;
    }

    // Checks the channel count C and the spatial size H x W of X against the weight; the output size.
    void output_size(const std::vector<int64_t>& dims, int64_t C, int64_t H, int64_t W, int64_t* Ho,
                     int64_t* Wo) const {
        if (C != geo_.Cg * geo_.group)
            throw OpError{"expected X with C = " + std::to_string(geo_.Cg * geo_.group) + " channels (shape " +
                          format::dims_str(weight_->shape) + ", group " + std::to_string(geo_.group) + "), got " +
                          format::dims_str(dims)};
        *Ho = conv_output_size(H, geo_.pt, geo_.pb, geo_.kh, geo_.sh, geo_.dh);
        *Wo = conv_output_size(W, geo_.pl, geo_.pr, geo_.kw, geo_.sw, geo_.dw);
        if (*Ho < 1 || *Wo < 1)
            throw OpError{"expected an input at least as large as the dilated kernel, got " + format::dims_str(dims)};
    }

    void run_u8(Ort::KernelContext& context, const TensorView& x) const {
        if (x.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || x.dims.size() != 4)
            throw OpError{std::string("expected X as a 4-D uint8 tensor [N, H, W, C] (io \"uint8_nhwc\"), got ") +
                          type_name(x.type) + " of shape " + format::dims_str(x.dims)};
        const int64_t N = x.dims[0], H = x.dims[1], W = x.dims[2], C = x.dims[3];
        int64_t Ho = 0, Wo = 0;
        output_size(x.dims, C, H, W, &Ho, &Wo);
        Ort::UnownedValue out = context.GetOutput(0, std::vector<int64_t>{N, Ho, Wo, geo_.M});
        report_.ran(u8_->path_id(), u8_->path_name(), u8_->notes());
        if (N > 0) u8_->run(context, static_cast<const uint8_t*>(x.data), N, H, W, Ho, Wo,
                            out.GetTensorMutableData<uint8_t>());
    }

    // Quantization of one image (int8): min/max, then the uint8 parameters.
    U8Quant image_quant(const Ort::KernelContext& context, const float* x, int64_t count) const {
        const int64_t chunks = count >= 2 * kParallelMin ? (count + kParallelMin - 1) / kParallelMin : 1;
        std::vector<float> lo(size_t(chunks), 0.f), hi(size_t(chunks), 0.f);
        parallel_for(context, size_t(chunks), [&](size_t c) {
            const int64_t b = int64_t(c) * count / chunks, e = int64_t(c + 1) * count / chunks;
            kernels_.minmax(x + b, e - b, &lo[c], &hi[c]);
        });
        return u8_quant_params(*std::min_element(lo.begin(), lo.end()), *std::max_element(hi.begin(), hi.end()));
    }

    // activations [K, P] (row stride ldx) -> uint8 quads, in parallel over quad rows when large
    void pack(const Ort::KernelContext& context, const float* x, int64_t ldx, int64_t K, int64_t P, const U8Quant& q,
              uint8_t* xq, int64_t ldq) const {
        const int64_t Kq = (K + 3) / 4;
        const int64_t items = K * P >= 2 * kParallelMin ? std::min<int64_t>(Kq, 16) : 1;
        parallel_for(context, size_t(items), [&](size_t i) {
            const int64_t b = int64_t(i) * Kq / items, e = int64_t(i + 1) * Kq / items;
            kernels_.pack_u8_quads(x + 4 * b * ldx, ldx, std::min(K, 4 * e) - 4 * b, P, q.inv_scale, q.zero_point,
                                   xq + b * ldq * 4, ldq);
        });
    }

    // Y[o0 + r, :] for the weight rows [o0, o0 + rows) of group-local reduction length K against columns X [K, P].
    // int8: xq holds the quads of X, `q` its quantization; float: x (row stride ldx).
    void gemm_rows(const Ort::KernelContext& context, int64_t o_begin, int64_t o_count, int64_t K, int64_t P,
                   const float* x, int64_t ldx, const uint8_t* xq, int64_t ldq, const U8Quant* q, float* y) const {
        const PreparedWeight& w = *weight_;
        const int64_t row_blocks = (o_count + kRowBlock - 1) / kRowBlock;
        const int64_t pixel_blocks = (P + kPixelBlock - 1) / kPixelBlock;
        const int64_t Kq = (K + 3) / 4;
        parallel_for(context, size_t(row_blocks * pixel_blocks), [&](size_t item) {
            const int64_t rb = int64_t(item) % row_blocks, pb = int64_t(item) / row_blocks;
            const int64_t r0 = rb * kRowBlock, rows = std::min(kRowBlock, o_count - r0);
            const int64_t o0 = o_begin + r0;
            const int64_t p0 = pb * kPixelBlock, pn = std::min(kPixelBlock, P - p0);
            if (q == nullptr) {
                float* tile = static_cast<float*>(scratch(0, size_t(rows * K) * 4));
                kernels_.decode_f32(w.packed, o0 * K, (o0 + rows) * K, tile);
                const ConvF32TileArgs args{tile, K, x + p0, ldx, y + r0 * P + p0, P, rows, K, pn,
                                           w.scale.data() + o0, w.bias.data() + o0, w.activation};
                kernels_.conv_f32_tile(args);
            } else {
                const int64_t ldw = Kq * 4;
                int8_t* tile = static_cast<int8_t*>(scratch(0, size_t(rows * ldw)));
                for (int64_t r = 0; r < rows; ++r) {
                    kernels_.decode_s8(w.packed, (o0 + r) * K, (o0 + r + 1) * K, tile + r * ldw);
                    std::memset(tile + r * ldw + K, 0, size_t(ldw - K));
                }
                auto* consts = static_cast<float*>(scratch(1, size_t(rows) * 8));
                float* mult = consts;
                int32_t* comp = reinterpret_cast<int32_t*>(consts + rows);
                for (int64_t r = 0; r < rows; ++r) {
                    mult[r] = q->scale * w.w_scale[size_t(o0 + r)];
                    comp[r] = q->zero_point * w.row_sums[size_t(o0 + r)];
                }
                const ConvU8TileArgs args{tile, ldw, xq + p0 * 4, ldq, y + r0 * P + p0, P, rows, Kq, pn,
                                          comp, mult, w.bias.data() + o0, w.activation};
                kernels_.conv_u8_tile(args);
            }
        });
    }

    void pointwise(const Ort::KernelContext& context, const float* x, int64_t C, int64_t P, float* y) const {
        if (weight_->numerics == Numerics::kFloat) {
            gemm_rows(context, 0, geo_.M, C, P, x, P, nullptr, 0, nullptr, y);
            return;
        }
        const U8Quant q = image_quant(context, x, C * P);
        const int64_t ldq = (P + 15) / 16 * 16;
        auto* xq = static_cast<uint8_t*>(scratch(2, size_t((C + 3) / 4 * ldq * 4)));
        pack(context, x, P, C, P, q, xq, ldq);
        gemm_rows(context, 0, geo_.M, C, P, nullptr, 0, xq, ldq, &q, y);
    }

    void depthwise(const Ort::KernelContext& context, const float* x, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                   float* y) const {
        const PreparedWeight& w = *weight_;
        const int64_t taps = geo_.kh * geo_.kw, per_group = geo_.M / geo_.group;
        const int64_t scratch_floats =
            dwconv_scratch_floats(Ho, Wo, geo_.kh, geo_.kw, geo_.sh, geo_.sw, geo_.dh, geo_.dw);
        parallel_for(context, size_t(geo_.M), [&](size_t item) {
            const int64_t o = int64_t(item);
            float* taps_buf = static_cast<float*>(scratch(0, size_t(taps) * 4));
            kernels_.decode_f32(w.packed, o * taps, (o + 1) * taps, taps_buf);
            const DwConvArgs args{x + (o / per_group) * H * W, y + o * Ho * Wo, taps_buf, H, W, Ho, Wo, geo_.kh,
                                  geo_.kw, geo_.sh, geo_.sw, geo_.pt, geo_.pl, geo_.dh, geo_.dw,
                                  w.scale[size_t(o)], w.bias[size_t(o)], w.activation,
                                  static_cast<float*>(scratch(1, size_t(scratch_floats) * 4))};
            kernels_.dwconv_f32(args);
        });
    }

    // Columns of one group: cols[(c * kh + i) * kw + j][oy * Wo + ox] = X[c][iy][ix] (0 outside the image).
    void im2col(const Ort::KernelContext& context, const float* x, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                float* cols) const {
        const int64_t K = geo_.Cg * geo_.kh * geo_.kw, P = Ho * Wo;
        const int64_t items = K * P >= 2 * kParallelMin ? std::min<int64_t>(K, 16) : 1;
        parallel_for(context, size_t(items), [&](size_t item) {
            for (int64_t row = int64_t(item) * K / items; row < int64_t(item + 1) * K / items; ++row) {
                const int64_t c = row / (geo_.kh * geo_.kw), i = row / geo_.kw % geo_.kh, j = row % geo_.kw;
                const float* plane = x + c * H * W;
                float* dst = cols + row * P;
                for (int64_t oy = 0; oy < Ho; ++oy, dst += Wo) {
                    const int64_t iy = oy * geo_.sh - geo_.pt + i * geo_.dh;
                    if (iy < 0 || iy >= H) {
                        std::memset(dst, 0, size_t(Wo) * 4);
                        continue;
                    }
                    // ix = ox * sw + off lies inside the row for ox in [lo, hi): zeros around a strided copy
                    const float* src = plane + iy * W;
                    const int64_t off = j * geo_.dw - geo_.pl;
                    const int64_t lo = std::min(Wo, off >= 0 ? 0 : (-off + geo_.sw - 1) / geo_.sw);
                    const int64_t hi = std::max(lo, std::min(Wo, W - off <= 0 ? 0 : (W - off + geo_.sw - 1) / geo_.sw));
                    std::fill(dst, dst + lo, 0.f);
                    if (geo_.sw == 1) {
                        std::memcpy(dst + lo, src + lo + off, size_t(hi - lo) * 4);
                    } else {
                        for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox * geo_.sw + off];
                    }
                    std::fill(dst + hi, dst + Wo, 0.f);
                }
            }
        });
    }

    void im2col_conv(const Ort::KernelContext& context, const float* x, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                     float* y) const {
        const int64_t K = geo_.Cg * geo_.kh * geo_.kw, P = Ho * Wo, per_group = geo_.M / geo_.group;
        const bool int8 = weight_->numerics == Numerics::kInt8;
        U8Quant q{};
        if (int8) q = image_quant(context, x, geo_.Cg * geo_.group * H * W);
        auto* cols = static_cast<float*>(scratch(2, size_t(K * P) * 4));
        const int64_t ldq = (P + 15) / 16 * 16;
        auto* xq = int8 ? static_cast<uint8_t*>(scratch(3, size_t((K + 3) / 4 * ldq * 4))) : nullptr;
        for (int64_t g = 0; g < geo_.group; ++g) {
            im2col(context, x + g * geo_.Cg * H * W, H, W, Ho, Wo, cols);
            float* yg = y + g * per_group * P;
            if (int8) {
                pack(context, cols, P, K, P, q, xq, ldq);
                gemm_rows(context, g * per_group, per_group, K, P, nullptr, 0, xq, ldq, &q, yg);
            } else {
                gemm_rows(context, g * per_group, per_group, K, P, cols, P, nullptr, 0, nullptr, yg);
            }
        }
    }

    const FusedKernelSet& kernels_;
    const std::string node_;
    const std::unique_ptr<PreparedWeight> weight_;
    const ConvGeometry geo_;
    const std::unique_ptr<const ConvU8Nhwc> u8_;  // io "uint8_nhwc"; else the float_nchw paths below
    const KernelReport report_;
    Path path_ = Path::kIm2col;
    const char* path_name_ = "";
    std::string notes_;
};

}  // namespace

std::shared_ptr<OrtCustomOp> make_ssvq_conv_op(const OpConfig& config) {
    return std::make_shared<FusedOp<SSVQConvKernel, &kOpName>>(config);  // shared_ptr deletes the derived type
}

}  // namespace ssvq
