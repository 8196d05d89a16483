"""Conformance with oras, crane, skopeo and Istio's own fetcher through a real registry (issue 20,
acceptances 1 and 2).

Three matrices, every cell run for real against one docker-registry:

* each image ``wasmbot push`` makes (``--variant compat``, ``oci``, ``both``) is pulled by oras,
  crane, skopeo and ``istio-fetch`` (deploy/tools/istio-fetch: Istio's ``pkg/wasm`` at the version
  its go.mod pins, through the call istio-agent makes), and each gets the module's exact bytes
  the way the table below says;
* ``wasmbot pull`` pulls what those tools push, and Istio's fetcher is given the same image:
  each gets the module or refuses as the table says;
* the tar archives of tests/test_oci_tar.py, pushed as compat layers, go through Istio's fetcher
  and ``wasmbot pull``: both take the same entry or both refuse (acceptance 2 at the pinned
  Istio, not only against the copy of its function that test_oci_tar.py builds).

The expected cells are written out here.  What was observed is rendered into docs/registries.md
between the conformance markers, and the test fails if the committed text differs;
``WASMBOT_GOLDEN_UPDATE=1`` rewrites it.  The tools come from deploy/setup.sh (deploy/tools/oras.sh,
crane.sh and istio-fetch.sh build and cache them; skopeo is a Debian package): a missing one fails
the test, it is never skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from ocihelp import built, client, host_of, module_bytes
from test_oci_tar import CASES, LIMIT

from bot.localservices import Service, start_registry
from workers.oci import image, reference
from workers.oci.image import CONFIG_MEDIA_TYPE, CONTENT_MEDIA_TYPE, TAR_GZIP_MEDIA_TYPE, UnsupportedImage
from workers.oci.pull import pull
from workers.oci.push import push
from workers.oci.registry import RegistryError
from workers.oci.store import Store

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "registries.md"
BEGIN, END = "<!-- conformance:begin -->", "<!-- conformance:end -->"
TOOLS = ("oras", "crane", "skopeo", "Istio")


@dataclass(frozen=True)
class Got:
    """What a tool got: the module's bytes, or None; ``how`` says by which command, or why not."""

    module: bytes | None
    how: str = ""

    def cell(self, expected: bytes) -> str:
        if self.module is None:
            return f"✗ {self.how}"
        if self.module != expected:
            return f"✗ other bytes ({len(self.module)}) {self.how}".rstrip()
        return f"✓ {self.how}".rstrip()


class Lab:
    """One registry, the tools, and a scratch directory per command."""

    def __init__(self, service: Service, work: Path, tools: dict[str, str]) -> None:
        self.service, self.work, self.tools = service, work, tools
        self.host = host_of(service)
        self.count = 0
        docker = work / "docker"  # no credentials: every tool asks the registry anonymously
        docker.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_")} | {
            "DOCKER_CONFIG": str(docker), "WASMBOT_DATA_DIR": str(work / "wasmbot-data"),
            "WASMBOT_CONFIG": str(work / "wasmbot.toml"),
            "WASMBOT_DOCKER_CONFIG": str(docker / "config.json"),
            # as pilot-agent reads them: plain HTTP allowed for this registry (loopback), and
            # Istio's default size limit unless a case sets its own
            "WASM_INSECURE_REGISTRIES": self.host}
        (work / "wasmbot.toml").write_text("")
        self.registry = client(service, work / "client")

    def fresh(self, name: str) -> Path:
        self.count += 1
        path = self.work / f"{self.count:03d}-{name}"
        path.mkdir()
        return path

    def run(self, tool: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "bot.cli"] if tool == "wasmbot" else [self.tools[tool]]
        return subprocess.run([*command, *args], cwd=cwd or ROOT, env=self.env | (env or {}),
                              capture_output=True, timeout=120, check=False)

    def ok(self, tool: str, *args: str, cwd: Path | None = None) -> bytes:
        done = self.run(tool, *args, cwd=cwd)
        assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stderr.decode()}"
        return done.stdout

    def said(self, stderr: bytes) -> str:
        """A tool's error as the table shows it: one line, without the port or digests."""
        text = " ".join(stderr.decode().replace(self.host, "REGISTRY").split())
        return re.sub(r"sha256:[0-9a-f]{64}", "sha256:…", text)


def tool_path(script: str) -> str:
    """A tool built and cached by deploy/tools/SCRIPT (deploy/setup.sh runs it first)."""
    done = subprocess.run(["bash", str(ROOT / "deploy" / "tools" / script)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0 or not os.access(done.stdout.strip(), os.X_OK):
        pytest.fail(f"deploy/tools/{script} (run by deploy/setup.sh) gave no binary: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.fail("skopeo is missing: deploy/setup.sh installs it (Debian package skopeo)")
    tools = {"oras": tool_path("oras.sh"), "crane": tool_path("crane.sh"), "skopeo": skopeo,
             "Istio": tool_path("istio-fetch.sh")}
    service = start_registry(tmp_path_factory.mktemp("conformance-registry"))
    try:
        yield Lab(service, tmp_path_factory.mktemp("conformance"), tools)
    finally:
        service.stop()


# --- getting the module out of an image, with each tool -------------------------------------


def untar_plugin(layer: bytes) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        member = tar.extractfile("plugin.wasm")
        return member.read() if member else None


def by_oras(lab: Lab, ref: str) -> Got:
    out = lab.fresh("oras")
    done = lab.run("oras", "pull", "--plain-http", ref, "-o", str(out))
    if done.returncode != 0:
        return Got(None, f"`oras pull`: {lab.said(done.stderr)}")
    if (out / "plugin.wasm").is_file():
        return Got((out / "plugin.wasm").read_bytes(), "`oras pull` writes plugin.wasm")
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    if written:
        return Got(None, f"`oras pull` writes {', '.join(written)}")
    manifest = json.loads(lab.ok("oras", "manifest", "fetch", "--plain-http", ref))
    repository = ref.rsplit(":", 1)[0]
    layer = lab.ok("oras", "blob", "fetch", "--plain-http", "--output", "-",
                   f"{repository}@{manifest['layers'][-1]['digest']}")
    return Got(untar_plugin(layer), "`oras blob fetch` of the layer, untarred (`oras pull` skips a layer "
                                    "without a title)")


def by_crane(lab: Lab, ref: str) -> Got:
    exported = lab.fresh("crane") / "fs.tar"
    done = lab.run("crane", "export", "--insecure", ref, str(exported))
    if done.returncode == 0:
        with tarfile.open(exported) as tar:
            member = tar.extractfile("plugin.wasm")
            return Got(member.read() if member else None, "`crane export`")
    manifest = json.loads(lab.ok("crane", "manifest", "--insecure", ref))
    content = [layer for layer in manifest["layers"] if layer["mediaType"] == CONTENT_MEDIA_TYPE]
    if not content:
        return Got(None, f"`crane export`: {lab.said(done.stderr)}")
    repository = ref.rsplit(":", 1)[0]
    blob = lab.ok("crane", "blob", "--insecure", f"{repository}@{content[0]['digest']}")
    return Got(blob, f"`crane blob` of the module layer (`crane export`: {lab.said(done.stderr)})")


def by_skopeo(lab: Lab, ref: str) -> Got:
    layout = lab.fresh("skopeo")
    done = lab.run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:copy")
    if done.returncode != 0:
        return Got(None, f"`skopeo copy`: {lab.said(done.stderr)}")

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    index = json.loads((layout / "index.json").read_text())
    layers = json.loads(blob(index["manifests"][0]["digest"]))["layers"]
    content = [layer for layer in layers if layer["mediaType"] == CONTENT_MEDIA_TYPE]
    if content:
        return Got(blob(content[0]["digest"]), "`skopeo copy` to an OCI layout: its module layer")
    return Got(untar_plugin(blob(layers[-1]["digest"])), "`skopeo copy` to an OCI layout: plugin.wasm "
                                                         "from its layer")


ISTIO_LOG = re.compile(rb"^\d{4}-\d\d-\d\dT.*\n", re.MULTILINE)  # Istio's log lines, before its error
ISTIO_WRAPPING = re.compile(r"^(could not fetch Wasm (OCI image|binary): )+")
# a one-layer image that is not compat is not the oci variant either: Istio says both
ISTIO_NOT_COMPAT = re.compile(r"the given image is in invalid format as an OCI image: 2 errors occurred: \* could "
                              r"not parse as compat variant: (could not extract wasm binary: )?(?P<why>.*) \* "
                              r"could not parse as oci variant: number of layers must be 2 but got 1$")


def by_istio(lab: Lab, ref: str, limit: int | None = None) -> Got:
    env = {"ISTIO_WASM_MAX_BINARY_SIZE_BYTES": str(limit)} if limit else None
    done = lab.run("Istio", ref, env=env)
    if done.returncode == 0:
        return Got(done.stdout)
    assert done.returncode == 1, done.stderr.decode()
    return Got(None, ISTIO_WRAPPING.sub("", lab.said(ISTIO_LOG.sub(b"", done.stderr))))


def by_wasmbot(lab: Lab, ref: str) -> Got:
    out = lab.fresh("wasmbot") / "plugin.wasm"
    done = lab.run("wasmbot", "pull", ref, "-o", str(out))
    if done.returncode == 0:
        return Got(out.read_bytes())
    assert done.returncode == 1, done.stderr.decode()  # 1: the image was refused, not the input
    return Got(None, lab.said(done.stderr).removeprefix("wasmbot: "))


PULLERS: dict[str, Callable[[Lab, str], Got]] = {"oras": by_oras, "crane": by_crane, "skopeo": by_skopeo,
                                                 "Istio": by_istio}


# --- (a) each tool pulls what wasmbot pushes --------------------------------------------------

# row: (`wasmbot push --variant`, the tag it pushed the row's image to)
PUSHED = {"`--variant compat`": ("compat", "v1"), "`--variant oci`": ("oci", "v1"),
          "`--variant both`, TAG": ("both", "v1"), "`--variant both`, TAG-oci": ("both", "v1-oci")}

ORAS_BLOB = "✓ `oras blob fetch` of the layer, untarred (`oras pull` skips a layer without a title)"
ORAS_PULL = "✓ `oras pull` writes plugin.wasm"
CRANE_EXPORT = "✓ `crane export`"
CRANE_BLOB = "✓ `crane blob` of the module layer (`crane export`: Error: reading tar: unexpected EOF)"
SKOPEO_TAR = "✓ `skopeo copy` to an OCI layout: plugin.wasm from its layer"
SKOPEO_RAW = "✓ `skopeo copy` to an OCI layout: its module layer"
COMPAT_ROW = {"oras": ORAS_BLOB, "crane": CRANE_EXPORT, "skopeo": SKOPEO_TAR, "Istio": "✓"}
OCI_ROW = {"oras": ORAS_PULL, "crane": CRANE_BLOB, "skopeo": SKOPEO_RAW, "Istio": "✓"}
EXPECTED_PULLS = {"`--variant compat`": COMPAT_ROW, "`--variant oci`": OCI_ROW,
                  "`--variant both`, TAG": COMPAT_ROW, "`--variant both`, TAG-oci": OCI_ROW}


@dataclass(frozen=True)
class Matrix:
    pulls: dict[str, dict[str, str]]  # row -> tool -> cell
    pushes: dict[str, dict[str, str]]  # row -> "wasmbot pull" / "Istio" -> cell
    tars: dict[str, dict[str, Got]]  # case -> "Istio" / "wasmbot pull" -> what each got


def wasmbot_images(lab: Lab) -> dict[str, tuple[str, bytes]]:
    """Push one module per variant with ``wasmbot push``: row -> (reference, module)."""
    images: dict[str, tuple[str, bytes]] = {}
    for number, variant in enumerate(("compat", "oci", "both"), start=1):
        module = module_bytes(padding=number * 100)
        path = lab.fresh("module") / "add-header.wasm"
        path.write_bytes(module)
        lab.ok("wasmbot", "push", str(path), f"{lab.host}/pushed/{variant}:v1", "--variant", variant)
        for row, (pushed, tag) in PUSHED.items():
            if pushed == variant:
                images[row] = (f"{lab.host}/pushed/{variant}:{tag}", module)
    return images


# --- (b) wasmbot pulls what each tool pushes --------------------------------------------------


@dataclass
class Files:
    """A module and the files the tools push it from."""

    dir: Path
    module: bytes

    @classmethod
    def make(cls, lab: Lab, padding: int) -> Files:
        files = cls(lab.fresh("files"), module_bytes(padding=padding))
        (files.dir / "plugin.wasm").write_bytes(files.module)
        (files.dir / "plugin.tar").write_bytes(image.plugin_tar(files.module))
        (files.dir / "plugin.tar.gz").write_bytes(image.compat_layer(files.module).data)
        (files.dir / "runtime-config.json").write_text(json.dumps(image.Runtime(["0.2.1"], ["x"]).config()))
        return files


def oras_one_layer(lab: Lab, ref: str, files: Files) -> str:
    lab.ok("oras", "push", "--plain-http", ref, f"plugin.wasm:{CONTENT_MEDIA_TYPE}", cwd=files.dir)
    return ref


def oras_one_tar_layer(lab: Lab, ref: str, files: Files) -> str:
    lab.ok("oras", "push", "--plain-http", ref, f"plugin.tar.gz:{TAR_GZIP_MEDIA_TYPE}", cwd=files.dir)
    return ref


def oras_two_layers(lab: Lab, ref: str, files: Files) -> str:
    lab.ok("oras", "push", "--plain-http", ref, "--config", f"runtime-config.json:{CONFIG_MEDIA_TYPE}",
           f"runtime-config.json:{CONFIG_MEDIA_TYPE}", f"plugin.wasm:{CONTENT_MEDIA_TYPE}", cwd=files.dir)
    return ref


def oras_attach(lab: Lab, ref: str, files: Files) -> str:
    """The solo.io layout attached to a compat image (in its repository): a manifest with a
    subject, an artifactType and annotations, pulled by its digest."""
    subject = wasmbot_image(lab, ref, files)
    attached = json.loads(lab.ok("oras", "attach", "--plain-http", "--artifact-type", "application/vnd.wasmbot.test",
                                 "--annotation", "org.opencontainers.image.description=attached", "--format",
                                 "json", subject, f"runtime-config.json:{CONFIG_MEDIA_TYPE}",
                                 f"plugin.wasm:{CONTENT_MEDIA_TYPE}", cwd=files.dir))
    pinned = f"{subject.rsplit(':', 1)[0]}@{attached['digest']}"
    manifest = json.loads(lab.ok("oras", "manifest", "fetch", "--plain-http", pinned))
    assert manifest["subject"]["digest"] and manifest["annotations"] and manifest["artifactType"], manifest
    return pinned


def crane_append(lab: Lab, ref: str, files: Files, *flags: str) -> str:
    lab.ok("crane", "append", "--insecure", *flags, "-f", str(files.dir / "plugin.tar"), "-t", ref)
    return ref


def wasmbot_image(lab: Lab, ref: str, files: Files, variant: str = "compat") -> str:
    """The module pushed with wasmbot's push, for the tools to copy or index (in-process: the CLI
    is what the first table checks)."""
    source = f"{ref.rsplit(':', 1)[0]}-source:{variant}"
    push(lab.registry, reference.parse(source), built(variant, files.module))
    return source


def skopeo_v2s2(lab: Lab, ref: str, files: Files) -> str:
    lab.ok("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "v2s2",
           f"docker://{wasmbot_image(lab, ref, files)}", f"docker://{ref}")
    return ref


def crane_index(*variants: str, platform: str = "") -> Callable[[Lab, str, Files], str]:
    """An OCI index of ``wasmbot push``es of the module, in order, each given ``platform`` if set."""
    def make(lab: Lab, ref: str, files: Files) -> str:
        manifests = []
        for variant in variants:
            source = wasmbot_image(lab, ref, files, variant)
            if platform:
                lab.ok("crane", "mutate", "--insecure", "--set-platform", platform, source, "-t", source)
            manifests += ["-m", source]
        lab.ok("crane", "index", "append", "--insecure", *manifests, "-t", ref)
        return ref
    return make


def index_oci_then_other_compat(lab: Lab, ref: str, files: Files) -> str:
    """An index of the oci variant (no platform) and then a compat image (linux/amd64) of
    another module: the module expected is the first one's."""
    first = wasmbot_image(lab, ref, files, "oci")
    second = wasmbot_image(lab, f"{ref.rsplit(':', 1)[0]}-other:v1", replace(files, module=module_bytes(padding=3)))
    lab.ok("crane", "index", "append", "--insecure", "-m", first, "-m", second, "-t", ref)
    return ref


def nested_index(lab: Lab, ref: str, files: Files) -> str:
    """An OCI index whose only entry is another index (of a compat image), put with ``oras
    manifest push`` (``crane index append`` flattens a nested index into its entries)."""
    inner = crane_index("compat")(lab, f"{ref.rsplit(':', 1)[0]}:inner", files)  # same repository
    body = lab.ok("crane", "manifest", "--insecure", inner)
    outer = {"schemaVersion": 2, "mediaType": image.INDEX_MEDIA_TYPE, "manifests": [
        {"mediaType": image.INDEX_MEDIA_TYPE, "size": len(body),
         "digest": "sha256:" + hashlib.sha256(body).hexdigest()}]}
    (files.dir / "index.json").write_text(json.dumps(outer))
    lab.ok("oras", "manifest", "push", "--plain-http", "--media-type", image.INDEX_MEDIA_TYPE, ref,
           "index.json", cwd=files.dir)
    return ref


# row: (how the image is made, what wasmbot pull gets, what Istio gets)
TOOL_PUSHES: dict[str, tuple[Callable[[Lab, str, Files], str], str, str]] = {
    "`oras push`, one layer: the raw module": (
        oras_one_layer,
        "✗ not a WASM module image: the last layer is application/vnd.module.wasm.content.layer.v1+wasm and "
        "there are 1 layers; expected a last layer of application/vnd.oci.image.layer.v1.tar+gzip holding "
        "plugin.wasm, or exactly two layers, one application/vnd.module.wasm.content.layer.v1+wasm",
        "✗ the given image is in invalid format as an OCI image: 2 errors occurred: * could not parse as "
        "compat variant: invalid media type application/vnd.module.wasm.content.layer.v1+wasm (expect "
        "application/vnd.oci.image.layer.v1.tar+gzip) * could not parse as oci variant: number of layers "
        "must be 2 but got 1"),
    "`oras push`, one layer: plugin.wasm in a tar.gz": (oras_one_tar_layer, "✓", "✓"),
    "`oras push`, two layers: runtime config and raw module": (oras_two_layers, "✓", "✓"),
    "`crane append` (Docker media types)": (crane_append, "✓", "✓"),
    "`crane append --oci-empty-base`": (lambda lab, ref, files: crane_append(lab, ref, files, "--oci-empty-base"),
                                        "✓", "✓"),
    "`skopeo copy --format v2s2` (Docker v2 schema 2)": (skopeo_v2s2, "✓", "✓"),
    "`crane index append`: OCI index of a compat image (linux/amd64)": (crane_index("compat"), "✓", "✓"),
    "`crane index append`: OCI index of an oci-variant image (no platform: linux/amd64)": (
        crane_index("oci"), "✓", "✓"),
    "`crane index append`: OCI index of a no-platform image, then a linux/amd64 one": (
        index_oci_then_other_compat, "✓", "✓"),
    "`crane index append`: OCI index of a linux/arm64 image only": (
        crane_index("compat", platform="linux/arm64"),
        "✗ REGISTRY/tools/case10:v1 is an image index with no linux/amd64 image (its platforms: linux/arm64); "
        "Istio would not load it",
        "✗ could not fetch image: no child with platform linux/amd64 in index REGISTRY/tools/case10:v1"),
    "`oras attach`: subject, artifactType, annotations, two layers": (oras_attach, "✓", "✓"),
    "`crane index append`: an index whose entry is an index of a compat image": (nested_index, "✓", "✓"),
}


def tool_images(lab: Lab) -> dict[str, dict[str, str]]:
    cells: dict[str, dict[str, str]] = {}
    for number, (row, (make, _, _)) in enumerate(TOOL_PUSHES.items(), start=1):
        files = Files.make(lab, padding=1000 + number)
        ref = make(lab, f"{lab.host}/tools/case{number}:v1", files)
        cells[row] = {"wasmbot pull": by_wasmbot(lab, ref).cell(files.module),
                      "Istio": by_istio(lab, ref).cell(files.module)}
    return cells


# --- (c) the tar cases, through the registry, to Istio at the pin and to wasmbot -------------


def tar_cases(lab: Lab) -> dict[str, dict[str, Got]]:
    """Each archive as the layer of a compat image: what Istio's fetcher and wasmbot's pull get."""
    got: dict[str, dict[str, Got]] = {}
    scratch = lab.fresh("tar-cases")
    for number, (case, make, _) in enumerate(CASES, start=1):
        target = reference.parse(f"{lab.host}/tar-cases/case{number}:v1")
        compat = built("compat", module_bytes(padding=number))
        push(lab.registry, target, replace(compat, layers=[image.Blob(TAR_GZIP_MEDIA_TYPE, make())]))
        try:
            wasmbot = Got(pull(lab.registry, target, Store(scratch / "store"), LIMIT).module)
        except (UnsupportedImage, RegistryError) as exc:  # the latter: a blob over the limit
            wasmbot = Got(None, lab.said(str(exc).encode()))
        got[case] = {"Istio": by_istio(lab, str(target), LIMIT), "wasmbot pull": wasmbot}
    return got


@pytest.fixture(scope="module")
def matrix(lab: Lab) -> Matrix:
    pulls = {row: {tool: PULLERS[tool](lab, ref).cell(module) for tool in TOOLS}
             for row, (ref, module) in wasmbot_images(lab).items()}
    return Matrix(pulls, tool_images(lab), tar_cases(lab))


@pytest.mark.parametrize("row", list(PUSHED))
def test_each_tool_pulls_what_wasmbot_pushes(row: str, matrix: Matrix) -> None:
    assert matrix.pulls[row] == EXPECTED_PULLS[row]


@pytest.mark.parametrize("row", list(TOOL_PUSHES))
def test_wasmbot_pulls_what_each_tool_pushes(row: str, matrix: Matrix) -> None:
    _, wasmbot, istio = TOOL_PUSHES[row]
    got = matrix.pushes[row]
    assert (got["wasmbot pull"], got["Istio"]) == (wasmbot, istio)


@pytest.mark.parametrize("case", [case for case, _, _ in CASES])
def test_istio_at_the_pin_and_wasmbot_take_the_same_tar_entry(case: str, matrix: Matrix) -> None:
    expected = next(expected for name, _, expected in CASES if name == case)
    assert matrix.tars[case]["Istio"].module == expected, "the table disagrees with Istio at the pin"
    assert matrix.tars[case]["wasmbot pull"].module == expected


def tar_cell(got: Got, expected: bytes | None) -> str:
    """A tar case's cell, Istio's reason cut to why the layer is not compat (one layer is never
    the oci variant either, which Istio says too)."""
    return ISTIO_NOT_COMPAT.sub(r"\g<why>", got.cell(expected or b""))


def table(corner: str, rows: dict[str, dict[str, str]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = [f"| {corner} | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {row} | {' | '.join(cells[c] for c in columns)} |" for row, cells in rows.items()]
    return "\n".join(lines)


def render(matrix: Matrix) -> str:
    return "\n\n".join([
        "What each tool gets from the images `wasmbot push` makes (✓: the module's exact bytes):",
        table("`wasmbot push`", matrix.pulls),
        "What `wasmbot pull` and Istio's fetcher get from images the tools push:",
        table("image", matrix.pushes),
        f"The archives of `tests/test_oci_tar.py` as the layer of a compat image, size limit {LIMIT} bytes "
        "(`ISTIO_WASM_MAX_BINARY_SIZE_BYTES`, `max_module_bytes`); Istio's reasons are cut to why the "
        "layer is not compat (it adds that one layer is not the oci variant either):",
        table("archive", {case: {tool: tar_cell(got, expected) for tool, got in cells.items()}
                          for (case, _, expected), cells in zip(CASES, matrix.tars.values(), strict=True)}),
    ])


def test_the_table_in_the_docs_is_the_generated_one(matrix: Matrix) -> None:
    docs = DOCS.read_text()
    assert BEGIN in docs and END in docs, f"{DOCS} has no {BEGIN} … {END} section"
    head, rest = docs.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    generated = f"{head}{BEGIN}\n{render(matrix)}\n{END}{tail}"
    if os.environ.get("WASMBOT_GOLDEN_UPDATE") == "1":
        DOCS.write_text(generated)
    assert docs == generated or os.environ.get("WASMBOT_GOLDEN_UPDATE") == "1", (
        f"the conformance table in {DOCS} is not what the test found; to accept the change: "
        "WASMBOT_GOLDEN_UPDATE=1 python3 -m pytest tests/test_oci_conformance.py")
