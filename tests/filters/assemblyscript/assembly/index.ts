// add-header: wasmbot's AssemblyScript test filter on @solo-io/proxy-runtime (ABI 0.2.0).
//
// It adds `x-wasm-filter: <plugin configuration>` to every response, answers requests that
// carry `x-deny` with a local 403, and counts requests in the `add_header_requests` counter.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues,
  stream_context, send_local_response, log, LogLevelValues, Counter, HeaderPair, Headers,
} from "@solo-io/proxy-runtime";

class AddHeaderRoot extends RootContext {
  requests: Counter = new Counter("add_header_requests");

  onConfigure(configuration_size: u32): bool {
    const ok = super.onConfigure(configuration_size);
    log(LogLevelValues.info, "add-header configured: " + this.value());
    return ok;
  }

  value(): string {
    const config = this.getConfiguration();
    return config == "" ? "hello" : config;
  }

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  root: AddHeaderRoot;

  constructor(context_id: u32, root_context: AddHeaderRoot) {
    super(context_id, root_context);
    this.root = root_context;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.root.requests.increment(1);
    const path = stream_context.headers.request.get(":path");
    if (stream_context.headers.request.get("x-deny") != "") {
      log(LogLevelValues.warn, "denying " + path);
      const extra: Headers = [];
      extra.push(new HeaderPair(String.UTF8.encode("x-denied-by"), String.UTF8.encode("add-header")));
      send_local_response(403, "denied", String.UTF8.encode("denied\n"), extra,
                          GrpcStatusValues.Unknown);
      return FilterHeadersStatusValues.StopIteration;
    }
    log(LogLevelValues.info, "request to " + path);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-wasm-filter", this.root.value());
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "add-header");
