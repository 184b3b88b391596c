// Shared pieces of the fused ops: see fused_common.h.
#include "fused_common.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "ssvq_format.h"

namespace ssvq {
namespace {

constexpr size_t kCodebook = 1, kIndices = 2, kSigns = 3, kScale = 4, kBias = 5;

bool release_if_error(OrtStatus* status) {
    if (status == nullptr) return false;
    Ort::GetApi().ReleaseStatus(status);
    return true;
}

std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) continue;
        out += c;
    }
    return out;
}

// A present, constant input `i` (nullptr when the optional input is left out).
bool constant_input(const Ort::ConstKernelInfo& info, size_t i, const char* label, bool required, TensorView* out) {
    if (i >= info.GetInputCount() || info.GetInputName(i).empty()) {
        if (required) throw OpError{std::string("expected input ") + label + ", got none"};
        return false;
    }
    int is_constant = 0;
    const Ort::ConstValue value = info.GetTensorConstantInput(i, &is_constant);
    if (!is_constant || static_cast<const OrtValue*>(value) == nullptr)
        throw OpError{std::string("expected input ") + label +
                      " to be a constant initializer (the weights are prepared once, at session creation), got a "
                      "value computed or fed at run time"};
    *out = view_of(value);
    return true;
}

void check_stream_input(const char* label, const TensorView& t, int64_t count, int bits) {
    if (t.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || t.dims.size() != 1)
        throw OpError{std::string("expected ") + label + " as a 1-D uint8 tensor, got " + type_name(t.type) +
                      " of shape " + format::dims_str(t.dims)};
    const std::string problem = format::check_stream(label, static_cast<const uint8_t*>(t.data), t.numel, count, bits);
    if (!problem.empty()) throw OpError{problem};
}

std::vector<float> per_row_input(const TensorView& t, const char* label, int64_t rows) {
    if (t.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || t.dims.size() != 1 || t.dims[0] != rows)
        throw OpError{std::string("expected ") + label + " as a 1-D float32 tensor of " + std::to_string(rows) +
                      " values (one per output channel), got " + type_name(t.type) + " of shape " +
                      format::dims_str(t.dims)};
    const float* p = static_cast<const float*>(t.data);
    return std::vector<float>(p, p + rows);
}

}  // namespace

TensorView view_of(const Ort::ConstValue& value) {
    const Ort::TensorTypeAndShapeInfo info = value.GetTensorTypeAndShapeInfo();
    TensorView t;
    t.type = info.GetElementType();
    t.dims = info.GetShape();
    t.numel = int64_t(info.GetElementCount());
    t.data = value.GetTensorRawData();
    return t;
}

const char* type_name(ONNXTensorElementDataType type) {
    switch (type) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return "uint16";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: return "int16";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
        default: return "an unsupported type";
    }
}

bool try_attribute(const OrtKernelInfo* info, const char* name, int64_t* out) {
    return !release_if_error(Ort::GetApi().KernelInfoGetAttribute_int64(info, name, out));
}

bool try_attribute(const OrtKernelInfo* info, const char* name, float* out) {
    return !release_if_error(Ort::GetApi().KernelInfoGetAttribute_float(info, name, out));
}

bool try_attribute(const OrtKernelInfo* info, const char* name, std::string* out) {
    size_t size = 0;
    if (release_if_error(Ort::GetApi().KernelInfoGetAttribute_string(info, name, nullptr, &size))) return false;
    std::string text(size, '\0');
    if (release_if_error(Ort::GetApi().KernelInfoGetAttribute_string(info, name, &text[0], &size))) return false;
    text.resize(size > 0 ? size - 1 : 0);
    *out = std::move(text);
    return true;
}

bool try_attribute(const OrtKernelInfo* info, const char* name, std::vector<int64_t>* out) {
    size_t size = 0;
    if (release_if_error(Ort::GetApi().KernelInfoGetAttributeArray_int64(info, name, nullptr, &size))) return false;
    std::vector<int64_t> values(size);
    if (size > 0 &&
        release_if_error(Ort::GetApi().KernelInfoGetAttributeArray_int64(info, name, values.data(), &size)))
        return false;
    *out = std::move(values);
    return true;
}

std::string node_name_of(const OrtKernelInfo* info) {
    try {
        std::string name = Ort::ConstKernelInfo{info}.GetNodeName();
        return name.empty() ? "<unnamed>" : name;
    } catch (...) {
        return "<unnamed>";
    }
}

std::unique_ptr<PreparedWeight> prepare_weight(const OrtKernelInfo* raw, const FusedKernelSet& kernels) {
    auto w = std::make_unique<PreparedWeight>();
    if (!try_attribute(raw, "k", &w->k)) throw OpError{"expected int attribute k, got none"};
    if (!try_attribute(raw, "d", &w->d)) throw OpError{"expected int attribute d, got none"};
    if (!try_attribute(raw, "shape", &w->shape)) throw OpError{"expected ints attribute shape, got none"};
    int64_t version = format::kFormatVersion;
    try_attribute(raw, "format_version", &version);
    std::string layout = format::kLayoutFlat, numerics = "float", activation = "none";
    try_attribute(raw, "layout", &layout);
    try_attribute(raw, "numerics", &numerics);
    try_attribute(raw, "activation", &activation);
    for (const std::string& problem : {format::check_k(w->k), format::check_shape_d(w->shape, w->d, &w->numel),
                                       format::check_format_version(version), format::check_layout(layout)})
        if (!problem.empty()) throw OpError{problem};
    if (numerics != "float" && numerics != "int8")
        throw OpError{"expected numerics \"float\" or \"int8\", got \"" + numerics + "\""};
    w->numerics = numerics == "int8" ? Numerics::kInt8 : Numerics::kFloat;
    if (activation == "none") w->activation = Activation::kNone;
    else if (activation == "relu") w->activation = Activation::kRelu;
    else if (activation == "relu6") w->activation = Activation::kRelu6;
    else throw OpError{"expected activation \"none\", \"relu\" or \"relu6\", got \"" + activation + "\""};
    w->bits = format::index_bits(w->k);
    w->rows = w->shape.empty() ? 1 : w->shape[0];
    w->row_len = w->numel / w->rows;

    const Ort::ConstKernelInfo info{raw};
    TensorView codebook, indices, signs, scale, bias;
    constant_input(info, kCodebook, "codebook", true, &codebook);
    constant_input(info, kIndices, "indices", true, &indices);
    const bool has_signs = constant_input(info, kSigns, "signs", false, &signs);
    const bool has_scale = constant_input(info, kScale, "scale", false, &scale);
    const bool has_bias = constant_input(info, kBias, "bias", false, &bias);

    if (codebook.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 && codebook.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        throw OpError{std::string("expected codebook of type float16 or float32, got ") + type_name(codebook.type)};
    const std::string problem = format::check_codebook_shape(codebook.dims, w->k, w->d);
    if (!problem.empty()) throw OpError{problem};
    check_stream_input("indices", indices, w->numel / w->d, w->bits);
    if (has_signs) check_stream_input("signs", signs, w->numel, 1);

    const int64_t kd = w->k * w->d;
    w->codebook_f32.resize(size_t(kd));
    if (codebook.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16)
        widen_f16_ref(static_cast<const uint16_t*>(codebook.data), w->codebook_f32.data(), kd);
    else
        std::memcpy(w->codebook_f32.data(), codebook.data, size_t(kd) * 4);
    float amax = 0.f;
    for (float c : w->codebook_f32) {
        if (!std::isfinite(c)) throw OpError{"expected a finite codebook, got NaN or Inf"};
        if (has_signs && std::signbit(c))
            throw OpError{"expected SSVQ codebook entries as magnitudes (sign bit clear) since signs are given, got " +
                          std::to_string(c)};
        amax = std::max(amax, std::fabs(c));
    }
    w->scale = has_scale ? per_row_input(scale, "scale", w->rows) : std::vector<float>(size_t(w->rows), 1.f);
    w->bias = has_bias ? per_row_input(bias, "bias", w->rows) : std::vector<float>(size_t(w->rows), 0.f);

    w->packed = PackedWeight{static_cast<const uint8_t*>(indices.data),
                             indices.numel,
                             has_signs ? static_cast<const uint8_t*>(signs.data) : nullptr,
                             has_signs ? signs.numel : 0,
                             w->bits,
                             w->d,
                             w->numel,
                             w->codebook_f32.data(),
                             nullptr};
    w->packed_bytes = codebook.numel * (codebook.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? 2 : 4) +
                      indices.numel + (has_signs ? signs.numel : 0);
    w->extra_bytes = int64_t(sizeof(float)) * (kd + 2 * w->rows);

    float codebook_scale = 0.f;
    const bool has_codebook_scale = try_attribute(raw, "codebook_scale", &codebook_scale);
    if (has_codebook_scale &&
        (w->numerics != Numerics::kInt8 || !(codebook_scale > 0.f) || !std::isfinite(codebook_scale)))
        throw OpError{"expected codebook_scale > 0 and finite, with numerics \"int8\", got " +
                      std::to_string(codebook_scale) + (w->numerics == Numerics::kInt8 ? "" : " with float numerics")};
    if (w->numerics == Numerics::kInt8) {
        // Per-layer symmetric codebook quantization: q = clamp(round(c / s), -127, 127), exact int8 weights +-q; s is
        // the codebook_scale attribute (the exporter picks it by weighted error) or max|c| / 127.
        const S8Quant cq = has_codebook_scale ? S8Quant{codebook_scale, 1.f / codebook_scale} : s8_quant_params(amax);
        w->codebook_scale = cq.scale;
        w->codebook_q.resize(size_t(kd));
        for (int64_t i = 0; i < kd; ++i) {
            const float r = std::nearbyint(w->codebook_f32[size_t(i)] * cq.inv_scale);
            w->codebook_q[size_t(i)] = int8_t(r <= -127.f ? -127 : r >= 127.f ? 127 : int(r));
        }
        w->packed.codebook_q = w->codebook_q.data();
        w->w_scale.resize(size_t(w->rows));
        for (int64_t o = 0; o < w->rows; ++o) w->w_scale[size_t(o)] = w->codebook_scale * w->scale[size_t(o)];
        w->row_sums.resize(size_t(w->rows));
        std::vector<int8_t> row(size_t(w->row_len));
        for (int64_t o = 0; o < w->rows; ++o) {
            kernels.decode_s8(w->packed, o * w->row_len, (o + 1) * w->row_len, row.data());
            int32_t s = 0;
            for (int8_t q : row) s += q;
            w->row_sums[size_t(o)] = s;
        }
        w->extra_bytes += kd + int64_t(sizeof(float) + sizeof(int32_t)) * w->rows;
    }
    return w;
}

void PreparedWeight::release_epilogue() {
    const auto bytes = [](const auto& v) { return int64_t(v.capacity() * sizeof(v[0])); };
    extra_bytes -= bytes(scale) + bytes(bias) + bytes(w_scale) + bytes(row_sums);
    std::vector<float>().swap(scale);
    std::vector<float>().swap(bias);
    std::vector<float>().swap(w_scale);
    std::vector<int32_t>().swap(row_sums);
}

std::string tile_decode_notes(const FusedKernelSet& kernels, const PreparedWeight& w) {
    const std::string set = kernels.name;
    const bool int8 = w.numerics == Numerics::kInt8;
    if (set == "avx512vnni" && int8 && w.d != 8) return "weight tiles decoded by the scalar loop (d != 8)";
    if (set == "neon" || set == "neon_dotprod") {  // fused_neon.cc: int8 in registers of 16 / d codewords
        if (int8 && 16 % w.d != 0) return "weight tiles decoded by the scalar loop (d not 1, 2, 4, 8 or 16)";
        if (!int8 && w.d == 3) return "weight tiles decoded by the scalar loop (d = 3)";
    }
    return {};
}

std::string depthwise_notes(const FusedKernelSet& kernels, int64_t stride_w) {
    const std::string set = kernels.name;
    if ((set == "avx512vnni" || set == "neon" || set == "neon_dotprod") && stride_w > 2)
        return "depthwise stride > 2: scalar";
    return {};
}

KernelReport::KernelReport(const OpConfig& config, const char* op, std::string node, const PreparedWeight& w)
    : report_path_(config.report_path),
      op_(op),
      node_(std::move(node)),
      set_name_(config.kernels->name),
      numerics_(w.numerics == Numerics::kInt8 ? "int8" : "float"),
      packed_bytes_(w.packed_bytes),
      extra_bytes_(w.extra_bytes) {}

void KernelReport::ran(int path_id, const char* path, const std::string& notes) const {
    if (report_path_.empty() || path_id < 0 || path_id >= kMaxPaths || logged_[path_id].exchange(true)) return;
    const bool fallback = set_name_ == "ref" || !notes.empty();
    const std::string line = "{\"op\": \"" + op_ + "\", \"node\": \"" + json_escape(node_) + "\", \"path\": \"" +
                             path + "\", \"kernels\": \"" + set_name_ + "\", \"numerics\": \"" + numerics_ +
                             "\", \"fallback\": " + (fallback ? "true" : "false") + ", \"notes\": \"" +
                             json_escape(notes) + "\", \"packed_bytes\": " + std::to_string(packed_bytes_) +
                             ", \"extra_bytes\": " + std::to_string(extra_bytes_) + "}\n";
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    if (FILE* f = std::fopen(report_path_.c_str(), "a")) {
        std::fputs(line.c_str(), f);
        std::fclose(f);
    }
}

const OrtOpAttr* ShapeInference::find(const char* name) const {
    const OrtOpAttr* attr = nullptr;
    if (release_if_error(Ort::GetApi().ShapeInferContext_GetAttribute(raw_, name, &attr))) return nullptr;
    return attr;
}

std::string ShapeInference::attribute_or(const char* name, const std::string& fallback) const {
    const OrtOpAttr* attr = find(name);
    if (attr == nullptr) return fallback;
    char probe[64] = {};
    size_t size = 0;  // the length, with or without the terminator depending on the ORT version
    if (!release_if_error(Ort::GetApi().ReadOpAttr(attr, ORT_OP_ATTR_STRING, probe, sizeof(probe) - 1, &size)))
        return std::string(probe, std::min(size, sizeof(probe) - 1)).c_str();
    std::string text(size + 1, '\0');
    Ort::ThrowOnError(Ort::GetApi().ReadOpAttr(attr, ORT_OP_ATTR_STRING, &text[0], size + 1, &size));
    return text.c_str();
}

std::vector<int64_t> ShapeInference::attribute_or(const char* name, const std::vector<int64_t>& fallback) const {
    const OrtOpAttr* attr = find(name);
    if (attr == nullptr) return fallback;
    int64_t probe[8] = {};
    size_t bytes = 0;
    if (!release_if_error(Ort::GetApi().ReadOpAttr(attr, ORT_OP_ATTR_INTS, probe, sizeof(probe), &bytes)))
        return std::vector<int64_t>(probe, probe + std::min<size_t>(bytes / sizeof(int64_t), 8));
    std::vector<int64_t> values(bytes / sizeof(int64_t));
    Ort::ThrowOnError(Ort::GetApi().ReadOpAttr(attr, ORT_OP_ATTR_INTS, values.data(), bytes, &bytes));
    return values;
}

// (Not Ort::ShapeInferContext::SetOutputShape: it marks symbolic dims with -2, which SetDimensions rejects.) ORT
// turns a dim of -1 without a symbol into the value -1, so every unknown dim gets a symbol of its own.
void ShapeInference::set_output(const Ort::ShapeInferContext::Shape& shape, ONNXTensorElementDataType type) {
    static std::atomic<uint64_t> unknowns{0};
    std::vector<int64_t> dims;
    std::vector<std::string> names;
    for (const auto& dim : shape) {
        const bool known = dim.IsInt() && dim.AsInt() >= 0;
        dims.push_back(known ? dim.AsInt() : -1);
        names.push_back(known ? "" : !dim.IsInt() ? dim.AsSym() : "ssvq_unknown_" + std::to_string(unknowns++));
    }
    std::vector<const char*> symbols;
    for (const std::string& n : names) symbols.push_back(n.c_str());
    Ort::TensorTypeAndShapeInfo info{nullptr};
    OrtTensorTypeAndShapeInfo* raw = nullptr;
    Ort::ThrowOnError(Ort::GetApi().CreateTensorTypeAndShapeInfo(&raw));
    info = Ort::TensorTypeAndShapeInfo{raw};
    Ort::ThrowOnError(Ort::GetApi().SetTensorElementType(raw, type));
    Ort::ThrowOnError(Ort::GetApi().SetDimensions(raw, dims.data(), dims.size()));
    Ort::ThrowOnError(Ort::GetApi().SetSymbolicDimensions(raw, symbols.data(), symbols.size()));
    Ort::ThrowOnError(Ort::GetApi().ShapeInferContext_SetOutputTypeShape(raw_, 0, raw));
}

void* scratch(int slot, size_t bytes) {
    thread_local std::vector<uint8_t> buffers[kScratchSlots];
    std::vector<uint8_t>& b = buffers[slot];
    if (b.size() < bytes + 64) b.resize(bytes + 64);
    const uintptr_t p = reinterpret_cast<uintptr_t>(b.data());
    return reinterpret_cast<void*>((p + 63) & ~uintptr_t(63));
}

}  // namespace ssvq
