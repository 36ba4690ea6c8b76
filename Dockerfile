# authgate: multi-stage build, non-root runtime, data in a volume.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY src ./src
COPY config ./config
COPY examples ./examples
COPY benches ./benches
RUN cargo build --release --locked --bin authgate

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin authgate \
    && mkdir -p /data /etc/authgate \
    && chown authgate:authgate /data
COPY --from=build /src/target/release/authgate /usr/local/bin/authgate
COPY config/authgate.toml /etc/authgate/authgate.toml
# Inside the container the gateway listens on every interface; the example config's
# 127.0.0.1 addresses and relative data paths are overridden here.
RUN sed -i \
      -e 's|^listen = "127.0.0.1:8080"|listen = "0.0.0.0:8080"|' \
      -e 's|^listen = "127.0.0.1:9090"|listen = "0.0.0.0:9090"|' \
      -e 's|sqlite://data/authgate.db|sqlite:///data/authgate.db|' \
      -e 's|"data/jwt-secret"|"/data/jwt-secret"|' \
      /etc/authgate/authgate.toml
USER authgate
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/authgate"]
CMD ["--config", "/etc/authgate/authgate.toml"]
