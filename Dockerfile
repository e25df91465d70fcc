# syntax=docker/dockerfile:1
#
# The Concierge gateway: `docker build -t concierge .`, then
#   docker run -p 8080:8080 concierge                   # SQLite in the /app/data volume
#   docker run -p 8080:8080 -e CONCIERGE__STORE__URL=redis://redis:6379/0 concierge
# The configuration is /app/concierge.toml with channels/ and prompts/ beside it: mount your own
# over /app (or bake it into an image FROM this one). docker-compose.yml runs three behind HAProxy.

# ---- build ----------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when a Cargo.toml or Cargo.lock
# changes. Empty crates stand in for the workspace's own (every member of crates/ needs its
# manifest and a source file, and the root's bench its file), so that cargo compiles every
# dependency of the gateway now.
COPY Cargo.toml Cargo.lock ./
# One line a crate (tests/tidy.rs checks that none is missing).
COPY crates/agents/Cargo.toml crates/agents/
COPY crates/channels/Cargo.toml crates/channels/
COPY crates/dev/Cargo.toml crates/dev/
COPY crates/domain/Cargo.toml crates/domain/
COPY crates/engine/Cargo.toml crates/engine/
COPY crates/faq/Cargo.toml crates/faq/
COPY crates/http/Cargo.toml crates/http/
COPY crates/media/Cargo.toml crates/media/
COPY crates/store/Cargo.toml crates/store/
COPY crates/store-redis/Cargo.toml crates/store-redis/
COPY crates/store-sqlite/Cargo.toml crates/store-sqlite/
COPY crates/telemetry/Cargo.toml crates/telemetry/
COPY crates/testkit/Cargo.toml crates/testkit/
RUN mkdir -p src \
    && for dir in crates/*/; do \
         mkdir -p "$dir/src" && touch "$dir/src/lib.rs" && echo 'fn main() {}' > "$dir/src/main.rs"; \
       done \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && mkdir -p benches && echo 'fn main() {}' > benches/hot_paths.rs \
    && cargo build --release --locked -p concierge \
    && rm -rf src crates

# Then the gateway itself: the root package and the layer crates (the test kit and the
# developer's tools are workspace members the image never builds). COPY keeps the files' own
# mtimes, which may be older than the stub build: touch them so cargo sees every crate changed
# and does not reuse a stub.
COPY src ./src
COPY crates ./crates
RUN find src crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p concierge \
    && install -D -m 0755 target/release/concierge /out/concierge

# ---- run ------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: rustls checks the platforms', LLM providers' and rediss:// certificates
# against the system store. tzdata: [merchant] timezone and team hours are read from
# /usr/share/zoneinfo. Nothing else: the binary links only glibc (SQLite is bundled).
# Versions are not pinned: bookworm's security updates replace them, and a pin would break
# the build at the next one; rebuilding the image is how updates are taken.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 concierge \
    && useradd --system --uid 10001 --gid concierge --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin concierge

WORKDIR /app
COPY --from=build /out/concierge /usr/local/bin/concierge
# The configuration stays owned by root: the gateway reads it and never writes it.
COPY concierge.toml ./
COPY channels ./channels
COPY prompts ./prompts
# The default store, sqlite:data/concierge.db, lives here (unused with a Redis store), and
# customers' media, data/media (with Redis too: several instances must share that folder).
RUN mkdir data && chown concierge:concierge data
VOLUME ["/app/data"]

ENV CONCIERGE__SERVER__BIND=0.0.0.0:8080
EXPOSE 8080
# Numeric, so that orchestrators can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001

# Ready when the store answers (GET /readyz is 200, 503 otherwise). bash, already in the base
# image, does the request through /dev/tcp: curl would add libcurl and a dozen libraries
# (nghttp2, ldap, ssh, kerberos…) to an image that otherwise holds one binary. The port
# follows CONCIERGE__SERVER__BIND.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${CONCIERGE__SERVER__BIND##*:} && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]

# SIGTERM stops taking requests and finishes the work in hand for up to
# [server] shutdown_grace_secs (20 s): give `docker stop` more than that (-t 30, or
# stop_grace_period in compose).
ENTRYPOINT ["concierge"]
CMD ["serve", "--config", "/app/concierge.toml"]
