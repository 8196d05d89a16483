module @@{name}

go @@{go_version}

require github.com/proxy-wasm/proxy-wasm-go-sdk @@{sdk_version}
