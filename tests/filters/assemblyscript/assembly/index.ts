// add-header: wasmbot's AssemblyScript test filter on @solo-io/proxy-runtime (ABI 0.2.0).
//
// It adds `x-wasm-filter: <plugin configuration>` to every response, answers requests that
// carry `x-deny` with a local 403, and counts requests in the `add_header_requests` counter.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues,
  stream_context, send_local_response, log, LogLevelValues, Counter, HeaderPair, Headers,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class AddHeaderRoot extends RootContext {
  requests: Counter = new Counter("add_header_requests");

  header_value: string = "hello";

  // Reads the configuration itself: proxy-runtime 0.1.8's RootContext.onConfigure passes
  // configuration_size as the length pointer (the host writes to that address) and, with an
  // empty configuration, decodes a stale buffer and traps. wasmbot's harness caught this.
  onConfigure(configuration_size: u32): bool {
    this.header_value = configuration_size == 0 ? "hello" : String.UTF8.decode(
      get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    log(LogLevelValues.info, "add-header configured: " + this.header_value);
    return true;
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
    stream_context.headers.response.add("x-wasm-filter", this.root.header_value);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "add-header");
