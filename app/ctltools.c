#include "ctltools.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int
ctltools_name_valid(const char *name, size_t len)
{
	if (!name || len < 1 || len > 64)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

int
ctltools_map_add(struct ctltools_map *m, const char *spec, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '=');
	size_t len;

	if (!eq || !ctltools_name_valid(spec, (size_t)(eq - spec)) || !eq[1]) {
		snprintf(err, errlen, "--tool takes NAME=CMD (NAME of letters, digits, _ and -, "
		    "at most 64; CMD not empty), not \"%.80s\"", spec);
		return TE_INVAL;
	}
	len = (size_t)(eq - spec);
	for (int i = 0; i < m->n; i++) {
		if (m->name_len[i] == len && !memcmp(m->name[i], spec, len)) {
			m->cmd[i] = eq + 1;
			return TE_OK;
		}
	}
	if (m->n >= CTLTOOLS_MAX_MAP) {
		snprintf(err, errlen, "more than %d --tool options", CTLTOOLS_MAX_MAP);
		return TE_TOOLARGE;
	}
	m->name[m->n] = spec;
	m->name_len[m->n] = len;
	m->cmd[m->n] = eq + 1;
	m->n++;
	return TE_OK;
}

const char *
ctltools_map_find(const struct ctltools_map *m, const char *name)
{
	size_t len = strlen(name);

	for (int i = 0; i < m->n; i++)
		if (m->name_len[i] == len && !memcmp(m->name[i], name, len))
			return m->cmd[i];
	return NULL;
}

/* The child: stdin and stdout from the pipes, SIGPIPE back to its default (an
 * ignored signal stays ignored across exec), its own process group. */
static void
child_exec(const char *cmd, int in_fd, int out_fd)
{
	signal(SIGPIPE, SIG_DFL);
	setpgid(0, 0);
	if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0)
		_exit(127);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

struct exec_io {
	int in_fd, out_fd;      /* our ends: its stdin, its stdout; -1 once closed */
	const char *in;
	size_t in_len, in_off;
	int too_big;
};

/* One poll pass: feed its stdin, read its stdout. 0 to go on, 1 at stdout's end. */
static int
exec_pump(struct exec_io *io, struct buf *out, size_t max_out, int wait_ms)
{
	struct pollfd p[2];
	int n = 0, ii = -1, oi = -1;
	char chunk[4096];

	if (io->in_fd >= 0) {
		p[n] = (struct pollfd){ .fd = io->in_fd, .events = POLLOUT };
		ii = n++;
	}
	p[n] = (struct pollfd){ .fd = io->out_fd, .events = POLLIN };
	oi = n++;
	if (poll(p, (nfds_t)n, wait_ms) < 0)
		return errno == EINTR ? 0 : 1;
	if (ii >= 0 && p[ii].revents) {
		ssize_t w = write(io->in_fd, io->in + io->in_off, io->in_len - io->in_off);

		if (w > 0)
			io->in_off += (size_t)w;
		/* Done, or it does not read its stdin (EPIPE): either way, close it. */
		if (io->in_off >= io->in_len || (w < 0 && errno != EAGAIN && errno != EINTR)) {
			close(io->in_fd);
			io->in_fd = -1;
		}
	}
	if (p[oi].revents) {
		ssize_t r = read(io->out_fd, chunk, sizeof chunk);

		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return 1;
		if (r > 0 && (out->len + (size_t)r > max_out || buf_append(out, chunk, (size_t)r) != TE_OK)) {
			io->too_big = 1;
			return 1;
		}
	}
	return 0;
}

/* Wait for pid until deadline (monotonic ms); -1 when it is still running. */
static int
exec_reap(pid_t pid, int64_t deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return 0;       /* not ours any more: nothing to wait for */
		if (now_ms() >= deadline)
			return -1;
		sleep_ms(5);
	}
}

static void
exec_why(int status, int timed_out, int too_big, int timeout_ms, size_t max_out, const struct buf *out,
    char *why, size_t whylen)
{
	if (too_big)
		snprintf(why, whylen, "printed more than %zu bytes", max_out);
	else if (timed_out)
		snprintf(why, whylen, timeout_ms % 1000 ? "timed out after %d ms" : "timed out after %d s",
		    timeout_ms % 1000 ? timeout_ms : timeout_ms / 1000);
	else if (WIFSIGNALED(status))
		snprintf(why, whylen, "was killed by signal %d", WTERMSIG(status));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		snprintf(why, whylen, "exited with status %d", WEXITSTATUS(status));
	else if (out->len && !utf8_valid(out->data, out->len))
		snprintf(why, whylen, "printed bytes that are not UTF-8");
	else
		why[0] = '\0';
}

int
ctltools_exec(const char *cmd, const char *in, size_t in_len, int timeout_ms, size_t max_out,
    struct buf *out, char *why, size_t whylen)
{
	int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 }, status = 0, timed_out = 0;
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	struct exec_io io = { -1, -1, in, in_len, 0, 0 };
	int64_t deadline = now_ms() + timeout_ms;
	pid_t pid;

	buf_reset(out);
	if (pipe2(in_pipe, O_CLOEXEC) < 0 || pipe2(out_pipe, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "could not make a pipe: %s", strerror(errno));
		goto fail;
	}
	fflush(NULL);
	if ((pid = fork()) < 0) {
		snprintf(why, whylen, "could not fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0)
		child_exec(cmd, in_pipe[0], out_pipe[1]);
	setpgid(pid, pid);      /* as the child does: whichever runs first */
	close(in_pipe[0]);
	close(out_pipe[1]);
	io.in_fd = in_pipe[1];
	io.out_fd = out_pipe[0];
	fcntl(io.in_fd, F_SETFL, O_NONBLOCK);
	if (!in_len) {
		close(io.in_fd);
		io.in_fd = -1;
	}
	/* A command that closes its stdin early must not kill us with SIGPIPE. */
	sigaction(SIGPIPE, &ign, &old);
	for (;;) {
		int64_t left = deadline - now_ms();

		if (left <= 0) {
			timed_out = 1;
			break;
		}
		if (exec_pump(&io, out, max_out, (int)(left > 100 ? 100 : left)))
			break;
	}
	sigaction(SIGPIPE, &old, NULL);
	if (io.in_fd >= 0)
		close(io.in_fd);
	close(io.out_fd);
	if (timed_out || io.too_big || exec_reap(pid, deadline, &status) < 0) {
		timed_out = !io.too_big;
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	while (out->len && out->data[out->len - 1] == '\n')
		out->data[--out->len] = '\0';
	exec_why(status, timed_out, io.too_big, timeout_ms, max_out, out, why, whylen);
	return why[0] ? 1 : 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (in_pipe[i] >= 0)
			close(in_pipe[i]);
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
	}
	return -1;
}

int
ctltools_outputs_json(struct buf *body, const char *const *ids, const char *const *outputs, int n)
{
	int rc = buf_puts(body, "{\"outputs\":[");

	for (int i = 0; rc == TE_OK && i < n; i++) {
		if ((rc = buf_puts(body, i ? ",{\"tool_call_id\":" : "{\"tool_call_id\":")) != TE_OK ||
		    (rc = buf_json_str(body, ids[i], strlen(ids[i]))) != TE_OK ||
		    (rc = buf_puts(body, ",\"output\":")) != TE_OK ||
		    (rc = buf_json_str(body, outputs[i], strlen(outputs[i]))) != TE_OK)
			break;
		rc = buf_puts(body, "}");
	}
	return rc == TE_OK ? buf_puts(body, "]}") : rc;
}
