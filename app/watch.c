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

static enum watch_action
opener(struct watch *w, const struct bus_event *ev)
{
	int older = w->client_attempt > 0 && w->client_attempt < w->cur;

	w->client_attempt = w->cur;
	w->client_seq = 0;
	w->sent_end = 0;
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
	}
	if (w->client_attempt == w->cur && ev->seq <= w->client_seq) {
		/* Resumed past this event, or a redelivery: the client has it. */
		if (ev->type == EV_DELTA && ev->end > w->sent_end)
			w->sent_end = ev->end;
		if (ev->seq == w->client_seq)
			w->end_known = 1;
		return W_SKIP;
	}
	if (ev->seq == 0 && (ev->type == EV_START || ev->type == EV_RESET))
		return opener(w, ev);
	if (ev->type != EV_DELTA && ev->type != EV_DONE)
		return W_SKIP;
	if (w->client_attempt != w->cur) {
		/* The attempt's opener is missing from the stream: synthesise it. */
		*prefix_reset = w->client_attempt > 0 && w->client_attempt < w->cur;
		w->client_attempt = w->cur;
		w->sent_end = 0;
		w->end_known = 1;
		w->client_seq = ev->seq;
		if (ev->type == EV_DELTA)
			w->sent_end = ev->end;
		else
			w->done = 1;
		return W_SEND_PREFIXED;
	}
	w->client_seq = ev->seq;
	w->end_known = 1;
	if (ev->type == EV_DELTA)
		w->sent_end = ev->end;
	else
		w->done = 1;
	return W_SEND;
}

void
watch_synthesise(const struct watch *w, int attempt, int completed, int64_t output_len,
    struct watch_synth *s)
{
	memset(s, 0, sizeof *s);
	s->attempt = attempt;
	s->delta_from = -1;
	if (w->client_attempt != attempt || !w->end_known) {
		/* The client holds nothing of this attempt, or text of it whose extent the
		 * stream did not show (expired, or synthesised earlier): start it over. */
		s->opener = w->client_attempt > 0 && w->client_attempt <= attempt ? 2 : 1;
		if (completed && output_len > 0) {
			s->delta_from = 0;
			s->delta_seq = 1;
			s->done_seq = 2;
		} else {
			s->done_seq = 1;
		}
		return;
	}
	s->done_seq = w->client_seq + 1;
	if (completed && output_len > w->sent_end) {
		s->delta_from = w->sent_end;
		s->delta_seq = w->client_seq + 1;
		s->done_seq = w->client_seq + 2;
	}
}
