/* fuzz_util.c - the small parsers and the JSON string writer everything uses
 * (app/util.c utf8_valid and parse_int64, app/buf.c buf_json_str). Properties:
 *   - utf8_valid agrees with the well-formed byte sequences of Unicode's Table 3-7;
 *   - parse_int64 agrees with an independent reading (optional '-', 1..20 bytes of
 *     digits, within [min, max]) for several bounds, and writes *out only on success;
 *   - buf_json_str of valid UTF-8 is a JSON string (no raw control bytes, valid
 *     UTF-8) that json-c reads back to the same bytes; it appends all or nothing
 *     under a cap, leaving the buffer as it was when the cap is hit. */
#include "fuzz.h"
#include "buf.h"
#include "err.h"
#include "util.h"

#include <json-c/json.h>

/* Unicode 15, Table 3-7. */
static int
utf8_reference(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t len;

		if (c <= 0x7f) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4;
		else
			return 0;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (size_t k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return 0;
		i += len;
	}
	return 1;
}

static int
int64_reference(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
	__int128 v = 0;
	size_t i = n > 0 && s[0] == '-';

	if (n == 0 || n > 20 || i == n)
		return -1;
	for (size_t k = i; k < n; k++) {
		if (s[k] < '0' || s[k] > '9')
			return -1;
		v = v * 10 + (s[k] - '0');
	}
	if (i)
		v = -v;
	if (v < min || v > max)
		return -1;
	*out = (int64_t)v;
	return 0;
}

static void
check_int64(const char *s, size_t n)
{
	static const int64_t bounds[][2] = {
		{ INT64_MIN, INT64_MAX }, { 0, INT64_MAX }, { 1, 100 }, { 0, 1000000 },
		{ -5, 5 }, { 0, 86400000 },
	};

	for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
		int64_t got = 0x5a5a5a5a, want = 0;
		int rc = parse_int64(s, n, bounds[i][0], bounds[i][1], &got);

		FUZZ_CHECK(rc == int64_reference(s, n, bounds[i][0], bounds[i][1], &want));
		FUZZ_CHECK(rc == 0 ? got == want : got == 0x5a5a5a5a);
	}
}

/* Append the input as a JSON string after a prefix, under a cap the input chooses. */
static void
check_json_str(const uint8_t *data, const char *s, size_t n, int valid)
{
	struct buf b, capped;
	struct json_tokener *tok;
	struct json_object *o;
	size_t max, out;

	buf_init(&b, (size_t)1 << 30);
	FUZZ_CHECK(buf_puts(&b, "[") == TE_OK);
	FUZZ_CHECK(buf_json_str(&b, s, n) == TE_OK);
	out = b.len - 1;
	FUZZ_CHECK(out >= n + 2 && b.data[1] == '"' && b.data[b.len - 1] == '"');
	for (size_t i = 1; i < b.len; i++)
		FUZZ_CHECK((unsigned char)b.data[i] >= 0x20);
	if (valid) {
		FUZZ_CHECK(utf8_valid(b.data, b.len));
		tok = json_tokener_new();
		FUZZ_CHECK(tok != NULL);
		o = json_tokener_parse_ex(tok, b.data + 1, (int)out);
		FUZZ_CHECK(json_tokener_get_error(tok) == json_tokener_success);
		FUZZ_CHECK(json_tokener_get_parse_end(tok) == out);
		FUZZ_CHECK(json_object_is_type(o, json_type_string));
		FUZZ_CHECK((size_t)json_object_get_string_len(o) == n);
		FUZZ_CHECK(n == 0 || !memcmp(json_object_get_string(o), s, n));
		json_object_put(o);
		json_tokener_free(tok);
	}

	/* all or nothing: room for 1 + out bytes or fewer */
	max = 1 + fuzz_split(data, n, 3) % (out + 1);
	buf_init(&capped, max);
	FUZZ_CHECK(buf_puts(&capped, "[") == TE_OK);
	if (buf_json_str(&capped, s, n) == TE_OK) {
		FUZZ_CHECK(1 + out <= max && capped.len == b.len && !memcmp(capped.data, b.data, b.len));
	} else {
		FUZZ_CHECK(1 + out > max && capped.len == 1 && !strcmp(capped.data, "["));
	}
	buf_free(&capped);
	buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_bytes(data, size);
	int valid = utf8_valid(s, size);

	FUZZ_CHECK(valid == utf8_reference(data, size));
	check_int64(s, size);
	check_json_str(data, s, size, valid);
	free(s);
	return 0;
}
