// The library's only exported symbol: ORT calls RegisterCustomOps when a session registers libssvq_ort.so.
// Built against the API version of the headers (ORT_API_VERSION, 21 for the Debian trixie headers) with
// ORT_API_MANUAL_INIT, so it loads into any ONNX Runtime that still serves that API version (1.21 and later).
#include <memory>
#include <mutex>
#include <vector>

#include "ops/ssvq_decode.h"

#define SSVQ_STR_(x) #x
#define SSVQ_STR(x) SSVQ_STR_(x)

namespace {

// Domains must outlive every session that uses them; they are released when the library is unloaded.
struct DomainKeeper {
    std::mutex mutex;
    std::vector<Ort::CustomOpDomain> domains;
};

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
    try {
        Ort::CustomOpDomain domain(ssvq::kOpDomain);
        domain.Add(ssvq::ssvq_decode_op());
        Ort::UnownedSessionOptions(options).Add(domain);
        DomainKeeper& keeper = domain_keeper();
        std::lock_guard<std::mutex> lock(keeper.mutex);
        keeper.domains.push_back(std::move(domain));
    } catch (const Ort::Exception& e) {
        return api->CreateStatus(e.GetOrtErrorCode(), e.what());
    } catch (const std::exception& e) {
        return api->CreateStatus(ORT_FAIL, e.what());
    }
    return nullptr;
}
