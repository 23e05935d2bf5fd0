# The chatops bot for Cloud Run, with its fleet config baked in: put your chatops.yaml beside this file (and your
# runbooks in runbooks/) before building; `cp chatops.example.yaml chatops.yaml` builds the example fleet.
# Build: gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/REPO/chatops:TAG . (docs/deploy.md)
# tests/contract/test_image_assembly.py assembles what this file COPYs, installs it and runs its CMD.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHATOPS_LOG_FORMAT=json

WORKDIR /app

# Dependencies first, so a code change reuses this layer. pyproject.toml alone is enough to resolve them;
# the stub packages let pip read the project's metadata before the code is copied.
COPY pyproject.toml README.md ./
RUN mkdir -p bot commands sandbox \
 && touch bot/__init__.py commands/__init__.py sandbox/__init__.py \
 && pip install . \
 && pip uninstall -y chatops \
 && rm -rf bot commands sandbox

COPY bot ./bot
COPY commands ./commands
COPY sandbox ./sandbox
COPY runbooks ./runbooks
RUN pip install --no-deps . && python -m compileall -q /app

# The fleet config, read from /app/chatops.yaml (CHATOPS_CONFIG) with the runbooks beside it: Cloud Run mounts no
# files of yours, so the image carries them.
COPY chatops.yaml ./chatops.yaml

# A writable data dir for local runs (`docker run` without a database URL keeps SQLite here). On Cloud Run the
# disk is memory and per instance: `chatops serve` refuses SQLite there and asks for CHATOPS_DATABASE_URL.
RUN useradd --create-home --uid 10001 chatops \
 && mkdir -p /app/data && chown chatops:chatops /app/data
USER chatops
ENV CHATOPS_DATABASE_URL=sqlite:////app/data/chatops.db

# Cloud Run sets PORT; the bot listens on 0.0.0.0:$PORT and answers /healthz for startup and liveness probes.
ENV PORT=8080 CHATOPS_CONFIG=/app/chatops.yaml
EXPOSE 8080
CMD ["sh", "-c", "exec chatops serve --config \"$CHATOPS_CONFIG\" --port \"$PORT\""]
