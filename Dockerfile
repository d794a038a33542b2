# zkchat in a container: `zkchat bridge` by default (docker-compose.yml runs
# it next to ZooKeeper, Kafka and InspIRCd); any other zkchat command works
# too, e.g. `docker compose run --rm bridge users`.
#
# Build stage: Go 1.26 on Debian bookworm, the same Debian release as the
# runtime stage, so the cgo binary (confluent-kafka-go links librdkafka
# statically but glibc dynamically) finds the glibc it was linked against.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: this layer stays cached while only the code changes.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o /out/zkchat ./cmd/zkchat

FROM debian:bookworm-slim
# ca-certificates: for --irc-tls against a public IRC network.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --uid 10001 --no-create-home zkchat \
	&& mkdir -p /var/lib/zkchat/keys && chown -R zkchat /var/lib/zkchat && chmod 700 /var/lib/zkchat/keys
COPY --from=build /out/zkchat /usr/local/bin/zkchat
# The users' signing keys (the bridge signs what its users send): a volume,
# or every restart makes new keys and older messages no longer verify.
ENV ZKCHAT_KEY_DIR=/var/lib/zkchat/keys
USER zkchat
# SIGTERM (docker stop) takes the bridge's users offline and quits IRC.
STOPSIGNAL SIGTERM
ENTRYPOINT ["zkchat"]
CMD ["bridge"]
