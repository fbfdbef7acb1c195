# syntax=docker/dockerfile:1
# A static musl binary on a minimal Alpine: a shell for GitLab jobs, CA certificates
# for the API, nothing else.
#   docker build -t aiven-ephemeral .
#   docker run --rm -e AIVEN_TOKEN -v "$PWD:/work" -w /work aiven-ephemeral up

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# The same command .ci/run executes (the Docker engine is absent there).
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin aiven-ephemeral \
 && cp target/x86_64-unknown-linux-musl/release/aiven-ephemeral /aiven-ephemeral

FROM alpine:3.20
RUN apk add --no-cache ca-certificates
COPY --from=build /aiven-ephemeral /usr/local/bin/aiven-ephemeral
ENTRYPOINT ["/usr/local/bin/aiven-ephemeral"]
CMD ["--help"]
