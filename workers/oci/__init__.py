"""OCI images for WASM modules: their layouts (``image``); the registry client grows here."""
