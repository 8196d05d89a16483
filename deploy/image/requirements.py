"""Print what building wasmbot needs from a package index, one requirement a line: the build
backend and the runtime dependencies in pyproject.toml.  deploy/image.sh builds wheels of these
on the host; the Dockerfile's builder stage fetches them (from PyPI or those wheels)."""

import sys
import tomllib

with open(sys.argv[1], "rb") as file:
    pyproject = tomllib.load(file)
print("\n".join(pyproject["build-system"]["requires"] + pyproject["project"]["dependencies"]))
