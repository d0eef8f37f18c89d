# goproxy from a binary built on the host: `cargo build --release -p proxy`
# (the host is Debian bookworm, so its glibc matches this base image).
# Build context: the repository root (see .dockerignore), e.g.
#   docker build -f docker/goproxy.Dockerfile -t goproxy:test .
# Needs no registry: debian:bookworm-slim can be made locally with
# scripts/seed-images.sh. With a registry, proxy/Dockerfile builds from source.
FROM debian:bookworm-slim

# net-tools: the runbook checks the port with `netstat -tlnp` inside the
# container. ca-certificates: HTTPS to the real upstreams.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates net-tools \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin goproxy

COPY target/release/goproxy /usr/local/bin/goproxy

WORKDIR /app
# The operators' JSON config is mounted read-only here; its "port" decides
# where goproxy listens.
ENV CONFIG_PATH=/app/config.json
EXPOSE 8004
USER goproxy

# `goproxy healthcheck` reads CONFIG_PATH and probes 127.0.0.1:<port>/health.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["goproxy", "healthcheck"]
# goproxy drains open streams on SIGTERM (Docker's default stop signal).
CMD ["goproxy"]
