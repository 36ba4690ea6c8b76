# syntax=docker/dockerfile:1
# authgate: multi-stage build; a distroless runtime as the numeric non-root user 65532
# (Kubernetes' runAsNonRoot can check a number, not a name), data in the /data volume.
#
#   docker build -t authgate .
#   docker run -p 8080:8080 -v authgate-data:/data \
#     -v "$PWD/authgate.toml:/etc/authgate/authgate.toml:ro" authgate

FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit. Stub targets let cargo build the dependency
# graph without the sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/request_path.rs \
    && cargo build --release --locked --bin authgate \
    && rm -rf src benches

COPY src ./src
COPY benches ./benches
# The stubs' build outputs are older than the real sources, but touch them anyway: cargo
# compares modification times, and COPY keeps the build context's.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin authgate \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/authgate /usr/local/bin/authgate
# The image's own configuration: a file in the repository, never edited here.
COPY config/container.toml /etc/authgate/authgate.toml
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 9090
# distroless has no shell and no curl: the binary asks its own admin listener.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/authgate", "--config", "/etc/authgate/authgate.toml", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/authgate"]
CMD ["--config", "/etc/authgate/authgate.toml"]
