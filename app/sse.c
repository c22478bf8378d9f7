#include "sse.h"
#include "util.h"
#include "err.h"

#include <string.h>

int
sse_format(struct buf *b, const char *id, const char *event, const char *data, size_t len)
{
	size_t i = 0;
	int rc;

	if (id && (rc = buf_printf(b, "id: %s\n", id)) != TE_OK)
		return rc;
	if (event && (rc = buf_printf(b, "event: %s\n", event)) != TE_OK)
		return rc;
	for (;;) {
		size_t j = i;

		while (j < len && data[j] != '\n' && data[j] != '\r')
			j++;
		if ((rc = buf_append(b, "data: ", 6)) != TE_OK ||
		    (rc = buf_append(b, data + i, j - i)) != TE_OK ||
		    (rc = buf_append(b, "\n", 1)) != TE_OK)
			return rc;
		if (j >= len)
			break;
		if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
			j++;
		i = j + 1;
	}
	return buf_append(b, "\n", 1);
}

int
sse_comment(struct buf *b, const char *text)
{
	return buf_printf(b, ": %s\n\n", text);
}

static int
parse_part(const char *s, size_t n, int64_t max, int64_t *out)
{
	/* Digits only (no sign), no leading zero; parse_int64 checks the rest. */
	if (n == 0 || s[0] < '0' || s[0] > '9' || (n > 1 && s[0] == '0'))
		return -1;
	return parse_int64(s, n, 0, max, out);
}

int
event_id_parse(const char *s, size_t n, int *attempt, int64_t *seq)
{
	const char *colon;
	int64_t a, q;

	if (!s || n == 0 || n > 40)
		return -1;
	if (!(colon = memchr(s, ':', n)))
		return -1;
	if (parse_part(s, (size_t)(colon - s), EVENT_ID_MAX_ATTEMPT, &a) < 0 || a < 1)
		return -1;
	if (parse_part(colon + 1, n - (size_t)(colon - s) - 1, EVENT_ID_MAX_SEQ, &q) < 0)
		return -1;
	*attempt = (int)a;
	*seq = q;
	return 0;
}

int
event_start_json(struct buf *b, const char *run_id, const char *thread_id, int attempt)
{
	return buf_printf(b, "{\"run_id\":\"%s\",\"thread_id\":\"%s\",\"attempt\":%d}", run_id,
	    thread_id, attempt);
}

int
event_reset_json(struct buf *b, int attempt)
{
	return buf_printf(b, "{\"attempt\":%d,\"reason\":\"owner_lost\"}", attempt);
}

int
event_done_json(struct buf *b, const char *status, const char *error_json)
{
	if (error_json)
		return buf_printf(b, "{\"status\":\"%s\",\"error\":%s}", status, error_json);
	return buf_printf(b, "{\"status\":\"%s\"}", status);
}
