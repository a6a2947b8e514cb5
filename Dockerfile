# The flyte-connector daemon: the package, the chosen plugins and extras, run as non-root.
#
#   docker build -t flyte-connector .
#   docker build --build-arg PLUGINS="plugins/sql" -t flyte-connector:sql .
#   docker build --build-arg PLUGINS="" --build-arg EXTRAS=flyte \
#       --build-arg REQUIREMENTS="flyteplugins-databricks==2.12.1 wheels/my_team-1.0-py3-none-any.whl" \
#       -t flyte-connector:c0 .
#
# PLUGINS: plugin directories of this checkout (space separated); "" installs none. A word
#   that is no directory here goes to pip as it is, like REQUIREMENTS.
# EXTRAS: extras of flyte-connector besides uvloop (comma separated), e.g. "flyte" to serve
#   connectors written for the Flyte SDK.
# REQUIREMENTS: anything else pip installs (space separated): flyteplugins-*, flytekit, a
#   team's package from your index, or a wheel put in wheels/ (wildcards work).
# The virtual environment belongs to the image's user (65532), so an image FROM this one
# can `pip install` more without switching to root (deploy/docker/plugins.Dockerfile).

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ARG PLUGINS="plugins/shell plugins/slurm plugins/sql"
ARG EXTRAS=""
ARG REQUIREMENTS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector_cli ./connector_cli
COPY plugins ./plugins
COPY wheels ./wheels
RUN python -m venv /opt/flyte-connector \
    && set -- ".[uvloop${EXTRAS:+,}${EXTRAS}]" \
    && for dir in ${PLUGINS}; do \
         if [ -d "${dir}" ]; then set -- "$@" "./${dir#./}"; else set -- "$@" "${dir}"; fi; \
       done \
    && for requirement in ${REQUIREMENTS}; do set -- "$@" "${requirement}"; done \
    && /opt/flyte-connector/bin/pip install "$@"

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 65532 connector \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin connector
COPY --from=build --chown=65532:65532 /opt/flyte-connector /opt/flyte-connector
ENV PATH=/opt/flyte-connector/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TMPDIR=/tmp \
    HOME=/tmp
WORKDIR /tmp
USER 65532:65532
# gRPC (--port) and Prometheus /metrics (--metrics-port).
EXPOSE 8000 9090
# Options come from `args` or FLYTE_CONNECTOR_* environment variables.
ENTRYPOINT ["flyte-connector", "serve"]
