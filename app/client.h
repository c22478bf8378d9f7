/* client.h - tetherctl's HTTP side (libcurl): JSON requests and event streams that
 * reconnect with Last-Event-ID until done. */
#ifndef TETHER_CLIENT_H
#define TETHER_CLIENT_H

#include <stddef.h>

#include "buf.h"
#include "sseparse.h"

struct client {
	const char *url;        /* base, e.g. http://127.0.0.1:8080 */
	const char *key;        /* API key or admin token */
	long timeout_s;
};

/* One request with a JSON body (may be NULL); resp gets the body. Returns the HTTP
 * status, or -1 with err filled when no answer came. */
int client_json(const struct client *c, const char *method, const char *path, const char *body,
    struct buf *resp, char *err, size_t errlen);

/* The same with an Idempotency-Key header (NULL: none). */
int client_json_idem(const struct client *c, const char *method, const char *path,
    const char *body, const char *idem, struct buf *resp, char *err, size_t errlen);

struct client_stream {
	sse_event_fn on_event;  /* return non-zero to stop */
	void *arg;
	char last_id[64];       /* resumes from here after a drop */
	int saw_done;
	int reconnects;
};

/* Stream events from path (GET), reconnecting with Last-Event-ID after a drop or a
 * 5xx, with backoff, up to max_reconnects. Returns 0 once done arrived, -1 otherwise. */
int client_stream(const struct client *c, const char *path, struct client_stream *s,
    int max_reconnects, char *err, size_t errlen);

#endif
