/*
 * add-header: wasmbot's C test filter, written against the raw proxy-wasm ABI 0.2.1 with
 * clang and wasi-libc (no SDK).
 *
 * It adds `x-wasm-filter: <plugin configuration>` to every response, answers requests that
 * carry `x-deny` with a local 403, and counts requests in the `add_header_requests` counter.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

enum { OK = 0, NOT_FOUND = 1 };
enum { LOG_INFO = 2, LOG_WARN = 3 };
enum { BUFFER_PLUGIN_CONFIGURATION = 7 };
enum { MAP_REQUEST_HEADERS = 0, MAP_RESPONSE_HEADERS = 2 };
enum { CONTINUE = 0, PAUSE = 1 };
enum { COUNTER = 0 };

IMPORT(proxy_log) int32_t proxy_log(int32_t level, const char *msg, size_t len);
IMPORT(proxy_get_log_level) int32_t proxy_get_log_level(int32_t *level);
IMPORT(proxy_get_buffer_bytes)
int32_t proxy_get_buffer_bytes(int32_t type, size_t start, size_t max, char **ptr, size_t *len);
IMPORT(proxy_get_header_map_value)
int32_t proxy_get_header_map_value(int32_t map, const char *k, size_t klen, char **v, size_t *vlen);
IMPORT(proxy_add_header_map_value)
int32_t proxy_add_header_map_value(int32_t map, const char *k, size_t klen, const char *v, size_t vlen);
IMPORT(proxy_send_local_response)
int32_t proxy_send_local_response(int32_t code, const char *details, size_t dlen, const char *body,
                                  size_t blen, const char *headers, size_t hlen, int32_t grpc);
IMPORT(proxy_define_metric)
int32_t proxy_define_metric(int32_t type, const char *name, size_t len, uint32_t *id);
IMPORT(proxy_increment_metric) int32_t proxy_increment_metric(uint32_t id, int64_t offset);

static char value[256] = "hello";
static size_t value_len = 5;
static uint32_t requests_metric;

static void logf_(int32_t level, const char *fmt, const char *arg, size_t arg_len) {
  int32_t min = LOG_INFO;
  proxy_get_log_level(&min);
  if (level < min) return;
  char line[512];
  int n = snprintf(line, sizeof line, fmt, (int)arg_len, arg);
  proxy_log(level, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }
EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {}
EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, size_t size) { return 1; }

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, size_t size) {
  char *config = NULL;
  size_t len = 0;
  if (size > 0 && proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &config, &len) == OK) {
    value_len = len < sizeof value ? len : sizeof value;
    memcpy(value, config, value_len);
    free(config);
  }
  static const char name[] = "add_header_requests";
  proxy_define_metric(COUNTER, name, sizeof name - 1, &requests_metric);
  logf_(LOG_INFO, "add-header configured: %.*s", value, value_len);
  return 1;
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t headers, uint32_t end_of_stream) {
  proxy_increment_metric(requests_metric, 1);
  char *path = NULL, *deny = NULL;
  size_t path_len = 0, deny_len = 0;
  proxy_get_header_map_value(MAP_REQUEST_HEADERS, ":path", 5, &path, &path_len);
  if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, "x-deny", 6, &deny, &deny_len) == OK) {
    logf_(LOG_WARN, "denying %.*s", path, path_len);
    /* one header pair, serialised: count, key length, value length, key\0value\0 */
    static const char pairs[] = "\1\0\0\0" "\13\0\0\0" "\12\0\0\0" "x-denied-by\0add-header";
    proxy_send_local_response(403, "denied", 6, "denied\n", 7, pairs, sizeof pairs, -1);
    free(path);
    free(deny);
    return PAUSE;
  }
  logf_(LOG_INFO, "request to %.*s", path, path_len);
  free(path);
  return CONTINUE;
}

EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t headers, uint32_t end_of_stream) {
  proxy_add_header_map_value(MAP_RESPONSE_HEADERS, "x-wasm-filter", 13, value, value_len);
  return CONTINUE;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) { return 1; }
EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) {}
EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {}
