# roomcast container image: a static Go binary on Debian slim with ffmpeg
# (room pictures and the quality ladder), running as an unprivileged user
# with its data in the /data volume.
#
#   docker build -t roomcast .
#   docker run -p 8080:8080 -p 1935:1935 -v roomcast-data:/data roomcast
#
# docker-compose.yml runs three nodes with Redis and PostgreSQL.

# ---- build: a static binary (pure Go: SQLite is modernc.org/sqlite, no cgo)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/roomcast ./cmd/roomcast \
 && /out/roomcast version

# ---- runtime
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin roomcast \
 && mkdir -p /data && chown roomcast:roomcast /data
COPY --from=build /out/roomcast /usr/local/bin/roomcast
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 1935
ENV ROOMCAST_DATA=/data ROOMCAST_HTTP=:8080 ROOMCAST_RTMP=:1935
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["roomcast", "health", "--url", "http://127.0.0.1:8080/readyz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["roomcast"]
CMD ["serve"]
