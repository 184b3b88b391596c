// ssvq_run: run an exported model through the ONNX Runtime C++ API, with libssvq_ort.so registered, on a device
// without Python. Reads one float32 .npy input, writes the first output as float32 .npy, prints a summary and the
// median latency.
//
//   ssvq_run MODEL.onnx INPUT.npy [--library PATH] [--output OUT.npy] [--runs N] [--threads N] [--config KEY=VALUE]...
//
// --config sets a session config entry before the library is registered, e.g. ssvq.kernels=neon (force a kernel set)
// or ssvq.kernel_report=FILE (which kernel each fused node ran; docs/ssvq_op.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "onnxruntime_cxx_api.h"

namespace {

struct Array {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

// .npy version 1/2/3, little-endian float32, C order: the only layout the runner accepts.
Array read_npy(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    char magic[6];
    unsigned char version[2];
    in.read(magic, 6);
    in.read(reinterpret_cast<char*>(version), 2);
    if (!in || std::string(magic, 6) != "\x93NUMPY") throw std::runtime_error(path + ": not a .npy file");
    uint32_t header_len = 0;
    unsigned char len_bytes[4] = {0, 0, 0, 0};
    in.read(reinterpret_cast<char*>(len_bytes), version[0] == 1 ? 2 : 4);
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
    std::string header(header_len, ' ');
    in.read(&header[0], header_len);
    if (header.find("'descr': '<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
        throw std::runtime_error(path + ": expected little-endian float32 in C order, header " + header);
    Array a;
    const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
    std::stringstream dims(header.substr(open + 1, close - open - 1));
    for (std::string item; std::getline(dims, item, ',');)
        if (item.find_first_not_of(' ') != std::string::npos) a.shape.push_back(std::stoll(item));
    const int64_t n = std::accumulate(a.shape.begin(), a.shape.end(), int64_t{1}, std::multiplies<int64_t>());
    a.data.resize(size_t(n));
    in.read(reinterpret_cast<char*>(a.data.data()), std::streamsize(n * sizeof(float)));
    if (!in) throw std::runtime_error(path + ": truncated data");
    return a;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data, size_t n) {
    std::string dims;
    for (int64_t s : shape) dims += std::to_string(s) + ", ";
    if (shape.size() > 1) dims.resize(dims.size() - 1);
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    header.append(63 - (10 + header.size()) % 64, ' ');
    header += '\n';
    std::ofstream out(path, std::ios::binary);
    const uint16_t len = uint16_t(header.size());
    out.write("\x93NUMPY\x01\x00", 8);
    out.put(char(len & 0xff));
    out.put(char(len >> 8));
    out << header;
    out.write(reinterpret_cast<const char*>(data), std::streamsize(n * sizeof(float)));
    if (!out) throw std::runtime_error("cannot write " + path);
}

std::string arg_value(int& i, int argc, char** argv) {
    if (i + 1 >= argc) throw std::runtime_error(std::string(argv[i]) + " needs a value");
    return argv[++i];
}

// "KEY=VALUE" of --config
std::pair<std::string, std::string> config_entry(const std::string& entry) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) throw std::runtime_error("--config expects KEY=VALUE, got " + entry);
    return {entry.substr(0, eq), entry.substr(eq + 1)};
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc < 3) {
            std::fprintf(stderr, "usage: %s MODEL.onnx INPUT.npy [--library PATH] [--output OUT.npy] [--runs N] "
                                 "[--threads N] [--config KEY=VALUE]...\n", argv[0]);
            return 2;
        }
        std::string model = argv[1], input_path = argv[2], library, output;
        int runs = 10, threads = 1;
        std::vector<std::pair<std::string, std::string>> config;
        for (int i = 3; i < argc; ++i) {
            const std::string flag = argv[i];
            if (flag == "--library") library = arg_value(i, argc, argv);
            else if (flag == "--output") output = arg_value(i, argc, argv);
            else if (flag == "--runs") runs = std::max(1, std::stoi(arg_value(i, argc, argv)));
            else if (flag == "--threads") threads = std::max(1, std::stoi(arg_value(i, argc, argv)));
            else if (flag == "--config") config.push_back(config_entry(arg_value(i, argc, argv)));
            else throw std::runtime_error("unknown option " + flag);
        }
        Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "ssvq_run");
        Ort::SessionOptions options;
        options.SetIntraOpNumThreads(threads);
        // before RegisterCustomOpsLibrary: the library reads its entries when it registers
        for (const auto& [key, value] : config) options.AddConfigEntry(key.c_str(), value.c_str());
        if (!library.empty()) options.RegisterCustomOpsLibrary(library.c_str());
        Ort::Session session(env, model.c_str(), options);

        Array input = read_npy(input_path);
        Ort::AllocatorWithDefaultOptions allocator;
        const std::string in_name = session.GetInputNameAllocated(0, allocator).get();
        const std::string out_name = session.GetOutputNameAllocated(0, allocator).get();
        const char* in_names[] = {in_name.c_str()};
        const char* out_names[] = {out_name.c_str()};
        Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        Ort::Value tensor = Ort::Value::CreateTensor<float>(cpu, input.data.data(), input.data.size(),
                                                            input.shape.data(), input.shape.size());
        std::vector<double> ms;
        std::vector<Ort::Value> result;
        for (int r = 0; r < runs + 1; ++r) {  // one untimed warm-up run
            const auto start = std::chrono::steady_clock::now();
            result = session.Run(Ort::RunOptions{nullptr}, in_names, &tensor, 1, out_names, 1);
            const auto stop = std::chrono::steady_clock::now();
            if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
        }
        std::sort(ms.begin(), ms.end());
        const auto info = result[0].GetTensorTypeAndShapeInfo();
        const std::vector<int64_t> shape = info.GetShape();
        const size_t n = info.GetElementCount();
        const float* out = result[0].GetTensorData<float>();
        std::printf("output %s [", out_name.c_str());
        for (size_t i = 0; i < shape.size(); ++i) std::printf("%s%lld", i ? ", " : "", (long long)shape[i]);
        std::printf("] first values:");
        for (size_t i = 0; i < std::min<size_t>(n, 5); ++i) std::printf(" %.6g", out[i]);
        const size_t best = size_t(std::max_element(out, out + n) - out);
        std::printf("\nargmax %zu\nlatency median %.3f ms over %d runs, %d thread(s)\n", best, ms[ms.size() / 2],
                    runs, threads);
        if (!output.empty()) write_npy(output, shape, out, n);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ssvq_run: error: %s\n", e.what());
        return 1;
    }
}
