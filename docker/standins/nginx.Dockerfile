# Stand-in for the official nginx:1.26-bookworm image, built from Debian's nginx
# package (1.22) where no registry is reachable (scripts/compose-local). As in the
# official image: `nginx -g 'daemon off;'` in the foreground, SIGQUIT (graceful)
# to stop, logs to the container's output, mime.types in /etc/nginx; the compose
# file mounts the configuration as /etc/nginx/nginx.conf.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
