#!/usr/bin/env bash
# k8s.io/apiextensions-apiserver, built from the Go module proxy and cached (go-install.sh);
# prints its path.  The deploy tests run it on etcd as a real Kubernetes API server for the
# Istio and Gloo CRDs (tests/kubeserver.py).
exec bash "$(dirname "$0")/go-install.sh" apiextensions-apiserver k8s.io/apiextensions-apiserver \
    "${APIEXTENSIONS_APISERVER_VERSION:-v0.34.2}"
