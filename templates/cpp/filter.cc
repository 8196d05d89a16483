// @@{name}: an Envoy HTTP filter in C++ on the proxy-wasm C++ SDK (commit @@{sdk_short}).
// It adds `x-@@{name}: <plugin configuration>` to every response.
#include <string>
#include <string_view>

#include "proxy_wasm_intrinsics.h"

class FilterRoot : public RootContext {
 public:
  explicit FilterRoot(uint32_t id, std::string_view root_id) : RootContext(id, root_id) {}

  bool onConfigure(size_t size) override {
    value_ = "hello";
    if (size > 0) {
      value_ = getBufferBytes(WasmBufferType::PluginConfiguration, 0, size)->toString();
    }
    LOG_INFO("@@{name} configured: " + value_);
    return true;
  }

  const std::string& value() const { return value_; }

 private:
  std::string value_ = "hello";
};

class Filter : public Context {
 public:
  explicit Filter(uint32_t id, RootContext* root) : Context(id, root) {}

  FilterHeadersStatus onResponseHeaders(uint32_t, bool) override {
    addResponseHeader("x-@@{name}", static_cast<FilterRoot*>(root())->value());
    return FilterHeadersStatus::Continue;
  }
};

static RegisterContextFactory register_filter(CONTEXT_FACTORY(Filter), ROOT_FACTORY(FilterRoot),
                                              "@@{root_id}");
