# One image for the services. The build step is the same cargo command the local run
# (scripts/run.sh) uses.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p command-api -p projector -p query-api -p reconciler -p relay

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 milestone
COPY --from=build /src/target/release/command-api /src/target/release/projector /src/target/release/query-api \
    /src/target/release/reconciler /src/target/release/relay /usr/local/bin/
USER milestone
ENV RUST_LOG=info
# compose.yaml picks the service with `command:`.
CMD ["command-api"]
