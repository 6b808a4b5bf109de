# lwota server image: build stage (cargo) + small runtime stage.
#
#   docker build -t lwota .
#   docker run -d --name lwota -v lwota-data:/data \
#     -p 5683:5683/udp -p 127.0.0.1:8080:8080 lwota
#
# The admin API is published on the host's loopback only; put a TLS
# reverse proxy in front of it (docs/DEPLOY.md).

# ---- build ----
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# Touch so cargo rebuilds the crate, not the cached stub.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && install -D -m 0755 target/release/lwota /out/lwota

# ---- runtime ----
FROM debian:bookworm-slim
# curl only for the HEALTHCHECK; ca-certificates none needed (no TLS out).
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 lwota \
    && useradd --system --uid 10001 --gid lwota --home-dir /data --shell /usr/sbin/nologin lwota \
    && mkdir -p /data /etc/lwota \
    && chown lwota:lwota /data
COPY --from=build /out/lwota /usr/local/bin/lwota
COPY server.toml /etc/lwota/server.toml

USER lwota:lwota
VOLUME ["/data"]
WORKDIR /data
# 5683/udp CoAP, 5684/udp CoAP over DTLS, 8080/tcp admin API.
EXPOSE 5683/udp 5684/udp 8080/tcp

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

# SIGTERM: lwota commits what is queued and stops.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/lwota"]
CMD ["serve", "--config", "/etc/lwota/server.toml", "--data-dir", "/data", \
     "--coap-bind", "0.0.0.0:5683", "--http-bind", "0.0.0.0:8080"]
