# The flyte-connector daemon: the package and the chosen bundled plugins, run as non-root.
#
#   docker build -t flyte-connector .
#   docker build --build-arg PLUGINS="plugins/sql" -t flyte-connector:sql .
#
# PLUGINS lists plugin directories (space separated) to install; "" installs none.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ARG PLUGINS="plugins/shell plugins/slurm plugins/sql"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector_cli ./connector_cli
COPY plugins ./plugins
RUN python -m venv /opt/flyte-connector \
    && set -- ".[uvloop]" \
    && for dir in ${PLUGINS}; do set -- "$@" "./${dir}"; done \
    && /opt/flyte-connector/bin/pip install "$@"

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 65532 connector \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin connector
COPY --from=build /opt/flyte-connector /opt/flyte-connector
ENV PATH=/opt/flyte-connector/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp \
    HOME=/tmp
WORKDIR /tmp
USER 65532:65532
# gRPC (--port) and Prometheus /metrics (--metrics-port).
EXPOSE 8000 9090
# Options come from `args` or FLYTE_CONNECTOR_* environment variables.
ENTRYPOINT ["flyte-connector", "serve"]
