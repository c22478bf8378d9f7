# Stand-in for the official nats:2.9-alpine image, built from Debian's
# nats-server package (2.9) where no registry is reachable (scripts/compose-local).
# docker/compose.yml gives the command (nats-server -c /etc/nats/tether.conf), the
# config and the /data volume; wget is there for the compose healthcheck, as
# busybox's is in the alpine image.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data
EXPOSE 4222 8222
CMD ["nats-server"]
