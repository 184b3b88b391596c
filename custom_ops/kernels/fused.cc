// Run-time choice of the fused kernel set: a table of sets, best first, each with its CPU test; `ref` always works.
// The SIMD sets are compiled for their architecture only (CMakeLists.txt defines SSVQ_X86_64_KERNELS or
// SSVQ_AARCH64_KERNELS).
#include <cstring>
#include <vector>

#include "fused.h"

namespace ssvq {

#if defined(SSVQ_X86_64_KERNELS)
// The avx2 set's functions (fused_avx2.cc, generated from fused_generic.inc).
#define SSVQ_DECLARE(name) decltype(name##_ref) name##_avx2;
SSVQ_DECLARE(decode_s8)
SSVQ_DECLARE(decode_f32)
SSVQ_DECLARE(minmax)
SSVQ_DECLARE(pack_u8_quads)
SSVQ_DECLARE(quantize_row_s8)
SSVQ_DECLARE(transpose_quads)
SSVQ_DECLARE(conv_f32_tile)
SSVQ_DECLARE(conv_u8_tile)
SSVQ_DECLARE(dwconv_f32)
SSVQ_DECLARE(gemm_f32)
SSVQ_DECLARE(gemm_u8_tile)
SSVQ_DECLARE(requantize_u8)
SSVQ_DECLARE(dwconv_u8_nhwc)
#undef SSVQ_DECLARE
#endif

namespace {

bool always() { return true; }

#if defined(SSVQ_X86_64_KERNELS)
// The avx2 set has no hand-written GEMV lookup kernel: batch-1 Gemm takes its int8 tile path there.
const FusedKernelSet kAvx2{"avx2",          cpu_has_avx2,       decode_s8_avx2,      decode_f32_avx2,
                           minmax_avx2,     pack_u8_quads_avx2, quantize_row_s8_avx2, transpose_quads_avx2,
                           conv_f32_tile_avx2, conv_u8_tile_avx2, dwconv_f32_avx2,   gemm_f32_avx2,
                           gemm_u8_tile_avx2, nullptr,           true,               requantize_u8_avx2,
                           dwconv_u8_nhwc_avx2};
#endif
const FusedKernelSet kRef{"ref",          always,            decode_s8_ref,      decode_f32_ref,
                          minmax_ref,     pack_u8_quads_ref, quantize_row_s8_ref, transpose_quads_ref,
                          conv_f32_tile_ref, conv_u8_tile_ref, dwconv_f32_ref,   gemm_f32_ref,
                          gemm_u8_tile_ref, gemv_lut_ref,    true,               requantize_u8_ref,
                          dwconv_u8_nhwc_ref};

const std::vector<FusedKernelSet>& sets() {
    static const std::vector<FusedKernelSet> all = [] {
        std::vector<FusedKernelSet> v;
#if defined(SSVQ_X86_64_KERNELS)
        v.push_back(avx512_fused_kernels());
        v.push_back(kAvx2);
#endif
#if defined(SSVQ_AARCH64_KERNELS)
        v.push_back(neon_dotprod_fused_kernels());
        v.push_back(neon_fused_kernels());
#endif
        v.push_back(kRef);
        return v;
    }();
    return all;
}

}  // namespace

const FusedKernelSet* fused_kernel_sets(size_t* count) {
    *count = sets().size();
    return sets().data();
}

const FusedKernelSet& best_fused_kernels() {
    static const FusedKernelSet& chosen = [] () -> const FusedKernelSet& {
        for (const FusedKernelSet& s : sets())
            if (s.supported()) return s;
        return sets().back();
    }();
    return chosen;
}

const FusedKernelSet* find_fused_kernels(const char* name) {
    for (const FusedKernelSet& s : sets())
        if (std::strcmp(s.name, name) == 0) return &s;
    return nullptr;
}

}  // namespace ssvq
