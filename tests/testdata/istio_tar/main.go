// Istio's tar entry selection, verbatim, as an oracle for wasmbot's tests (issue 20).
//
// extractWasmPluginBinary below is copied from istio/istio pkg/wasm/imagefetcher.go
// (last changed in commit a42c16a0dc9343ceba3bd338edce7529956a682c; read at 86c9f01fd735),
// and isValidWasmBinary, the check Istio's cache applies to what it returns, from
// pkg/wasm/cache.go at the same commit; Copyright Istio Authors, Apache License 2.0. The only
// change: features.MaxWasmBinarySizeBytes is the maxWasmBinarySizeBytes variable, set from
// the command line.
//
// Usage: istio_tar LIMIT LAYER.tar.gz; prints the module Istio would load to stdout, or the
// reason it refuses to stderr and exits 1.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

var maxWasmBinarySizeBytes int64

func main() {
	limit, err := strconv.ParseInt(os.Args[1], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	maxWasmBinarySizeBytes = limit
	f, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ret, err := extractWasmPluginBinary(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !isValidWasmBinary(ret) {
		fmt.Fprintln(os.Stderr, "fetched Wasm binary is invalid")
		os.Exit(1)
	}
	os.Stdout.Write(ret)
}

var wasmMagicNumber = []byte{0x00, 0x61, 0x73, 0x6d}

func isValidWasmBinary(in []byte) bool {
	// Wasm file header is 8 bytes (magic number + version).
	return len(in) >= 8 && bytes.Equal(in[:4], wasmMagicNumber)
}

// Extracts the Wasm plugin binary named "plugin.wasm" in a given reader for tar.gz.
// This is only used for *compat* variant.
func extractWasmPluginBinary(r io.Reader) ([]byte, error) {
	gr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("failed to parse layer as tar.gz: %v", err)
	}

	// The target file name for Wasm binary.
	// https://github.com/solo-io/wasm/blob/master/spec/spec-compat.md#specification
	const wasmPluginFileName = "plugin.wasm"

	// Search for the file walking through the archive.

	tr := tar.NewReader(io.LimitReader(gr, maxWasmBinarySizeBytes))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}

		ret := make([]byte, h.Size)
		if filepath.Base(h.Name) == wasmPluginFileName {
			_, err := io.ReadFull(tr, ret)
			if err != nil {
				return nil, fmt.Errorf("failed to read %s: %v", wasmPluginFileName, err)
			}
			return ret, nil
		}
	}
	return nil, fmt.Errorf("%s not found in the archive", wasmPluginFileName)
}
