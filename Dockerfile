# syntax=docker/dockerfile:1
#
# flagwarden's container image: a static binary on a small runtime that runs as a
# non-root user. The web dashboard's assets and the SQL migrations are compiled into the
# binary with go:embed, so the binary is the only file copied.
#
#   docker build --build-arg VERSION=$(git describe --always) --build-arg REVISION=$(git rev-parse HEAD) -t flagwarden .
#   docker run -v $PWD/flagwarden.yaml:/etc/flagwarden/flagwarden.yaml -p 8080:8080 flagwarden

# --- build: the Go toolchain, modules cached in their own layer --------------------
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The commit, which flagwarden_build_info reports; .git is not in the build context, so
# Go cannot record it by itself.
ARG REVISION=unknown
# CGO_ENABLED=0: a static binary that needs no libc in the runtime image (the SQLite
# driver is pure Go).
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /out/flagwarden ./cmd/flagwarden

# --- runtime: alpine for its CA bundle and the busybox wget the health check uses ----
FROM alpine:3.22 AS runtime
# A fixed numeric uid/gid so that Kubernetes' runAsNonRoot can verify it.
RUN addgroup -S -g 10001 flagwarden \
 && adduser -S -D -H -u 10001 -G flagwarden -s /sbin/nologin flagwarden \
 && mkdir -p /etc/flagwarden
COPY --from=build /out/flagwarden /usr/local/bin/flagwarden
USER 10001:10001
# Inside a container the server must listen on every interface, not the loopback
# default; the variable overrides http.listen from the file.
ENV FLAGWARDEN_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 8080
# /-/healthy answers as soon as the HTTP server runs; readiness (dependencies reachable)
# is /-/ready, which orchestrators probe separately.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/-/healthy"]
ENTRYPOINT ["/usr/local/bin/flagwarden", "serve"]
CMD ["--config", "/etc/flagwarden/flagwarden.yaml"]
