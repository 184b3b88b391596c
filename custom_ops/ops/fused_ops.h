// The fused ops SSVQConv and SSVQGemm (docs/ssvq_op.md), one OrtCustomOp per registration so that each session's
// configuration (kernel set, report file) reaches its kernels. Registered by register.cc.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <memory>

#include "fused_common.h"

namespace ssvq {

std::shared_ptr<OrtCustomOp> make_ssvq_conv_op(const OpConfig& config);
std::shared_ptr<OrtCustomOp> make_ssvq_gemm_op(const OpConfig& config);

}  // namespace ssvq
