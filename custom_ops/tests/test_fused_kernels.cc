// Standalone tests of the fused kernels (no ONNX Runtime): every supported FusedKernelSet against the scalar `_ref`
// functions on randomised tiles. Integer paths and decodes must agree bit for bit; float paths within a relative
// tolerance of the sum of |products|. Buffers have exact sizes so that ASan catches any read past them.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "fused.h"
#include "ssvq_format.h"

namespace {

int g_failures = 0, g_checks = 0;

#define FCHECK(cond, ...)                                                                \
    do {                                                                                 \
        ++g_checks;                                                                      \
        if (!(cond)) {                                                                   \
            ++g_failures;                                                                \
            std::fprintf(stderr, "%s:%d: FCHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                           \
            std::fprintf(stderr, "\n");                                                  \
        }                                                                                \
    } while (0)

struct Weight {
    std::vector<uint8_t> indices, signs;
    std::vector<float> cb;
    std::vector<int8_t> cq;
    ssvq::PackedWeight w{};
};

Weight random_weight(std::mt19937_64& rng, int64_t numel, int64_t k, int64_t d, bool with_signs) {
    Weight W;
    const int bits = ssvq::format::index_bits(k);
    const int64_t n_vec = numel / d;
    W.indices.assign(static_cast<size_t>(ssvq::format::packed_nbytes(n_vec, bits)), 0);
    for (int64_t v = 0; v < n_vec; ++v) {
        const uint32_t c = uint32_t(rng() % uint64_t(k));
        for (int t = 0; t < bits; ++t)
            if ((c >> t) & 1u) W.indices[size_t((v * bits + t) >> 3)] |= uint8_t(1u << ((v * bits + t) & 7));
    }
    if (with_signs) {
        W.signs.assign(static_cast<size_t>(ssvq::format::sign_nbytes(numel)), 0);
        for (int64_t e = 0; e < numel; ++e)
            if (rng() & 1) W.signs[size_t(e >> 3)] |= uint8_t(1u << (e & 7));
    }
    std::normal_distribution<float> normal;
    W.cb.resize(static_cast<size_t>(k * d));
    W.cq.resize(static_cast<size_t>(k * d));
    for (size_t i = 0; i < W.cb.size(); ++i) {
        W.cb[i] = with_signs ? std::fabs(normal(rng)) : normal(rng);
        W.cq[i] = int8_t(with_signs ? rng() % 128 : int(rng() % 255) - 127);
    }
    W.w = {W.indices.data(), int64_t(W.indices.size()), with_signs ? W.signs.data() : nullptr,
           int64_t(W.signs.size()), bits, d, numel, W.cb.data(), W.cq.data()};
    return W;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

bool close(const std::vector<float>& got, const std::vector<float>& want, float bound) {
    for (size_t i = 0; i < got.size(); ++i)
        if (!(std::fabs(got[i] - want[i]) <= 1e-5f * bound + 1e-6f)) return false;
    return got.size() == want.size();
}

void test_set(const ssvq::FusedKernelSet& s, std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    // decode: every (k, d) family, element ranges with heads and tails around the 64-weight groups
    for (int64_t k : {2, 16, 64, 256, 4096}) {
        for (int64_t d : {1, 2, 3, 4, 8, 9, 16}) {
            for (bool signs : {true, false}) {
                const int64_t numel = d * int64_t(50 + rng() % 300);
                Weight W = random_weight(rng, numel, k, d, signs);
                const int64_t b = int64_t(rng() % uint64_t(numel / 2)), e = numel - int64_t(rng() % uint64_t(numel / 4));
                std::vector<int8_t> q_ref(static_cast<size_t>(e - b)), q(static_cast<size_t>(e - b));
                std::vector<float> f_ref(static_cast<size_t>(e - b)), f(static_cast<size_t>(e - b));
                ssvq::decode_s8_ref(W.w, b, e, q_ref.data());
                s.decode_s8(W.w, b, e, q.data());
                ssvq::decode_f32_ref(W.w, b, e, f_ref.data());
                s.decode_f32(W.w, b, e, f.data());
                FCHECK(same_bits(q, q_ref) && same_bits(f, f_ref), "%s decode k=%" PRId64 " d=%" PRId64 " [%" PRId64
                       ", %" PRId64 ")", s.name, k, d, b, e);
            }
        }
    }
    // min / max: the same values as the scalar loop (the quantization parameters depend on them)
    for (int64_t n : {1, 7, 8, 9, 33, 100}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng);
        for (float start : {0.f, 0.25f}) {
            float lo1 = start, hi1 = start, lo2 = start, hi2 = start;
            ssvq::minmax_ref(x.data(), n, &lo1, &hi1);
            s.minmax(x.data(), n, &lo2, &hi2);
            FCHECK(lo1 == lo2 && hi1 == hi2, "%s minmax n=%" PRId64 ": [%g, %g] vs ref [%g, %g]", s.name, n, lo2,
                   hi2, lo1, hi1);
        }
    }
    // activations: quantize / pack / transpose (2 sigma: a good share is clamped at 0 / 255 and +-127)
    for (int64_t K : {1, 5, 16, 67}) {
        for (int64_t P : {1, 15, 33}) {
            std::vector<float> x(static_cast<size_t>(K * P));
            for (float& v : x) v = 2.f * normal(rng);
            const ssvq::U8Quant q = ssvq::u8_quant_params(-1.5f, 2.f);
            const int64_t ldq = (P + 15) / 16 * 16, Kq = (K + 3) / 4;
            std::vector<uint8_t> a(static_cast<size_t>(Kq * ldq * 4)), b(a.size());
            ssvq::pack_u8_quads_ref(x.data(), P, K, P, q.inv_scale, q.zero_point, a.data(), ldq);
            s.pack_u8_quads(x.data(), P, K, P, q.inv_scale, q.zero_point, b.data(), ldq);
            FCHECK(same_bits(a, b), "%s pack_u8_quads K=%" PRId64 " P=%" PRId64, s.name, K, P);
            const int64_t Kpad = (K + 63) / 64 * 64;
            std::vector<int8_t> xs1(static_cast<size_t>(Kpad)), xs2(static_cast<size_t>(Kpad));
            std::vector<uint8_t> xu1(static_cast<size_t>(Kpad)), xu2(static_cast<size_t>(Kpad));
            ssvq::quantize_row_s8_ref(x.data(), K, Kpad, 40.f, xs1.data(), xu1.data());
            s.quantize_row_s8(x.data(), K, Kpad, 40.f, xs2.data(), xu2.data());
            FCHECK(same_bits(xs1, xs2) && same_bits(xu1, xu2), "%s quantize_row_s8 K=%" PRId64, s.name, K);
        }
    }
    for (int64_t rows : {1, 16, 37}) {
        for (int64_t Kq : {1, 16, 35}) {
            std::vector<int8_t> w(static_cast<size_t>(rows * Kq * 4));
            for (int8_t& v : w) v = int8_t(rng());
            const int64_t ldn = (rows + 15) / 16 * 16;
            std::vector<int8_t> a(static_cast<size_t>(Kq * ldn * 4)), b(a.size());
            ssvq::transpose_quads_ref(w.data(), Kq * 4, rows, Kq, a.data(), ldn);
            s.transpose_quads(w.data(), Kq * 4, rows, Kq, b.data(), ldn);
            FCHECK(same_bits(a, b), "%s transpose_quads rows=%" PRId64 " Kq=%" PRId64, s.name, rows, Kq);
        }
    }
    // int8 tiles: bit-exact; float tiles: tolerance. The last round takes extreme values only (weights +-127,
    // activations 0 / 255), the largest products an int8 kernel may have to sum.
    for (int round = 0; round < 4; ++round) {
        const ssvq::Activation act = round == 1 ? ssvq::Activation::kRelu : round == 2 ? ssvq::Activation::kRelu6
                                                                                      : ssvq::Activation::kNone;
        const bool extreme = round == 3;
        const int64_t rows = 1 + int64_t(rng() % 30), K = 1 + int64_t(rng() % 70), P = 1 + int64_t(rng() % 90);
        const int64_t Kq = (K + 3) / 4, ldq = (P + 15) / 16 * 16;
        std::vector<int8_t> w(static_cast<size_t>(rows * Kq * 4));
        for (int8_t& v : w) v = extreme ? int8_t(rng() & 1 ? 127 : -127) : int8_t(int(rng() % 255) - 127);
        std::vector<uint8_t> xq(static_cast<size_t>(Kq * ldq * 4));
        for (uint8_t& v : xq) v = extreme ? uint8_t(rng() & 1 ? 255 : 0) : uint8_t(rng());
        std::vector<int32_t> comp(static_cast<size_t>(rows));
        std::vector<float> mult(static_cast<size_t>(rows)), bias(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) {
            comp[size_t(r)] = int32_t(rng() % 5000);
            mult[size_t(r)] = 1e-3f * (1.f + float(rng() % 100));
            bias[size_t(r)] = normal(rng);
        }
        std::vector<float> y1(static_cast<size_t>(rows * P)), y2(y1.size());
        ssvq::ConvU8TileArgs ca{w.data(), Kq * 4, xq.data(), ldq, y1.data(), P, rows, Kq, P, comp.data(),
                                mult.data(), bias.data(), act};
        ssvq::conv_u8_tile_ref(ca);
        ca.y = y2.data();
        s.conv_u8_tile(ca);
        FCHECK(same_bits(y1, y2), "%s conv_u8_tile rows=%" PRId64 " K=%" PRId64 " P=%" PRId64, s.name, rows, K, P);

        const int64_t ldn = (rows + 15) / 16 * 16, M = 1 + int64_t(rng() % 9);
        std::vector<int8_t> wt(static_cast<size_t>(Kq * ldn * 4));
        ssvq::transpose_quads_ref(w.data(), Kq * 4, rows, Kq, wt.data(), ldn);
        std::vector<uint8_t> xu(static_cast<size_t>(M * Kq * 4));
        for (uint8_t& v : xu) v = extreme ? uint8_t(rng() & 1 ? 255 : 1) : uint8_t(rng());  // int8 +-127, + 128
        std::vector<float> xscale(static_cast<size_t>(M), 0.01f), g1(static_cast<size_t>(M * rows)), g2(g1.size());
        ssvq::GemmU8TileArgs ga{xu.data(), Kq * 4, wt.data(), ldn, g1.data(), rows, M, rows, Kq, comp.data(),
                                xscale.data(), mult.data(), bias.data(), act};
        ssvq::gemm_u8_tile_ref(ga);
        ga.y = g2.data();
        s.gemm_u8_tile(ga);
        FCHECK(same_bits(g1, g2), "%s gemm_u8_tile M=%" PRId64 " N=%" PRId64, s.name, M, rows);

        std::vector<float> wf(static_cast<size_t>(rows * K)), xf(static_cast<size_t>(K * P)), f1(static_cast<size_t>(rows * P)), f2(f1.size());
        for (float& v : wf) v = normal(rng);
        for (float& v : xf) v = normal(rng);
        ssvq::ConvF32TileArgs fa{wf.data(), K, xf.data(), P, f1.data(), P, rows, K, P, mult.data(), bias.data(), act};
        ssvq::conv_f32_tile_ref(fa);
        fa.y = f2.data();
        s.conv_f32_tile(fa);
        FCHECK(close(f2, f1, 5.f * float(K)), "%s conv_f32_tile", s.name);

        std::vector<float> xm(static_cast<size_t>(M * K)), h1(static_cast<size_t>(M * rows)), h2(h1.size());
        for (float& v : xm) v = normal(rng);
        ssvq::GemmF32Args fg{xm.data(), K, wf.data(), K, h1.data(), rows, M, rows, K, mult.data(), bias.data(), act};
        ssvq::gemm_f32_ref(fg);
        fg.y = h2.data();
        s.gemm_f32(fg);
        FCHECK(close(h2, h1, 5.f * float(K)), "%s gemm_f32", s.name);
    }
    // depthwise: strides 1..3, paddings, dilations, 3x3 and 3x5 taps
    for (int64_t sw : {1, 2, 3, 1, 2}) {
        const bool wide = rng() & 1;
        const int64_t H = 3 + int64_t(rng() % 20), W = 9 + int64_t(rng() % 40), kh = 3, kw = wide ? 5 : 3,
                      dh = 1 + (sw == 3), dw = wide ? 2 : 1, pt = 1, pl = int64_t(rng() % 3);
        const int64_t Ho = (H + 2 * pt - dh * (kh - 1) - 1) / sw + 1, Wo = (W + 2 * pl - dw * (kw - 1) - 1) / sw + 1;
        std::vector<float> x(static_cast<size_t>(H * W)), taps(static_cast<size_t>(kh * kw)),
            y1(static_cast<size_t>(Ho * Wo)), y2(y1.size());
        for (float& v : x) v = normal(rng);
        for (float& v : taps) v = normal(rng);
        std::vector<float> scratch(static_cast<size_t>(ssvq::dwconv_scratch_floats(Ho, Wo, kh, kw, sw, sw, dh, dw)));
        ssvq::DwConvArgs a{x.data(), y1.data(), taps.data(), H, W, Ho, Wo, kh, kw, sw, sw, pt, pl, dh, dw, 0.5f,
                           0.1f, ssvq::Activation::kRelu6, scratch.data()};
        ssvq::dwconv_f32_ref(a);
        a.y = y2.data();
        s.dwconv_f32(a);
        FCHECK(close(y2, y1, 50.f), "%s dwconv_f32 stride %" PRId64, s.name, sw);
    }
    // the GEMV lookup-table kernel computes the same integers as the tile path
    if (s.gemv_lut != nullptr) {
        for (int round = 0; round < 5; ++round) {  // bits 1..4, then bits 4 with extreme values (|q| = |x| = 127)
            const int64_t bits = round < 4 ? round + 1 : 4;
            const bool extreme = round == 4;
            const int64_t N = 1 + int64_t(rng() % 40), K = 64 * (1 + int64_t(rng() % 4)), M = 1 + int64_t(rng() % 6);
            Weight W = random_weight(rng, N * K, int64_t(1) << bits, 8, true);
            if (extreme) std::fill(W.cq.begin(), W.cq.end(), int8_t(127));
            std::vector<int8_t> xs(static_cast<size_t>(M * K));
            for (int8_t& v : xs) v = extreme ? int8_t(rng() & 1 ? 127 : -127) : int8_t(int(rng() % 255) - 127);
            std::vector<float> xscale(static_cast<size_t>(M)), wscale(static_cast<size_t>(N)), bias(static_cast<size_t>(N)), y1(static_cast<size_t>(M * N)), y2(y1.size());
            for (float& v : xscale) v = 0.01f + 0.001f * float(rng() % 10);
            for (float& v : wscale) v = 0.02f;
            for (float& v : bias) v = normal(rng);
            ssvq::GemvLutArgs a{&W.w, xs.data(), K, y1.data(), N, M, K, xscale.data(), wscale.data(), bias.data(),
                                ssvq::Activation::kNone};
            ssvq::gemv_lut_ref(a, 0, N);
            a.y = y2.data();
            s.gemv_lut(a, 0, N);
            FCHECK(ssvq::gemv_lut_supported(W.w, K) && same_bits(y1, y2), "%s gemv_lut bits=%" PRId64 " N=%" PRId64
                   " K=%" PRId64 " M=%" PRId64, s.name, bits, N, K, M);
        }
    }
}

}  // namespace

int run_fused_kernel_tests(int* checks) {
    std::mt19937_64 rng(99);
    size_t count = 0;
    const ssvq::FusedKernelSet* sets = ssvq::fused_kernel_sets(&count);
    for (size_t i = 0; i < count; ++i)
        if (sets[i].supported())
            for (int rep = 0; rep < 3; ++rep) test_set(sets[i], rng);
    *checks += g_checks;
    return g_failures;
}
