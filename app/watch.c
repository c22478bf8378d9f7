#include "watch.h"

#include <string.h>

void
watch_init(struct watch *w, int attempt, int last_attempt, int64_t last_seq)
{
	memset(w, 0, sizeof *w);
	w->cur = attempt;
	w->client_attempt = last_attempt;
	w->client_seq = last_attempt ? last_seq : -1;
	/* Holding 1:0 means holding no text; past that, the stream has to tell. */
	w->end_known = w->client_seq <= 0;
}

/* A tool call of `cur` the client holds (a redelivery is counted once). */
static void
count_call(struct watch *w, const struct bus_event *ev)
{
	if (ev->type == EV_TOOL_CALL && ev->seq > w->calls_seq) {
		w->sent_calls++;
		w->calls_seq = ev->seq;
	}
}

/* ev (delta, tool_call or done of `cur`) goes to the client. */
static void
sent(struct watch *w, const struct bus_event *ev)
{
	w->client_seq = ev->seq;
	w->end_known = 1;
	if (ev->type == EV_DONE) {
		w->done = 1;
		return;
	}
	w->sent_end = ev->end;
	count_call(w, ev);
}

static enum watch_action
opener(struct watch *w, const struct bus_event *ev)
{
	int older = w->client_attempt > 0 && w->client_attempt < w->cur;

	w->client_attempt = w->cur;
	w->client_seq = 0;
	w->sent_end = 0;
	w->sent_calls = 0;
	w->calls_seq = 0;
	w->end_known = 1;
	if (older)
		return ev->type == EV_RESET ? W_SEND : W_SEND_RESET;
	return ev->type == EV_START ? W_SEND : W_SEND_START;
}

enum watch_action
watch_feed(struct watch *w, const struct bus_event *ev, int *prefix_reset)
{
	*prefix_reset = 0;
	if (ev->sseq > w->last_sseq)
		w->last_sseq = ev->sseq;
	if (ev->attempt < w->cur || w->done)
		return W_SKIP;
	if (ev->attempt > w->cur) {
		w->cur = ev->attempt;
		w->sent_end = 0;
		w->sent_calls = 0;
		w->calls_seq = 0;
	}
	if (w->client_attempt == w->cur && ev->seq <= w->client_seq) {
		/* Resumed past this event, or a redelivery: the client has it. */
		if ((ev->type == EV_DELTA || ev->type == EV_TOOL_CALL) && ev->end > w->sent_end)
			w->sent_end = ev->end;
		count_call(w, ev);
		if (ev->seq == w->client_seq)
			w->end_known = 1;
		return W_SKIP;
	}
	if (ev->seq == 0 && (ev->type == EV_START || ev->type == EV_RESET))
		return opener(w, ev);
	if (ev->type != EV_DELTA && ev->type != EV_DONE && ev->type != EV_TOOL_CALL)
		return W_SKIP;
	if (w->client_attempt != w->cur) {
		/* The attempt's opener is missing from the stream: synthesise it. */
		*prefix_reset = w->client_attempt > 0 && w->client_attempt < w->cur;
		w->client_attempt = w->cur;
		w->sent_end = 0;
		w->sent_calls = 0;
		w->calls_seq = 0;
		w->end_known = 1;
		sent(w, ev);
		return W_SEND_PREFIXED;
	}
	sent(w, ev);
	return W_SEND;
}

void
watch_synthesise(const struct watch *w, int attempt, int completed, int64_t output_len,
    int ncalls, struct watch_synth *s)
{
	int64_t next;

	memset(s, 0, sizeof *s);
	s->attempt = attempt;
	s->delta_from = -1;
	if (!completed)
		ncalls = 0;
	if (w->client_attempt != attempt || !w->end_known) {
		/* The client holds nothing of this attempt, or text of it whose extent the
		 * stream did not show (expired, or synthesised earlier): start it over. */
		s->opener = w->client_attempt > 0 && w->client_attempt <= attempt ? 2 : 1;
		next = 1;
		if (completed && output_len > 0) {
			s->delta_from = 0;
			s->delta_seq = next++;
		}
		s->calls_from = 0;
	} else {
		next = w->client_seq + 1;
		if (completed && output_len > w->sent_end) {
			s->delta_from = w->sent_end;
			s->delta_seq = next++;
		}
		s->calls_from = w->sent_calls < ncalls ? w->sent_calls : ncalls;
	}
	s->calls_seq = next;
	next += ncalls - s->calls_from;
	s->done_seq = next;
}
