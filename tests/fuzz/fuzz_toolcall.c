/* fuzz_toolcall.c - tool calls assembled from fragments (app/toolcall.c). The input
 * is a list of fragments: [flags][index][name length][args length][id bytes?]
 * [name bytes][args bytes]. Properties:
 *   - a fragment is taken (TE_OK) or refused (TE_PROVIDER / TE_TOOLARGE) with a
 *     sentence in printable ASCII, and a refused fragment changes nothing;
 *   - after every fragment: at most TOOLCALL_MAX_CALLS calls with distinct indexes
 *     in [0, TOOLCALL_MAX_INDEX], ids of visible ASCII, names of [A-Za-z0-9_-],
 *     every bound kept, total = the sum of the arguments' lengths;
 *   - each call holds exactly what was taken for its index: the first id, the name
 *     pieces and the argument pieces in order (an independent record says);
 *   - the same fragments with every argument piece cut in two give the same JSON;
 *   - toolcalls_json writes, or leaves out as it was: a JSON array in index order
 *     of {"id","name","arguments"} with distinct ids, each arguments an object
 *     equal (json-c's json_object_equal) to what json-c reads from the text taken,
 *     in valid UTF-8 with no \u0000; into a buffer too small it fails and writes
 *     nothing. */
#include "fuzz.h"
#include "buf.h"
#include "err.h"
#include "toolcall.h"
#include "util.h"

#include <json-c/json.h>

#define REF_INDEXES (TOOLCALL_MAX_INDEX + 64)

struct ref {                    /* what the calls should hold, by index */
	int seen;
	char id[TOOLCALL_MAX_ID + 1];
	char name[TOOLCALL_MAX_NAME + 1];
	struct buf args;
};

static void
check_sentence(const char *err, size_t cap)
{
	size_t n;

	FUZZ_CHECK(memchr(err, '\0', cap) != NULL);
	n = strlen(err);
	FUZZ_CHECK(n > 0);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(err[i] >= 0x20 && err[i] < 0x7f);
}

static void
check_invariants(const struct toolcalls *t)
{
	size_t total = 0;

	FUZZ_CHECK(t->n >= 0 && t->n <= TOOLCALL_MAX_CALLS && toolcalls_count(t) == t->n);
	for (int i = 0; i < t->n; i++) {
		const struct toolcall *c = &t->calls[i];
		size_t idlen = strnlen(c->id, sizeof c->id), nlen = strnlen(c->name, sizeof c->name);

		FUZZ_CHECK(c->index >= 0 && c->index <= TOOLCALL_MAX_INDEX);
		for (int j = 0; j < i; j++)
			FUZZ_CHECK(t->calls[j].index != c->index);
		FUZZ_CHECK(idlen <= TOOLCALL_MAX_ID && nlen <= TOOLCALL_MAX_NAME);
		for (size_t k = 0; k < idlen; k++)
			FUZZ_CHECK(c->id[k] > 0x20 && c->id[k] < 0x7f);
		FUZZ_CHECK(strspn(c->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789_-") == nlen);
		FUZZ_CHECK(c->args.len <= TOOLCALL_MAX_ARGS);
		total += c->args.len;
	}
	FUZZ_CHECK(total == t->total && total <= TOOLCALL_MAX_TOTAL);
}

/* A digest of the state that a refused fragment must leave alone. */
static uint64_t
digest(const struct toolcalls *t)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)t->n ^ ((uint64_t)t->total << 20);

	for (int i = 0; i < t->n; i++) {
		const struct toolcall *c = &t->calls[i];
		const char *parts[2] = { c->id, c->name };

		h = (h ^ (uint64_t)c->index ^ ((uint64_t)c->args.len << 16)) * 1099511628211ull;
		for (int p = 0; p < 2; p++)
			for (const char *s = parts[p]; *s; s++)
				h = (h ^ (unsigned char)*s) * 1099511628211ull;
	}
	return h;
}

/* Parse the input into fragments and feed them; split_args cuts each argument piece
 * in two. The refs record what was taken (when refs is not NULL). */
static void
feed_all(const uint8_t *data, size_t size, int split_args, struct toolcalls *t, struct ref *refs)
{
	static const char *const ids[] = { "call_a", "call_b", "call_1_0", "" };
	size_t at = 0;

	while (at + 4 <= size) {
		uint8_t flags = data[at];
		long index = data[at + 1];
		size_t nlen = data[at + 2] & 15, alen = data[at + 3], idraw = (flags >> 5) & 7;
		char id[16], name[16], err[256];
		const char *args;
		uint64_t before;
		int rc;

		at += 4;
		if (flags & 4)
			index = index * 5 - 2;          /* up to 1273, and -2 */
		if (flags & 1) {                        /* an id */
			if (idraw && at + idraw <= size) {
				memcpy(id, data + at, idraw);
				id[idraw] = '\0';
				at += idraw;
			} else {
				snprintf(id, sizeof id, "%s", ids[(flags >> 3) & 3]);
			}
		}
		if (at + nlen > size)
			nlen = size - at;
		memcpy(name, data + at, nlen);
		name[nlen] = '\0';
		at += nlen;
		if (at + alen > size)
			alen = size - at;
		args = (const char *)data + at;
		at += alen;
		if (flags & 16)                         /* big arguments: repeat this piece */
			alen = alen * 997;
		before = digest(t);
		err[0] = '\0';
		if (flags & 16) {
			char *big = malloc(alen ? alen : 1);

			FUZZ_CHECK(big != NULL);
			for (size_t k = 0; k < alen; k++)
				big[k] = args[k % (alen / 997)];
			rc = toolcalls_feed(t, index, flags & 1 ? id : NULL, flags & 2 ? name : NULL,
			    big, alen, err, sizeof err);
			if (rc == TE_OK && refs)
				FUZZ_CHECK(buf_append(&refs[index].args, big, alen) == TE_OK);
			free(big);
		} else if (split_args && alen > 1) {
			size_t cut = fuzz_split((const uint8_t *)args, alen, 7);

			rc = toolcalls_feed(t, index, flags & 1 ? id : NULL, flags & 2 ? name : NULL,
			    args, cut, err, sizeof err);
			if (rc == TE_OK &&
			    toolcalls_feed(t, index, NULL, NULL, args + cut, alen - cut, err,
			    sizeof err) != TE_OK)
				return;         /* a bound between the halves: this run parts here */
		} else {
			rc = toolcalls_feed(t, index, flags & 1 ? id : NULL, flags & 2 ? name : NULL,
			    args, alen, err, sizeof err);
			if (rc == TE_OK && refs)
				FUZZ_CHECK(buf_append(&refs[index].args, args, alen) == TE_OK);
		}
		FUZZ_CHECK(rc == TE_OK || rc == TE_PROVIDER || rc == TE_TOOLARGE);
		if (rc != TE_OK) {
			check_sentence(err, sizeof err);
			FUZZ_CHECK(digest(t) == before);
			continue;
		}
		if (refs) {
			struct ref *r = &refs[index];

			FUZZ_CHECK(index >= 0 && index <= TOOLCALL_MAX_INDEX);
			r->seen = 1;
			if ((flags & 1) && id[0] && !r->id[0])
				snprintf(r->id, sizeof r->id, "%s", id);
			if (flags & 2) {
				FUZZ_CHECK(strlen(r->name) + nlen <= TOOLCALL_MAX_NAME);
				strcat(r->name, name);
			}
		}
		check_invariants(t);
	}
}

static void
check_refs(const struct toolcalls *t, struct ref *refs)
{
	int seen = 0;

	for (int i = 0; i < REF_INDEXES; i++) {
		if (!refs[i].seen)
			continue;
		seen++;
		for (int k = 0; k < t->n; k++) {
			const struct toolcall *c = &t->calls[k];

			if (c->index != i)
				continue;
			FUZZ_CHECK(!strcmp(c->id, refs[i].id) && !strcmp(c->name, refs[i].name));
			FUZZ_CHECK(c->args.len == refs[i].args.len);
			FUZZ_CHECK(c->args.len == 0 || !memcmp(c->args.data, refs[i].args.data,
			    c->args.len));
		}
	}
	FUZZ_CHECK(seen == t->n);
}

/* json-c's reading of s, deep enough for any arguments taken. */
static struct json_object *
parse(const char *s)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *o;

	FUZZ_CHECK(tok != NULL);
	o = json_tokener_parse_ex(tok, s, (int)strlen(s));
	json_tokener_free(tok);
	return o;
}

/* A \u0000 escape in JSON text: an escaped backslash followed by "u0000" is
 * not one (the backslashes before it pair up). */
static int
has_nul_escape(const char *s)
{
	for (const char *p = strstr(s, "\\u0000"); p; p = strstr(p + 1, "\\u0000")) {
		size_t k = 0;

		while (p - k > s && p[-(long)k - 1] == '\\')
			k++;
		if (k % 2 == 0)
			return 1;
	}
	return 0;
}

static void
check_json(const struct toolcalls *t, const struct buf *out)
{
	struct json_object *arr = parse(out->data);
	long last = -1;

	FUZZ_CHECK(utf8_valid(out->data, out->len) && !has_nul_escape(out->data));
	FUZZ_CHECK(arr && json_object_is_type(arr, json_type_array));
	FUZZ_CHECK((int)json_object_array_length(arr) == t->n);
	for (int i = 0; i < t->n; i++) {
		struct json_object *o = json_object_array_get_idx(arr, (size_t)i), *id, *name, *args;
		const struct toolcall *c = NULL;
		struct json_object *want;
		char gen[64];

		FUZZ_CHECK(json_object_object_length(o) == 3);
		FUZZ_CHECK(json_object_object_get_ex(o, "id", &id) &&
		    json_object_object_get_ex(o, "name", &name) &&
		    json_object_object_get_ex(o, "arguments", &args));
		FUZZ_CHECK(json_object_is_type(args, json_type_object));
		/* in index order: the i-th smallest index */
		for (int k = 0; k < t->n; k++)
			if (t->calls[k].index > last && (!c || t->calls[k].index < c->index))
				c = &t->calls[k];
		last = c->index;
		snprintf(gen, sizeof gen, "call_1_%ld", c->index);
		FUZZ_CHECK(!strcmp(json_object_get_string(id), c->id[0] ? c->id : gen));
		FUZZ_CHECK(!strcmp(json_object_get_string(name), c->name) && c->name[0]);
		for (int k = 0; k < i; k++) {
			struct json_object *prev, *pid;

			prev = json_object_array_get_idx(arr, (size_t)k);
			FUZZ_CHECK(json_object_object_get_ex(prev, "id", &pid));
			FUZZ_CHECK(strcmp(json_object_get_string(pid), json_object_get_string(id)));
		}
		want = c->args.len ? parse(c->args.data) : NULL;
		if (want)
			FUZZ_CHECK(json_object_equal(want, args));
		else
			FUZZ_CHECK(json_object_object_length(args) == 0);
		json_object_put(want);
	}
	json_object_put(arr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ref *refs = calloc(REF_INDEXES, sizeof *refs);
	struct toolcalls t, t2;
	struct buf out, out2, small;
	char err[512], err2[512];
	int rc, rc2;

	FUZZ_CHECK(refs != NULL);
	for (int i = 0; i < REF_INDEXES; i++)
		buf_init(&refs[i].args, (size_t)TOOLCALL_MAX_TOTAL * 2);
	toolcalls_init(&t);
	feed_all(data, size, 0, &t, refs);
	check_invariants(&t);
	check_refs(&t, refs);

	buf_init(&out, (size_t)4 << 20);
	err[0] = '\0';
	rc = toolcalls_json(&t, 1, &out, err, sizeof err);
	FUZZ_CHECK(rc == TE_OK || rc == TE_PROVIDER);
	if (rc == TE_OK) {
		check_json(&t, &out);
		/* a buffer one byte too small: refused, left as it was */
		buf_init(&small, out.len - 1);
		FUZZ_CHECK(toolcalls_json(&t, 1, &small, err2, sizeof err2) == TE_TOOLARGE);
		FUZZ_CHECK(small.len == 0);
		buf_free(&small);
	} else {
		FUZZ_CHECK(out.len == 0);
		FUZZ_CHECK(memchr(err, '\0', sizeof err) && err[0] &&
		    utf8_valid(err, strlen(err)));
	}

	/* the argument pieces cut in two: the same calls (when nothing was refused) */
	toolcalls_init(&t2);
	feed_all(data, size, 1, &t2, NULL);
	check_invariants(&t2);
	buf_init(&out2, (size_t)4 << 20);
	err2[0] = '\0';
	rc2 = toolcalls_json(&t2, 1, &out2, err2, sizeof err2);
	if (t2.n == t.n && t2.total == t.total && digest(&t) == digest(&t2)) {
		FUZZ_CHECK(rc == rc2 && !strcmp(err, err2));
		FUZZ_CHECK(out.len == out2.len && (!out.len || !memcmp(out.data, out2.data, out.len)));
	}

	buf_free(&out);
	buf_free(&out2);
	toolcalls_free(&t2);
	toolcalls_free(&t);
	toolcalls_free(&t);
	for (int i = 0; i < REF_INDEXES; i++)
		buf_free(&refs[i].args);
	free(refs);
	return 0;
}
