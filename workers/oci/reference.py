"""Image references (``REGISTRY/REPOSITORY[:TAG][@DIGEST]``), checked before any request.

The grammar is the distribution spec's, narrowed where wasmbot is stricter: the registry is
always named (no implicit Docker Hub), and digests are sha256, the only algorithm registries
and Istio's ``sha256`` field share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REGISTRY = r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = rf"{_COMPONENT}(?:/{_COMPONENT})*"
TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
DIGEST = r"sha256:[0-9a-f]{64}"
_REFERENCE = re.compile(rf"^(?P<registry>{REGISTRY})/(?P<repository>{REPOSITORY})"
                        rf"(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST}))?$")
_TAG_ONLY = re.compile(rf"^{TAG}$")
EXAMPLE = "localhost:5000/filters/add-header:v1"


class InvalidReference(ValueError):
    """A reference that no registry would accept; the message says which part is wrong."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, check_tag(tag), None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    @property
    def name(self) -> str:
        """``REGISTRY/REPOSITORY[:TAG]``: the reference without its digest."""
        return f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "")

    def pinned(self, digest: str) -> str:
        """The reference pinned to ``digest``, which replaces any digest it had (printed once)."""
        return f"{self.name}@{digest}"

    def __str__(self) -> str:
        return self.pinned(self.digest) if self.digest else self.name


def check_tag(tag: str) -> str:
    if not _TAG_ONLY.match(tag):
        raise InvalidReference(f"invalid tag {tag!r}: up to 128 letters, digits, '_', '.' and '-', "
                               "not starting with '.' or '-'")
    return tag


def parse(text: str) -> Reference:
    """Parse ``text`` or say exactly what is wrong with it."""
    match = _REFERENCE.match(text)
    if match:
        return Reference(match["registry"], match["repository"], match["tag"], match["digest"])
    name, at, digest = text.partition("@")
    if at and not re.fullmatch(DIGEST, digest):
        raise InvalidReference(f"invalid digest in {text!r}: expected sha256: and 64 lower-case hex digits")
    registry, slash, rest = name.partition("/")
    if not slash or not re.fullmatch(REGISTRY, registry):
        raise InvalidReference(f"invalid reference {text!r}: expected REGISTRY/REPOSITORY[:TAG], "
                               f"e.g. {EXAMPLE}")
    repository, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if colon:
        check_tag(tag)
    raise InvalidReference(f"invalid repository {repository!r} in {text!r}: lower-case letters and digits "
                           "in '/'-separated parts, joined by '.', '_', '__' or '-'")
