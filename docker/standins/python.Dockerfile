# Stand-in for the official python:3.11-slim-bookworm image (the demo profile's
# fake model), built from Debian's python3 (3.11) where no registry is reachable.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
