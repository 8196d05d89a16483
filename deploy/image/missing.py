"""Print the requirements that the wheels in FOLDER leave unmet on Python VERSION, one a line.

    python3 deploy/image/missing.py FOLDER VERSION REQUIREMENTS_FILE

pip evaluates markers such as ``python_full_version < "3.11.3"`` for the Python it runs on, so
wheels built on a host with Python 3.11.7 lack what the image's 3.11.2 needs (redis wants
async-timeout below 3.11.3).  deploy/image.sh adds wheels of what this prints until it prints
nothing.  It walks from the requirements through each wheel's Requires-Dist, with extras.
"""

from __future__ import annotations

import sys
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(archive.read(name).decode())


def missing(folder: Path, python: str, roots: list[str]) -> list[str]:
    environment = {str(k): str(v) for k, v in default_environment().items()}
    environment |= {"python_full_version": python, "implementation_version": python,
                    "python_version": ".".join(python.split(".")[:2])}
    wheels: dict[NormalizedName, tuple[Version, Message]] = {}
    for wheel in folder.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        wheels[name] = (version, metadata(wheel))
    todo = [(Requirement(line), frozenset[str]()) for line in roots if line.strip()]
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    unmet: list[str] = []
    while todo:
        requirement, extras = todo.pop()
        if requirement.marker and not any(requirement.marker.evaluate(environment | {"extra": extra})
                                          for extra in extras or {""}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in wheels or not requirement.specifier.contains(wheels[name][0], prereleases=True):
            unmet.append(f"{requirement.name}{requirement.specifier}")
            continue
        key = (name, frozenset(requirement.extras))
        if key not in seen:
            seen.add(key)
            todo += [(Requirement(dep), key[1]) for dep in wheels[name][1].get_all("Requires-Dist") or []]
    return sorted(set(unmet))


if __name__ == "__main__":
    folder, python, requirements = sys.argv[1:4]
    print("\n".join(missing(Path(folder), python, Path(requirements).read_text().splitlines())))
