/* auth.h - API keys (Bearer) and the admin token. */
#ifndef TETHER_AUTH_H
#define TETHER_AUTH_H

#include <stddef.h>

struct req;
struct authcache;
struct store;

#define API_KEY_PREFIX "tk_"
#define API_KEY_LEN (3 + 40)

int authcache_new(struct authcache **out, int ttl_ms);
void authcache_free(struct authcache *c);

/* A key was revoked: drop it from this worker's cache and record it for the open
 * streams (auth_revoked_since). Any thread. */
void auth_revoke(struct authcache *c, const char *key_id);
/* The worker's counters for /metrics: keys looked up in PostgreSQL, and requests
 * refused for a malformed or unknown key. */
void auth_counts(struct authcache *c, long long *lookups, long long *unknown);
/* The number of revocations seen so far (a generation to pass to auth_revoked_since). */
unsigned auth_revocations(struct authcache *c);
/* 1 when key_id was revoked after generation *gen; *gen becomes the current one.
 * Cheap when nothing was revoked since (one atomic load). */
int auth_revoked_since(struct authcache *c, const char *key_id, unsigned *gen);

/* Extract the token of "Bearer <token>"; NULL when absent or malformed. */
const char *auth_bearer(const char *header, size_t *len);
/* Resolve the request's API key into req->tenant and req->key_id (req->auth_gen:
 * the revocation generation before the lookup), through cache c, else the store.
 * On failure the 401 (or 503) has been answered and -1 is returned. */
int auth_tenant(struct authcache *c, struct store *st, struct req *r);
/* Check the admin token (r->cfg's) in constant time; answers 401 and returns -1 on
 * failure. */
int auth_admin(struct req *r);
/* A new API key (API_KEY_LEN chars + NUL). */
int auth_key_generate(char key[API_KEY_LEN + 1]);

#endif
