# syntax=docker/dockerfile:1
# wib-controller: a static binary (musl) in a distroless, non-root image.
#   docker build -t ghcr.io/wib-dev/wib-controller:dev .
# The cloud fakes for `make e2e-kind`, the same way (never published):
#   docker build --target fakes -t ghcr.io/wib-dev/wib-fakes:dev .
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS toolchain
# The musl target of the builder's own architecture (amd64 or arm64), so the
# image runs on the node it is built for; --build-arg TARGET=... overrides.
ARG TARGETARCH
ARG TARGET=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && target="${TARGET}" \
 && if [ -z "$target" ]; then \
      case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
        amd64) target=x86_64-unknown-linux-musl ;; \
        arm64) target=aarch64-unknown-linux-musl ;; \
        *) echo "no musl target for ${TARGETARCH}; pass --build-arg TARGET" >&2; exit 1 ;; \
      esac; \
    fi \
 && rustup target add "$target" \
 && echo "$target" > /rust-target
# Debian's musl-gcc compiles the C in dependencies (ring) for either target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .

FROM toolchain AS build-fakes
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /rust-target)" \
 && cargo build --release --locked --target "$target" -p wib-fakes --bins \
 && install -D -s -t /out "target/$target/release/wib-fake-azure" "target/$target/release/wib-fake-gcp" "target/$target/release/wib-fake-eks"

FROM gcr.io/distroless/static-debian12:nonroot AS fakes
COPY --from=build-fakes /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wib-fake-azure"]

FROM toolchain AS build
# The same command `make release-build` runs outside Docker.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /rust-target)" \
 && cargo build --release --locked --target "$target" -p wib-controller \
 && install -D -s "target/$target/release/wib-controller" /out/wib-controller

# The default target. Static: no libc, no shell, CA certificates and a
# nonroot user only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wib-controller /usr/local/bin/wib-controller
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wib-controller"]
