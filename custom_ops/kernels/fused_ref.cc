// The scalar reference set of fused kernels (kernels/fused_generic.inc compiled for the baseline target), the quant
// parameter rules shared by every set, and the registry of fused kernel sets.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fused.h"

namespace ssvq {

#define SSVQ_GENERIC(name) name##_ref
#include "fused_generic.inc"
#undef SSVQ_GENERIC

U8Quant u8_quant_params(float lo, float hi) {
    lo = lo < 0.f ? lo : 0.f;
    hi = hi > 0.f ? hi : 0.f;
    const float range = hi - lo;
    if (!(range > 0.f) || !std::isfinite(range)) return {1.f, 1.f, 0};
    const float inv = 255.f / range;
    const float zp = std::nearbyint(-lo * inv);
    return {range / 255.f, inv, int32_t(zp < 0.f ? 0.f : zp > 255.f ? 255.f : zp)};
}

S8Quant s8_quant_params(float absmax) {
    if (!(absmax > 0.f) || !std::isfinite(absmax)) return {1.f, 1.f};
    return {absmax / 127.f, 127.f / absmax};
}

bool gemv_lut_supported(const PackedWeight& w, int64_t K) {
    return w.signs != nullptr && w.d == 8 && w.bits <= 4 && K % 64 == 0;
}

}  // namespace ssvq
