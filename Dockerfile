# syntax=docker/dockerfile:1
# mcdns container image.
#
# Stage 1 builds the wheel (and the wheels of its dependencies) with the build tools;
# stage 2 is a slim Python runtime that installs those wheels only: no compiler, no
# source tree, no pip cache. It runs as a numeric non-root user and needs no Linux
# capabilities: mcdns listens on 5353 (DNS, UDP+TCP) and 9153 (HTTP); the Kubernetes
# Service maps port 53 to 5353.
#
# Build:  make image      (buildah, no daemon; README "The image" says which base)
#         docker build -t mcdns:dev .   (BuildKit, where a Docker engine runs)
# Test:   make image-test (runs it as 65532 on a read-only root and queries it)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The lock pins, with hashes, every wheel the image installs and the build backend
# (`make lock` regenerates it from pyproject.toml). Fetched first and on their own, so a
# change to the source keeps this layer cached; the runtime stage then installs offline
# from /wheels, where only the locked versions are.
COPY requirements/image.lock ./requirements/
RUN python -m pip wheel --require-hashes --wheel-dir /wheels -r requirements/image.lock
# Only what the wheel is made of, so unrelated changes keep the layer cache.
COPY pyproject.toml README.md ./
COPY mcdns ./mcdns
# Offline: pyproject's [build-system] requirements come from the locked wheels too.
RUN python -m pip wheel --no-index --find-links=/wheels --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The wheels are mounted from the build stage for this one step, so they never become
# a layer of the final image; --no-index keeps the install offline and reproducible.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/mcdns-*.whl \
    && python -m pip uninstall --yes pip setuptools wheel \
    && mkdir -p /etc/mcdns \
    && printf '%s\n' '# In-container default: stub role, in-cluster API.' \
        'listen: ["0.0.0.0:5353"]' 'http: "0.0.0.0:9153"' > /etc/mcdns/mcdns.yaml
# The labels come after the install, so a new revision keeps the layers above cached.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mcdns" \
      org.opencontainers.image.description="Multi-cluster DNS for Kubernetes with health-aware fallback" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/mcdns/mcdns" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# 65532 is the conventional "nonroot" uid/gid of distroless images; Kubernetes'
# runAsNonRoot check needs a numeric user to verify it.
USER 65532:65532
EXPOSE 5353/udp 5353/tcp 9153/tcp
ENTRYPOINT ["mcdns"]
CMD ["serve", "--config", "/etc/mcdns/mcdns.yaml"]
