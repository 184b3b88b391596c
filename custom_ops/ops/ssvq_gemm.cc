// SSVQGemm: Y = act((X @ W^T) * scale + bias) over a packed weight W [N, K] that stays packed; X [..., K] (Gemm with
// transB = 1, or MatMul by a transposed weight, followed by the bias Add). Contract: docs/ssvq_op.md. Paths:
//   gemv_lut_int8   int8, at most 4 rows of X, SSVQ with d = 8, k <= 16, K % 64 == 0: the lookup-table kernel
//                   reads the packed codes and signs directly, nothing is decoded
//   gemm_tile_int8  int8 otherwise: blocks of 64 weight rows decoded to int8 and quad-transposed, VNNI GEMM
//   gemm_f32        float: blocks of weight rows decoded to fp32 (a few hundred KiB at most), FMA
// Work is split over ORT's intra-op thread pool by blocks of weight rows (output columns).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fused_common.h"
#include "fused_ops.h"
#include "ssvq_format.h"

namespace ssvq {
namespace {

constexpr const char* kOpName = "SSVQGemm";
constexpr int64_t kLutRows = 64;       // weight rows per work item, lookup-table path
constexpr int64_t kTileCols = 64;      // weight rows (output columns) per work item, int8 tile path
constexpr int64_t kMaxLutM = 4;        // rows of X up to which the lookup-table path runs
constexpr int64_t kF32TileBytes = 256 << 10;

enum PathId { kGemvLut = 0, kGemmTileInt8 = 1, kGemmF32 = 2 };

class SSVQGemmKernel {
   public:
    SSVQGemmKernel(const OpConfig& config, const OrtKernelInfo* info, std::string node)
        : kernels_(*config.kernels),
          node_(std::move(node)),
          weight_(prepare_weight(info, kernels_)),
          report_(config, kOpName, node_, *weight_) {
        if (weight_->shape.size() != 2)
            throw OpError{"expected shape [N, K] (the weight as Gemm transB=1 reads it), got " +
                          format::dims_str(weight_->shape)};
        N_ = weight_->shape[0];
        K_ = weight_->shape[1];
        lut_ = weight_->numerics == Numerics::kInt8 && kernels_.gemv_lut != nullptr &&
               gemv_lut_supported(weight_->packed, K_);
        comp_.resize(size_t(N_));
        if (weight_->numerics == Numerics::kInt8)
            for (int64_t n = 0; n < N_; ++n) comp_[size_t(n)] = 128 * weight_->row_sums[size_t(n)];
        tile_notes_ = tile_decode_notes(kernels_, *weight_);
    }

    // Y [..., N] float for X [..., K]
    static void infer_output(ShapeInference& ctx) {
        Ort::ShapeInferContext::Shape y = ctx.input_shape(0);
        const std::vector<int64_t> shape = ctx.attribute_or("shape", std::vector<int64_t>{});
        if (y.empty() || shape.size() != 2) throw OpError{"expected X of rank >= 1 and shape [N, K]"};
        y.back() = shape[0];
        ctx.set_output(y, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    }

    OrtStatus* ComputeV2(OrtKernelContext* raw) noexcept {
        return guarded(kOpName, node_, [&] {
            Ort::KernelContext context(raw);
            const TensorView x = view_of(context.GetInput(0));
            if (x.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || x.dims.empty() || x.dims.back() != K_)
                throw OpError{"expected X as a float32 tensor [..., " + std::to_string(K_) + "], got " +
                              type_name(x.type) + " of shape " + format::dims_str(x.dims)};
            std::vector<int64_t> out_dims = x.dims;
            out_dims.back() = N_;
            Ort::UnownedValue out = context.GetOutput(0, out_dims);
            const int64_t M = x.numel / K_;
            if (M == 0) return;
            const float* xd = static_cast<const float*>(x.data);
            float* y = out.GetTensorMutableData<float>();
            if (weight_->numerics == Numerics::kFloat) {
                report_.ran(kGemmF32, "gemm_f32", tile_notes_);
                gemm_f32(context, xd, M, y);
            } else {
                int8(context, xd, M, y);
            }
        });
    }

   private:
    void gemm_f32(const Ort::KernelContext& context, const float* x, int64_t M, float* y) const {
        const PreparedWeight& w = *weight_;
        const int64_t nb = std::clamp<int64_t>(kF32TileBytes / (4 * K_), 4, 64);
        const int64_t blocks = (N_ + nb - 1) / nb;
        parallel_for(context, size_t(blocks), [&](size_t b) {
            const int64_t n0 = int64_t(b) * nb, rows = std::min(nb, N_ - n0);
            float* tile = static_cast<float*>(scratch(0, size_t(rows * K_) * 4));
            kernels_.decode_f32(w.packed, n0 * K_, (n0 + rows) * K_, tile);
            const GemmF32Args args{x, K_, tile, K_, y + n0, N_, M, rows, K_,
                                   w.scale.data() + n0, w.bias.data() + n0, w.activation};
            kernels_.gemm_f32(args);
        });
    }

    void int8(const Ort::KernelContext& context, const float* x, int64_t M, float* y) const {
        const PreparedWeight& w = *weight_;
        const bool lut = lut_ && M <= kMaxLutM;
        const int64_t Kpad = lut ? K_ : (K_ + 63) / 64 * 64;
        auto* xs = static_cast<int8_t*>(scratch(2, size_t(M * Kpad)));
        auto* xu = lut ? nullptr : static_cast<uint8_t*>(scratch(3, size_t(M * Kpad)));
        std::vector<float> x_scale(static_cast<size_t>(M));
        const int64_t row_items = M * K_ >= (1 << 17) ? std::min<int64_t>(M, 16) : 1;
        parallel_for(context, size_t(row_items), [&](size_t item) {
            for (int64_t m = int64_t(item) * M / row_items; m < int64_t(item + 1) * M / row_items; ++m) {
                float lo = 0.f, hi = 0.f;
                kernels_.minmax(x + m * K_, K_, &lo, &hi);
                const S8Quant q = s8_quant_params(std::max(-lo, hi));
                x_scale[size_t(m)] = q.scale;
                kernels_.quantize_row_s8(x + m * K_, K_, Kpad, q.inv_scale, xs + m * Kpad,
                                         xu != nullptr ? xu + m * Kpad : nullptr);
            }
        });
        if (lut) {
            report_.ran(kGemvLut, "gemv_lut_int8", "");
            const GemvLutArgs args{&w.packed, xs, Kpad, y, N_, M, K_, x_scale.data(), w.w_scale.data(),
                                   w.bias.data(), w.activation};
            const int64_t blocks = (N_ + kLutRows - 1) / kLutRows;
            parallel_for(context, size_t(blocks), [&](size_t b) {
                kernels_.gemv_lut(args, int64_t(b) * kLutRows, std::min(N_, int64_t(b + 1) * kLutRows));
            });
            return;
        }
        report_.ran(kGemmTileInt8, "gemm_tile_int8", tile_notes_);
        const int64_t Kq = Kpad / 4, blocks = (N_ + kTileCols - 1) / kTileCols;
        parallel_for(context, size_t(blocks), [&](size_t b) {
            const int64_t n0 = int64_t(b) * kTileCols, rows = std::min(kTileCols, N_ - n0);
            const int64_t ldn = (rows + 15) / 16 * 16;
            auto* tile = static_cast<int8_t*>(scratch(0, size_t(rows * Kpad)));
            for (int64_t r = 0; r < rows; ++r) {
                kernels_.decode_s8(w.packed, (n0 + r) * K_, (n0 + r + 1) * K_, tile + r * Kpad);
                std::memset(tile + r * Kpad + K_, 0, size_t(Kpad - K_));
            }
            auto* wt = static_cast<int8_t*>(scratch(1, size_t(Kq * ldn * 4)));
            kernels_.transpose_quads(tile, Kpad, rows, Kq, wt, ldn);
            const GemmU8TileArgs args{xu, Kpad, wt, ldn, y + n0, N_, M, rows, Kq, comp_.data() + n0,
                                      x_scale.data(), w.w_scale.data() + n0, w.bias.data() + n0, w.activation};
            kernels_.gemm_u8_tile(args);
        });
    }

    const FusedKernelSet& kernels_;
    const std::string node_;
    const std::unique_ptr<PreparedWeight> weight_;
    const KernelReport report_;
    int64_t N_ = 0, K_ = 0;
    bool lut_ = false;
    std::vector<int32_t> comp_;  // [N] 128 * row sum: the uint8 offset of the activations, taken back out
    std::string tile_notes_;  // the weight-tile decode's fallback, if any (gemm_tile_int8, gemm_f32)
};

}  // namespace

std::shared_ptr<OrtCustomOp> make_ssvq_gemm_op(const OpConfig& config) {
    return std::make_shared<FusedOp<SSVQGemmKernel, &kOpName>>(config);  // shared_ptr deletes the derived type
}

}  // namespace ssvq
