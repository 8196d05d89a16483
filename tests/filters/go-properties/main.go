// go-properties: reads Envoy properties through the proxy-wasm Go SDK's own parsers
// (GetProperty, GetPropertyMap → internal.DeserializeMap) and reports what it got as request
// headers, so wasm-tests.yaml can check the host's property encoding end to end.
package main

import (
	"encoding/binary"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(contextID uint32) types.PluginContext { return &pluginContext{} })
}

type pluginContext struct{ types.DefaultPluginContext }

func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext { return &httpContext{} }

type httpContext struct{ types.DefaultHttpContext }

func report(name, value string) {
	if err := proxywasm.AddHttpRequestHeader(name, value); err != nil {
		proxywasm.LogErrorf("adding %s: %v", name, err)
	}
}

func text(path ...string) string {
	value, err := proxywasm.GetProperty(path)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(value)
}

func int64At(path ...string) string {
	value, err := proxywasm.GetProperty(path)
	if err != nil {
		return "error: " + err.Error()
	}
	if len(value) != 8 {
		return "not 8 bytes: " + strconv.Itoa(len(value))
	}
	return strconv.FormatInt(int64(binary.LittleEndian.Uint64(value)), 10)
}

func (h *httpContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	headers, err := proxywasm.GetPropertyMap([]string{"request", "headers"})
	if err != nil {
		report("x-user-agent", "error: "+err.Error())
	}
	for _, kv := range headers {
		if kv[0] == "user-agent" {
			report("x-user-agent", kv[1])
		}
	}
	report("x-header-count", strconv.Itoa(len(headers)))
	report("x-source", text("source", "address"))
	report("x-source-port", int64At("source", "port"))
	report("x-app", text("node", "metadata", "LABELS", "app"))
	labels, err := proxywasm.GetPropertyMap([]string{"node", "metadata", "LABELS"})
	if err != nil {
		report("x-labels", "error: "+err.Error())
	}
	for _, kv := range labels {
		report("x-label-"+kv[0], kv[1])
	}
	report("x-replicas", int64At("node", "metadata", "replicas"))
	report("x-root-id", text("plugin_root_id"))
	report("x-dotted", text("request.path"))
	if err := proxywasm.SetProperty([]string{"decision"}, []byte("allow")); err != nil {
		proxywasm.LogErrorf("setting decision: %v", err)
	}
	report("x-decision", text("decision"))
	return types.ActionContinue
}
