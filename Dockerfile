# The project's one image: `reconciler controller` (see `reconciler install`) and the inference
# router (`reconciler router serve`, the azureml-fe-v2 component) both run it.
#
#   docker build -t ghcr.io/mlext/reconciler:0.1.0 --build-arg RECONCILER_COMMIT=$(git rev-parse HEAD) .
#
# Two stages: the package and its dependencies are installed into a virtualenv in the first, and
# only that virtualenv is copied into the second, so no source tree, build tool or pip cache
# ends up in the image.

# Where python:3.11-slim cannot be pulled (no registry), `reconciler cluster up` builds a Debian
# base with Python 3.11 from Debian's packages and passes it as PYTHON_IMAGE
# (reconciler/localcluster/localimages.py).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the package build reads (the build context also holds caches and test fixtures).
COPY pyproject.toml README.md hatch_build.py ./
COPY reconciler ./reconciler
COPY schemas ./schemas
COPY templates ./templates
# The commit the image is built from (`docker build --build-arg RECONCILER_COMMIT=$(git
# rev-parse HEAD)`): the build context has no .git, so the build hook (hatch_build.py) cannot
# ask git; it writes this into the package for `reconciler --version` and the build_info metric.
# Unset: "commit unknown".
ARG RECONCILER_COMMIT=""
RUN /opt/venv/bin/pip install .

FROM ${PYTHON_IMAGE}
# gitpython drives the git binary; SSH remotes need ssh. Nothing else is added.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
# A numeric, non-root user (runAsNonRoot can check it) with a passwd entry (ssh refuses a uid
# without one). HOME is /tmp: the root file system is read-only in the cluster.
RUN groupadd --gid 65532 reconciler \
    && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin reconciler
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 65532:65532
ENTRYPOINT ["reconciler"]
CMD ["--help"]
