# One image for both processes (docs/operations.md, "The image"); prod.env from deploy/prod.env.example:
#   server (default):  docker run -p 8080:8080 --env-file prod.env pmd-service
#   worker:            docker run --env-file prod.env \
#                          --health-cmd 'arq --check worker.WorkerSettings' \
#                          pmd-service python -m pmd_service worker
#   schema:            docker run --rm --env-file prod.env pmd-service python -m pmd_service migrate
# Production sets DATABASE_URL, REDIS_URL and JWT_SECRET_KEY (no embedded servers in the image).
#
# The base is pinned to an exact release; pin its digest too where the registry is reachable
# (docs/operations.md says how). Build with BuildKit/Buildah's secrets, never an ARG, if pip
# needs an extra CA bundle to reach the index: --secret id=pip_cert,src=/path/to/bundle.pem
ARG BASE=python:3.11.14-slim-bookworm
# The release, the image's org.opencontainers.image.version: pmd_service/__init__.py's
# __version__, which the build stage compares it with (a release changes both).
ARG VERSION=0.2.0

# --- build: the runtime lock into /venv, then the package's own wheel; nothing compiles ------
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/build.txt requirements/runtime.txt requirements/
# --require-hashes: every package, transitive ones included, must be in the lock with its hash;
# --only-binary: wheels only (no compiler in this image, and none needed).
RUN --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python -m venv /tools \
    && /tools/bin/pip install --quiet --require-hashes --only-binary :all: -r requirements/build.txt \
    && python -m venv --without-pip /venv \
    && /tools/bin/pip --python /venv/bin/python install --quiet --require-hashes \
        --only-binary :all: -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY pmd_service ./pmd_service
COPY migrations ./migrations
RUN /tools/bin/pip wheel --quiet --no-build-isolation --no-deps --wheel-dir /dist . \
    && /tools/bin/pip --python /venv/bin/python install --quiet --no-deps --no-index /dist/*.whl
ARG VERSION
RUN built=$(/venv/bin/python -c "import importlib.metadata as m; print(m.version('pmd-service'))") \
    && if [ "$built" != "$VERSION" ]; then \
        echo "the image would be labelled $VERSION but holds pmd-service $built:" \
             "set the Dockerfile's ARG VERSION (or --build-arg VERSION) to $built" >&2; exit 1; \
    fi

# --- runtime: the base, the venv, the two entry points; no pip cache, no build tools ----------
FROM ${BASE}
ARG VERSION
LABEL org.opencontainers.image.title=pmd-service org.opencontainers.image.version=${VERSION}
RUN useradd --system --uid 10001 --create-home --home-dir /home/pmd pmd \
    && mkdir -p /vault /bdr && chown pmd /vault /bdr
COPY --from=build /venv /venv
WORKDIR /app
COPY server.py worker.py ./
# The ZIPs' folder under its former name, BDR_PATH, which every release reads: an environment
# written for an earlier release that sets it to another folder still starts this image.
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PMD_DATA_DIR=/home/pmd/.data \
    VAULT_PATH=/vault \
    BDR_PATH=/bdr \
    HOST=0.0.0.0 \
    PORT=8080
USER pmd
# 8080: the server (API, /metrics); 9108: a worker's /metrics (METRICS_PORT)
EXPOSE 8080 9108
# The server's check asks its own PORT, whatever it is set to. A worker container replaces it
# with `arq --check worker.WorkerSettings` (docker-compose.yml, docs/operations.md).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["python", "server.py"]
