"""OCI images for WASM modules, and the registries that hold them.

``reference`` parses names; ``image`` builds and classifies the layouts; ``registry`` speaks the
distribution API (auth, retries, errors) over ``transport`` (HTTP on ``http.client``), with
``config`` (the settings it reads), ``credentials`` and ``connect`` configuring it;
``push``, ``pull``, ``inspect`` and ``search`` are the operations; ``store`` is the local OCI
image layout pulls land in; ``schema`` checks manifests.  See docs/registries.md.
"""
