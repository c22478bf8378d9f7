/* auth.c - keys are looked up by sha256 in PostgreSQL, with their tenant's quotas;
 * valid ones are cached per worker for a short time (auth_cache_ms) so a stream of requests costs no extra
 * round trip. A revocation (auth_revoke: the control broadcast, docs/OPERATIONS.md
 * "Key revocation") drops the key from the cache at once and enters a ring of recent
 * revocations that open event streams check; the cache's short life is the
 * backstop when a broadcast is lost. Keys PostgreSQL did not know are remembered
 * (by a seeded hash) for auth_negative_ms, so a flood of bad keys costs one
 * lookup per key and worker per that time, not one per request. */
#include "auth.h"
#include "config.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "store.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#define CACHE_SLOTS 1024
/* Keys PostgreSQL did not know, by hash (never the key itself), for
 * auth_negative_ms: a flood of bad keys costs one lookup per key per worker per TTL. */
#define NEG_SLOTS 1024
/* Recent revocations kept for open streams (a stream looks at those since its last look). */
#define REVOKED_RING 256

struct cache_entry {
	char key[API_KEY_LEN + 1];
	char tenant[UUID_LEN + 1];
	char key_id[UUID_LEN + 1];
	struct tenant_limits limits;
	int64_t expires_ms;
};

struct neg_entry {
	uint64_t h[2];
	int64_t expires_ms;
};

struct authcache {
	pthread_mutex_t mu;             /* guards slots, neg, revoked */
	int ttl_ms;
	uint64_t seed[2];               /* random: the negative cache's hashes are unguessable */
	struct cache_entry slots[CACHE_SLOTS];
	struct neg_entry neg[NEG_SLOTS];
	char revoked[REVOKED_RING][UUID_LEN + 1];       /* revocation g at [g % REVOKED_RING] */
	atomic_uint gen;                /* revocations so far (written under mu) */
	atomic_llong lookups;           /* keys looked up in PostgreSQL */
	atomic_llong unknown;           /* requests refused: a malformed or unknown key */
};

int
authcache_new(struct authcache **out, int ttl_ms)
{
	struct authcache *c = calloc(1, sizeof *c);

	if (!c)
		return TE_NOMEM;
	c->ttl_ms = ttl_ms;
	if (getrandom(c->seed, sizeof c->seed, 0) != (ssize_t)sizeof c->seed) {
		c->seed[0] = (uint64_t)now_us() ^ 0x9e3779b97f4a7c15ull;
		c->seed[1] = (uint64_t)getpid() * 0xbf58476d1ce4e5b9ull;
	}
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return TE_OK;
}

void
authcache_free(struct authcache *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static unsigned
slot_of(const char *key)
{
	unsigned h = 2166136261u;

	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % CACHE_SLOTS;
}

static int
cache_get(struct authcache *c, const char *key, char tenant[UUID_LEN + 1],
    char key_id[UUID_LEN + 1], struct tenant_limits *lim)
{
	struct cache_entry *e = &c->slots[slot_of(key)];
	int hit = 0;

	pthread_mutex_lock(&c->mu);
	if (e->expires_ms > now_ms() && secret_equal(e->key, key)) {
		memcpy(tenant, e->tenant, UUID_LEN + 1);
		memcpy(key_id, e->key_id, UUID_LEN + 1);
		*lim = e->limits;
		hit = 1;
	}
	pthread_mutex_unlock(&c->mu);
	return hit;
}

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* 128 bits of a seeded hash of the key: what the negative cache keeps. */
static void
neg_hash(const struct authcache *c, const char *key, uint64_t h[2])
{
	for (int k = 0; k < 2; k++) {
		uint64_t v = 14695981039346656037ull ^ c->seed[k];

		for (const char *p = key; *p; p++)
			v = (v ^ (unsigned char)*p) * 1099511628211ull;
		h[k] = mix64(v ^ c->seed[k ^ 1]);
	}
}

static int
neg_get(struct authcache *c, const uint64_t h[2])
{
	struct neg_entry *e = &c->neg[h[0] % NEG_SLOTS];
	int hit;

	pthread_mutex_lock(&c->mu);
	hit = e->expires_ms > now_ms() && e->h[0] == h[0] && e->h[1] == h[1];
	pthread_mutex_unlock(&c->mu);
	return hit;
}

static void
neg_put(struct authcache *c, const uint64_t h[2], int ttl_ms)
{
	struct neg_entry *e = &c->neg[h[0] % NEG_SLOTS];

	pthread_mutex_lock(&c->mu);
	e->h[0] = h[0];
	e->h[1] = h[1];
	e->expires_ms = now_ms() + ttl_ms;
	pthread_mutex_unlock(&c->mu);
}

/* Cache a lookup made at revocation generation gen: not when a revocation came
 * since (it may be this key's, and the lookup may predate it). */
static void
cache_put(struct authcache *c, const char *key, const char *tenant, const char *key_id,
    const struct tenant_limits *lim, unsigned gen)
{
	struct cache_entry *e = &c->slots[slot_of(key)];

	pthread_mutex_lock(&c->mu);
	if (atomic_load(&c->gen) == gen) {
		memcpy(e->key, key, API_KEY_LEN + 1);
		memcpy(e->tenant, tenant, UUID_LEN + 1);
		memcpy(e->key_id, key_id, UUID_LEN + 1);
		e->limits = *lim;
		e->expires_ms = now_ms() + c->ttl_ms;
	}
	pthread_mutex_unlock(&c->mu);
}

void
auth_revoke(struct authcache *c, const char *key_id)
{
	unsigned g;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].expires_ms && !strcmp(c->slots[i].key_id, key_id))
			memset(&c->slots[i], 0, sizeof c->slots[i]);
	g = atomic_load(&c->gen);
	snprintf(c->revoked[g % REVOKED_RING], UUID_LEN + 1, "%s", key_id);
	atomic_store(&c->gen, g + 1);
	pthread_mutex_unlock(&c->mu);
}

void
auth_counts(struct authcache *c, long long *lookups, long long *unknown)
{
	*lookups = atomic_load(&c->lookups);
	*unknown = atomic_load(&c->unknown);
}

unsigned
auth_revocations(struct authcache *c)
{
	return atomic_load(&c->gen);
}

int
auth_revoked_since(struct authcache *c, const char *key_id, unsigned *gen)
{
	unsigned now = atomic_load(&c->gen), g = *gen;
	int hit = 0;

	if (now == g || !key_id[0])
		return 0;
	pthread_mutex_lock(&c->mu);
	now = atomic_load(&c->gen);
	if (now - g > REVOKED_RING)
		g = now - REVOKED_RING;         /* older ones are gone from the ring */
	for (; g != now && !hit; g++)
		hit = !strcmp(c->revoked[g % REVOKED_RING], key_id);
	pthread_mutex_unlock(&c->mu);
	*gen = now;
	return hit;
}

const char *
auth_bearer(const char *h, size_t *len)
{
	size_t n;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	while (n > 0 && h[n - 1] == ' ')
		n--;
	if (n == 0 || n > 512)
		return NULL;
	*len = n;
	return h;
}

static int
key_shape_ok(const char *k, size_t n)
{
	if (n != API_KEY_LEN || strncmp(k, API_KEY_PREFIX, 3) != 0)
		return 0;
	for (size_t i = 3; i < n; i++)
		if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f')))
			return 0;
	return 1;
}

int
auth_tenant(struct authcache *c, struct store *st, struct req *r)
{
	char key[API_KEY_LEN + 1];
	size_t n = 0;
	const char *k = auth_bearer(r->authorization, &n);
	uint64_t h[2];
	unsigned gen;
	int rc;

	if (!k) {
		http_error_ex(r, API_UNAUTHORIZED, NULL, NULL, "WWW-Authenticate: Bearer\r\n",
		    "missing API key: send Authorization: Bearer <key>");
		return -1;
	}
	if (!key_shape_ok(k, n))
		goto unknown;
	memcpy(key, k, n);
	key[n] = '\0';
	gen = auth_revocations(c);
	r->auth_gen = gen;
	if (cache_get(c, key, r->tenant, r->key_id, &r->limits))
		return 0;
	neg_hash(c, key, h);
	if (r->cfg->auth_negative_ms > 0 && neg_get(c, h))
		goto unknown;
	atomic_fetch_add(&c->lookups, 1);
	rc = store_auth(st, key, r->tenant, r->key_id, &r->limits);
	if (rc == TE_NOTFOUND) {
		if (r->cfg->auth_negative_ms > 0)
			neg_put(c, h, r->cfg->auth_negative_ms);
		goto unknown;
	}
	if (rc != TE_OK) {
		http_error_ex(r, API_UNAVAILABLE, NULL, NULL, "Retry-After: 1\r\n",
		    "could not check the API key: PostgreSQL is unavailable");
		return -1;
	}
	cache_put(c, key, r->tenant, r->key_id, &r->limits, gen);
	return 0;
unknown:
	atomic_fetch_add(&c->unknown, 1);
	http_error_ex(r, API_UNAUTHORIZED, NULL, NULL, "WWW-Authenticate: Bearer\r\n",
	    "invalid API key");
	return -1;
}

int
auth_admin(struct req *r)
{
	const struct config *cfg = r->cfg;
	char tok[513];
	size_t n = 0;
	const char *t = auth_bearer(r->authorization, &n);

	if (t) {
		memcpy(tok, t, n);
		tok[n] = '\0';
	}
	if (!t || !cfg->admin_token[0] || !secret_equal(tok, cfg->admin_token)) {
		http_error_ex(r, API_UNAUTHORIZED, NULL, NULL, "WWW-Authenticate: Bearer\r\n",
		    cfg->admin_token[0] ? "missing or wrong admin token"
		    : "admin routes are disabled: TETHER_ADMIN_TOKEN is not set");
		return -1;
	}
	return 0;
}

int
auth_key_generate(char key[API_KEY_LEN + 1])
{
	memcpy(key, API_KEY_PREFIX, 3);
	return random_hex(key + 3, 20) == 0 ? TE_OK : TE_IO;
}
