# hashrank: CPU cross-encoder reranking service. Build: docker build -t hashrank .
# Stage 1 builds the wheel; stage 2 is a slim runtime with the serving install only (no torch, no compilers).

FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.6.1
COPY pyproject.toml README.md ./
COPY app ./app
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    HASHRANK_HOST=0.0.0.0 \
    HASHRANK_PORT=8080 \
    HASHRANK_MODEL_DIR=/opt/hashrank/models
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin hashrank
COPY requirements/serve.lock /tmp/serve.lock
COPY --from=build /dist/ /tmp/dist/
# The same install command the container-equivalent test runs (tests/test_install.py).
RUN pip install --no-cache-dir --constraint /tmp/serve.lock /tmp/dist/hashrank-*.whl \
    && rm -rf /tmp/dist /tmp/serve.lock
COPY --chown=root:root models/sts-hash-nano /opt/hashrank/models/sts-hash-nano
COPY --chown=root:root models/rerank-hash-nano /opt/hashrank/models/rerank-hash-nano
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=2)"]
ENTRYPOINT ["hashrank"]
CMD ["serve"]
