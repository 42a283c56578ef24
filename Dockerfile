# syntax=docker/dockerfile:1
#
# smsctl: one static binary, one image. The same image runs every role:
#   docker run IMAGE serve api        (default)
#   docker run IMAGE serve processor
#   docker run IMAGE migrate up
#
# Build:  docker build --build-arg VERSION="$(git describe --tags --always)" -t smsctl .

ARG GO_VERSION=1.26

# ---------------------------------------------------------------------------
# Build stage: compile a static, stripped binary.
# Runs on the build host's platform and cross-compiles for the target one, so
# multi-arch builds (docker buildx --platform linux/amd64,linux/arm64) need no
# emulation.
# ---------------------------------------------------------------------------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build

WORKDIR /src

# Dependencies first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download && go mod verify

COPY . .

ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/smsctl .

# ---------------------------------------------------------------------------
# Final stage: distroless static — no shell, no package manager; ships CA
# certificates, tzdata and a non-root user (uid/gid 65532).
# Container healthchecks therefore use the binary itself:
#   /smsctl health --url http://127.0.0.1:8080/readyz
# ---------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
LABEL org.opencontainers.image.title="smsctl" \
      org.opencontainers.image.description="SMS platform: API, processor, migrations and CLI in one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/smsctl/smsctl"

COPY --from=build /out/smsctl /smsctl

USER nonroot:nonroot

# 8080: API (SMS_HTTP_ADDR); 8081: processor health/metrics (SMS_PROCESSOR_HTTP_ADDR).
EXPOSE 8080 8081

ENTRYPOINT ["/smsctl"]
CMD ["serve", "api"]
