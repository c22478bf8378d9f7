/* fuzz.h - what the libFuzzer harnesses (tests/fuzz/fuzz_<name>.c) share: a check
 * that aborts (libFuzzer then keeps the input) and exact copies of the input.
 * scripts/fuzz builds and runs them. */
#ifndef TETHER_FUZZ_H
#define TETHER_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property that must hold for every input. */
#define FUZZ_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

/* The input in a heap block of exactly size bytes and no NUL after it, for the
 * (ptr, len) APIs: AddressSanitizer reports any read past the end. Caller frees. */
static inline char *
fuzz_bytes(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);

	FUZZ_CHECK(p != NULL);
	if (size)
		memcpy(p, data, size);
	return p;
}

/* The input as a C string (it ends at its first NUL byte, as client text would).
 * Caller frees. */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
	char *p = malloc(size + 1);

	FUZZ_CHECK(p != NULL);
	if (size)
		memcpy(p, data, size);
	p[size] = '\0';
	return p;
}

/* A position in [0, n] that depends on every byte of the input (FNV-1a), so the
 * fuzzer explores splits without a header byte in the corpus. */
static inline size_t
fuzz_split(const uint8_t *data, size_t size, uint32_t salt)
{
	uint32_t h = 2166136261u ^ salt;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	return size ? h % (size + 1) : 0;
}

#endif
