/* Small helpers: ids, integers, UTF-8, secrets, random hex, the escaper (util.c),
 * the bounded buffer (buf.c) and log escaping (log.c). */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "provider_openai.h"
#include "util.h"

#define U "0b6f1c2e-9d8a-4c3b-8e7f-123456789abc"

static void
test_uuid(void)
{
	static const char *const bad[] = {
		"", "0b6f1c2e-9d8a-4c3b-8e7f-123456789ab", "0b6f1c2e-9d8a-4c3b-8e7f-123456789abcd",
		"0B6F1C2E-9D8A-4C3B-8E7F-123456789ABC", "0b6f1c2e-9d8a-4c3b-8e7f-123456789abC",
		"0b6f1c2e9d8a4c3b8e7f123456789abc", "0b6f1c2e9-d8a-4c3b-8e7f-123456789abc",
		"0b6f1c2e-9d8a-4c3b-8e7f_123456789abc", "0b6f1c2e-9d8a-4c3b-8e7f-123456789abg",
		"{0b6f1c2e-9d8a-4c3b-8e7f-123456789ab}", " 0b6f1c2e-9d8a-4c3b-8e7f-123456789ab",
		"0b6f1c2e-9d8a-4c3b-8e7f-12345678 abc", "0b6f1c2e--9d8a-4c3b-8e7f-123456789ab",
		"------------------------------------", "0b6f1c2e-9d8a-4c3b-8e7f-123456789abc\n",
	};

	CU_ASSERT_EQUAL(uuid_valid(U), 1);
	CU_ASSERT_EQUAL(uuid_valid("00000000-0000-0000-0000-000000000000"), 1);
	CU_ASSERT_EQUAL(uuid_valid("ffffffff-ffff-ffff-ffff-ffffffffffff"), 1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CU_ASSERT_EQUAL(uuid_valid(bad[i]), 0);
		if (uuid_valid(bad[i]))
			fprintf(stderr, "\naccepted \"%s\"\n", bad[i]);
	}
	CU_ASSERT_EQUAL(uuid_valid(NULL), 0);
	/* uuid_validn: the length decides, not a NUL. */
	CU_ASSERT_EQUAL(uuid_validn(U "trailing", UUID_LEN), 1);
	CU_ASSERT_EQUAL(uuid_validn(U, UUID_LEN - 1), 0);
	CU_ASSERT_EQUAL(uuid_validn(U "x", UUID_LEN + 1), 0);
	CU_ASSERT_EQUAL(uuid_validn(NULL, UUID_LEN), 0);
}

static int
p64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	return parse_int64(s, s ? strlen(s) : 0, min, max, out);
}

static void
test_parse_int64(void)
{
	int64_t v;

	CU_ASSERT_EQUAL(p64("0", 0, 10, &v), 0);
	CU_ASSERT_EQUAL(v, 0);
	CU_ASSERT_EQUAL(p64("10", 0, 10, &v), 0);
	CU_ASSERT_EQUAL(v, 10);
	CU_ASSERT_EQUAL(p64("-7", -10, 10, &v), 0);
	CU_ASSERT_EQUAL(v, -7);
	CU_ASSERT_EQUAL(p64("-0", 0, 0, &v), 0);
	CU_ASSERT_EQUAL(v, 0);
	CU_ASSERT_EQUAL(p64("007", 0, 10, &v), 0);
	CU_ASSERT_EQUAL(v, 7);
	CU_ASSERT_EQUAL(p64("9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
	CU_ASSERT_EQUAL(v, INT64_MAX);
	CU_ASSERT_EQUAL(p64("-9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
	CU_ASSERT_EQUAL(v, -INT64_MAX);
	CU_ASSERT_EQUAL(p64("-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
	CU_ASSERT_EQUAL(v, INT64_MIN);

	v = 42;
	/* bounds, inclusive */
	CU_ASSERT_EQUAL(p64("11", 0, 10, &v), -1);
	CU_ASSERT_EQUAL(p64("-1", 0, 10, &v), -1);
	CU_ASSERT_EQUAL(p64("-11", -10, 10, &v), -1);
	/* overflow */
	CU_ASSERT_EQUAL(p64("9223372036854775808", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("-9223372036854775809", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("18446744073709551616", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("99999999999999999999", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("123456789012345678901", INT64_MIN, INT64_MAX, &v), -1);
	/* sign and shape */
	CU_ASSERT_EQUAL(p64("", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64(NULL, INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("-", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("+1", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("--1", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64(" 1", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("1 ", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("1.0", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("1e3", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("0x10", INT64_MIN, INT64_MAX, &v), -1);
	CU_ASSERT_EQUAL(p64("1-", INT64_MIN, INT64_MAX, &v), -1);
	/* written only on success */
	CU_ASSERT_EQUAL(v, 42);
	/* the length decides */
	CU_ASSERT_EQUAL(parse_int64("123", 2, 0, 1000, &v), 0);
	CU_ASSERT_EQUAL(v, 12);
	CU_ASSERT_EQUAL(parse_int64("1\0" "2", 3, 0, 1000, &v), -1);
}

static int
u8(const char *s)
{
	return utf8_valid(s, strlen(s));
}

static void
test_utf8(void)
{
	/* valid: 1 to 4 bytes, the edges of each length */
	CU_ASSERT_EQUAL(u8(""), 1);
	CU_ASSERT_EQUAL(u8("plain ascii \x7f"), 1);
	CU_ASSERT_EQUAL(u8("\xc2\x80"), 1);                     /* U+0080 */
	CU_ASSERT_EQUAL(u8("\xdf\xbf"), 1);                     /* U+07FF */
	CU_ASSERT_EQUAL(u8("\xe0\xa0\x80"), 1);                 /* U+0800 */
	CU_ASSERT_EQUAL(u8("\xed\x9f\xbf"), 1);                 /* U+D7FF */
	CU_ASSERT_EQUAL(u8("\xee\x80\x80"), 1);                 /* U+E000 */
	CU_ASSERT_EQUAL(u8("\xef\xbf\xbf"), 1);                 /* U+FFFF */
	CU_ASSERT_EQUAL(u8("\xf0\x90\x80\x80"), 1);             /* U+10000 */
	CU_ASSERT_EQUAL(u8("\xf4\x8f\xbf\xbf"), 1);             /* U+10FFFF */
	CU_ASSERT_EQUAL(u8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), 1);
	CU_ASSERT_EQUAL(utf8_valid("a\0b", 3), 1);              /* NUL is valid UTF-8 */

	/* overlongs */
	CU_ASSERT_EQUAL(u8("\xc0\x80"), 0);
	CU_ASSERT_EQUAL(u8("\xc0\xaf"), 0);
	CU_ASSERT_EQUAL(u8("\xc1\xbf"), 0);
	CU_ASSERT_EQUAL(u8("\xe0\x80\xaf"), 0);
	CU_ASSERT_EQUAL(u8("\xe0\x9f\xbf"), 0);
	CU_ASSERT_EQUAL(u8("\xf0\x80\x80\xaf"), 0);
	CU_ASSERT_EQUAL(u8("\xf0\x8f\xbf\xbf"), 0);
	/* surrogates */
	CU_ASSERT_EQUAL(u8("\xed\xa0\x80"), 0);                 /* U+D800 */
	CU_ASSERT_EQUAL(u8("\xed\xbf\xbf"), 0);                 /* U+DFFF */
	CU_ASSERT_EQUAL(u8("\xed\xa0\xbd\xed\xb8\x80"), 0);     /* CESU-8 pair */
	/* beyond U+10FFFF, and bytes that never occur */
	CU_ASSERT_EQUAL(u8("\xf4\x90\x80\x80"), 0);
	CU_ASSERT_EQUAL(u8("\xf7\xbf\xbf\xbf"), 0);
	CU_ASSERT_EQUAL(u8("\xf8\x88\x80\x80\x80"), 0);
	CU_ASSERT_EQUAL(u8("\xfc\x84\x80\x80\x80\x80"), 0);
	CU_ASSERT_EQUAL(u8("\xfe"), 0);
	CU_ASSERT_EQUAL(u8("\xff"), 0);
	/* lone continuation bytes */
	CU_ASSERT_EQUAL(u8("\x80"), 0);
	CU_ASSERT_EQUAL(u8("a\xbf"), 0);
	/* truncated sequences, at the end and before another character */
	CU_ASSERT_EQUAL(u8("\xc3"), 0);
	CU_ASSERT_EQUAL(u8("\xe2\x82"), 0);
	CU_ASSERT_EQUAL(u8("\xf0\x9f\x98"), 0);
	CU_ASSERT_EQUAL(u8("\xc3" "a"), 0);
	CU_ASSERT_EQUAL(u8("\xe2\x82" "a"), 0);
	CU_ASSERT_EQUAL(u8("\xf0\x9f\x98" "a"), 0);
	/* the length decides: a cut inside a character is invalid */
	CU_ASSERT_EQUAL(utf8_valid("\xc3\xa9", 1), 0);
	CU_ASSERT_EQUAL(utf8_valid("\xf0\x9f\x98\x80", 3), 0);
	CU_ASSERT_EQUAL(utf8_valid("\xf0\x9f\x98\x80", 0), 1);
}

static void
test_secret_equal(void)
{
	CU_ASSERT_EQUAL(secret_equal("", ""), 1);
	CU_ASSERT_EQUAL(secret_equal("tok-123", "tok-123"), 1);
	CU_ASSERT_EQUAL(secret_equal("tok-123", "tok-124"), 0);
	CU_ASSERT_EQUAL(secret_equal("tok-123", "Tok-123"), 0);
	CU_ASSERT_EQUAL(secret_equal("tok-123", "tok-12"), 0);
	CU_ASSERT_EQUAL(secret_equal("tok-12", "tok-123"), 0);
	CU_ASSERT_EQUAL(secret_equal("", "a"), 0);
	CU_ASSERT_EQUAL(secret_equal("a", ""), 0);
	CU_ASSERT_EQUAL(secret_equal("\xff\x01", "\xff\x01"), 1);
	CU_ASSERT_EQUAL(secret_equal("\xff\x01", "\xff\x02"), 0);
}

static void
test_random_hex(void)
{
	char a[129], b[129];

	memset(a, 'Z', sizeof a);
	CU_ASSERT_EQUAL(random_hex(a, 16), 0);
	CU_ASSERT_EQUAL(strlen(a), 32);
	CU_ASSERT_EQUAL(strspn(a, "0123456789abcdef"), 32);
	CU_ASSERT_EQUAL(random_hex(b, 16), 0);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);               /* 2^-128 */
	CU_ASSERT_EQUAL(random_hex(a, 64), 0);
	CU_ASSERT_EQUAL(strlen(a), 128);
	CU_ASSERT_EQUAL(strspn(a, "0123456789abcdef"), 128);
	CU_ASSERT_EQUAL(random_hex(a, 0), 0);
	CU_ASSERT_STRING_EQUAL(a, "");
	CU_ASSERT_EQUAL(random_hex(a, 1), 0);
	CU_ASSERT_EQUAL(strlen(a), 2);
	memset(a, 'Z', sizeof a);
	CU_ASSERT_EQUAL(random_hex(a, 65), -1);
	CU_ASSERT_EQUAL(a[0], 'Z');
	{
		/* Every hex digit shows up over enough bytes: it is not stuck. */
		int seen[16] = { 0 }, all = 1;

		for (int i = 0; i < 16; i++) {
			CU_ASSERT_EQUAL(random_hex(a, 64), 0);
			for (int k = 0; k < 128; k++)
				seen[a[k] <= '9' ? a[k] - '0' : a[k] - 'a' + 10] = 1;
		}
		for (int i = 0; i < 16; i++)
			all &= seen[i];
		CU_ASSERT(all);
	}
}

static void
test_buf_append(void)
{
	struct buf b;

	buf_init(&b, 8);
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(buf_append(&b, "", 0), TE_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b.data);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	CU_ASSERT_EQUAL(buf_append(&b, "abc", 3), TE_OK);
	CU_ASSERT_EQUAL(buf_puts(&b, "de"), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "abcde");
	CU_ASSERT_EQUAL(b.len, 5);
	/* the cap: exactly max fits, one more is refused and changes nothing */
	CU_ASSERT_EQUAL(buf_append(&b, "xyzw", 4), TE_TOOLARGE);
	CU_ASSERT_STRING_EQUAL(b.data, "abcde");
	CU_ASSERT_EQUAL(b.len, 5);
	CU_ASSERT_EQUAL(buf_append(&b, "xyz", 3), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "abcdexyz");
	CU_ASSERT_EQUAL(b.len, 8);
	CU_ASSERT(b.cap <= 9);
	CU_ASSERT_EQUAL(buf_append(&b, "!", 1), TE_TOOLARGE);
	CU_ASSERT_EQUAL(buf_append(&b, "", 0), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "abcdexyz");
	/* reset keeps the memory, empties the text */
	buf_reset(&b);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	/* binary data, NULs included */
	CU_ASSERT_EQUAL(buf_append(&b, "a\0b", 3), TE_OK);
	CU_ASSERT_EQUAL(b.len, 3);
	CU_ASSERT_EQUAL(memcmp(b.data, "a\0b", 4), 0);
	buf_free(&b);
	CU_ASSERT_PTR_NULL(b.data);
	buf_free(&b);                   /* twice is fine */
	buf_free(NULL);
	buf_reset(&b);                  /* on an empty buffer */

	/* growing past the first allocation */
	buf_init(&b, 100000);
	for (int i = 0; i < 10000; i++)
		CU_ASSERT_EQUAL_FATAL(buf_append(&b, "0123456789", 10), TE_OK);
	CU_ASSERT_EQUAL(b.len, 100000);
	CU_ASSERT_EQUAL(b.data[100000], '\0');
	CU_ASSERT_EQUAL(memcmp(b.data + 99990, "0123456789", 10), 0);
	CU_ASSERT_EQUAL(buf_append(&b, "x", 1), TE_TOOLARGE);
	buf_free(&b);

	/* a zero cap holds only the empty string */
	buf_init(&b, 0);
	CU_ASSERT_EQUAL(buf_append(&b, "", 0), TE_OK);
	CU_ASSERT_EQUAL(buf_append(&b, "a", 1), TE_TOOLARGE);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	buf_free(&b);
}

static void
test_buf_printf(void)
{
	struct buf b;

	buf_init(&b, 16);
	CU_ASSERT_EQUAL(buf_printf(&b, "%d-%s", 42, "x"), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "42-x");
	CU_ASSERT_EQUAL(buf_printf(&b, "%s", ""), TE_OK);
	CU_ASSERT_EQUAL(buf_printf(&b, "%05d", 7), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "42-x00007");
	CU_ASSERT_EQUAL(b.len, 9);
	/* 7 more fit exactly, 8 do not, and a refusal changes nothing */
	CU_ASSERT_EQUAL(buf_printf(&b, "%s", "abcdefgh"), TE_TOOLARGE);
	CU_ASSERT_STRING_EQUAL(b.data, "42-x00007");
	CU_ASSERT_EQUAL(b.len, 9);
	CU_ASSERT_EQUAL(buf_printf(&b, "%s", "abcdefg"), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "42-x00007abcdefg");
	CU_ASSERT_EQUAL(b.len, 16);
	CU_ASSERT_EQUAL(buf_printf(&b, "%c", 'z'), TE_TOOLARGE);
	CU_ASSERT_STRING_EQUAL(b.data, "42-x00007abcdefg");
	buf_free(&b);
	/* a long format into a fresh buffer */
	buf_init(&b, 1 << 20);
	CU_ASSERT_EQUAL(buf_printf(&b, "%0*d", 5000, 1), TE_OK);
	CU_ASSERT_EQUAL(b.len, 5000);
	CU_ASSERT_EQUAL(b.data[4999], '1');
	CU_ASSERT_EQUAL(b.data[5000], '\0');
	buf_free(&b);
}

static void
json_is(const char *s, size_t n, const char *want)
{
	struct buf b;

	buf_init(&b, 4096);
	CU_ASSERT_EQUAL(buf_json_str(&b, s, n), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, want);
	CU_ASSERT_EQUAL(b.len, strlen(want));
	buf_free(&b);
}

static void
test_buf_json_str(void)
{
	json_is("", 0, "\"\"");
	json_is("plain", 5, "\"plain\"");
	json_is("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
	json_is("\n\r\t", 3, "\"\\n\\r\\t\"");
	json_is("\x01\x08\x0c\x1f", 4, "\"\\u0001\\u0008\\u000c\\u001f\"");
	json_is("a\0b", 3, "\"a\\u0000b\"");
	json_is("\x7f/", 2, "\"\x7f/\"");                       /* DEL and '/' as is */
	json_is("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");           /* UTF-8 as is */
	json_is("\"\"", 2, "\"\\\"\\\"\"");
	/* only n bytes */
	json_is("abcdef", 3, "\"abc\"");
}

static void
test_buf_json_str_bound(void)
{
	struct buf b;

	/* "ab" + "\"x\"" = 5 bytes fit in 5 */
	buf_init(&b, 5);
	CU_ASSERT_EQUAL(buf_puts(&b, "ab"), TE_OK);
	CU_ASSERT_EQUAL(buf_json_str(&b, "x", 1), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "ab\"x\"");
	buf_free(&b);

	/* Too large at every point (opening quote, text, escape, closing quote):
	 * TE_TOOLARGE and the buffer as it was. */
	for (size_t max = 2; max < 16; max++) {
		static const char in[] = "ab\ncd\x01" "e";      /* "ab\ncd\u0001e" = 17 */

		buf_init(&b, max);
		CU_ASSERT_EQUAL(buf_puts(&b, "ab"), TE_OK);
		CU_ASSERT_EQUAL(buf_json_str(&b, in, sizeof in - 1), TE_TOOLARGE);
		CU_ASSERT_EQUAL(b.len, 2);
		CU_ASSERT_STRING_EQUAL(b.data, "ab");
		buf_free(&b);
	}
	buf_init(&b, 19);
	CU_ASSERT_EQUAL(buf_puts(&b, "ab"), TE_OK);
	CU_ASSERT_EQUAL(buf_json_str(&b, "ab\ncd\x01" "e", 7), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "ab\"ab\\ncd\\u0001e\"");
	buf_free(&b);
}

static void
test_buf_steal(void)
{
	struct buf b;
	char *p;

	buf_init(&b, 64);
	CU_ASSERT_EQUAL(buf_puts(&b, "hello"), TE_OK);
	p = buf_steal(&b);
	CU_ASSERT_STRING_EQUAL(p, "hello");
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(b.cap, 0);
	/* the buffer is usable again, with its cap */
	CU_ASSERT_EQUAL(buf_puts(&b, "again"), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "again");
	buf_free(&b);
	free(p);
	/* stealing an empty buffer gives an empty string, not NULL */
	buf_init(&b, 64);
	p = buf_steal(&b);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(p, "");
	free(p);
	buf_free(&b);
}

static void
esc_is(const char *src, size_t len, size_t cap, const char *want)
{
	char dst[256];

	memset(dst, 0x5a, sizeof dst);
	CU_ASSERT_PTR_EQUAL(log_escape(dst, cap, src, len), dst);
	CU_ASSERT_STRING_EQUAL(dst, want);
	if (strcmp(dst, want) != 0)
		fprintf(stderr, "\nescape cap %zu: \"%s\", want \"%s\"\n", cap, dst, want);
	CU_ASSERT(strlen(dst) < cap);
	CU_ASSERT_EQUAL((unsigned char)dst[cap], 0x5a);
}

static void
test_url_mask(void)
{
	char out[256];

	CU_ASSERT_STRING_EQUAL(url_mask(out, sizeof out, "postgres://tether:s3cret@db:5432/tether"),
	    "postgres://tether:***@db:5432/tether");
	CU_ASSERT_STRING_EQUAL(url_mask(out, sizeof out, "postgresql://postgres@127.0.0.1:1/t"),
	    "postgresql://postgres@127.0.0.1:1/t");
	CU_ASSERT_STRING_EQUAL(url_mask(out, sizeof out,
	    "nats://pod:pw1@n1:4222,nats://pod:p@w2@n2:4222,nats://tok@n3:4222"),
	    "nats://pod:***@n1:4222,nats://pod:***@n2:4222,nats://***@n3:4222");
	CU_ASSERT_STRING_EQUAL(url_mask(out, sizeof out, "nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
	CU_ASSERT_STRING_EQUAL(url_mask(out, sizeof out, "http://h/v1?x=a:b@c"), "http://h/v1?x=a:b@c");
	CU_ASSERT_STRING_EQUAL(url_mask(out, sizeof out, "not a url"), "not a url");
	CU_ASSERT_STRING_EQUAL(url_mask(out, sizeof out, ""), "");
	CU_ASSERT_STRING_EQUAL(url_mask(out, 12, "nats://u:pw@host"), "nats://u:**");
}

static void
test_log_escape(void)
{
	char dst[4] = "abc";

	esc_is("plain text ~", 12, 64, "plain text ~");
	esc_is("a\"b\\c", 5, 64, "a\\x22b\\x5cc");
	esc_is("\n\r\t\x01\x1f\x7f", 6, 64, "\\x0a\\x0d\\x09\\x01\\x1f\\x7f");
	esc_is("caf\xc3\xa9\xff", 6, 64, "caf\\xc3\\xa9\\xff");
	esc_is("a\0b", 3, 64, "a\\x00b");
	esc_is("", 0, 64, "");
	/* truncation: within cap-1 bytes, and never half an escape */
	esc_is("abcdef", 6, 4, "abc");
	esc_is("abcdef", 6, 7, "abcdef");
	esc_is("ab\n", 3, 6, "ab");                     /* "ab\x0a" needs 7 */
	esc_is("ab\n", 3, 7, "ab\\x0a");
	esc_is("\n\n", 2, 9, "\\x0a\\x0a");
	esc_is("\n\n", 2, 8, "\\x0a");
	esc_is("\n\n", 2, 5, "\\x0a");
	esc_is("\n\n", 2, 4, "");
	esc_is("\nabc", 4, 2, "");
	esc_is("abc", 3, 1, "");
	/* After a cut nothing more is written, not even a shorter byte that would fit. */
	esc_is("a\nb", 3, 5, "a");
	/* cap 0 writes nothing at all */
	CU_ASSERT_PTR_EQUAL(log_escape(dst, 0, "x", 1), dst);
	CU_ASSERT_STRING_EQUAL(dst, "abc");
}

static void
excerpt_is(const char *src, size_t len, size_t cap, size_t max, const char *want)
{
	char dst[256];

	CU_ASSERT_STRING_EQUAL(text_escape(dst, cap, src, len, max, ESC_UTF8 | ESC_ELLIPSIS), want);
}

/* The escaper's other modes: UTF-8 kept, cut texts marked (the provider's error
 * excerpts), and log_escape's mode is text_escape's. */
static void
test_text_escape(void)
{
	static const char euro[] = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";
	char a[64], b[64];
	unsigned seed = 15;

	excerpt_is("plain \"q\"", 9, 256, 200, "plain \"q\"");
	excerpt_is("a\nb\x7f\xff", 5, 256, 200, "a\\x0ab\\x7f\\xff");
	excerpt_is("abcdefghij", 10, 256, 4, "abcd...");
	excerpt_is(euro, 9, 256, 7, "\xe2\x82\xac\xe2\x82\xac...");
	excerpt_is("\xe2\x82", 2, 256, 200, "\\xe2\\x82");    /* a cut sequence */
	excerpt_is("\xed\xa0\x80", 3, 256, 200, "\\xed\\xa0\\x80"); /* a surrogate */
	excerpt_is("a\0b", 3, 256, 200, "a\\x00b");
	excerpt_is("abcdefghij", 10, 8, 200, "abcd...");
	excerpt_is("abc", 3, 1, 200, "");
	CU_ASSERT_STRING_EQUAL(text_escape(a, sizeof a, "\"\\\xc3\xa9", 4, SIZE_MAX,
	    ESC_UTF8 | ESC_QUOTES), "\\x22\\x5c\xc3\xa9");
	/* The two wrappers (the provider's excerpts, log lines) are these modes, on any
	 * input, cap and max (the loop proved the old escapers equal before they went). */
	for (int n = 0; n < 20000; n++) {
		char src[24];
		size_t len = (size_t)(rand_r(&seed) % sizeof src), cap = (size_t)(rand_r(&seed) % 64),
		    max = (size_t)(rand_r(&seed) % 30);
		static const char pool[] = "a\"\\\n\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff\x80";

		for (size_t i = 0; i < len; i++)
			src[i] = rand_r(&seed) % 4 ? pool[rand_r(&seed) % (sizeof pool - 1)]
			    : (char)rand_r(&seed);
		memset(a, 'x', sizeof a);
		memset(b, 'x', sizeof b);
		openai_excerpt(a, cap, src, len, max);
		text_escape(b, cap, src, len, max, ESC_UTF8 | ESC_ELLIPSIS);
		CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
		memset(a, 'x', sizeof a);
		memset(b, 'x', sizeof b);
		log_escape(a, cap, src, len);
		text_escape(b, cap, src, len, SIZE_MAX, ESC_QUOTES);
		CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
	}
}

static void
test_log_levels(void)
{
	CU_ASSERT_EQUAL(log_level_parse("debug"), LOG_DEBUG);
	CU_ASSERT_EQUAL(log_level_parse("INFO"), LOG_INFO);
	CU_ASSERT_EQUAL(log_level_parse("Warn"), LOG_WARN);
	CU_ASSERT_EQUAL(log_level_parse("error"), LOG_ERROR);
	CU_ASSERT_EQUAL(log_level_parse("warning"), -1);
	CU_ASSERT_EQUAL(log_level_parse(""), -1);
	log_init("unit", LOG_WARN);
	CU_ASSERT_EQUAL(log_enabled(LOG_DEBUG), 0);
	CU_ASSERT_EQUAL(log_enabled(LOG_INFO), 0);
	CU_ASSERT_EQUAL(log_enabled(LOG_WARN), 1);
	CU_ASSERT_EQUAL(log_enabled(LOG_ERROR), 1);
	log_init(NULL, -1);                     /* out of range: unchanged */
	CU_ASSERT_EQUAL(log_enabled(LOG_INFO), 0);
	log_init(NULL, LOG_INFO);
	CU_ASSERT_EQUAL(log_enabled(LOG_INFO), 1);
}

static void
test_clocks(void)
{
	int64_t m0 = now_ms(), u0 = now_us(), w = wall_ms();

	CU_ASSERT(m0 >= 0);
	CU_ASSERT(u0 / 1000 >= m0);
	CU_ASSERT(w > 1600000000000LL);         /* after 2020 */
	CU_ASSERT(wall_us() / 1000 >= w);
	sleep_ms(0);
	sleep_ms(-5);
	sleep_ms(5);
	CU_ASSERT(now_ms() - m0 >= 5);
}

/* deadline_ts + cond_init_monotonic: a timed wait measured on CLOCK_MONOTONIC. */
static void
test_deadline(void)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv;
	struct timespec a, b;
	int64_t t0, waited;
	int rc;

	deadline_ts(&a, 0);
	deadline_ts(&b, 1500);
	waited = ((int64_t)b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	CU_ASSERT(waited >= 1500 && waited < 1600);
	CU_ASSERT(b.tv_nsec >= 0 && b.tv_nsec < 1000000000L);
	deadline_ts(&b, 999);
	CU_ASSERT(b.tv_nsec >= 0 && b.tv_nsec < 1000000000L);
	/* The deadline is on the monotonic clock: same epoch as now_ms(). */
	deadline_ts(&a, 0);
	CU_ASSERT(llabs((int64_t)a.tv_sec * 1000 + a.tv_nsec / 1000000 - now_ms()) < 50);

	CU_ASSERT_EQUAL_FATAL(cond_init_monotonic(&cv), 0);
	pthread_mutex_lock(&mu);
	t0 = now_ms();
	deadline_ts(&a, 60);
	do
		rc = pthread_cond_timedwait(&cv, &mu, &a);
	while (rc == 0);
	waited = now_ms() - t0;
	pthread_mutex_unlock(&mu);
	CU_ASSERT_EQUAL(rc, ETIMEDOUT);
	/* A wall-clock condition variable would have returned at once (its epoch is
	 * 1970, so a monotonic deadline lies decades in the past). */
	CU_ASSERT(waited >= 59 && waited < 2000);
	pthread_cond_destroy(&cv);
}

static const struct unit_case cases[] = {
	{ "uuid", test_uuid },
	{ "parse_int64", test_parse_int64 },
	{ "utf8_valid", test_utf8 },
	{ "secret_equal", test_secret_equal },
	{ "random_hex", test_random_hex },
	{ "buf append", test_buf_append },
	{ "buf printf", test_buf_printf },
	{ "buf json string", test_buf_json_str },
	{ "buf json string bound", test_buf_json_str_bound },
	{ "buf steal", test_buf_steal },
	{ "url mask", test_url_mask },
	{ "log escape", test_log_escape },
	{ "text escape", test_text_escape },
	{ "log levels", test_log_levels },
	{ "clocks", test_clocks },
	{ "monotonic deadlines", test_deadline },
};

UNIT_MAIN("util", cases)
