// Shared by the fused ops SSVQConv and SSVQGemm (docs/ssvq_op.md): per-session configuration, attribute reading,
// the packed weight prepared once at kernel creation, errors as ORT statuses, the kernel report, ORT's thread pool.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fused.h"

namespace ssvq {

// Session config entries read when the library is registered (SessionOptions.add_session_config_entry before
// register_custom_ops_library): they apply to the fused ops of that session.
// ssvq.kernels: "auto" (default) or a set of fused_kernel_sets(): "avx512vnni" | "avx2" (x86-64),
// "neon_dotprod" | "neon" (AArch64), "ref"
inline constexpr const char* kConfigKernels = "ssvq.kernels";
inline constexpr const char* kConfigReport = "ssvq.kernel_report";  // file: one JSON line per (node, path) that ran

struct OpConfig {
    const FusedKernelSet* kernels = nullptr;  // the forced set, or the best supported one
    std::string report_path;                  // empty: no report
};

// A failure that names the problem; turned into an ORT status with the op and node at the C boundary.
struct OpError {
    std::string message;
};

enum class Numerics { kFloat, kInt8 };

// A read-only view of one input tensor.
struct TensorView {
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    std::vector<int64_t> dims;
    int64_t numel = 0;
    const void* data = nullptr;
};

TensorView view_of(const Ort::ConstValue& value);
const char* type_name(ONNXTensorElementDataType type);

bool try_attribute(const OrtKernelInfo* info, const char* name, int64_t* out);
bool try_attribute(const OrtKernelInfo* info, const char* name, float* out);
bool try_attribute(const OrtKernelInfo* info, const char* name, std::string* out);
bool try_attribute(const OrtKernelInfo* info, const char* name, std::vector<int64_t>* out);
std::string node_name_of(const OrtKernelInfo* info);

// The packed weight and epilogue constants, validated and prepared at kernel creation from constant initializers:
// inputs 1..5 = codebook, indices, signs (optional), scale (optional), bias (optional).
struct PreparedWeight {
    int64_t k = 0, d = 0, numel = 0;
    int bits = 0;
    std::vector<int64_t> shape;
    int64_t rows = 0, row_len = 0;  // shape[0] and numel / shape[0]: one output channel / column per row
    Numerics numerics = Numerics::kFloat;
    Activation activation = Activation::kNone;
    std::vector<float> codebook_f32;  // [k, d]
    std::vector<int8_t> codebook_q;   // [k, d] int8 numerics only
    float codebook_scale = 1.f;       // int8: max |codebook| / 127
    std::vector<float> scale, bias;   // [rows] (1 / 0 when absent)
    std::vector<float> w_scale;       // [rows] int8: codebook_scale * scale[o]
    std::vector<int32_t> row_sums;    // [rows] int8: sum over the row of the decoded int8 weights
    PackedWeight packed{};            // points into ORT's initializers and the vectors above
    int64_t packed_bytes = 0;         // codebook + indices + signs as stored in the model
    int64_t extra_bytes = 0;          // what this kernel holds besides ORT's initializers

    // Frees scale, bias, w_scale and row_sums (for a path that keeps its own per-row constants).
    void release_epilogue();
};

// Reads the packed-weight attributes (k, d, shape, format_version, layout), numerics and activation, validates
// the constant inputs against them and prepares everything above.
std::unique_ptr<PreparedWeight> prepare_weight(const OrtKernelInfo* info, const FusedKernelSet& kernels);

// Why `kernels` decodes this weight's tiles with the scalar loop (for the kernel report), or "" when its decode is
// vectorised for the weight's d and numerics.
std::string tile_decode_notes(const FusedKernelSet& kernels, const PreparedWeight& w);
// Why `kernels` runs a depthwise conv of this horizontal stride with the scalar kernel, or "".
std::string depthwise_notes(const FusedKernelSet& kernels, int64_t stride_w);

// Turns whatever `body` throws into an ORT status "[<op>] node <node>: ...".
template <typename F>
OrtStatus* guarded(const char* op, const std::string& node, F&& body) noexcept {
    try {
        body();
        return nullptr;
    } catch (const OpError& e) {
        return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT,
                                          (std::string("[") + op + "] node " + node + ": " + e.message).c_str());
    } catch (const Ort::Exception& e) {
        return Ort::GetApi().CreateStatus(
            ORT_FAIL, (std::string("[") + op + "] node " + node + ": onnxruntime error: " + e.what()).c_str());
    } catch (const std::bad_alloc&) {
        return Ort::GetApi().CreateStatus(ORT_FAIL, (std::string("[") + op + "] node " + node + ": out of memory").c_str());
    } catch (const std::exception& e) {
        return Ort::GetApi().CreateStatus(ORT_FAIL, (std::string("[") + op + "] node " + node + ": " + e.what()).c_str());
    } catch (...) {
        return Ort::GetApi().CreateStatus(ORT_FAIL, (std::string("[") + op + "] unknown error").c_str());
    }
}

// The kernel report: the first time a node runs a path, one JSON line goes to OpConfig::report_path.
class KernelReport {
   public:
    KernelReport(const OpConfig& config, const char* op, std::string node, const PreparedWeight& w);
    // `path` is one of a small fixed set per op (index < kMaxPaths); `notes` lists slow sub-paths ("" if none).
    void ran(int path_id, const char* path, const std::string& notes) const;
    static constexpr int kMaxPaths = 8;

   private:
    std::string report_path_, op_, node_, set_name_, numerics_;
    int64_t packed_bytes_, extra_bytes_;
    mutable std::atomic<bool> logged_[kMaxPaths] = {};
};

// fn(i) for i in [0, total) on ORT's intra-op thread pool (inline when total == 1); exceptions come back here.
template <typename F>
void parallel_for(const Ort::KernelContext& context, size_t total, F&& fn) {
    if (total == 0) return;
    if (total == 1) {
        fn(size_t(0));
        return;
    }
    struct Job {
        F* fn;
        std::atomic<bool> failed{false};
    } job{&fn};
    auto trampoline = [](void* p, size_t i) {
        Job* j = static_cast<Job*>(p);
        try {
            (*j->fn)(i);
        } catch (...) {
            j->failed = true;
        }
    };
    context.ParallelFor(trampoline, total, 0, &job);
    if (job.failed) throw OpError{"a worker failed (out of memory?)"};
}

// ORT's graph-time shape and type inference of one node: input shapes, attributes, the output's type and shape.
// (Strings are read through the C API: Ort::ShapeInferContext::GetAttrString of ORT 1.21 reads past its buffer.)
class ShapeInference {
   public:
    explicit ShapeInference(OrtShapeInferContext* raw) : raw_(raw), shapes_(&Ort::GetApi(), raw) {}
    const Ort::ShapeInferContext::Shape& input_shape(size_t i) const { return shapes_.GetInputShape(i); }
    // the attribute's value, or `fallback` when the node does not have it
    std::string attribute_or(const char* name, const std::string& fallback) const;
    std::vector<int64_t> attribute_or(const char* name, const std::vector<int64_t>& fallback) const;
    void set_output(const Ort::ShapeInferContext::Shape& shape, ONNXTensorElementDataType type);

   private:
    const OrtOpAttr* find(const char* name) const;  // nullptr when absent
    OrtShapeInferContext* raw_;
    Ort::ShapeInferContext shapes_;
};

// Per-thread scratch buffers, 64-byte aligned, grown on demand and kept for the thread's lifetime.
void* scratch(int slot, size_t bytes);
inline constexpr int kScratchSlots = 4;

// The ORT op object of a fused op: `Kernel(config, info, node)` is created per node; inputs X, codebook and
// indices are required, signs, scale and bias optional; the output is float. `Name` is the op type.
template <typename Kernel, const char* const* Name>
struct FusedOp : Ort::CustomOpBase<FusedOp<Kernel, Name>, Kernel, /*WithStatus=*/true> {
    explicit FusedOp(OpConfig config) : config_(std::move(config)) {
        OrtCustomOp::InferOutputShapeFn = [](const OrtCustomOp*, OrtShapeInferContext* raw) -> OrtStatusPtr {
            return guarded(*Name, "<shape inference>", [&] {
                ShapeInference ctx(raw);
                Kernel::infer_output(ctx);
            });
        };
    }
    OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
        *kernel = nullptr;
        const std::string node = node_name_of(info);
        return guarded(*Name, node, [&] { *kernel = new Kernel(config_, info, node); });
    }
    const char* GetName() const { return *Name; }
    size_t GetInputTypeCount() const { return 6; }
    ONNXTensorElementDataType GetInputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; }
    OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
        return index <= 2 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
    }
    size_t GetOutputTypeCount() const { return 1; }
    // float, or uint8 for SSVQConv with io "uint8_nhwc": `Kernel::infer_output` sets it (InferOutputShapeFn)
    ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; }
   private:
    OpConfig config_;
};

}  // namespace ssvq
