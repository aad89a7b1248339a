# syntax=docker/dockerfile:1
# wib-controller: a static binary (musl) in a distroless, non-root image.
#   docker build -t ghcr.io/wib-dev/wib-controller:dev .
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGET=x86_64-unknown-linux-musl
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
WORKDIR /src
COPY . .
# The same command `make release-build` runs outside Docker.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${TARGET}" -p wib-controller \
 && install -D "target/${TARGET}/release/wib-controller" /out/wib-controller

# Static: no libc, no shell, CA certificates and a nonroot user only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wib-controller /usr/local/bin/wib-controller
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wib-controller"]
