# syntax=docker/dockerfile:1
# mcdns container image.
#
# Stage 1 builds the wheel (and the wheels of its dependencies) with the build tools;
# stage 2 is a slim Python runtime that installs those wheels only: no compiler, no
# source tree, no pip cache. It runs as a numeric non-root user and needs no Linux
# capabilities: mcdns listens on 5353 (DNS, UDP+TCP) and 9153 (HTTP); the Kubernetes
# Service maps port 53 to 5353.
#
# Build:  docker build -t mcdns:dev .
# Lint:   hadolint Dockerfile   (CI lints it; no Docker engine runs there)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is made of, so unrelated changes keep the layer cache.
COPY pyproject.toml README.md ./
COPY mcdns ./mcdns
# `pip wheel` also fetches the dependencies' wheels, so the runtime stage installs
# offline from /wheels. The build tools are those pyproject's [build-system] names.
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mcdns" \
      org.opencontainers.image.description="Multi-cluster DNS for Kubernetes with health-aware fallback" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/mcdns/mcdns" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
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
# 65532 is the conventional "nonroot" uid/gid of distroless images; Kubernetes'
# runAsNonRoot check needs a numeric user to verify it.
USER 65532:65532
EXPOSE 5353/udp 5353/tcp 9153/tcp
ENTRYPOINT ["mcdns"]
CMD ["serve", "--config", "/etc/mcdns/mcdns.yaml"]
