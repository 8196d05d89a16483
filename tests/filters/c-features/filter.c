/*
 * c-features: one module, several root ids, each exercising a part of the host that the
 * add-header filters do not: body buffering, HTTP and gRPC callouts, shared queues and data,
 * ticks and metrics, and a stream that never resumes.  The harness's driver tests run it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))
#define S(lit) lit, sizeof lit - 1

enum { OK = 0 };
enum { CONTINUE = 0, PAUSE = 1 };
enum { BUF_REQUEST = 0, BUF_RESPONSE = 1, BUF_CALL_RESPONSE = 4, BUF_GRPC = 5 };
enum { MAP_REQUEST = 0, MAP_CALL_RESPONSE = 6 };
enum { KIND_BODY = 1, KIND_AUTH, KIND_GRPC, KIND_QUEUE, KIND_TICK, KIND_STALL };

IMPORT(proxy_log) int32_t proxy_log(int32_t level, const char *msg, size_t len);
IMPORT(proxy_get_property) int32_t proxy_get_property(const char *p, size_t n, char **v, size_t *vn);
IMPORT(proxy_get_buffer_bytes) int32_t proxy_get_buffer_bytes(int32_t t, size_t s, size_t m, char **p, size_t *n);
IMPORT(proxy_set_buffer_bytes) int32_t proxy_set_buffer_bytes(int32_t t, size_t s, size_t m, const char *p, size_t n);
IMPORT(proxy_get_header_map_value)
int32_t proxy_get_header_map_value(int32_t map, const char *k, size_t kn, char **v, size_t *vn);
IMPORT(proxy_add_header_map_value)
int32_t proxy_add_header_map_value(int32_t map, const char *k, size_t kn, const char *v, size_t vn);
IMPORT(proxy_http_call)
int32_t proxy_http_call(const char *up, size_t upn, const char *h, size_t hn, const char *b, size_t bn,
                        const char *t, size_t tn, uint32_t timeout, uint32_t *token);
IMPORT(proxy_grpc_call)
int32_t proxy_grpc_call(const char *up, size_t upn, const char *svc, size_t svcn, const char *m, size_t mn,
                        const char *md, size_t mdn, const char *msg, size_t msgn, uint32_t timeout,
                        uint32_t *token);
IMPORT(proxy_set_effective_context) int32_t proxy_set_effective_context(uint32_t ctx);
IMPORT(proxy_continue_stream) int32_t proxy_continue_stream(int32_t stream);
IMPORT(proxy_send_local_response)
int32_t proxy_send_local_response(int32_t code, const char *d, size_t dn, const char *b, size_t bn,
                                  const char *h, size_t hn, int32_t grpc);
IMPORT(proxy_register_shared_queue) int32_t proxy_register_shared_queue(const char *n, size_t nn, uint32_t *id);
IMPORT(proxy_enqueue_shared_queue) int32_t proxy_enqueue_shared_queue(uint32_t id, const char *v, size_t vn);
IMPORT(proxy_dequeue_shared_queue) int32_t proxy_dequeue_shared_queue(uint32_t id, char **v, size_t *vn);
IMPORT(proxy_set_shared_data) int32_t proxy_set_shared_data(const char *k, size_t kn, const char *v, size_t vn, uint32_t cas);
IMPORT(proxy_set_tick_period_milliseconds) int32_t proxy_set_tick_period_milliseconds(uint32_t ms);
IMPORT(proxy_define_metric) int32_t proxy_define_metric(int32_t type, const char *n, size_t nn, uint32_t *id);
IMPORT(proxy_increment_metric) int32_t proxy_increment_metric(uint32_t id, int64_t offset);

static uint8_t kind[1024];    /* context id -> what it does */
static uint32_t caller[1024]; /* callout token -> the stream context that made it */
static uint32_t queue_id, ticks_metric;

static void info(const char *msg, size_t len) { proxy_log(2, msg, len); }

EXPORT(proxy_abi_version_0_2_0) void proxy_abi_version_0_2_0(void) {}
EXPORT(malloc) void *wasm_malloc(size_t size) { return malloc(size); }

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {
  if (parent) { kind[ctx % 1024] = kind[parent % 1024]; return; }
  char *root = NULL;
  size_t n = 0;
  proxy_get_property(S("plugin_root_id"), &root, &n);
  static const char *names[] = {"", "body", "auth", "grpc", "queue", "tick", "stall"};
  for (int k = 1; k <= KIND_STALL; k++)
    if (strlen(names[k]) == n && memcmp(names[k], root, n) == 0) kind[ctx % 1024] = (uint8_t)k;
  free(root);
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, size_t size) {
  if (kind[root % 1024] == KIND_QUEUE) proxy_register_shared_queue(S("events"), &queue_id);
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, size_t size) {
  if (kind[root % 1024] == KIND_TICK) {
    proxy_set_tick_period_milliseconds(1000);
    proxy_define_metric(0, S("ticks"), &ticks_metric);
  }
  return 1;
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root) { proxy_increment_metric(ticks_metric, 1); }

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
  uint32_t token = 0;
  switch (kind[ctx % 1024]) {
  case KIND_AUTH: {
    static const char headers[] = "\3\0\0\0" "\7\0\0\0\3\0\0\0" "\5\0\0\0\6\0\0\0" "\12\0\0\0\4\0\0\0"
                                  ":method\0GET\0" ":path\0/check\0" ":authority\0auth";
    if (proxy_http_call(S("auth-service"), headers, sizeof headers, S("who?"), NULL, 0, 500, &token) != OK)
      return CONTINUE;
    caller[token % 1024] = ctx;
    return PAUSE;
  }
  case KIND_GRPC:
    if (proxy_grpc_call(S("grpc-svc"), S("pkg.Auth"), S("Check"), NULL, 0, S("ping"), 1000, &token) != OK)
      return CONTINUE;
    caller[token % 1024] = ctx;
    return PAUSE;
  case KIND_QUEUE: {
    char *path = NULL;
    size_t len = 0;
    proxy_get_header_map_value(MAP_REQUEST, S(":path"), &path, &len);
    proxy_enqueue_shared_queue(queue_id, path, len);
    free(path);
    return CONTINUE;
  }
  case KIND_STALL:
    return PAUSE;
  }
  return CONTINUE;
}

static void transform(int32_t buffer, size_t size, uint32_t eos, int upper) {
  char *body = NULL;
  size_t len = 0;
  if (proxy_get_buffer_bytes(buffer, 0, size, &body, &len) != OK) return;
  if (upper)
    for (size_t i = 0; i < len; i++) body[i] = (body[i] >= 'a' && body[i] <= 'z') ? body[i] - 32 : body[i];
  proxy_set_buffer_bytes(buffer, 0, len, body, len);
  free(body);
}

EXPORT(proxy_on_request_body) uint32_t proxy_on_request_body(uint32_t ctx, size_t size, uint32_t eos) {
  if (kind[ctx % 1024] != KIND_BODY) return CONTINUE;
  if (!eos) return PAUSE; /* buffer until the whole body is here */
  transform(BUF_REQUEST, size, eos, 1);
  return CONTINUE;
}

EXPORT(proxy_on_response_body) uint32_t proxy_on_response_body(uint32_t ctx, size_t size, uint32_t eos) {
  if (kind[ctx % 1024] == KIND_BODY && eos) proxy_set_buffer_bytes(BUF_RESPONSE, size, 0, S(" [filtered]"));
  return CONTINUE;
}

EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t root, uint32_t token, uint32_t headers, size_t body_size, uint32_t trailers) {
  uint32_t ctx = caller[token % 1024];
  char *status = NULL, *body = NULL;
  size_t slen = 0, blen = 0;
  proxy_get_header_map_value(MAP_CALL_RESPONSE, S(":status"), &status, &slen);
  proxy_get_buffer_bytes(BUF_CALL_RESPONSE, 0, body_size, &body, &blen);
  if (blen) info(body, blen);
  proxy_set_effective_context(ctx);
  if (headers && slen == 3 && memcmp(status, "200", 3) == 0) {
    proxy_add_header_map_value(MAP_REQUEST, S("x-auth"), S("ok"));
    proxy_continue_stream(0);
  } else {
    proxy_send_local_response(401, S("auth_failed"), S("unauthorised\n"), NULL, 0, -1);
  }
  free(status);
  free(body);
}

EXPORT(proxy_on_grpc_receive) void proxy_on_grpc_receive(uint32_t root, uint32_t token, size_t size) {
  char *msg = NULL;
  size_t len = 0;
  if (proxy_get_buffer_bytes(BUF_GRPC, 0, size, &msg, &len) == OK) info(msg, len);
  free(msg);
}

EXPORT(proxy_on_grpc_close) void proxy_on_grpc_close(uint32_t root, uint32_t token, uint32_t status) {
  proxy_set_effective_context(caller[token % 1024]);
  if (status == 0) proxy_continue_stream(0);
  else proxy_send_local_response(503, S("grpc_failed"), S("backend down\n"), NULL, 0, (int32_t)status);
}

EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root, uint32_t id) {
  char *item = NULL;
  size_t len = 0;
  while (proxy_dequeue_shared_queue(id, &item, &len) == OK) {
    proxy_set_shared_data(S("last"), item, len, 0);
    info(item, len);
    free(item);
  }
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) { return 1; }
EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {}
