"""Benchmark: push and pull of 1 MB and 10 MB modules, and re-push of an unchanged module.

    python3 bench/oci.py [--sizes 1,10] [--repeat 5] [--variant compat]

Against Debian's docker-registry on loopback (started here).  Figures, best of ``--repeat``:

* push: ``workers.oci.push`` of a module to a repository that has none of its blobs, against
  the same-run baseline of the bare protocol (``requests`` POST+PUT of the same bytes, no
  existence checks, no read-back);
* re-push: the same module pushed again under a new tag (blobs already there), as a ratio of
  the first push: what an unchanged rebuild costs;
* pull: ``workers.oci.pull`` into an empty content store (digests verified, module extracted)
  against a bare ``requests`` GET of the module's layer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.localservices import start_registry  # noqa: E402
from workers.config import Settings  # noqa: E402
from workers.oci import image, reference  # noqa: E402
from workers.oci.connect import connect  # noqa: E402
from workers.oci.pull import pull  # noqa: E402
from workers.oci.push import push  # noqa: E402
from workers.oci.store import Store  # noqa: E402


def best(fn: Callable[[int], object], repeat: int) -> float:
    times = []
    for attempt in range(repeat):
        started = time.perf_counter()
        fn(attempt)
        times.append(time.perf_counter() - started)
    return min(times)


def bare_upload(base: str, repository: str, data: bytes) -> None:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    opened = requests.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=60)
    location = opened.headers["Location"]
    url = location if location.startswith("http") else base + location
    put = requests.put(f"{url}{'&' if '?' in url else '?'}digest={digest}", data=data, timeout=60,
                       headers={"Content-Type": "application/octet-stream"})
    put.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10", help="module sizes in MB")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--variant", choices=image.VARIANTS, default="compat")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmbot-bench-oci-") as tmp:
        folder = Path(tmp)
        service = start_registry(folder / "registry")
        try:
            host = service.url.split("://", 1)[1]
            registry = connect(Settings(data_dir=folder / "data", docker_config=folder / "none.json"), host)
            print(f"registry: docker-registry on {service.url}; variant {args.variant}; "
                  f"best of {args.repeat}")
            print(f"{'size':>6} {'push s':>8} {'bare s':>8} {'ratio':>6} {'re-push s':>10} {'re/first':>9} "
                  f"{'pull s':>8} {'bare s':>8} {'ratio':>6} {'push MB/s':>10}")
            for mb in (int(s) for s in args.sizes.split(",")):
                module = b"\0asm\x01\0\0\0" + os.urandom(mb * 1_000_000 - 8)
                built = image.build(args.variant, module, image.Runtime(["0.2.1"], ["bench"]), {})

                def first(i: int, mb: int = mb, built: image.Image = built) -> None:
                    push(registry, reference.parse(f"{host}/bench/first-{mb}-{i}:v1"), built)

                def again(i: int, mb: int = mb, built: image.Image = built) -> None:
                    push(registry, reference.parse(f"{host}/bench/first-{mb}-0:again{i}"), built)

                def bare(i: int, mb: int = mb, built: image.Image = built) -> None:
                    for blob in (built.config, *built.layers):
                        bare_upload(service.url, f"bench/bare-{mb}-{i}", blob.data)

                layer = image.module_layer(json.loads(built.manifest()), args.variant)

                def fetch(i: int, mb: int = mb) -> None:
                    pull(registry, reference.parse(f"{host}/bench/first-{mb}-0:v1"),
                         Store(folder / f"store-{mb}-{i}"), 256 << 20)

                def bare_fetch(i: int, mb: int = mb, digest: str = layer["digest"],
                               size: int = int(layer["size"])) -> None:
                    response = requests.get(f"{service.url}/v2/bench/first-{mb}-0/blobs/{digest}", timeout=60)
                    assert len(response.content) == size

                t_push, t_bare = best(first, args.repeat), best(bare, args.repeat)
                t_again = best(again, args.repeat)
                t_pull, t_bare_pull = best(fetch, args.repeat), best(bare_fetch, args.repeat)
                print(f"{mb:>4}MB {t_push:8.3f} {t_bare:8.3f} {t_push / t_bare:6.2f} {t_again:10.4f} "
                      f"{t_again / t_push:9.3f} {t_pull:8.3f} {t_bare_pull:8.3f} {t_pull / t_bare_pull:6.2f} "
                      f"{mb / t_push:10.1f}")
        finally:
            service.stop()


if __name__ == "__main__":
    main()
