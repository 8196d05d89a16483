// @@{name}: an Envoy HTTP filter in Go on the proxy-wasm Go SDK, built with the standard Go
// toolchain (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared).
// It adds `x-@@{name}: <plugin configuration>` to every response.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(contextID uint32) types.PluginContext {
		return &pluginContext{value: "hello"}
	})
}

type pluginContext struct {
	types.DefaultPluginContext
	value string
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	p.value = "hello"
	if size > 0 {
		config, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogErrorf("reading plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
		p.value = string(config)
	}
	proxywasm.LogInfof("@@{name} configured: %s", p.value)
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-@@{name}", h.plugin.value); err != nil {
		proxywasm.LogErrorf("adding response header: %v", err)
	}
	return types.ActionContinue
}
