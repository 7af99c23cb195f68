# syntax=docker/dockerfile:1.7
# Two targets from one file:
#   api    - slim Python, FastAPI + Celery producer, no torch      (docker build --target api)
#   worker - CUDA runtime + torch 2.13.0 (cu128 wheels) + engine   (docker build --target worker)

FROM python:3.11-slim AS api
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY clients ./clients
RUN pip install ".[api]" && useradd --system --uid 10001 pruneserve \
    && mkdir -p /data/artifacts && chown pruneserve /data/artifacts
USER pruneserve
ENV PRUNESERVE_ARTIFACTS_DIR=/data/artifacts PRUNESERVE_MODELS_DIR=/data/models \
    PRUNESERVE_DATA_DIR=/data/corpora
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["pruneserve", "api", "--host", "0.0.0.0", "--port", "8000"]

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS worker
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DEBIAN_FRONTEND=noninteractive VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
WORKDIR /app
# torch first, from the CUDA index, pinned to the version the project supports.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128
COPY pyproject.toml README.md ./
COPY service ./service
COPY worker ./worker
COPY clients ./clients
RUN pip install ".[worker]" && useradd --system --uid 10001 pruneserve \
    && mkdir -p /data/artifacts /data/hf && chown pruneserve /data/artifacts /data/hf
USER pruneserve
ENV PRUNESERVE_ARTIFACTS_DIR=/data/artifacts PRUNESERVE_MODELS_DIR=/data/models \
    PRUNESERVE_DATA_DIR=/data/corpora HF_HOME=/data/hf
CMD ["pruneserve", "worker", "--queues", "gpu", "--concurrency", "1"]
