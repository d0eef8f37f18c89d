# The mock LLM upstream from a binary built on the host:
# `cargo build --release -p mock-upstream`. Build context: repository root.
#   docker build -f docker/mock-upstream.Dockerfile -t goproxy-mock-upstream:test .
FROM debian:bookworm-slim

RUN useradd --system --uid 10002 --user-group --no-create-home --shell /usr/sbin/nologin mock

COPY target/release/mock-upstream /usr/local/bin/mock-upstream

ENV MOCK_LISTEN=0.0.0.0:9000
EXPOSE 9000
USER mock

# Probes 127.0.0.1:<port of MOCK_LISTEN>/health; needs no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["mock-upstream", "healthcheck"]
CMD ["mock-upstream"]
