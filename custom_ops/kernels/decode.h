// SSVQ decode kernels: a scalar `_ref` kernel, SIMD kernels with the same contract, and a run-time dispatch.
// Inputs must already be validated (ssvq_format.h): the kernels trust the sizes and never check them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ssvq {

struct DecodeArgs {
    const float* codebook;  // [k, d] float32 (fp16 codebooks are widened first, see widen_f16)
    const uint8_t* indices; // [index_nbytes] n_vec codes of `bits` bits, LSB-first
    int64_t index_bytes;    // size of `indices`; SIMD kernels never read past it
    const uint8_t* signs;   // [ceil(n_vec * d / 8)] one bit per weight, 1 = negative; nullptr = VQ
    int bits;               // log2(k), 1..16
    int64_t d;              // sub-vector length >= 1
    int64_t n_vec;          // number of codes; the output holds n_vec * d floats
    float* out;             // [n_vec * d]
};

// Decodes vectors [v_begin, v_end): out[v*d + j] = codebook[code(v), j], sign bit flipped where signs says so.
void decode_range_ref(const DecodeArgs& args, int64_t v_begin, int64_t v_end);
void decode_ref(const DecodeArgs& args);
// Exact fp16 -> fp32 widening of n values (bit patterns in, floats out).
void widen_f16_ref(const uint16_t* src, float* dst, int64_t n);

// AVX-512 (F, BW, DQ, VL) kernels, x86-64 only (decode_avx512.cc); only call them where cpu_has_avx512() is true.
void decode_avx512(const DecodeArgs& args);
void widen_f16_avx512(const uint16_t* src, float* dst, int64_t n);
bool cpu_has_avx512();

// NEON kernels, AArch64 only (decode_neon.cc; AdvSIMD is baseline there, so always supported).
void decode_neon(const DecodeArgs& args);
// Vectors [v_begin, v_end) of args (codes and signs read at their stream positions) into dst[0, (v_end - v_begin) * d):
// the fused kernels' weight-tile decode.
void decode_range_neon(const DecodeArgs& args, int64_t v_begin, int64_t v_end, float* dst);
void widen_f16_neon(const uint16_t* src, float* dst, int64_t n);

struct KernelSet {
    const char* name;
    bool (*supported)();
    void (*decode)(const DecodeArgs&);
    void (*widen_f16)(const uint16_t*, float*, int64_t);
};

// All kernel sets, best first; the last one is the portable `_ref` set.
const KernelSet* kernel_sets(size_t* count);
// The best kernel set this CPU supports (chosen once, by CPUID on x86-64).
const KernelSet& best_kernels();

}  // namespace ssvq
