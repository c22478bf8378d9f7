/* fuzz_query.c - query strings (app/http.c http_query_get) with the names the
 * handlers ask for (after, limit, before) and a few more, at several capacities.
 * Properties:
 *   - the result and the value agree with an independent decoder (first segment
 *     whose name matches; %XX and '+' decoded; a bad escape, a decoded NUL or a
 *     value of cap bytes or more is -2);
 *   - a value found is NUL-terminated and its length is the return value;
 *   - nothing is written past cap (dst is a heap block of exactly cap bytes), and
 *     dst is untouched unless the value is returned. */
#include "fuzz.h"
#include "http.h"

static int
hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The value of name decoded into out (large enough); its length, -1 or -2. */
static long
reference(const char *q, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);

	for (const char *p = q; *p;) {
		size_t seg = strcspn(p, "&"), key = strcspn(p, "=&"), o = 0;

		if (key == nlen && !memcmp(p, name, nlen)) {
			const char *v = p + key + (key < seg), *end = p + seg;

			for (; v < end; v++) {
				int c = (unsigned char)*v;

				if (c == '%') {
					if (end - v < 3 || hex(v[1]) < 0 || hex(v[2]) < 0)
						return -2;
					c = hex(v[1]) * 16 + hex(v[2]);
					v += 2;
				} else if (c == '+') {
					c = ' ';
				}
				if (c == 0)
					return -2;
				out[o++] = (char)c;
			}
			out[o] = '\0';
			return o + 1 > cap ? -2 : (long)o;
		}
		if (!p[seg])
			break;
		p += seg + 1;
	}
	return -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "after", "limit", "before", "a", "a=b" };
	static const size_t caps[] = { 0, 1, 2, 16, 64, 4096 };
	char *q = fuzz_cstr(data, size), *want = malloc(size + 1);

	FUZZ_CHECK(want != NULL);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		for (size_t j = 0; j < sizeof caps / sizeof caps[0]; j++) {
			size_t cap = caps[j];
			char *dst = malloc(cap);
			long ref = reference(q, names[i], want, cap);
			int rc;

			FUZZ_CHECK(dst != NULL);
			memset(dst, 0x5a, cap);
			rc = http_query_get(q, names[i], dst, cap);
			FUZZ_CHECK(rc == ref);
			if (rc >= 0) {
				FUZZ_CHECK((size_t)rc < cap && dst[rc] == '\0');
				FUZZ_CHECK(strlen(dst) == (size_t)rc && !strcmp(dst, want));
			} else {
				for (size_t k = 0; k < cap; k++)
					FUZZ_CHECK(dst[k] == 0x5a);
			}
			free(dst);
		}
	}
	FUZZ_CHECK(http_query_get(NULL, "after", want, 2) == -1);
	free(want);
	free(q);
	return 0;
}
