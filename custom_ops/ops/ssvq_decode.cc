// SSVQDecode: packed codebook + indices (+ signs) -> float32 weight. Contract: docs/ssvq_op.md.
//
// Attributes are read and checked once, when ORT creates the kernel. When every input is a constant initializer
// the weight is also validated and decoded there, and Compute only copies the cached result. Every failure goes
// back to ORT as an ORT_INVALID_ARGUMENT status "[SSVQDecode] node <name>: expected ..., got ..."; no exception
// leaves this file.
#include "ssvq_decode.h"

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "decode.h"
#include "fused_common.h"  // shared op helpers: OpError, TensorView, attribute readers, guarded
#include "ssvq_format.h"

namespace ssvq {
namespace {

constexpr const char* kOpName = "SSVQDecode";
constexpr size_t kCodebook = 0, kIndices = 1, kSigns = 2;

struct Attributes {
    int64_t k = 0, d = 0, numel = 0;
    int bits = 0;
    std::vector<int64_t> shape;
};

Attributes read_attributes(const OrtKernelInfo* info) {
    Attributes a;
    if (!try_attribute(info, "k", &a.k)) throw OpError{"expected int attribute k, got none"};
    if (!try_attribute(info, "d", &a.d)) throw OpError{"expected int attribute d, got none"};
    if (!try_attribute(info, "shape", &a.shape)) throw OpError{"expected ints attribute shape, got none"};
    int64_t version = format::kFormatVersion;
    try_attribute(info, "format_version", &version);
    std::string layout = format::kLayoutFlat;
    try_attribute(info, "layout", &layout);
    for (const std::string& problem : {format::check_k(a.k), format::check_shape_d(a.shape, a.d, &a.numel),
                                       format::check_format_version(version), format::check_layout(layout)})
        if (!problem.empty()) throw OpError{problem};
    a.bits = format::index_bits(a.k);
    return a;
}

void check_stream_input(const char* label, const TensorView& t, int64_t count, int bits) {
    if (t.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || t.dims.size() != 1)
        throw OpError{std::string("expected ") + label + " as a 1-D uint8 tensor, got " + type_name(t.type) +
                      " of shape " + format::dims_str(t.dims)};
    const std::string problem =
        format::check_stream(label, static_cast<const uint8_t*>(t.data), t.numel, count, bits);
    if (!problem.empty()) throw OpError{problem};
}

void check_inputs(const Attributes& a, const TensorView& codebook, const TensorView& indices,
                  const TensorView* signs) {
    if (codebook.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 && codebook.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        throw OpError{std::string("expected codebook of type float16 or float32, got ") + type_name(codebook.type)};
    const std::string problem = format::check_codebook_shape(codebook.dims, a.k, a.d);
    if (!problem.empty()) throw OpError{problem};
    check_stream_input("indices", indices, a.numel / a.d, a.bits);
    if (signs != nullptr) check_stream_input("signs", *signs, a.numel, 1);
}

// Validates the inputs and decodes them into out [a.numel].
void decode_into(const Attributes& a, const TensorView& codebook, const TensorView& indices, const TensorView* signs,
                 float* out) {
    check_inputs(a, codebook, indices, signs);
    const KernelSet& kernels = best_kernels();
    std::vector<float> widened;  // [k, d], only for float16 codebooks
    const float* cb = static_cast<const float*>(codebook.data);
    if (codebook.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
        widened.resize(size_t(a.k * a.d));
        kernels.widen_f16(static_cast<const uint16_t*>(codebook.data), widened.data(), a.k * a.d);
        cb = widened.data();
    }
    const DecodeArgs args{cb,
                          static_cast<const uint8_t*>(indices.data),
                          indices.numel,
                          signs != nullptr ? static_cast<const uint8_t*>(signs->data) : nullptr,
                          a.bits,
                          a.d,
                          a.numel / a.d,
                          out};
    kernels.decode(args);
}

class SSVQDecodeKernel {
   public:
    static OrtStatus* Create(const OrtKernelInfo* raw_info, void** kernel) noexcept {
        *kernel = nullptr;
        const std::string node = node_name_of(raw_info);
        return guarded(kOpName, node, [&] {
            const Ort::ConstKernelInfo info{raw_info};
            auto self = std::make_unique<SSVQDecodeKernel>(node, read_attributes(raw_info));
            self->try_decode_constants(info);
            *kernel = self.release();
        });
    }

    SSVQDecodeKernel(std::string node, Attributes attributes)
        : node_(std::move(node)), attributes_(std::move(attributes)) {}

    OrtStatus* ComputeV2(OrtKernelContext* raw_context) noexcept {
        return guarded(kOpName, node_, [&] {
            Ort::KernelContext context(raw_context);
            Ort::UnownedValue output = context.GetOutput(0, attributes_.shape);
            float* out = output.GetTensorMutableData<float>();
            if (cached_) {
                std::memcpy(out, cached_->data(), cached_->size() * sizeof(float));
                return;
            }
            const size_t count = context.GetInputCount();
            if (count < 2) throw OpError{"expected inputs codebook and indices, got " + std::to_string(count) + " inputs"};
            const TensorView codebook = view_of(context.GetInput(kCodebook));
            const TensorView indices = view_of(context.GetInput(kIndices));
            TensorView signs;
            bool has_signs = false;
            if (count > kSigns) {
                const Ort::ConstValue value = context.GetInput(kSigns);
                if (static_cast<const OrtValue*>(value) != nullptr) {
                    signs = view_of(value);
                    has_signs = true;
                }
            }
            decode_into(attributes_, codebook, indices, has_signs ? &signs : nullptr, out);
        });
    }

   private:
    // When every present input is a constant initializer, validate and decode now, once.
    void try_decode_constants(const Ort::ConstKernelInfo& info) {
        const size_t count = info.GetInputCount();
        TensorView views[3];
        bool has_signs = false;
        for (size_t i = 0; i < count && i < 3; ++i) {
            if (i == kSigns && info.GetInputName(i).empty()) break;  // optional input left out
            int is_constant = 0;
            const Ort::ConstValue value = info.GetTensorConstantInput(i, &is_constant);
            if (!is_constant || static_cast<const OrtValue*>(value) == nullptr) return;
            views[i] = view_of(value);
            has_signs = i == kSigns;
        }
        if (count < 2) throw OpError{"expected inputs codebook and indices, got " + std::to_string(count) + " inputs"};
        auto decoded = std::make_unique<std::vector<float>>(size_t(attributes_.numel));
        decode_into(attributes_, views[kCodebook], views[kIndices], has_signs ? &views[kSigns] : nullptr,
                    decoded->data());
        cached_ = std::move(decoded);
    }

    const std::string node_;
    const Attributes attributes_;
    std::unique_ptr<const std::vector<float>> cached_;  // [numel] the decoded weight, when the inputs are constant
};

struct SSVQDecodeOp : Ort::CustomOpBase<SSVQDecodeOp, SSVQDecodeKernel, /*WithStatus=*/true> {
    OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
        return SSVQDecodeKernel::Create(info, kernel);
    }
    const char* GetName() const { return kOpName; }
    size_t GetInputTypeCount() const { return 3; }
    // Any element type: the kernel checks the types itself so that a wrong one gets an error naming the node.
    ONNXTensorElementDataType GetInputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; }
    OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
        return index == kSigns ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
    }
    size_t GetOutputTypeCount() const { return 1; }
    ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

OrtCustomOp* ssvq_decode_op() {
    static SSVQDecodeOp op;
    return &op;
}

}  // namespace ssvq
