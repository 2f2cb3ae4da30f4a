# One image for both processes:
#   server (default):  docker run -p 8080:8080 --env-file prod.env pmd-service
#   worker:            docker run --env-file prod.env pmd-service python -m pmd_service worker
# Production sets DATABASE_URL, REDIS_URL and JWT_SECRET_KEY (no embedded servers in the image).
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
WORKDIR /src
COPY requirements.lock ./
RUN /venv/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY pmd_service ./pmd_service
RUN /venv/bin/pip install --no-deps .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/pmd pmd \
    && mkdir -p /vault /bdr && chown pmd /vault /bdr
COPY --from=build /venv /venv
WORKDIR /app
COPY server.py worker.py ./
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
# The worker container overrides this with: arq --check worker.WorkerSettings
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["python", "server.py"]
