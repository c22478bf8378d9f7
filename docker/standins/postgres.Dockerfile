# Stand-in for the official postgres:15-bookworm image, built from Debian's
# postgresql-15 package where no registry is reachable (scripts/compose-local).
# It honours what docker/compose.yml relies on: POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, the data volume at /var/lib/postgresql/data (PGDATA), a `postgres
# ...` command, pg_isready on the PATH and SIGINT as the stop signal.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/run/postgresql /var/lib/postgresql/data \
 && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data \
 && chmod 2777 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
# The official image's: a fast shutdown (SIGTERM would wait for every client).
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
