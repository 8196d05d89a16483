/*
 * hello-c: a minimal proxy-wasm HTTP filter written against the raw ABI (0.2.0), without an SDK.
 *
 * It logs its plugin configuration when configured and adds `x-wasmbot: hello` to every
 * response. wasmbot's example and test fixture: small enough to read in one sitting.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

enum { LOG_INFO = 2 };
enum { BUFFER_PLUGIN_CONFIGURATION = 7 };
enum { MAP_RESPONSE_HEADERS = 2 };
enum { ACTION_CONTINUE = 0 };

IMPORT(proxy_log) int32_t proxy_log(int32_t level, const char *msg, size_t len);
IMPORT(proxy_get_buffer_bytes)
int32_t proxy_get_buffer_bytes(int32_t type, size_t start, size_t max, char **ptr, size_t *len);
IMPORT(proxy_add_header_map_value)
int32_t proxy_add_header_map_value(int32_t map, const char *k, size_t klen, const char *v, size_t vlen);

static void log_info(const char *msg) { proxy_log(LOG_INFO, msg, strlen(msg)); }

EXPORT(proxy_abi_version_0_2_0) void proxy_abi_version_0_2_0(void) {}

EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, size_t vm_config_size) {
  log_info("hello-c: vm started");
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, size_t config_size) {
  char *config = NULL;
  size_t len = 0;
  if (config_size > 0 &&
      proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, config_size, &config, &len) == 0) {
    proxy_log(LOG_INFO, config, len);
    free(config);
  } else {
    log_info("hello-c: configured without plugin configuration");
  }
  return 1;
}

EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t headers, uint32_t end_of_stream) {
  static const char key[] = "x-wasmbot", value[] = "hello";
  proxy_add_header_map_value(MAP_RESPONSE_HEADERS, key, sizeof key - 1, value, sizeof value - 1);
  return ACTION_CONTINUE;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) { return 1; }
EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) {}
EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {}
