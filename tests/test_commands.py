"""The command parser: valid, invalid and hostile input."""

from __future__ import annotations

import shlex

import pytest

from workers.commands import (
    SPECS,
    BuildCommand,
    CommandError,
    HelpCommand,
    InitCommand,
    SearchCommand,
    help_text,
    parse,
)

BUILD_USAGE = SPECS["build"].usage
INIT_USAGE = SPECS["init"].usage


@pytest.mark.parametrize(("text", "expected"), [
    ("/wasm build examples/hello-c", BuildCommand(source="examples/hello-c")),
    ("wasm build examples/hello-c/ --tag localhost:5000/hello:v1",
     BuildCommand(source="examples/hello-c", tag="localhost:5000/hello:v1")),
    ("build src --tag=ghcr.io/acme/filters/add-header:1.2.3 --lang c",
     BuildCommand(source="src", tag="ghcr.io/acme/filters/add-header:1.2.3", lang="c")),
    ("/wasm build 'my_dir'", BuildCommand(source="my_dir")),
    ("/wasm build x --tag 127.0.0.1:5000/a/b", BuildCommand(source="x", tag="127.0.0.1:5000/a/b")),
    ("/wasm help", HelpCommand()),
    ("/wasm", HelpCommand()),
    ("/wasm help deploy", HelpCommand(topic="deploy")),
    ("/wasm build src --lang rust", BuildCommand(source="src", lang="rust")),
    ("/wasm init my-filter --lang rust --platform istio",
     InitCommand(filter="my-filter", lang="rust", platform="istio", platform_version="1.28")),
    ("/wasm init a1 --lang go --platform istio:1.25",
     InitCommand(filter="a1", lang="go", platform="istio", platform_version="1.25")),
    ("/wasm init edge --lang assemblyscript --platform gloo:1.17",
     InitCommand(filter="edge", lang="assemblyscript", platform="gloo", platform_version="1.17")),
    ("/wasm init local --lang cpp --platform envoy",
     InitCommand(filter="local", lang="cpp", platform="envoy", platform_version="1.40")),
])
def test_valid_commands(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "message", "usage"), [
    ("/wasm frobnicate", "unknown command 'frobnicate'", "/wasm COMMAND [ARGS]"),
    ("/wasm build", "the following arguments are required: source", BUILD_USAGE),
    ("/wasm build a b", "unrecognized arguments: b", BUILD_USAGE),
    ("/wasm build a --lang cobol", "argument --lang: invalid choice: 'cobol'", BUILD_USAGE),
    ("/wasm build a --tag", "argument --tag: expected one argument", BUILD_USAGE),
    ("/wasm build a --tag hello:v1", "invalid reference 'hello:v1'", BUILD_USAGE),
    ("/wasm build a --tag localhost:5000/Hello:v1", "invalid --tag", BUILD_USAGE),
    ("/wasm deploy staging", "the following arguments are required: --env", SPECS["deploy"].usage),
    ("/wasm status a b", "status takes at most one ENV", SPECS["status"].usage),
    ("/wasm undeploy staging", "undeploy takes ENV FILTER", SPECS["undeploy"].usage),
    ("/wasm rollback Staging", "invalid ENV 'Staging'", SPECS["rollback"].usage),
    ("/wasm deploy localhost:5000/a:v1 --env Prod", "invalid --env 'Prod'", SPECS["deploy"].usage),
    ("/wasm deploy localhost:5000/a:v1 --env prod --config '{nope'", "--config is not JSON", SPECS["deploy"].usage),
    ("/wasm deploy ftp://x --env prod", "invalid IMAGE: invalid reference", SPECS["deploy"].usage),
    ("/wasm help nothing", "unknown command 'nothing'", SPECS["help"].usage),
    ('/wasm build "unterminated', "cannot read command: No closing quotation", "/wasm COMMAND"),
    ("/wasm init My_Filter --lang rust", "invalid NAME 'My_Filter': use a DNS label", INIT_USAGE),
    ("/wasm init -x --lang rust", "the following arguments are required: filter", INIT_USAGE),
    ("/wasm init " + "a" * 64 + " --lang rust", "use a DNS label", INIT_USAGE),
    ("/wasm init f", "the following arguments are required: --lang", INIT_USAGE),
    ("/wasm init f --lang cobol",
     "argument --lang: invalid choice: 'cobol' (choose from 'assemblyscript', 'go', 'rust', 'cpp')", INIT_USAGE),
    ("/wasm init f --lang rust --platform kong", "invalid --platform 'kong': choose one of istio, gloo, envoy",
     INIT_USAGE),
    ("/wasm init f --lang rust --platform istio:one", "invalid platform version 'one': use MAJOR.MINOR", INIT_USAGE),
    ("/wasm init f --lang rust --platform gloo:1.99", "unknown gloo version '1.99'; known: 1.17, 1.18", INIT_USAGE),
    ("/wasm init f --lang go --platform istio:1.22",
     "go (github.com/proxy-wasm/proxy-wasm-go-sdk) cannot target istio 1.22 (Envoy 1.30): standard Go "
     "wasip1 reactors need the host imports added in Envoy 1.33. It works on istio 1.25, 1.26, 1.27, "
     "1.28; on istio 1.22 use assemblyscript, rust, cpp", INIT_USAGE),
])
def test_invalid_commands_say_what_is_wrong_and_how_to_use(text: str, message: str, usage: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    assert message in caught.value.message
    assert caught.value.usage.startswith(usage)
    assert str(caught.value).endswith("usage: " + caught.value.usage)


@pytest.mark.parametrize("source", [
    "../etc", "a/../../etc", "/etc/passwd", "src;rm -rf /", "src$(id)", "`id`", "src|cat",
    "src&&id", "a\\b", "~root", "src>x", "-rf", "src\nid", ".hidden/../..", "a b",
])
def test_hostile_sources_are_refused(source: str) -> None:
    with pytest.raises(CommandError):
        parse(f"/wasm build {shlex.quote(source)}")


@pytest.mark.parametrize("tag", [
    "localhost:5000/x:v1;id", "localhost:5000/x:$(id)", "localhost:5000/../x:v1",
    "localhost:5000/x:v1 --privileged", "localhost:5000//x", "localhost:5000/x:" + "a" * 200,
    "localhost:5000/x@sha256:" + "0" * 64, "http://localhost:5000/x", "localhost:5000/x:v1&",
])
def test_hostile_tags_are_refused(tag: str) -> None:
    with pytest.raises(CommandError):
        parse(f"/wasm build src --tag {shlex.quote(tag)}")


def test_control_characters_and_oversized_input_are_refused() -> None:
    with pytest.raises(CommandError, match="control characters"):
        parse("/wasm build src\x1b[2J")
    with pytest.raises(CommandError, match="longer than"):
        parse("/wasm build " + "a" * 2000)


def test_help_lists_every_command_and_each_usage() -> None:
    text = help_text("slack")
    for name, spec in SPECS.items():
        assert (f"  {name} " in text) == ("slack" in spec.where)
    assert "coming soon" not in text  # every command the help lists works
    assert help_text("cli", "build").startswith("usage: " + BUILD_USAGE)


@pytest.mark.parametrize(("text", "expected"), [
    ("/wasm search add-header", SearchCommand(text="add-header")),
    ("/wasm search localhost:5000/add", SearchCommand(text="add", registry="localhost:5000")),
    ("/wasm search ghcr.io/acme/add-header", SearchCommand(text="acme/add-header", registry="ghcr.io")),
    ("/wasm search team/add", SearchCommand(text="team/add")),
    ("/wasm search localhost:5000/", SearchCommand(text="", registry="localhost:5000")),
])
def test_search_takes_an_optional_registry(text: str, expected: SearchCommand) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["/wasm search", "/wasm search a b", "/wasm search 'Add Header'",
                                  "/wasm search '$(id)'"])
def test_search_refuses_what_is_not_a_repository_name(text: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    assert caught.value.usage == SPECS["search"].usage
