// The library's only exported symbol: ORT calls RegisterCustomOps when a session registers libssvq_ort.so.
// Built against the API version of the headers (ORT_API_VERSION, 21 for the Debian trixie headers) with
// ORT_API_MANUAL_INIT, so it loads into any ONNX Runtime that still serves that API version (1.21 and later).
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ops/fused_ops.h"
#include "ops/ssvq_decode.h"

#define SSVQ_STR_(x) #x
#define SSVQ_STR(x) SSVQ_STR_(x)

namespace {

// Domains and the per-registration fused ops must outlive every session that uses them; they are released when
// the library is unloaded.
struct DomainKeeper {
    std::mutex mutex;
    std::vector<Ort::CustomOpDomain> domains;
    std::vector<std::shared_ptr<OrtCustomOp>> ops;
};

// A session config entry, or `fallback` when absent.
std::string config_entry(const OrtApi* api, const OrtSessionOptions* options, const char* key, const char* fallback) {
    int has = 0;
    OrtStatus* status = api->HasSessionConfigEntry(options, key, &has);
    if (status != nullptr) {
        api->ReleaseStatus(status);
        return fallback;
    }
    if (!has) return fallback;
    size_t size = 0;
    if ((status = api->GetSessionConfigEntry(options, key, nullptr, &size)) != nullptr) {
        api->ReleaseStatus(status);
        return fallback;
    }
    std::string value(size, '\0');
    if ((status = api->GetSessionConfigEntry(options, key, &value[0], &size)) != nullptr) {
        api->ReleaseStatus(status);
        return fallback;
    }
    value.resize(size > 0 ? size - 1 : 0);
    return value;
}

DomainKeeper& domain_keeper() {
    static DomainKeeper keeper;
    return keeper;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
    const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
    if (api == nullptr) {  // an older runtime: report with the version-1 API, which every runtime serves
        return api_base->GetApi(1)->CreateStatus(
            ORT_FAIL, "[SSVQDecode] libssvq_ort.so needs ONNX Runtime C API version " SSVQ_STR(ORT_API_VERSION) " or newer");
    }
    Ort::InitApi(api);
    ssvq::OpConfig config;
    const std::string kernels = config_entry(api, options, ssvq::kConfigKernels, "auto");
    if (kernels == "auto") {
        config.kernels = &ssvq::best_fused_kernels();
    } else {
        config.kernels = ssvq::find_fused_kernels(kernels.c_str());
        if (config.kernels == nullptr || !config.kernels->supported()) {
            std::string names = "auto";  // the sets this CPU runs, best first
            size_t count = 0;
            const ssvq::FusedKernelSet* sets = ssvq::fused_kernel_sets(&count);
            for (size_t i = 0; i < count; ++i)
                if (sets[i].supported()) names += std::string(", ") + sets[i].name;
            const std::string text = std::string("[SSVQ] session config ") + ssvq::kConfigKernels + "=\"" + kernels +
                                     "\": expected one of " + names + " (the kernel sets this CPU supports)";
            return api->CreateStatus(ORT_INVALID_ARGUMENT, text.c_str());
        }
    }
    config.report_path = config_entry(api, options, ssvq::kConfigReport, "");
    try {
        Ort::CustomOpDomain domain(ssvq::kOpDomain);
        domain.Add(ssvq::ssvq_decode_op());
        std::shared_ptr<OrtCustomOp> conv = ssvq::make_ssvq_conv_op(config), gemm = ssvq::make_ssvq_gemm_op(config);
        domain.Add(conv.get());
        domain.Add(gemm.get());
        Ort::UnownedSessionOptions(options).Add(domain);
        DomainKeeper& keeper = domain_keeper();
        std::lock_guard<std::mutex> lock(keeper.mutex);
        keeper.domains.push_back(std::move(domain));
        keeper.ops.push_back(std::move(conv));
        keeper.ops.push_back(std::move(gemm));
    } catch (const Ort::Exception& e) {
        return api->CreateStatus(e.GetOrtErrorCode(), e.what());
    } catch (const std::exception& e) {
        return api->CreateStatus(ORT_FAIL, e.what());
    }
    return nullptr;
}
