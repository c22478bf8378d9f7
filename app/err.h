/* err.h - one error type for the whole daemon, and its one mapping to HTTP. */
#ifndef TETHER_ERR_H
#define TETHER_ERR_H

enum tether_err {
	TE_OK = 0,
	TE_NOMEM,
	TE_INVAL,
	TE_NOTFOUND,
	TE_CONFLICT,    /* a row changed under us (busy thread, lost CAS) */
	TE_TIMEOUT,
	TE_DB,          /* PostgreSQL unreachable or failed */
	TE_BUS,         /* NATS unreachable or failed */
	TE_PROVIDER,
	TE_FENCED,      /* a newer attempt or a cancel owns the run now */
	TE_CAPACITY,
	TE_TOOLARGE,
	TE_IO,
	TE_CLOSED,      /* the peer went away */
	TE_AGAIN,       /* not now: do something else first, then retry */
	TE__MAX
};

const char *te_strerror(enum tether_err e);

/* On every function that returns an enum tether_err: the compiler reports a caller
 * that drops the result (curl's WARN_UNUSED_RESULT). */
#define TE_MUST_CHECK __attribute__((warn_unused_result))

/* API error codes of API.md, each with its HTTP status (err.c keeps the table). */
enum api_err {
	API_BAD_REQUEST = 0,
	API_INVALID_JSON,
	API_INVALID_ID,
	API_INVALID_FIELD,
	API_UNAUTHORIZED,
	API_NOT_FOUND,
	API_METHOD_NOT_ALLOWED,
	API_THREAD_BUSY,
	API_IDEMPOTENCY_CONFLICT,
	API_CONFLICT,                   /* 409: the resource is not in a state for this */
	API_PAYLOAD_TOO_LARGE,
	API_UNSUPPORTED_MEDIA_TYPE,
	API_TOO_MANY_REQUESTS,
	API_QUOTA_EXCEEDED,
	API_AT_CAPACITY,
	API_UNAVAILABLE,
	API_PROVIDER_ERROR,
	API_INTERNAL,
	API__MAX
};

int api_err_status(enum api_err e);
const char *api_err_code(enum api_err e);
/* The single place an internal error becomes an API error. */
enum api_err api_err_from_te(enum tether_err e);

#endif
