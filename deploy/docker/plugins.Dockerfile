# An image of your own FROM flyte-connector's, with the connectors you serve added: the
# Flyte SDK (to serve connectors written for c0), flyteplugins-*, flytekit, your team's
# wheels from wheels/. From the checkout, after building the base image (Dockerfile):
#
#   docker build -f deploy/docker/plugins.Dockerfile \
#       --build-arg BASE=REGISTRY/flyte-connector:0.1.0 -t REGISTRY/my-connectors:1 .
#
# Every step runs as the base image's user (65532), who owns its virtual environment:
# no `USER root` needed, and the image still runs as non-root. The build fails when a
# plugin fails to load (`flyte-connector list` exits 1).
ARG BASE=flyte-connector:0.1.0
FROM ${BASE}
ARG REQUIREMENTS="flyte-connector[flyte] flyteplugins-databricks==2.12.1 flyteplugins-bigquery==2.12.1 flyteplugins-snowflake==2.12.1"
RUN --mount=type=bind,source=wheels,target=/tmp/wheels \
    pip install ${REQUIREMENTS} \
    && flyte-connector list
