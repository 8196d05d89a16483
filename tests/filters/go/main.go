// add-header: wasmbot's Go test filter, built with the proxy-wasm Go SDK on standard Go
// (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared).
//
// It adds `x-wasm-filter: <plugin configuration>` to every response, answers requests that
// carry `x-deny` with a local 403, and counts requests in the `add_header_requests` counter.
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
	value    string
	requests proxywasm.MetricCounter
}

func (p *pluginContext) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		config, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogErrorf("reading plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
		p.value = string(config)
	}
	p.requests = proxywasm.DefineCounterMetric("add_header_requests")
	proxywasm.LogInfof("add-header configured: %s", p.value)
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	h.plugin.requests.Increment(1)
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	if _, err := proxywasm.GetHttpRequestHeader("x-deny"); err == nil {
		proxywasm.LogWarnf("denying %s", path)
		if err := proxywasm.SendHttpResponse(403, [][2]string{{"x-denied-by", "add-header"}},
			[]byte("denied\n"), -1); err != nil {
			proxywasm.LogErrorf("sending local response: %v", err)
		}
		return types.ActionPause
	}
	proxywasm.LogInfof("request to %s", path)
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-wasm-filter", h.plugin.value); err != nil {
		proxywasm.LogErrorf("adding response header: %v", err)
	}
	return types.ActionContinue
}
