# One image for every command of the orders binary: compose runs it as
# `orders topics`, `orders run main`, `orders run retry --stage K`, ...
#
#   docker build -t orderflow/orders:local .
#   docker run --rm --network host orderflow/orders:local stats   # Kafka on localhost:9092
#
# Settings come from the environment (KAFKA_BROKERS, RETRY_DELAYS, ...), see
# docker-compose.yml. Go 1.26: golang:1.26 fetches a newer 1.26.x toolchain by
# itself if go.mod asks for one it does not have (GOTOOLCHAIN=auto).

# ---- build ----------------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /orders ./cmd/orders

# ---- run ------------------------------------------------------------------
# Static binary, no shell, runs as uid 65532 (nonroot).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /orders /orders
USER nonroot:nonroot
ENTRYPOINT ["/orders"]
CMD ["--help"]
