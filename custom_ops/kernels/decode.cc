// Run-time kernel dispatch: a table of kernel sets, best first, each with its CPU test; `_ref` always works.
// The SIMD sets are compiled for their architecture only (CMakeLists.txt defines SSVQ_X86_64_KERNELS or
// SSVQ_AARCH64_KERNELS), so no other target needs stand-ins for them.
#include "decode.h"

namespace ssvq {
namespace {

bool always() { return true; }

const KernelSet kSets[] = {
#if defined(SSVQ_X86_64_KERNELS)
    {"avx512", cpu_has_avx512, decode_avx512, widen_f16_avx512},
#endif
#if defined(SSVQ_AARCH64_KERNELS)
    {"neon", always, decode_neon, widen_f16_neon},  // AdvSIMD is baseline on ARMv8-A
#endif
    {"ref", always, decode_ref, widen_f16_ref},
};

}  // namespace

const KernelSet* kernel_sets(size_t* count) {
    *count = sizeof(kSets) / sizeof(kSets[0]);
    return kSets;
}

const KernelSet& best_kernels() {
    static const KernelSet& chosen = [] () -> const KernelSet& {
        for (const KernelSet& s : kSets)
            if (s.supported()) return s;
        return kSets[sizeof(kSets) / sizeof(kSets[0]) - 1];
    }();
    return chosen;
}

}  // namespace ssvq
