# syntax=docker/dockerfile:1
# envoy-bff's image: a static binary on distroless, running as nonroot.
#   docker build -t envoy-bff .              # the service
#   docker build --target apps -t envoy-bff-apps .   # the sample API and SPA (demo only)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/envoy-bff ./cmd/envoy-bff \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/apps ./test/apps

FROM gcr.io/distroless/static-debian12:nonroot AS apps
COPY --from=build /out/apps /apps
USER 65532:65532
EXPOSE 8081 8082
ENTRYPOINT ["/apps"]

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/envoy-bff /envoy-bff
USER 65532:65532
# 9001 ext_authz gRPC, 9002 browser endpoints, 9003 admin (health, metrics, sessions)
EXPOSE 9001 9002 9003
ENTRYPOINT ["/envoy-bff"]
# Configure with ENVOY_BFF_* variables, or mount a file and pass --config.
CMD ["serve"]
