# Builds verify-api, verify-worker and fake-twilio into one small runtime image;
# docker-compose.yml picks the binary per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin verify-api --bin verify-worker --bin fake-twilio

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/verify-api /src/target/release/verify-worker /src/target/release/fake-twilio /usr/local/bin/
USER 10001
CMD ["verify-api"]
