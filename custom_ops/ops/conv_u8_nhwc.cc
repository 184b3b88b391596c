// SSVQConv, io "uint8_nhwc": see conv_u8_nhwc.h.
#include "conv_u8_nhwc.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace ssvq {
namespace {

constexpr int64_t kCols = 64;        // output channels per GEMM block (the AVX-512 tiler's 4 vectors)
constexpr int64_t kRowChunk = 48;    // pixel rows per GEMM call: a float tile of 48 x 64 stays in L1
constexpr int64_t kRowBlock = 6;     // the GEMM tilers' rows per register block: finer pixel splits are multiples
constexpr int64_t kPixelItem = 768;  // pixel rows per work item: one weight-block decode serves all of them
constexpr int64_t kMinItems = 8;     // fewer work items than this: decode the weight blocks once, split pixels finer
constexpr int64_t kIm2colSlack = 16;  // bytes past the im2col rows that im2col_rows' fixed-size copies may write
constexpr int64_t kMaxDwTaps = 512;  // the depthwise kernel's float sums are exact up to this many taps

float required_float(const OrtKernelInfo* info, const char* name) {
    float v = 0.f;
    if (!try_attribute(info, name, &v)) throw OpError{std::string("expected float attribute ") + name +
                                                      " (io \"uint8_nhwc\"), got none"};
    if (!(v > 0.f) || !std::isfinite(v))
        throw OpError{std::string("expected ") + name + " > 0 and finite, got " + std::to_string(v)};
    return v;
}

int32_t required_zero_point(const OrtKernelInfo* info, const char* name) {
    int64_t v = 0;
    if (!try_attribute(info, name, &v)) throw OpError{std::string("expected int attribute ") + name +
                                                      " (io \"uint8_nhwc\"), got none"};
    if (v < 0 || v > 255) throw OpError{std::string("expected ") + name + " in 0..255, got " + std::to_string(v)};
    return int32_t(v);
}

}  // namespace

bool read_u8_io(const OrtKernelInfo* info, Numerics numerics, U8Io* io) {
    std::string mode = "float_nchw";
    try_attribute(info, "io", &mode);
    if (mode == "float_nchw") {
        float f = 0.f;
        int64_t i = 0;
        for (const char* name : {"x_scale", "y_scale"})
            if (try_attribute(info, name, &f))
                throw OpError{std::string("expected no ") + name + " with io \"float_nchw\" (it quantizes "
                              "uint8_nhwc activations), got one"};
        for (const char* name : {"x_zero_point", "y_zero_point"})
            if (try_attribute(info, name, &i))
                throw OpError{std::string("expected no ") + name + " with io \"float_nchw\", got one"};
        return false;
    }
    if (mode != "uint8_nhwc") throw OpError{"expected io \"float_nchw\" or \"uint8_nhwc\", got \"" + mode + "\""};
    if (numerics != Numerics::kInt8) throw OpError{"expected numerics \"int8\" with io \"uint8_nhwc\", got \"float\""};
    io->x_scale = required_float(info, "x_scale");
    io->x_zero_point = required_zero_point(info, "x_zero_point");
    io->y_scale = required_float(info, "y_scale");
    io->y_zero_point = required_zero_point(info, "y_zero_point");
    return true;
}

ConvU8Nhwc::ConvU8Nhwc(const FusedKernelSet& kernels, const PreparedWeight& w, const ConvGeometry& geo,
                       const U8Io& io)
    : kernels_(kernels), w_(w), geo_(geo), io_(io) {
    const int64_t taps = geo_.kh * geo_.kw;
    const bool pointwise = taps == 1 && geo_.sh == 1 && geo_.sw == 1 && geo_.pt == 0 && geo_.pl == 0 &&
                           geo_.pb == 0 && geo_.pr == 0 && geo_.group == 1;
    if (pointwise) path_ = kPointwise;
    else if (geo_.Cg == 1 && geo_.M == geo_.group) path_ = kDepthwise;
    else path_ = kIm2col;
    if (path_ == kDepthwise && taps > kMaxDwTaps)
        throw OpError{"expected a depthwise kernel of at most " + std::to_string(kMaxDwTaps) +
                      " taps with io \"uint8_nhwc\", got " + std::to_string(geo_.kh) + "x" + std::to_string(geo_.kw)};
    K_ = geo_.Cg * taps;
    Kpad_ = (K_ + 3) / 4 * 4;
    mult_.resize(size_t(geo_.M));
    bias_.resize(size_t(geo_.M));
    for (int64_t o = 0; o < geo_.M; ++o) bias_[size_t(o)] = w_.bias[size_t(o)] / io_.y_scale;
    if (path_ == kDepthwise) {  // per-channel int8 weights (docs/ssvq_op.md): scale 127 / max |w| of the channel
        std::vector<float> wf(size_t(geo_.M * taps));
        kernels_.decode_f32(w_.packed, 0, geo_.M * taps, wf.data());
        dw_inv_.resize(size_t(geo_.M));
        for (int64_t o = 0; o < geo_.M; ++o) {
            float m = 0.f;
            for (int64_t t = 0; t < taps; ++t) m = std::max(m, std::fabs(wf[size_t(o * taps + t)]));
            const S8Quant q = s8_quant_params(m);
            dw_inv_[size_t(o)] = q.inv_scale;
            mult_[size_t(o)] = io_.x_scale * (q.scale * w_.scale[size_t(o)]) / io_.y_scale;
        }
    } else {  // the per-layer int8 codebook; the zero point's share of each output taken out of the accumulator
        comp_.resize(size_t(geo_.M));
        for (int64_t o = 0; o < geo_.M; ++o) {
            mult_[size_t(o)] = io_.x_scale * w_.w_scale[size_t(o)] / io_.y_scale;
            comp_[size_t(o)] = io_.x_zero_point * w_.row_sums[size_t(o)];
        }
    }
    if (w_.activation != Activation::kNone) lo_ = io_.y_zero_point;
    if (w_.activation == Activation::kRelu6)
        hi_ = int32_t(std::min(255.f, std::nearbyint(6.f / io_.y_scale) + float(io_.y_zero_point)));
    if (path_ != kDepthwise) notes_ = tile_decode_notes(kernels_, w_);
    const std::string set = kernels_.name;
    if (path_ == kDepthwise && (set == "neon" || set == "neon_dotprod"))
        notes_ = "depthwise uint8: portable C++ kernel (compiler-vectorised)";
    if (path_ == kIm2col && geo_.Cg == 1) notes_ += std::string(notes_.empty() ? "" : "; ") +
                                                   "depthwise with a channel multiplier goes through im2col";
}

const char* ConvU8Nhwc::path_name() const {
    return path_ == kPointwise ? "conv1x1_u8nhwc" : path_ == kDepthwise ? "dwconv_u8nhwc" : "conv_im2col_u8nhwc";
}

void ConvU8Nhwc::run(const Ort::KernelContext& context, const uint8_t* x, int64_t N, int64_t H, int64_t W,
                     int64_t Ho, int64_t Wo, uint8_t* y) const {
    if (path_ == kDepthwise) depthwise(context, x, N, H, W, Ho, Wo, y);
    else gemm(context, x, N, H, W, Ho, Wo, y);
}

void ConvU8Nhwc::im2col_rows(const uint8_t* x, int64_t H, int64_t W, int64_t Wo, int64_t g, int64_t p0,
                             int64_t count, uint8_t* rows, int64_t ldr) const {
    const int64_t C = geo_.Cg * geo_.group, Cg = geo_.Cg, span = geo_.kw * Cg;
    const uint8_t zp = uint8_t(io_.x_zero_point);
    const uint8_t* x_end = x + H * W * C;
    // group 1, no horizontal dilation: a kernel row's taps are span = kw * C contiguous bytes of the image row
    const bool contiguous = geo_.group == 1 && geo_.dw == 1;
    for (int64_t r = 0; r < count; ++r) {
        const int64_t oy = (p0 + r) / Wo, ox = (p0 + r) % Wo;
        uint8_t* dst = rows + r * ldr;
        for (int64_t i = 0; i < geo_.kh; ++i) {
            const int64_t iy = oy * geo_.sh - geo_.pt + i * geo_.dh, ix0 = ox * geo_.sw - geo_.pl;
            if (contiguous && iy >= 0 && iy < H && ix0 >= 0 && ix0 + geo_.kw <= W) {
                const uint8_t* src = x + (iy * W + ix0) * C;
                // a fixed 16-byte copy when it stays inside the image (the buffer has kIm2colSlack bytes for the
                // overrun; the next kernel row or pixel overwrites it)
                if (span <= 16 && src + 16 <= x_end) std::memcpy(dst, src, 16);
                else std::memcpy(dst, src, size_t(span));
                dst += span;
                continue;
            }
            for (int64_t j = 0; j < geo_.kw; ++j, dst += Cg) {
                const int64_t ix = ix0 + j * geo_.dw;
                const bool inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
                const uint8_t* src = inside ? x + (iy * W + ix) * C + g * Cg : nullptr;
                if (Cg >= 16) {
                    if (inside) std::memcpy(dst, src, size_t(Cg));
                    else std::memset(dst, zp, size_t(Cg));
                } else {  // a few channels (the first conv's 3): no library call per tap
                    for (int64_t c = 0; c < Cg; ++c) dst[c] = inside ? src[c] : zp;
                }
            }
        }
        std::memset(dst, zp, size_t(ldr - K_));
    }
}

void ConvU8Nhwc::decode_block(int64_t o0, int64_t cols, int8_t* wt, int64_t ldn) const {
    const int64_t taps = geo_.kh * geo_.kw;
    auto* tile = static_cast<int8_t*>(scratch(0, size_t(cols * (Kpad_ + K_))));
    const bool in_order = Kpad_ == K_ && (taps == 1 || geo_.Cg == 1);
    int8_t* flat = in_order ? tile : tile + cols * Kpad_;
    kernels_.decode_s8(w_.packed, o0 * K_, (o0 + cols) * K_, flat);
    if (!in_order) {
        for (int64_t r = 0; r < cols; ++r) {
            int8_t* dst = tile + r * Kpad_;
            const int8_t* row = flat + r * K_;
            for (int64_t c = 0; c < geo_.Cg; ++c)
                for (int64_t t = 0; t < taps; ++t) dst[t * geo_.Cg + c] = row[c * taps + t];
            std::memset(dst + K_, 0, size_t(Kpad_ - K_));
        }
    }
    kernels_.transpose_quads(tile, Kpad_, cols, Kpad_ / 4, wt, ldn);
}

void ConvU8Nhwc::gemm(const Ort::KernelContext& context, const uint8_t* x, int64_t N, int64_t H, int64_t W,
                      int64_t Ho, int64_t Wo, uint8_t* y) const {
    const int64_t C = geo_.Cg * geo_.group, P = Ho * Wo, Mg = geo_.M / geo_.group;
    // Pointwise with whole quads per row reads X in place, every image at once (NHWC rows are contiguous).
    const bool in_place = path_ == kPointwise && C % 4 == 0;
    const int64_t images = in_place ? 1 : N, rows_per_image = in_place ? N * P : P;
    const int64_t col_blocks = (Mg + kCols - 1) / kCols, blocks = geo_.group * col_blocks;
    const int64_t Kq = Kpad_ / 4, block_bytes = Kq * kCols * 4;
    // Many work items: each decodes its own weight block and runs large pixel items. Few (a small layer): the blocks
    // are decoded once for the call and the pixels split finer, so that every thread still gets work.
    const bool shared = images * blocks * ((rows_per_image + kPixelItem - 1) / kPixelItem) < kMinItems;
    int64_t pixel_item = kPixelItem;
    if (shared) {
        const int64_t splits = (kMinItems + images * blocks - 1) / (images * blocks);
        const int64_t share = (rows_per_image + splits - 1) / splits;
        pixel_item = std::max(kRowBlock, (share + kRowBlock - 1) / kRowBlock * kRowBlock);
    }
    const int64_t pixel_items = (rows_per_image + pixel_item - 1) / pixel_item;
    std::vector<int8_t> decoded(shared ? size_t(blocks * block_bytes) : 0);
    if (shared) {
        parallel_for(context, size_t(blocks), [&](size_t b) {
            const int64_t cb = int64_t(b) % col_blocks, cols = std::min(kCols, Mg - cb * kCols);
            decode_block(int64_t(b) / col_blocks * Mg + cb * kCols, cols, decoded.data() + int64_t(b) * block_bytes,
                         (cols + 15) / 16 * 16);
        });
    }
    const std::vector<float> ones(size_t(kRowChunk), 1.f);
    const int64_t per_image = blocks * pixel_items;
    parallel_for(context, size_t(images * per_image), [&](size_t item) {
        const int64_t n = int64_t(item) / per_image, rest = int64_t(item) % per_image;
        const int64_t b = rest / pixel_items, pi = rest % pixel_items;
        const int64_t g = b / col_blocks, cb = b % col_blocks;
        const int64_t o0 = g * Mg + cb * kCols, cols = std::min(kCols, Mg - cb * kCols);
        const int64_t ldn = (cols + 15) / 16 * 16;
        const int8_t* wt = decoded.data() + b * block_bytes;
        if (!shared) {
            auto* own = static_cast<int8_t*>(scratch(1, size_t(block_bytes)));
            decode_block(o0, cols, own, ldn);
            wt = own;
        }
        const bool direct = kernels_.gemm_u8_writes_uint8;  // else a float tile (x_scale ones), then requantize_u8
        auto* acc = direct ? nullptr : static_cast<float*>(scratch(2, size_t(kRowChunk * cols) * 4));
        const float* x_scale = direct ? nullptr : ones.data();
        auto* rows = in_place ? nullptr : static_cast<uint8_t*>(scratch(3, size_t(kRowChunk * Kpad_ + kIm2colSlack)));
        const uint8_t* xn = x + n * H * W * C;
        const int64_t p_end = std::min(rows_per_image, (pi + 1) * pixel_item);
        for (int64_t p0 = pi * pixel_item; p0 < p_end; p0 += kRowChunk) {
            const int64_t count = std::min(kRowChunk, p_end - p0);
            const uint8_t* xu = xn + p0 * C;
            int64_t ldx = C;
            if (!in_place) {
                im2col_rows(xn, H, W, Wo, g, p0, count, rows, Kpad_);
                xu = rows;
                ldx = Kpad_;
            }
            uint8_t* yp = y + (n * P + p0) * geo_.M + o0;
            const GemmU8TileArgs args{xu, ldx, wt, ldn, acc, cols, count, cols, Kq, comp_.data() + o0,
                                      x_scale, mult_.data() + o0, bias_.data() + o0, Activation::kNone,
                                      direct ? yp : nullptr, geo_.M, io_.y_zero_point, lo_, hi_};
            kernels_.gemm_u8_tile(args);
            if (!direct) kernels_.requantize_u8(acc, cols, count, cols, io_.y_zero_point, lo_, hi_, yp, geo_.M);
        }
    });
}

void ConvU8Nhwc::depthwise(const Ort::KernelContext& context, const uint8_t* x, int64_t N, int64_t H, int64_t W,
                           int64_t Ho, int64_t Wo, uint8_t* y) const {
    const int64_t C = geo_.M, taps = geo_.kh * geo_.kw;
    // The weights [C][taps] decoded once per call, quantized per channel and laid out [taps][C] as floats for the
    // channel-vector kernel.
    std::vector<float> decoded(size_t(C * taps)), wf(size_t(C * taps));
    kernels_.decode_f32(w_.packed, 0, C * taps, decoded.data());
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < taps; ++t) wf[size_t(t * C + c)] = decoded[size_t(c * taps + t)];
    // round half to even of |w * inv| <= 127 by adding and subtracting 1.5 * 2^23 (plain float arithmetic, which
    // the compiler vectorises, unlike a std::nearbyint call per weight on the baseline target; CMakeLists.txt keeps
    // the product and the add apart with -ffp-contract=off)
    constexpr float kRound = 12582912.f;
    for (int64_t t = 0; t < taps; ++t)
        for (int64_t c = 0; c < C; ++c) {
            float& v = wf[size_t(t * C + c)];
            v = (v * dw_inv_[size_t(c)] + kRound) - kRound;
        }
    // Work items of ~16K outputs: blocks of output rows, and (small images) parts of the channels, 32 at a time.
    const int64_t row_block = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, Wo * C));
    const int64_t blocks = (Ho + row_block - 1) / row_block;
    const int64_t parts = std::clamp<int64_t>(kMinItems / (N * blocks), 1, (C + 31) / 32);
    const int64_t part = ((C + parts - 1) / parts + 31) / 32 * 32;
    parallel_for(context, size_t(N * blocks * parts), [&](size_t item) {
        const int64_t n = int64_t(item) / (blocks * parts), b = int64_t(item) / parts % blocks;
        const int64_t c0 = int64_t(item) % parts * part, count = std::min(part, C - c0);
        if (count <= 0) return;
        const DwU8NhwcArgs args{x + n * H * W * C + c0, y + n * Ho * Wo * C + c0, wf.data() + c0, H, W, count, C, Ho,
                                Wo, geo_.kh, geo_.kw, geo_.sh, geo_.sw, geo_.pt, geo_.pl, geo_.dh, geo_.dw,
                                b * row_block, std::min(Ho, (b + 1) * row_block), mult_.data() + c0,
                                bias_.data() + c0, float(io_.x_zero_point), io_.y_zero_point, lo_, hi_};
        kernels_.dwconv_u8_nhwc(args);
    });
}

}  // namespace ssvq
