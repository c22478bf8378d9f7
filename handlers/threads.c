/* POST /v1/threads, GET /v1/threads, GET /v1/threads/{id}. */
#include "routes.h"
#include "app.h"
#include "jsonv.h"
#include "store.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define TITLE_MAX 1000
#define METADATA_MAX (64 * 1024)

void
h_threads_create(struct req *r)
{
	static const char *const keys[] = { "title", "metadata", NULL };
	struct json_object *body = NULL, *meta = NULL;
	const char *title = NULL, *meta_json = NULL;
	struct jsonv_err e;
	char *json = NULL;
	size_t mlen = 0;
	int rc;

	if (http_json_body(r, 1, &body) < 0)
		return;
	if (jsonv_only_keys(body, keys, NULL, &e) != JV_OK ||
	    jsonv_string(body, "title", 0, 0, TITLE_MAX, &title, NULL, &e) != JV_OK ||
	    jsonv_object(body, "metadata", &meta, &e) != JV_OK ||
	    (meta && jsonv_no_nul(meta, "metadata", &e) != JV_OK)) {
		http_error_field(r, e.field, "%s", e.msg);
		goto out;
	}
	if (meta) {
		meta_json = json_object_to_json_string_length(meta, JSON_C_TO_STRING_PLAIN, &mlen);
		if (mlen > METADATA_MAX) {
			http_error_field(r, "metadata", "metadata is larger than %d bytes", METADATA_MAX);
			goto out;
		}
	}
	rc = store_thread_create(r->app->store, r->tenant, title, meta_json, &json);
	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not create the thread: %s", te_strerror(rc));
		goto out;
	}
	http_json_str(r, 201, json);
out:
	free(json);
	json_object_put(body);
}

void
h_threads_list(struct req *r)
{
	char lim[16], before[64];
	int64_t limit = 20;
	char *json = NULL;
	int n, rc;

	n = http_query_get(r->query, "limit", lim, sizeof lim);
	if (n == -2 || (n >= 0 && parse_int64(lim, (size_t)n, 1, 100, &limit) < 0)) {
		http_error_field(r, "limit", "limit must be an integer from 1 to 100");
		return;
	}
	n = http_query_get(r->query, "before", before, sizeof before);
	if (n == -2 || (n >= 0 && !uuid_valid(before))) {
		http_error_field(r, "before", "before must be a thread id (the \"next\" of a previous page)");
		return;
	}
	rc = store_thread_list(r->app->store, r->tenant, (int)limit, n >= 0 ? before : NULL, &json);
	if (rc == TE_NOTFOUND) {
		http_error_field(r, "before", "before names no thread of yours");
		return;
	}
	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not list threads: %s", te_strerror(rc));
		return;
	}
	http_json_str(r, 200, json);
	free(json);
}

void
h_thread_get(struct req *r)
{
	char *json = NULL;
	int rc = store_thread_get(r->app->store, r->tenant, r->id, &json);

	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no thread %s", r->id);
		return;
	}
	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not read the thread: %s", te_strerror(rc));
		return;
	}
	http_json_str(r, 200, json);
	free(json);
}
