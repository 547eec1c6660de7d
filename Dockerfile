# mailroom container image: one static binary in an otherwise empty image.
#
# Two ways to build it:
#
#   1. From source (the default target, `release`): a Rust stage compiles the static
#      binary, the final stage is FROM scratch with only that binary.
#        docker build -t mailroom .
#
#   2. From a binary built beforehand (target `local`: no compiler, no base image to pull,
#      so it builds where registries are unreachable):
#        RUSTFLAGS='-C target-feature=+crt-static' \
#          cargo build --release --target x86_64-unknown-linux-gnu
#        docker build --target local -t mailroom .
#      or with buildah/podman (HEALTHCHECK needs the docker format):
#        buildah bud --format docker --target local -t mailroom .
#
# (No `# syntax=` line on purpose: it would make BuildKit pull a frontend image, which
# defeats the offline `local` target.)
#
# Run it:
#   docker run -d --name mailroom --env-file .env -v mailroom-data:/data \
#     -p 25:25 -p 465:465 -p 587:587 -p 143:143 -p 993:993 -p 110:110 -p 995:995 -p 4190:4190 \
#     -p 80:80 -p 443:443 -p 127.0.0.1:9090:9090 mailroom
#
# The server runs as uid/gid 10001. Docker lets a non-root process bind ports below 1024
# inside the container's own network namespace (it sets
# net.ipv4.ip_unprivileged_port_start=0), so no capability is needed. With
# `--network host` on a host that does not, set MAILROOM_*_LISTEN to high ports.

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm

# ---- build: the static binary ---------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY build.rs ./
COPY src ./src
# crt-static + the gnu target gives a static-pie binary; webpki roots are compiled in,
# and name resolution goes through hickory, so nothing from the OS is needed at run time.
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/mailroom /mailroom

# ---- runtime: what both final images share --------------------------------------------
FROM scratch AS runtime
# scratch has no mkdir: copy a prepared empty directory so /data exists and belongs to
# the server (a fresh named volume inherits this ownership).
COPY --chown=10001:10001 .docker/data/ /data/
ENV MAILROOM_DATA_DIR=/data
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 25 465 587 143 993 110 995 4190 80 443 9090
# Draining takes up to the stop timeout; SIGTERM is what `docker stop` sends.
STOPSIGNAL SIGTERM
# scratch has no curl: the binary asks its own /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/mailroom", "healthcheck"]
ENTRYPOINT ["/mailroom"]
CMD ["serve"]

# ---- local: package a binary built outside the image build ----------------------------
FROM runtime AS local
ARG BINARY=target/x86_64-unknown-linux-gnu/release/mailroom
# Root-owned and not writable by the server: it cannot replace its own binary.
COPY --chown=0:0 --chmod=0755 ${BINARY} /mailroom

# ---- release (default): the binary from the build stage -------------------------------
FROM runtime AS release
COPY --from=build --chown=0:0 --chmod=0755 /mailroom /mailroom
