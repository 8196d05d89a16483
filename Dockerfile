# wasmbot's image: the web app (`wasmbot serve`, the default command) or a worker (`worker`).
#
#   docker build -t wasmbot .          # on the public Debian image, dependencies from PyPI
#   bash deploy/image.sh               # podman, a local Debian base and wheels built on the host
#
# BASE is any Debian 12 image: the packages of deploy/image/packages that it lacks are installed
# with apt, so a base that has them all (deploy/image.sh's) builds without a network.
# See docs/container.md.
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS base
COPY deploy/image/packages /usr/local/share/wasmbot/packages
RUN set -eu; missing=""; \
    for p in $(grep -v '^#' /usr/local/share/wasmbot/packages); do \
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"; \
    done; \
    if [ -n "$missing" ]; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
      rm -rf /var/lib/apt/lists/*; \
    fi

# Wheels of wasmbot and of everything it needs at run time.
FROM base AS builder
# WHEELS=1: the dependencies come only from the wheels in deploy/image/wheels (deploy/image.sh
# builds them with the host's pip settings, which a container build does not inherit).
ARG WHEELS=
RUN python3 -m venv /opt/build
COPY deploy/image/requirements.py pyproject.toml /src/
COPY deploy/image/wheels/ /wheels-in/
RUN set -eu; index=""; [ -z "$WHEELS" ] || index="--no-index --find-links /wheels-in"; \
    python3 /src/requirements.py /src/pyproject.toml > /src/requirements.txt; \
    /opt/build/bin/pip wheel --disable-pip-version-check --no-cache-dir $index --wheel-dir /wheels \
      --requirement /src/requirements.txt
COPY README.md LICENSE /src/
COPY bot /src/bot
COPY workers /src/workers
RUN set -eu; index=""; [ -z "$WHEELS" ] || index="--no-index --find-links /wheels-in"; \
    /opt/build/bin/pip wheel --disable-pip-version-check --no-cache-dir $index --no-deps \
      --wheel-dir /wheels /src

FROM base
RUN groupadd --gid 10001 wasmbot \
 && useradd --uid 10001 --gid 10001 --home-dir /home/wasmbot --create-home --shell /usr/sbin/nologin wasmbot \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/wasmbot
COPY --from=builder /wheels /tmp/wheels
RUN python3 -m venv /opt/wasmbot \
 && /opt/wasmbot/bin/pip install --disable-pip-version-check --no-cache-dir --no-index \
      --find-links /tmp/wheels wasmbot \
 && rm -rf /tmp/wheels
# workers/scaffold.py reads the filter templates beside its package, which the wheel lacks.
COPY templates /opt/wasmbot/share/templates
RUN ln -s /opt/wasmbot/share/templates \
      "$(/opt/wasmbot/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/templates"
COPY deploy/containers.conf /etc/wasmbot/containers.conf
ENV PATH=/opt/wasmbot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/home/wasmbot \
    WASMBOT_DATA_DIR=/var/lib/wasmbot \
    WASMBOT_WEB_PORT=8080 \
    CONTAINERS_CONF=/etc/wasmbot/containers.conf \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/wasmbot
RUN wasmbot --version
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('WASMBOT_WEB_PORT', '8080') + '/healthz', timeout=4)"
ENTRYPOINT ["wasmbot"]
CMD ["serve", "--host", "0.0.0.0"]

# Last, so that a new revision changes only the image's metadata, not its layers.
ARG VERSION=0.1.0
ARG SOURCE_URL=
ARG REVISION=
LABEL org.opencontainers.image.title="wasmbot" \
      org.opencontainers.image.description="ChatOps bot for Envoy WebAssembly (proxy-wasm) filters" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}"
