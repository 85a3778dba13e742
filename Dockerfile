# One image for every EventPost service; SERVICE picks which one a container runs:
#   docker build -t eventpost . && docker run -e SERVICE=users ... eventpost
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Package metadata and sources; no extras: production uses MongoDB and a real SMTP
# server, not the embedded SecantusDB and the mail sink.
COPY setup.cfg pyproject.toml README.md config.yml ./
COPY bus ./bus
COPY services ./services
COPY tools ./tools
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app eventpost

USER eventpost
ENV SERVICE=gateway
EXPOSE 8000

# bus.consul exec overlays Consul KV (eventpost/$SERVICE/...) onto the environment
# when CONSUL_HTTP_ADDR is set, and plainly execs nameko otherwise. exec keeps
# nameko as PID 1, so `docker stop` (SIGTERM) reaches it and it stops gracefully.
CMD ["sh", "-c", "exec python -m bus.consul exec --service \"$SERVICE\" -- nameko run --config config.yml services.$SERVICE.service"]
