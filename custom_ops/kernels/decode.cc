// Run-time kernel dispatch: a table of kernel sets, best first, each with its CPUID test; `_ref` always works.
#include "decode.h"

namespace ssvq {
namespace {

bool always() { return true; }

const KernelSet kSets[] = {
    {"avx512", cpu_has_avx512, decode_avx512, widen_f16_avx512},
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
