# One image for every service; the command picks which one runs (see docker-compose.yml).
# Reproducible: an exact base image, and every pip install takes the versions the tests ran
# with from constraints.txt (`make constraints`, checked by tests/test_constraints.py).
# Build stage: generate the protobuf code (grpcio-tools is a build-time tool only).
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY protos ./protos
RUN pip install --no-cache-dir -c constraints.txt grpcio-tools \
 && mkdir -p /gen \
 && python -m grpc_tools.protoc -I protos --python_out=/gen --pyi_out=/gen --grpc_python_out=/gen \
      $(find protos -name '*.proto')

# Runtime stage: the service dependencies only (no embedded PostgreSQL/Redis, no test tools).
FROM python:3.11.13-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app:/app/libs/generated \
    JWT_KEYS_DIR=/keys MAIL_DIR=/mail \
    GRPC_BIND_HOST=0.0.0.0 GATEWAY_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY libs ./libs
COPY services ./services
COPY gateway ./gateway
RUN pip install --no-cache-dir -c constraints.txt . && rm -rf build
COPY --from=build /gen ./libs/generated
# A numeric user and group, 10001:10001, so Kubernetes can check runAsNonRoot and the manifests'
# runAsUser/runAsGroup/fsGroup match (deploy/kubernetes). Nothing writes outside /keys, /mail and
# /tmp (PYTHONDONTWRITEBYTECODE), so the root filesystem can be read-only.
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid 10001 app \
 && mkdir -p /keys /mail && chown app:app /keys /mail
USER 10001:10001
CMD ["python", "-m", "gateway"]
