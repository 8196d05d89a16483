// @@{name}: an Envoy HTTP filter in AssemblyScript on @solo-io/proxy-runtime @@{sdk_version}.
// It adds `x-@@{name}: <plugin configuration>` to every response.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, log,
  LogLevelValues,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class FilterRoot extends RootContext {
  header_value: string = "hello";

  // Reads the configuration itself: RootContext.onConfigure in proxy-runtime 0.1.8 passes the
  // size as the length pointer and traps on an empty configuration.
  onConfigure(configuration_size: u32): bool {
    this.header_value = configuration_size == 0 ? "hello" : String.UTF8.decode(
      get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    log(LogLevelValues.info, "@@{name} configured: " + this.header_value);
    return true;
  }

  createContext(context_id: u32): Context {
    return new Filter(context_id, this);
  }
}

class Filter extends Context {
  root: FilterRoot;

  constructor(context_id: u32, root_context: FilterRoot) {
    super(context_id, root_context);
    this.root = root_context;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-@@{name}", this.root.header_value);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new FilterRoot(context_id); }, "@@{root_id}");
