// add-header in C++ on the raw proxy-wasm ABI 0.2.1 (no SDK), built with clang++ and libc++ for
// wasm32-wasi: it shows the C++ toolchain image works where the proxy-wasm C++ SDK cannot be
// obtained (see docs/toolchains.md). Same behaviour as the other add-header test filters.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#define IMPORT(name) extern "C" __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) extern "C" __attribute__((export_name(#name)))

IMPORT(proxy_log) int32_t proxy_log(int32_t level, const char* msg, size_t len);
IMPORT(proxy_get_buffer_bytes)
int32_t proxy_get_buffer_bytes(int32_t type, size_t start, size_t max, char** ptr, size_t* len);
IMPORT(proxy_get_header_map_value)
int32_t proxy_get_header_map_value(int32_t map, const char* k, size_t kl, char** v, size_t* vl);
IMPORT(proxy_add_header_map_value)
int32_t proxy_add_header_map_value(int32_t map, const char* k, size_t kl, const char* v, size_t vl);
IMPORT(proxy_send_local_response)
int32_t proxy_send_local_response(int32_t code, const char* d, size_t dl, const char* b, size_t bl,
                                  const char* h, size_t hl, int32_t grpc);
IMPORT(proxy_define_metric) int32_t proxy_define_metric(int32_t type, const char* n, size_t nl, uint32_t* id);
IMPORT(proxy_increment_metric) int32_t proxy_increment_metric(uint32_t id, int64_t offset);

namespace {
enum Map : int32_t { kRequestHeaders = 0, kResponseHeaders = 2 };

std::string header_value = "hello";
uint32_t requests_metric = 0;

void log(int32_t level, const std::string& message) { proxy_log(level, message.data(), message.size()); }

// A host-allocated value, released when it goes out of scope.
struct HostString {
  char* data = nullptr;
  size_t size = 0;
  ~HostString() { free(data); }
  std::string_view view() const { return {data, size}; }
};

bool request_header(std::string_view key, HostString& out) {
  return proxy_get_header_map_value(kRequestHeaders, key.data(), key.size(), &out.data, &out.size) == 0;
}
}  // namespace

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1() {}
EXPORT(proxy_on_memory_allocate) void* proxy_on_memory_allocate(size_t size) { return malloc(size); }
EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t, uint32_t) {}
EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, size_t) { return 1; }

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, size_t size) {
  header_value = "hello";
  HostString config;
  if (size > 0 && proxy_get_buffer_bytes(7, 0, size, &config.data, &config.size) == 0) {
    header_value.assign(config.view());
  }
  std::string_view name = "add_header_requests";
  proxy_define_metric(0, name.data(), name.size(), &requests_metric);
  log(2, "add-header configured: " + header_value);
  return 1;
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t, uint32_t, uint32_t) {
  proxy_increment_metric(requests_metric, 1);
  HostString path, deny;
  request_header(":path", path);
  if (request_header("x-deny", deny)) {
    log(3, "denying " + std::string(path.view()));
    static const char pairs[] = "\1\0\0\0\13\0\0\0\12\0\0\0x-denied-by\0add-header";
    proxy_send_local_response(403, "denied", 6, "denied\n", 7, pairs, sizeof pairs, -1);
    return 1;
  }
  log(2, "request to " + std::string(path.view()));
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t, uint32_t, uint32_t) {
  std::string_view key = "x-wasm-filter";
  proxy_add_header_map_value(kResponseHeaders, key.data(), key.size(), header_value.data(), header_value.size());
  return 0;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t) {}
