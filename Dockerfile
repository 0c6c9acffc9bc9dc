# The projector image: `projector serve` in compose, also `projector topics` as a one-shot.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Metadata first so the dependency layer is reused when only code changes.
# README.md* : optional (the glob may match nothing), pyproject names it as readme.
COPY pyproject.toml README.md* ./
COPY schemas ./schemas
COPY projector ./projector
COPY api ./api
COPY service ./service
RUN pip install . && rm -rf /src/build

# Non-root; /data is created here so a fresh named volume inherits the ownership.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin projector \
    && mkdir -p /data \
    && chown projector:projector /data
USER projector
WORKDIR /home/projector

ENV PROJECTOR_DB=/data/projector.duckdb \
    PROJECTOR_HOST=0.0.0.0 \
    PROJECTOR_PORT=8000
EXPOSE 8000
VOLUME ["/data"]

# Only meaningful for `serve`/`api`; one-shot commands disable it in compose.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PROJECTOR_PORT', '8000'), timeout=2)" || exit 1

ENTRYPOINT ["projector"]
CMD ["serve"]
