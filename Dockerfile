# syntax=docker/dockerfile:1
# One image with all five binaries: fiscus-receipts, fiscus-payments, fiscus-shifts, fiscus-tokens
# and fiscus (dev, bench, migrate). The Helm chart picks the binary per Deployment.
#
#   docker build -t ghcr.io/fiscus-dev/fiscus:0.1.0 .
#
# The machines this project is developed on reach no image registry, so this file is not built
# there; it is kept conventional (BuildKit cache mounts, a distroless runtime).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# protox compiles the .proto files in build.rs: no protoc needed. C parts (SQLite, mimalloc) build with
# the image's gcc.
COPY . .
# The services are built on their own, apart from `fiscus`: so they link none of the upstream
# sandboxes (the `sandbox` feature only `fiscus dev` turns on).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p fiscus-receipts -p fiscus-payments -p fiscus-shifts -p fiscus-tokens \
 && mkdir -p /out \
 && cp target/release/fiscus-receipts target/release/fiscus-payments \
       target/release/fiscus-shifts target/release/fiscus-tokens /out/ \
 && cargo build --release --locked -p fiscus \
 && cp target/release/fiscus /out/

# glibc, libgcc and CA certificates (rustls-platform-verifier reads the system store); no shell,
# no package manager; user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="fiscus" \
      org.opencontainers.image.description="gRPC fiscal middleware: receipts, payments, shifts, tokens" \
      org.opencontainers.image.source="https://github.com/fiscus-dev/fiscus" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# gRPC: receipts 50061, payments 50062, shifts 50063, tokens 50064; metrics 9461–9464.
EXPOSE 50061 50062 50063 50064 9461 9462 9463 9464
ENTRYPOINT ["/usr/local/bin/fiscus"]
CMD ["--help"]
