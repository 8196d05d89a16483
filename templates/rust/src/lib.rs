//! @@{name}: an Envoy HTTP filter in Rust on the proxy-wasm crate @@{sdk_version}.
//! It adds `x-@@{name}: <plugin configuration>` to every response.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(FilterRoot { value: String::from("hello") })
    });
}}

struct FilterRoot {
    value: String,
}

impl Context for FilterRoot {}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.value = match self.get_plugin_configuration() {
            Some(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::from("hello"),
        };
        let _ = proxy_wasm::hostcalls::log(LogLevel::Info, &format!("@@{name} configured: {}", self.value));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { value: self.value.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    value: String,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-@@{name}", &self.value);
        Action::Continue
    }
}
