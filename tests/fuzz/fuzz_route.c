/* fuzz_route.c - request paths (handlers/routes.c route_match) with every method.
 * Properties:
 *   - the result is 0, -404 or -405, and -404 for one method is -404 for all;
 *   - a match is a route of that method (HEAD served by GET) whose pattern, with
 *     "*" replaced by the parameter, is the path; the parameter is one non-empty
 *     segment without '/', NUL-terminated within its array;
 *   - a 405's Allow list is exactly the methods that match, comma-separated,
 *     NUL-terminated within its array. */
#include "fuzz.h"
#include "routes.h"

static const struct {
	enum http_method m;
	const char *name;
} methods[] = {
	{ M_GET, "GET" }, { M_POST, "POST" }, { M_PUT, "PUT" }, { M_DELETE, "DELETE" },
	{ M_PATCH, "PATCH" }, { M_HEAD, "HEAD" }, { M_OPTIONS, "OPTIONS" }, { M_OTHER, "OTHER" },
};
#define NMETHODS (sizeof methods / sizeof methods[0])

/* The pattern with its "*" replaced by param equals the path (a parameter cut to
 * fit its array only has to be a prefix of the segment). */
static int
expands_to(const char *pattern, const char *param, const char *path)
{
	const char *star = strchr(pattern, '*');
	size_t pre, plen = strlen(param);

	if (!star)
		return !strcmp(pattern, path) && param[0] == '\0';
	pre = (size_t)(star - pattern);
	if (strncmp(pattern, path, pre) || plen == 0 || strchr(param, '/') ||
	    strncmp(path + pre, param, plen))
		return 0;
	if (plen == sizeof ((struct route_match *)0)->param - 1)
		plen = strcspn(path + pre, "/");
	return !strcmp(path + pre + plen, star + 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *path = fuzz_cstr(data, size), want[64] = "";
	int rc[NMETHODS], any404 = 0;

	for (size_t i = 0; i < NMETHODS; i++) {
		struct route_match m;

		memset(&m, 0x5a, sizeof m);
		rc[i] = route_match(path, methods[i].m, &m);
		FUZZ_CHECK(rc[i] == 0 || rc[i] == -404 || rc[i] == -405);
		FUZZ_CHECK(memchr(m.allow, '\0', sizeof m.allow) && memchr(m.param, '\0', sizeof m.param));
		if (rc[i] == -404) {
			any404 = 1;
			FUZZ_CHECK(m.route == NULL && m.allow[0] == '\0');
		} else if (rc[i] == 0) {
			FUZZ_CHECK(m.route != NULL && m.allow[0] == '\0');
			FUZZ_CHECK(m.route->method == methods[i].m ||
			    (methods[i].m == M_HEAD && m.route->method == M_GET));
			FUZZ_CHECK((m.route->param == P_NONE) == (m.param[0] == '\0'));
			FUZZ_CHECK(expands_to(m.route->pattern, m.param, path));
		}
		if (strlen(path) > 1024)
			FUZZ_CHECK(rc[i] == -404);
	}
	for (size_t i = 0; i < NMETHODS; i++)
		FUZZ_CHECK((rc[i] == -404) == any404);
	/* Allow lists what matches, in the order of the method bits. */
	for (size_t i = 0; i < NMETHODS; i++) {
		if (rc[i] != 0 || methods[i].m == M_HEAD || methods[i].m == M_OTHER)
			continue;
		if (want[0])
			strcat(want, ", ");
		strcat(want, methods[i].name);
	}
	for (size_t i = 0; i < NMETHODS; i++) {
		struct route_match m;

		if (rc[i] != -405)
			continue;
		FUZZ_CHECK(route_match(path, methods[i].m, &m) == -405);
		FUZZ_CHECK(m.route == NULL && !strcmp(m.allow, want) && want[0] != '\0');
	}
	free(path);
	return 0;
}
