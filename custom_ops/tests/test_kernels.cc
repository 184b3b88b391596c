// Standalone kernel tests (no ONNX Runtime): every SIMD kernel set against the scalar `_ref` kernels on randomised
// layers, a hand-packed layer against its known decode, and the format validators against bad sizes and padding.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "decode.h"
#include "fused.h"
#include "ssvq_format.h"

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond, ...)                                              \
    do {                                                              \
        ++g_checks;                                                   \
        if (!(cond)) {                                                \
            ++g_failures;                                             \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                        \
            std::fprintf(stderr, "\n");                               \
        }                                                             \
    } while (0)

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

struct Layer {
    int64_t k, d, n_vec;
    int bits;
    std::vector<float> codebook;   // [k, d]
    std::vector<uint8_t> indices;  // exact size, so ASan catches any read past the end
    std::vector<uint8_t> signs;    // exact size; empty = VQ
};

void put_bits(std::vector<uint8_t>& stream, int64_t first, int bits, uint32_t value) {
    for (int t = 0; t < bits; ++t)
        if ((value >> t) & 1u) stream[(first + t) >> 3] |= uint8_t(1u << ((first + t) & 7));
}

Layer random_layer(std::mt19937_64& rng, int64_t k, int64_t d, int64_t n_vec, bool with_signs) {
    Layer L{k, d, n_vec, ssvq::format::index_bits(k), {}, {}, {}};
    L.codebook.resize(size_t(k * d));
    for (float& x : L.codebook) {  // arbitrary bit patterns: the kernels must move bits, never do arithmetic
        const uint32_t u = uint32_t(rng());
        std::memcpy(&x, &u, 4);
    }
    L.indices.assign(size_t(ssvq::format::packed_nbytes(n_vec, L.bits)), 0);
    for (int64_t v = 0; v < n_vec; ++v) put_bits(L.indices, v * L.bits, L.bits, uint32_t(rng() % uint64_t(k)));
    if (with_signs) {
        L.signs.assign(size_t(ssvq::format::sign_nbytes(n_vec * d)), 0);
        for (int64_t e = 0; e < n_vec * d; ++e) put_bits(L.signs, e, 1, uint32_t(rng() & 1));
    }
    return L;
}

ssvq::DecodeArgs args_of(const Layer& L, float* out) {
    return {L.codebook.data(), L.indices.data(), int64_t(L.indices.size()),
            L.signs.empty() ? nullptr : L.signs.data(), L.bits, L.d, L.n_vec, out};
}

void compare_kernels(const Layer& L, const char* what) {
    const size_t n = size_t(L.n_vec * L.d);
    std::vector<float> want(n);
    ssvq::decode_ref(args_of(L, want.data()));
    size_t count = 0;
    const ssvq::KernelSet* sets = ssvq::kernel_sets(&count);
    for (size_t i = 0; i < count; ++i) {
        if (!sets[i].supported()) continue;
        std::vector<float> got(n + 1);
        const uint32_t canary = 0x7fc0dead;
        std::memcpy(&got[n], &canary, 4);
        sets[i].decode(args_of(L, got.data()));
        uint32_t tail;
        std::memcpy(&tail, &got[n], 4);
        const bool same = std::memcmp(want.data(), got.data(), n * 4) == 0;
        CHECK(same && tail == canary, "%s: kernel %s differs from ref (k=%" PRId64 " d=%" PRId64 " n_vec=%" PRId64
              " signs=%d, canary %s)", what, sets[i].name, L.k, L.d, L.n_vec, int(!L.signs.empty()),
              tail == canary ? "intact" : "overwritten");
    }
}

void test_random_layers() {
    std::mt19937_64 rng(1234);
    for (int bits = 1; bits <= 16; ++bits) {
        for (int64_t d = 1; d <= 16; ++d) {
            for (int rep = 0; rep < 3; ++rep) {
                // Sizes around the SIMD group sizes (8 and 16 vectors) and the byte boundaries, plus a larger one.
                const int64_t n_vec = rep == 0 ? int64_t(1 + rng() % 40) : rep == 1 ? int64_t(100 + rng() % 300)
                                                                                     : int64_t(2000 + rng() % 3000);
                for (bool signs : {true, false})
                    compare_kernels(random_layer(rng, int64_t(1) << bits, d, n_vec, signs), "random");
            }
        }
    }
    for (int64_t d : {17, 24, 31, 32, 33, 64}) {  // d > 16 goes through the generic multi-chunk path
        for (int bits : {1, 4, 9, 16}) {
            for (bool signs : {true, false})
                compare_kernels(random_layer(rng, int64_t(1) << bits, d, int64_t(1 + rng() % 500), signs), "large d");
        }
    }
    for (int64_t n_vec = 1; n_vec <= 70; ++n_vec) {  // every tail length for the grouped paths
        for (int64_t d : {1, 2, 4, 8, 16, 3}) {
            for (int bits : {1, 3, 4, 8, 11, 16})
                compare_kernels(random_layer(rng, int64_t(1) << bits, d, n_vec, n_vec % 2 == 0), "tails");
        }
    }
}

void test_known_layer() {
    // k=4 (2-bit codes), d=2, 5 vectors = 10 weights. Codes 3,0,2,1,3, LSB-first: byte 0 = 01 10 00 11 (codes 3..0 from the top), byte 1 = 000000 11.
    Layer L{4, 2, 5, 2, {1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f}, {}, {}};
    L.indices = {uint8_t(0b01100011), uint8_t(0b00000011)};
    L.signs = {uint8_t(0b00100001), uint8_t(0b00000010)};  // weights 0, 5 and 9 negative
    const float want[10] = {-7.f, 8.f, 1.f, 2.f, 5.f, -6.f, 3.f, 4.f, 7.f, -8.f};
    size_t count = 0;
    const ssvq::KernelSet* sets = ssvq::kernel_sets(&count);
    for (size_t i = 0; i < count; ++i) {
        if (!sets[i].supported()) continue;
        float got[10];
        sets[i].decode(args_of(L, got));
        CHECK(std::memcmp(got, want, sizeof(want)) == 0, "known layer decoded wrongly by %s", sets[i].name);
    }
}

void test_widen_f16() {
    std::vector<uint16_t> all(65536 + 7);
    for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
    std::vector<float> want(all.size());
    ssvq::widen_f16_ref(all.data(), want.data(), int64_t(all.size()));
    const float one = 1.0f, tiny = 5.9604644775390625e-08f, max_half = 65504.0f;
    CHECK(std::memcmp(&want[0x3c00], &one, 4) == 0, "fp16 1.0");
    CHECK(std::memcmp(&want[0x0001], &tiny, 4) == 0, "fp16 smallest subnormal");
    CHECK(std::memcmp(&want[0x7bff], &max_half, 4) == 0, "fp16 max");
// The compiler's own half -> float conversion, an independent oracle: _Float16 (GCC 12 C++ on x86-64), __fp16 on
// AArch64 (where GCC 12's C++ front end defines __FLT16_MAX__ but has no _Float16).
#if defined(__aarch64__)
#define SSVQ_TEST_HALF __fp16
#elif defined(__FLT16_MAX__)
#define SSVQ_TEST_HALF _Float16
#endif
#ifdef SSVQ_TEST_HALF
    for (uint32_t h = 0; h < 65536; ++h) {
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) continue;  // NaN payloads: checked by the static_asserts
        SSVQ_TEST_HALF x;
        const uint16_t hb = uint16_t(h);
        std::memcpy(&x, &hb, 2);
        const float f = float(x);
        CHECK(std::memcmp(&f, &want[h], 4) == 0, "fp16 0x%04x widened wrongly", h);
    }
#endif
    size_t count = 0;
    const ssvq::KernelSet* sets = ssvq::kernel_sets(&count);
    for (size_t i = 0; i < count; ++i) {
        if (!sets[i].supported()) continue;
        for (int64_t n : {int64_t(all.size()), int64_t(1), int64_t(15), int64_t(17), int64_t(33)}) {
            const size_t first = n > 1000 ? 0 : 0x7c00 - 8;  // short runs start just below inf / NaN
            std::vector<float> got(static_cast<size_t>(n));
            sets[i].widen_f16(all.data() + first, got.data(), n);
            CHECK(std::memcmp(got.data(), want.data() + first, size_t(n) * 4) == 0,
                  "widen_f16 of kernel %s differs from ref (n=%" PRId64 ")", sets[i].name, n);
        }
    }
}

void test_validation() {
    using namespace ssvq::format;
    for (int64_t k : {int64_t(2), int64_t(4), int64_t(256), int64_t(65536)}) CHECK(check_k(k).empty(), "k=%" PRId64 " rejected", k);
    for (int64_t k : {int64_t(-2), int64_t(0), int64_t(1), int64_t(3), int64_t(6), int64_t(100), int64_t(131072), int64_t(1) << 40}) {
        const std::string e = check_k(k);
        CHECK(contains(e, "expected k a power of two") && contains(e, ("got k=" + std::to_string(k)).c_str()),
              "k=%" PRId64 " accepted or badly reported: '%s'", k, e.c_str());
    }
    int64_t n = 0;
    CHECK(check_shape_d({4, 3, 3, 3}, 9, &n).empty() && n == 108, "valid conv shape rejected");
    CHECK(check_shape_d({}, 1, &n).empty() && n == 1, "scalar shape rejected");
    CHECK(contains(check_shape_d({4, 3, 3, 3}, 5, &n), "expected d dividing the N=108"), "d=5 of 108 accepted");
    CHECK(contains(check_shape_d({4, 3}, 0, &n), "expected d >= 1, got d=0"), "d=0 accepted");
    CHECK(contains(check_shape_d({4, 0}, 1, &n), "non-empty"), "empty weight accepted");
    CHECK(contains(check_shape_d({4, -3}, 1, &n), "non-negative"), "negative dim accepted");
    CHECK(contains(check_shape_d({int64_t(1) << 30, int64_t(1) << 30}, 1, &n), "at most"), "huge shape accepted");
    CHECK(check_format_version(1).empty() && contains(check_format_version(2), "got 2"), "format_version");
    CHECK(check_layout("flat").empty() && contains(check_layout("blocked"), "got \"blocked\""), "layout");
    CHECK(check_codebook_shape({16, 8}, 16, 8).empty(), "codebook [16, 8] rejected");
    CHECK(contains(check_codebook_shape({16, 4}, 16, 8), "expected codebook of shape [16, 8], got [16, 4]"), "cb");
    CHECK(contains(check_codebook_shape({128}, 16, 8), "got [128]"), "1-D codebook accepted");

    // 10 codes of 3 bits = 30 bits -> 4 bytes with 2 padding bits.
    std::vector<uint8_t> s(4, 0xff);
    s[3] = 0x3f;
    CHECK(check_stream("indices", s.data(), 4, 10, 3).empty(), "valid stream rejected");
    CHECK(contains(check_stream("indices", s.data(), 3, 10, 3), "expected indices of 4 bytes (10 x 3-bit values), got 3"),
          "short stream accepted");
    std::vector<uint8_t> longer(5, 0);
    CHECK(contains(check_stream("indices", longer.data(), 5, 10, 3), "got 5 bytes"), "long stream accepted");
    for (uint8_t bad : {uint8_t(0x40), uint8_t(0x80), uint8_t(0xff)}) {
        s[3] = bad;
        CHECK(contains(check_stream("signs", s.data(), 4, 10, 3), "expected zero padding bits in the last byte of signs"),
              "padding 0x%02x accepted", bad);
    }
    std::vector<uint8_t> full(2, 0xff);  // 16 one-bit values: no padding, every byte value valid
    CHECK(check_stream("signs", full.data(), 2, 16, 1).empty(), "full stream rejected");
    CHECK(index_nbytes(108, 9, 16) == 6 && sign_nbytes(108) == 14, "byte sizes");
}

}  // namespace

int run_fused_kernel_tests(int* checks);  // test_fused_kernels.cc

int main() {
    std::printf("kernel sets:");
    size_t count = 0;
    const ssvq::KernelSet* sets = ssvq::kernel_sets(&count);
    for (size_t i = 0; i < count; ++i) std::printf(" %s%s", sets[i].name, sets[i].supported() ? "" : "(unsupported)");
    std::printf("; best: %s\n", ssvq::best_kernels().name);
    test_known_layer();
    test_widen_f16();
    test_validation();
    test_random_layers();
    g_failures += run_fused_kernel_tests(&g_checks);
    std::printf("fused kernel sets:");
    const ssvq::FusedKernelSet* fused = ssvq::fused_kernel_sets(&count);
    for (size_t i = 0; i < count; ++i) std::printf(" %s%s", fused[i].name, fused[i].supported() ? "" : "(unsupported)");
    std::printf("\n%d checks, %d failures\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
