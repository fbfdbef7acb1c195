# syntax=docker/dockerfile:1
# aiven-ephemeral on Debian 13 (trixie) slim: a shell for GitLab jobs, CA certificates for
# the API, a non-root user by default (a job can still run it as root).
#   docker build -t aiven-ephemeral .
#   docker run --rm -e AIVEN_TOKEN -v "$PWD:/work" -w /work aiven-ephemeral up
# The release builds linux/amd64 and linux/arm64 from its own released binaries with
# --build-arg BINARY=prebuilt (dist/linux/<arch>/aiven-ephemeral); without it, from source.
ARG BINARY=source

FROM rust:1.95-slim-trixie AS source
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when a manifest or the
# lock file changes, not for every change to the source.
COPY Cargo.toml Cargo.lock ./
COPY crates/aiven-sandbox/Cargo.toml crates/aiven-sandbox/
RUN rustup target add "$(uname -m)-unknown-linux-musl" \
 && mkdir -p src crates/aiven-sandbox/src tests/it \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/aiven-sandbox/src/lib.rs \
 && echo 'fn main() {}' > tests/it/main.rs \
 && cargo build --release --locked --target "$(uname -m)-unknown-linux-musl" --bin aiven-ephemeral \
 && rm -rf src crates/aiven-sandbox/src tests
COPY . .
# touch: the stubs above are newer than nothing cargo would otherwise notice.
RUN touch src/main.rs src/lib.rs crates/aiven-sandbox/src/lib.rs \
 && cargo build --release --locked --target "$(uname -m)-unknown-linux-musl" --bin aiven-ephemeral \
 && mkdir /out \
 && cp "target/$(uname -m)-unknown-linux-musl/release/aiven-ephemeral" /out/aiven-ephemeral

FROM scratch AS prebuilt
ARG TARGETPLATFORM
COPY dist/${TARGETPLATFORM}/aiven-ephemeral /out/aiven-ephemeral

FROM ${BINARY} AS binary

# Runs on the build machine's platform: no emulation needed for the arm64 image.
FROM --platform=$BUILDPLATFORM debian:trixie-slim AS certificates
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=2025* \
 && rm -rf /var/lib/apt/lists/*

FROM debian:trixie-slim
COPY --from=certificates /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary /out/aiven-ephemeral /usr/local/bin/aiven-ephemeral
# A numeric user needs no passwd entry, so this stage runs nothing (no emulation).
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/aiven-ephemeral"]
CMD ["--help"]
