// ssvq_tvm_runner: run a model exported by `ssvq tvm` (a Relax VM shared library) with the TVM C++ runtime only
// (libtvm_runtime + libtvm_ffi, no Python, no compiler). Uses only the tvm-ffi headers: the pip wheel's
// tvm/runtime headers are incomplete (tensor.h includes tvm/support/io.h, which the wheel does not ship).
//
//   ssvq_tvm_runner MODEL.so INPUT.bin N,C,H,W OUTPUT.bin [RUNS] [THREADS]
//
// INPUT.bin holds the float32 input in row-major order; OUTPUT.bin receives the float32 output. With RUNS > 0 the
// model is run that many more times and the median and p90 wall-clock latency are printed. Prints one JSON line.
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr int kPooledAllocator = 2;  // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR

struct AlignedCPUAlloc {  // 64-byte aligned host memory, as TVM's own CPU allocator provides
  void AllocData(DLTensor* tensor) {
    void* data = nullptr;
    if (posix_memalign(&data, 64, tvm::ffi::GetDataSize(*tensor)) != 0) throw std::bad_alloc();
    tensor->data = data;
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

std::vector<int64_t> ParseShape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) shape.push_back(std::stoll(item));
  return shape;
}

std::vector<char> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  return std::vector<char>((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

double Percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(q * (values.size() - 1) + 0.5);
  return values[index];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: " << argv[0] << " MODEL.so INPUT.bin N,C,H,W OUTPUT.bin [RUNS] [THREADS]\n";
    return 2;
  }
  const std::string model_path = argv[1], input_path = argv[2], output_path = argv[4];
  const std::vector<int64_t> shape = ParseShape(argv[3]);
  const int runs = argc > 5 ? std::stoi(argv[5]) : 0;
  const int threads = argc > 6 ? std::stoi(argv[6]) : 1;
  try {
    using tvm::ffi::Function;
    using tvm::ffi::Module;
    using tvm::ffi::Tensor;
    if (auto config = Function::GetGlobal("runtime.config_threadpool")) (*config)(1, threads);
    Module library = Module::LoadFromFile(model_path);
    Module vm = library->GetFunction("vm_load_executable").value()().cast<Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    Function main_fn = vm->GetFunction("main").value();

    const DLDevice cpu{kDLCPU, 0};
    Tensor input = Tensor::FromNDAlloc(AlignedCPUAlloc(), tvm::ffi::Shape(shape), DLDataType{kDLFloat, 32, 1}, cpu);
    std::vector<char> bytes = ReadFile(input_path);
    size_t expected = 4;
    for (int64_t d : shape) expected *= static_cast<size_t>(d);
    if (bytes.size() != expected) {
      throw std::runtime_error("input " + input_path + ": expected " + std::to_string(expected) + " bytes, got " +
                               std::to_string(bytes.size()));
    }
    std::memcpy(input.data_ptr(), bytes.data(), bytes.size());

    Tensor output = main_fn(input).cast<Tensor>();
    if (output.dtype().code != kDLFloat || output.dtype().bits != 32 || output.device().device_type != kDLCPU) {
      throw std::runtime_error("expected a float32 CPU output tensor");
    }
    std::string out_shape;
    for (int i = 0; i < output.ndim(); ++i) out_shape += (i ? "," : "") + std::to_string(output.shape()[i]);
    const size_t out_bytes = static_cast<size_t>(output.numel()) * 4;
    std::ofstream(output_path, std::ios::binary)
        .write(static_cast<const char*>(output.data_ptr()), static_cast<std::streamsize>(out_bytes));

    std::vector<double> times_ms;
    for (int i = 0; i < runs; ++i) {
      auto start = std::chrono::steady_clock::now();
      Tensor result = main_fn(input).cast<Tensor>();
      times_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::printf("{\"output_shape\": [%s], \"runs\": %d, \"threads\": %d", out_shape.c_str(), runs, threads);
    if (runs > 0) {
      std::printf(", \"median_ms\": %.4f, \"p90_ms\": %.4f", Percentile(times_ms, 0.5), Percentile(times_ms, 0.9));
    }
    std::printf("}\n");
  } catch (const std::exception& error) {
    std::cerr << "ssvq_tvm_runner: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
