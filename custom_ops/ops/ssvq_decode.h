// The SSVQDecode custom op (docs/ssvq_op.md), registered by register.cc.
#pragma once

#include <onnxruntime_cxx_api.h>

namespace ssvq {

inline constexpr const char* kOpDomain = "ai.ssvq";
inline constexpr int kOpDomainVersion = 1;

// The op's OrtCustomOp, alive for the lifetime of the library.
OrtCustomOp* ssvq_decode_op();

}  // namespace ssvq
