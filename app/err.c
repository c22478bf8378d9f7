#include "err.h"

static const char *const te_text[TE__MAX] = {
	[TE_OK] = "success",
	[TE_NOMEM] = "out of memory",
	[TE_INVAL] = "invalid argument",
	[TE_NOTFOUND] = "not found",
	[TE_CONFLICT] = "conflict",
	[TE_TIMEOUT] = "timed out",
	[TE_DB] = "database unavailable",
	[TE_BUS] = "message bus unavailable",
	[TE_PROVIDER] = "model provider failed",
	[TE_FENCED] = "fenced by a newer owner",
	[TE_CAPACITY] = "at capacity",
	[TE_TOOLARGE] = "too large",
	[TE_IO] = "i/o error",
	[TE_CLOSED] = "peer closed the connection",
	[TE_AGAIN] = "try again",
};

const char *
te_strerror(enum tether_err e)
{
	if ((unsigned)e >= TE__MAX)
		return "unknown error";
	return te_text[e];
}

static const struct {
	int status;
	const char *code;
} api_table[API__MAX] = {
	[API_BAD_REQUEST] = { 400, "bad_request" },
	[API_INVALID_JSON] = { 400, "invalid_json" },
	[API_INVALID_ID] = { 400, "invalid_id" },
	[API_INVALID_FIELD] = { 400, "invalid_field" },
	[API_UNAUTHORIZED] = { 401, "unauthorized" },
	[API_NOT_FOUND] = { 404, "not_found" },
	[API_METHOD_NOT_ALLOWED] = { 405, "method_not_allowed" },
	[API_THREAD_BUSY] = { 409, "thread_busy" },
	[API_IDEMPOTENCY_CONFLICT] = { 422, "idempotency_conflict" },
	[API_CONFLICT] = { 409, "conflict" },
	[API_PAYLOAD_TOO_LARGE] = { 413, "payload_too_large" },
	[API_UNSUPPORTED_MEDIA_TYPE] = { 415, "unsupported_media_type" },
	[API_TOO_MANY_REQUESTS] = { 429, "too_many_requests" },
	[API_QUOTA_EXCEEDED] = { 429, "quota_exceeded" },
	[API_AT_CAPACITY] = { 503, "at_capacity" },
	[API_UNAVAILABLE] = { 503, "unavailable" },
	[API_PROVIDER_ERROR] = { 502, "provider_error" },
	[API_INTERNAL] = { 500, "internal" },
};

int
api_err_status(enum api_err e)
{
	if ((unsigned)e >= API__MAX)
		return 500;
	return api_table[e].status;
}

const char *
api_err_code(enum api_err e)
{
	if ((unsigned)e >= API__MAX)
		return "internal";
	return api_table[e].code;
}

enum api_err
api_err_from_te(enum tether_err e)
{
	switch (e) {
	case TE_INVAL:
		return API_BAD_REQUEST;
	case TE_NOTFOUND:
		return API_NOT_FOUND;
	case TE_TOOLARGE:
		return API_PAYLOAD_TOO_LARGE;
	case TE_CAPACITY:
		return API_AT_CAPACITY;
	case TE_DB:
	case TE_BUS:
	case TE_TIMEOUT:
		return API_UNAVAILABLE;
	case TE_PROVIDER:
		return API_PROVIDER_ERROR;
	default:
		return API_INTERNAL;
	}
}
