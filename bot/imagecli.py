"""``wasmbot push|pull|inspect|tag|search``: work with module images in registries from a terminal.

The same ``workers.oci`` functions the push stage uses; registries, credentials and variants come
from the configuration (README "Registries").  Exit codes: 0 done, 1 the registry or the image
failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `wasmbot --help` must not load requests or pydantic
    from workers.config import Settings
    from workers.oci import reference
    from workers.oci.registry import Registry

EXIT_FAILED, EXIT_USAGE = 1, 2


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"wasmbot: {message}", file=sys.stderr)
    return code


def _ref(text: str) -> reference.Reference:
    from workers.oci import reference

    return reference.parse(text)


def store_dir(settings: Settings) -> Path:
    return settings.data_dir / "oci"


def cmd_push(args: argparse.Namespace) -> int:
    from workers.abitest import vm
    from workers.abitest.validate import validate
    from workers.config import load_settings
    from workers.oci import image, reference
    from workers.oci.connect import connect
    from workers.oci.push import push
    from workers.oci.registry import RegistryError

    settings = load_settings()
    try:
        ref = _ref(args.reference)
        ref = ref if ref.tag else ref.with_tag("latest")
        wasm = Path(args.module).read_bytes()
    except reference.InvalidReference as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"cannot read {args.module}: {exc.strerror}", EXIT_USAGE)
    caps = vm.Limits(compile_seconds=settings.test_compile_seconds,
                     compile_memory_mb=settings.test_compile_memory_mb)
    try:
        module, _ = vm.compile_module(wasm, None, caps)
    except vm.CompileRefused as exc:
        return _fail(f"{args.module}: {exc}", EXIT_USAGE)
    except Exception as exc:  # wasmtime reports malformed binaries as plain errors
        first = str(exc).splitlines()[0]
        return _fail(f"{args.module} is not a valid WebAssembly module: {first}", EXIT_USAGE)
    checked = validate(module, len(wasm), settings.test_max_module_mb << 20)
    if not checked.ok or not checked.abi_version:
        return _fail(f"{args.module} would not load in Envoy: " + "; ".join(map(str, checked.problems)),
                     EXIT_USAGE)
    variant = args.variant or settings.variant_for(ref.registry)
    runtime = image.Runtime([checked.abi_version], args.root_id or [Path(args.module).stem])
    annotations = {"org.opencontainers.image.title": Path(args.module).stem,
                   "org.opencontainers.image.version": ref.tag or "latest"}
    targets = [("compat", ref), ("oci", ref.with_tag(f"{ref.tag}{settings.oci_tag_suffix}"))] \
        if variant == "both" else [(variant, ref)]
    try:
        registry = connect(settings, ref.registry)
        for kind, target in targets:
            pushed = push(registry, target, image.build(kind, wasm, runtime, annotations))
            print(f"pushed {pushed.pinned} ({kind} variant, {pushed.uploaded} blob(s) uploaded, "
                  f"{pushed.reused} already there)")
    except RegistryError as exc:
        return _fail(str(exc))
    return 0


def _with_registry(text: str, action: Callable[[Settings, reference.Reference, Registry], str]) -> int:
    """Parse the reference (exit 2 when invalid, before any request), then run ``action``."""
    from workers.config import load_settings
    from workers.oci import image, reference
    from workers.oci.connect import connect
    from workers.oci.registry import RegistryError

    settings = load_settings()
    try:
        ref = _ref(text)
    except reference.InvalidReference as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        print(action(settings, ref, connect(settings, ref.registry)))
    except (RegistryError, image.UnsupportedImage) as exc:
        return _fail(str(exc))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from workers.oci.pull import pull
    from workers.oci.store import Store

    def action(settings: Settings, ref: reference.Reference, registry: Registry) -> str:
        pulled = pull(registry, ref, Store(store_dir(settings)), settings.test_max_module_mb << 20)
        out = Path(args.output)
        out.write_bytes(pulled.module)
        return (f"pulled {pulled.reference}@{pulled.digest} ({pulled.variant} variant, {pulled.downloaded} "
                f"blob(s) downloaded): {out} {len(pulled.module)} bytes, {pulled.module_digest}")
    return _with_registry(args.reference, action)


def cmd_inspect(args: argparse.Namespace) -> int:
    from workers.oci.inspect import inspect

    def action(settings: Settings, ref: reference.Reference, registry: Registry) -> str:
        found = inspect(registry, ref)
        return json.dumps(found.as_dict(), indent=2) if args.json else found.text()
    return _with_registry(args.reference, action)


def cmd_tag(args: argparse.Namespace) -> int:
    from workers.oci import reference
    from workers.oci.push import tag

    try:
        reference.check_tag(args.tag)
    except reference.InvalidReference as exc:
        return _fail(str(exc), EXIT_USAGE)
    return _with_registry(args.reference,
                          lambda settings, ref, registry: f"tagged {tag(registry, ref, args.tag).pinned}")


def cmd_search(args: argparse.Namespace) -> int:
    from workers import commands
    from workers.config import load_settings
    from workers.oci.registry import RegistryError

    settings = load_settings()
    try:
        command = commands.parse("search " + args.text)
    except commands.CommandError as exc:
        return _fail(str(exc), EXIT_USAGE)
    assert isinstance(command, commands.SearchCommand)
    from bot.answers import search_text

    try:
        print(search_text(settings, command))
    except RegistryError as exc:
        return _fail(str(exc))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from workers.oci import reference  # stdlib only: cheap enough for --help

    p = sub.add_parser("push", help="push a .wasm module as an OCI image",
                       description="Check the module loads (ABI version from its marker export), then "
                       "push it in the registry's configured variant.")
    p.add_argument("module")
    p.add_argument("reference", help=f"REGISTRY/REPOSITORY[:TAG], e.g. {reference.EXAMPLE}")
    p.add_argument("--root-id", action="append", help="root id(s) (default: the file name)")
    p.add_argument("--variant", choices=("compat", "oci", "both"), help="override the configured variant")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="pull an image (either variant, or Docker v2) and write its module")
    p.add_argument("reference")
    p.add_argument("-o", "--output", default="plugin.wasm", help="where to write the module")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("inspect", help="show an image's variant, ABI versions, root ids, size, "
                       "annotations (the module is not downloaded)")
    p.add_argument("reference")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("tag", help="give an image another tag without uploading anything")
    p.add_argument("reference")
    p.add_argument("tag")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("search", help="find repositories (catalog API) and their tags")
    p.add_argument("text", help="[REGISTRY/]TEXT, e.g. localhost:5000/add-header")
    p.set_defaults(func=cmd_search)
