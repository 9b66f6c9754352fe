# syntax=docker/dockerfile:1
#
# The LineageHub hub: the `lineagehub` package and its CLI on Python 3.11.
# Build and run it with the stack in docker-compose.yml (`docker compose up --build`);
# the image itself keeps no state: graph in Neo4j, artifacts in S3/MinIO, both set by env.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# graphviz: the `dot` program behind the SVG/PNG/PDF lineage exports (the Python package
# `graphviz` only writes DOT text and shells out to it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends graphviz \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user with a fixed uid/gid, so that files on mounted volumes get
# predictable owners.
RUN groupadd --system --gid 10001 lineagehub \
    && useradd --system --uid 10001 --gid lineagehub --create-home \
       --home-dir /home/lineagehub --shell /usr/sbin/nologin lineagehub

# Install as root into the system site-packages (read-only for the runtime user), then drop
# the checkout: the container runs the installed package. The pip cache is a BuildKit cache
# mount, so rebuilding after a source change does not download every dependency again.
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
    && cd / && rm -rf /src

USER lineagehub
WORKDIR /home/lineagehub

EXPOSE 8000

# The GraphQL API; in a container it must listen on all interfaces to be reachable.
CMD ["lineagehub", "serve", "--host", "0.0.0.0", "--port", "8000"]
