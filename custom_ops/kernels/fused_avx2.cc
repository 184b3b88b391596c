// The `avx2` set: the reference source (fused_generic.inc) compiled under target("avx2,fma,bmi2"), so GCC
// vectorises the pixel and column loops with 256-bit registers. Standard headers come first, outside the target
// pragma, so no inline library function is compiled for AVX2 here (it could otherwise be picked by the linker for
// the whole library and run on a CPU without AVX2). Built for x86-64 only (CMakeLists.txt).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fused.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi2")

namespace ssvq {

#define SSVQ_GENERIC(name) name##_avx2
#include "fused_generic.inc"
#undef SSVQ_GENERIC

}  // namespace ssvq

#pragma GCC pop_options

namespace ssvq {

bool cpu_has_avx2() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
}

}  // namespace ssvq
