"""``wasmbot push|pull|inspect|tag|search``: work with module images in registries from a terminal.

The same ``workers.oci`` functions the push stage uses; registries, credentials and variants come
from the configuration (README "Registries"), read by ``workers.oci.config.load`` so that these
commands load neither pydantic nor the ABI test harness unless they need them (docs/registries.md
"Speed").  Exit codes: 0 done, 1 the registry or the image
failed, 2 bad input.  Every error is one line ``wasmbot: …``; ``--debug`` prints its traceback too.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `wasmbot --help` must not load urllib3 or pydantic
    from workers.oci import reference
    from workers.oci.config import OciSettings
    from workers.oci.layercache import LayerCache
    from workers.oci.registry import Registry

EXIT_FAILED, EXIT_USAGE = 1, 2


class Usage(Exception):
    """Bad input found by the command itself (exit 2): an unreadable or invalid module, say."""


def _exit_code(exc: Exception) -> int | None:
    """The exit code for an error this module reports in one line; None: let it propagate."""
    from workers.configsource import ConfigError
    from workers.oci.reference import InvalidReference

    if isinstance(exc, ConfigError):
        return None  # bot/cli.py reports configuration errors the same way for every command
    return EXIT_USAGE if isinstance(exc, Usage | InvalidReference) else EXIT_FAILED


def _one_line(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run ``command``; any error becomes one line on stderr (after its traceback with --debug)."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except Exception as exc:
            code = _exit_code(exc)
            if code is None:
                raise
            if args.debug:
                import traceback

                traceback.print_exc()
            known = code == EXIT_USAGE or _is_reported(exc)
            text = str(exc) if known else f"{type(exc).__name__}: {exc}"
            print(f"wasmbot: {' '.join(text.split())}", file=sys.stderr)
            return code
    return run


def _is_reported(exc: Exception) -> bool:
    """Errors whose message is written for the person who ran the command."""
    from workers.oci.image import UnsupportedImage
    from workers.oci.registry import RegistryError

    return isinstance(exc, RegistryError | UnsupportedImage | OSError)


def _ref(text: str) -> reference.Reference:
    from workers.oci import reference

    return reference.parse(text)


def store_dir(settings: OciSettings) -> Path:
    return settings.data_dir / "oci"


def _load_check(wasm: bytes, name: str, settings: OciSettings, cache: LayerCache) -> str:
    """The module's ABI version, once it is known to load in Envoy; a module that passed before
    (same bytes, same size cap) is not compiled again, so wasmtime is not even imported."""
    max_bytes = settings.test_max_module_mb << 20
    known = cache.checked_abi(wasm, max_bytes)
    if known:
        return known
    from workers.abitest import vm
    from workers.abitest.validate import validate

    caps = vm.Limits(compile_seconds=settings.test_compile_seconds,
                     compile_memory_mb=settings.test_compile_memory_mb)
    try:
        module, _ = vm.compile_module(wasm, None, caps)
    except vm.CompileRefused as exc:
        raise Usage(f"{name}: {exc}") from exc
    except Exception as exc:  # wasmtime reports malformed binaries as plain errors
        first = str(exc).splitlines()[0]
        raise Usage(f"{name} is not a valid WebAssembly module: {first}") from exc
    checked = validate(module, len(wasm), max_bytes)
    if not checked.ok or not checked.abi_version:
        raise Usage(f"{name} would not load in Envoy: " + "; ".join(map(str, checked.problems)))
    cache.passed(wasm, max_bytes, checked.abi_version)
    return checked.abi_version


def cmd_push(args: argparse.Namespace) -> int:
    from workers.oci import image
    from workers.oci.config import load as load_settings
    from workers.oci.connect import connect
    from workers.oci.layercache import LayerCache
    from workers.oci.push import push, targets

    settings = load_settings()
    ref = _ref(args.reference)
    try:
        wasm = Path(args.module).read_bytes()
    except OSError as exc:
        raise Usage(f"cannot read {args.module}: {exc.strerror}") from exc
    variant = args.variant or settings.variant_for(ref.registry)
    pushes = targets(ref, variant, settings.oci_tag_suffix)  # refuses bad combinations before the work
    cache = LayerCache(settings.data_dir)
    abi_version = _load_check(wasm, args.module, settings, cache)
    runtime = image.Runtime([abi_version], args.root_id or [Path(args.module).stem])
    annotations = {"org.opencontainers.image.title": Path(args.module).stem}
    tag = pushes[0][1].tag  # the version; a push by digest alone names none
    if tag:
        annotations["org.opencontainers.image.version"] = tag
    registry = connect(settings, ref.registry)
    for kind, target in pushes:
        pushed = push(registry, target, image.build(kind, wasm, runtime, annotations, cache.compat_layer))
        print(f"pushed {pushed.pinned} ({kind} variant, {pushed.uploaded} blob(s) uploaded, "
              f"{pushed.reused} already there)")
    return 0


def _with_registry(text: str, action: Callable[[OciSettings, reference.Reference, Registry], str]) -> int:
    """Parse the reference (exit 2 when invalid, before any request), then run ``action``."""
    from workers.oci.config import load as load_settings
    from workers.oci.connect import connect

    settings = load_settings()
    ref = _ref(text)
    print(action(settings, ref, connect(settings, ref.registry)))
    return 0


def _writable(path: Path) -> Path:
    """``path`` if its directory exists, checked before anything is downloaded."""
    if not path.parent.is_dir():
        why = "is not a directory" if path.parent.exists() else "does not exist"
        raise Usage(f"cannot write {path}: the directory {path.parent} {why}")
    return path


def cmd_pull(args: argparse.Namespace) -> int:
    from workers.oci.pull import pull
    from workers.oci.store import Store

    out = _writable(Path(args.output))

    def action(settings: OciSettings, ref: reference.Reference, registry: Registry) -> str:
        pulled = pull(registry, ref, Store(store_dir(settings)), settings.test_max_module_mb << 20)
        try:
            out.write_bytes(pulled.module)
        except OSError as exc:
            raise OSError(f"cannot write {out}: {exc.strerror}") from exc
        return (f"pulled {ref.pinned(pulled.digest)} ({pulled.variant} variant, {pulled.downloaded} "
                f"blob(s) downloaded): {out} {len(pulled.module)} bytes, {pulled.module_digest}")
    return _with_registry(args.reference, action)


def cmd_inspect(args: argparse.Namespace) -> int:
    from workers.oci.inspect import inspect

    def action(settings: OciSettings, ref: reference.Reference, registry: Registry) -> str:
        found = inspect(registry, ref)
        return json.dumps(found.as_dict(), indent=2) if args.json else found.text()
    return _with_registry(args.reference, action)


def cmd_tag(args: argparse.Namespace) -> int:
    from workers.oci import reference
    from workers.oci.push import tag

    reference.check_tag(args.tag)
    return _with_registry(args.reference,
                          lambda settings, ref, registry: f"tagged {tag(registry, ref, args.tag).pinned}")


def cmd_search(args: argparse.Namespace) -> int:
    from workers import commands
    from workers.config import load_settings

    settings = load_settings()
    try:
        command = commands.parse("search " + args.text)
    except commands.CommandError as exc:
        raise Usage(str(exc)) from exc
    assert isinstance(command, commands.SearchCommand)
    from bot.answers import search_text

    print(search_text(settings, command))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from workers.oci import reference  # stdlib only: cheap enough for --help

    p = sub.add_parser("push", help="push a .wasm module as an OCI image",
                       description="Check the module loads (ABI version from its marker export), then "
                       "push it in the registry's configured variant.")
    p.add_argument("module")
    p.add_argument("reference", help=f"REGISTRY/REPOSITORY[:TAG][@DIGEST], e.g. {reference.EXAMPLE}; "
                   "a digest must be the pushed image's (without a tag it is pushed by digest only)")
    p.add_argument("--root-id", action="append", help="root id(s) (default: the file name)")
    p.add_argument("--variant", choices=("compat", "oci", "both"), help="override the configured variant")
    _command(p, cmd_push)

    pinned = "REGISTRY/REPOSITORY[:TAG][@DIGEST]; a digest wins over the tag"
    p = sub.add_parser("pull", help="pull an image (either variant, or Docker v2) and write its module")
    p.add_argument("reference", help=pinned)
    p.add_argument("-o", "--output", default="plugin.wasm", help="where to write the module")
    _command(p, cmd_pull)

    p = sub.add_parser("inspect", help="show an image's variant, ABI versions, root ids, size, "
                       "annotations (the module is not downloaded)")
    p.add_argument("reference", help=pinned)
    p.add_argument("--json", action="store_true")
    _command(p, cmd_inspect)

    p = sub.add_parser("tag", help="give an image another tag without uploading anything")
    p.add_argument("reference", help=pinned)
    p.add_argument("tag")
    _command(p, cmd_tag)

    p = sub.add_parser("search", help="find repositories (catalog API) and their tags")
    p.add_argument("text", help="[REGISTRY/]TEXT, e.g. localhost:5000/add-header")
    _command(p, cmd_search)


def _command(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], int]) -> None:
    parser.add_argument("--debug", action="store_true", help="print an error's traceback too")
    parser.set_defaults(func=_one_line(command))
