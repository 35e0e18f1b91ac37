# syntax=docker/dockerfile:1.7
#
# One image for the four Liveboard services. Kubernetes picks the service with the command:
#   liveboard serve <auth|realtime|boards|audit> --host 0.0.0.0 --port <P>
#   liveboard migrate [service]
#
# Targets:
#   production (default, last stage)  what CI builds and Kubernetes runs
#   dev                                the same plus what Tilt's live_update needs (see Tiltfile)
#
# Base images are pinned to exact versions; bump them deliberately (and the Tiltfile's
# SITE_PACKAGES if the Python minor version changes).

# --- demo page assets (Node is a build-time tool only) ---------------------------------------
FROM node:22.12.0-bookworm-slim AS web
WORKDIR /web
# Only the package files, so this layer is rebuilt when the dependencies change, not the page.
# They may not exist (yet): BuildKit lets a wildcard match nothing, and the bracket in
# "service[s]" starts the match at the context root, so even a missing web/ directory is fine.
COPY service[s]/realtime/web/package*.json ./
RUN --mount=type=cache,target=/root/.npm \
    if [ -f package.json ]; then npm ci --omit=dev --no-audit --no-fund; fi \
    && mkdir -p node_modules

# --- the JavaScript SDK (@liveboard/client) the demo page runs on: tsc -> dist/ ----------------
FROM node:22.12.0-bookworm-slim AS sdk
WORKDIR /sdk
COPY clients/js/package.json clients/js/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY clients/js/tsconfig.json ./
COPY clients/js/src ./src
RUN npm run --silent build && cp package.json dist/

# --- Python dependencies, then the project ---------------------------------------------------
FROM python:3.11.13-slim-trixie AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the dependency
# list changes, not on every source edit.
# Exactly the versions the tests ran with (constraints.txt), never whatever is newest today.
COPY pyproject.toml constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# Then the source, and the project itself without touching the dependencies installed above.
COPY README.md ./
COPY libs ./libs
COPY services ./services
COPY liveboard ./liveboard
COPY --from=web /web/node_modules ./services/realtime/web/node_modules
# demo.py serves the SDK from web/sdk in an installed package (clients/js/dist in a checkout).
COPY --from=sdk /sdk/dist/package.json /sdk/dist/*.js ./services/realtime/web/sdk/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && liveboard --help > /dev/null

# --- runtime: no compilers, no Node, no pip cache, a non-root numeric user --------------------
FROM python:3.11.13-slim-trixie AS runtime
LABEL org.opencontainers.image.title="liveboard" \
      org.opencontainers.image.description="Liveboard real-time kanban services (auth, realtime, boards, audit)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 liveboard \
    && useradd --system --uid 10001 --gid liveboard --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin liveboard
# Owned by root: the service user can read and run the code, never change it.
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIVEBOARD_HOST=0.0.0.0
# An empty, root-owned working directory. Nothing is written to disk: Kubernetes makes the root
# filesystem read-only and mounts an emptyDir at /tmp.
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001 8002 8003
ENTRYPOINT ["liveboard"]
CMD ["serve", "realtime", "--host", "0.0.0.0", "--port", "8000"]

# --- dev: what Tilt live_update needs on top of runtime ----------------------------------------
# `liveboard serve --reload` uses watchfiles, and live_update copies changed files into
# site-packages as the container user, so that user owns the project's packages here (only here).
FROM runtime AS dev
USER root
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "watchfiles>=0.24" \
    && cd /opt/venv/lib/python3.11/site-packages \
    && chown -R 10001:10001 libs services liveboard
USER 10001:10001

# --- production: the default target (last stage) -----------------------------------------------
FROM runtime AS production
USER 10001:10001
