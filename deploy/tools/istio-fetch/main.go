// istio-fetch pulls a Wasm module from an OCI image with Istio's own code, as istio-agent does,
// so that wasmbot's tests can check what Istio makes of the images wasmbot pushes (issue 20).
//
// Usage: istio-fetch REFERENCE > plugin.wasm
//
// REFERENCE is an image reference such as 127.0.0.1:5000/filters/add-header:v1 (the part after
// "oci://" in a WasmPlugin's url).  The module goes through wasm.LocalFileCache.Get, the call
// istio-agent's xDS proxy makes (pkg/wasm/convert.go), with the agent's settings taken from the
// same environment variables pilot-agent reads: WASM_INSECURE_REGISTRIES (comma-separated hosts,
// or "*"; plain-HTTP loopback registries are reached as Istio's fetcher reaches them) and
// ISTIO_WASM_MAX_BINARY_SIZE_BYTES (read by Istio's features package itself).  On success the
// module's bytes are written to stdout; otherwise Istio's error is the last line on stderr (after
// Istio's own log lines) and the exit status is 1 (2 for a usage error).
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"istio.io/istio/pkg/log"
	"istio.io/istio/pkg/util/sets"
	"istio.io/istio/pkg/wasm"
)

// The agent's default when the WasmPlugin sets no timeout (pkg/wasm/convert.go).
const requestTimeout = 5 * time.Second

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) != 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: istio-fetch REFERENCE > plugin.wasm")
		return 2
	}
	logs := log.DefaultOptions() // Istio logs to stdout by default: keep stdout for the module
	logs.OutputPaths = []string{"stderr"}
	if err := log.Configure(logs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	dir, err := os.MkdirTemp("", "istio-fetch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	module, err := fetch(dir, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := os.Stdout.Write(module); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

func fetch(dir, reference string) ([]byte, error) {
	var insecure []string
	if hosts := os.Getenv("WASM_INSECURE_REGISTRIES"); hosts != "" {
		insecure = strings.Split(hosts, ",")
	}
	cache := wasm.NewLocalFileCache(dir, wasm.Options{InsecureRegistries: sets.New(insecure...)})
	defer cache.Cleanup()
	path, err := cache.Get("oci://"+reference, wasm.GetOptions{
		RequestTimeout: requestTimeout,
		PullPolicy:     wasm.Always,
	})
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}
