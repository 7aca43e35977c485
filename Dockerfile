# Multi-stage build of the pair and its HTTP gateway: one image, three binaries.
#   docker build -t auth-blog .
#   docker run auth-blog auth-service --help
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p auth-service -p blog-service -p api-gateway \
 && cp target/release/auth-service target/release/blog-service target/release/api-gateway \
       /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home app
COPY --from=build /usr/local/bin/auth-service /usr/local/bin/blog-service \
     /usr/local/bin/api-gateway /usr/local/bin/
USER app
WORKDIR /app
# Without database URLs the services use SQLite files under /app/data.
ENV AUTH_LISTEN_ADDR=0.0.0.0:50051 BLOG_LISTEN_ADDR=0.0.0.0:50052 \
    GATEWAY_LISTEN_ADDR=0.0.0.0:8000
EXPOSE 50051 50052 8000
CMD ["auth-service"]
