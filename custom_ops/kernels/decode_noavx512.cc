// Stand-ins for the AVX-512 kernels on targets that are not x86-64: never supported, so never dispatched to.
#include "decode.h"

namespace ssvq {

bool cpu_has_avx512() { return false; }
void decode_avx512(const DecodeArgs& args) { decode_ref(args); }
void widen_f16_avx512(const uint16_t* src, float* dst, int64_t n) { widen_f16_ref(src, dst, n); }

}  // namespace ssvq
