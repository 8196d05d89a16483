#!/usr/bin/env bash
# crane (go-containerregistry), built from the Go module proxy and cached (go-install.sh); prints
# its path.  The OCI conformance test (tests/test_oci_conformance.py) pulls wasmbot's images with
# it and pushes images for wasmbot to pull; bench/oci.py times it.
exec bash "$(dirname "$0")/go-install.sh" crane github.com/google/go-containerregistry/cmd/crane \
    "${CRANE_VERSION:-v0.22.1}"
