#!/usr/bin/env bash
# oras, built from the Go module proxy and cached (go-install.sh); prints its path.  The OCI
# conformance test (tests/test_oci_conformance.py) pulls wasmbot's images with it and pushes
# images for wasmbot to pull; bench/oci.py times it.
exec bash "$(dirname "$0")/go-install.sh" oras oras.land/oras/cmd/oras "${ORAS_VERSION:-v1.3.6}"
