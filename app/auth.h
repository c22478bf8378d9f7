/* auth.h - API keys (Bearer) and the admin token. */
#ifndef TETHER_AUTH_H
#define TETHER_AUTH_H

#include <stddef.h>

struct app;
struct req;
struct authcache;

#define API_KEY_PREFIX "tk_"
#define API_KEY_LEN (3 + 40)

int authcache_new(struct authcache **out, int ttl_ms);
void authcache_free(struct authcache *c);

/* Extract the token of "Bearer <token>"; NULL when absent or malformed. */
const char *auth_bearer(const char *header, size_t *len);
/* Resolve the request's API key into req->tenant. On failure the 401 (or 503) has
 * been answered and -1 is returned. */
int auth_tenant(struct req *r);
/* Check the admin token in constant time; answers 401 and returns -1 on failure. */
int auth_admin(struct req *r);
/* A new API key (API_KEY_LEN chars + NUL). */
int auth_key_generate(char key[API_KEY_LEN + 1]);

#endif
