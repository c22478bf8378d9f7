// Adapter for tether in ../shared/peers' load generator (copied next to its own
// adapters by bench/peers.sh). The real API: a thread, a run with the mock model's
// `emit` directive, and the run's event stream with Last-Event-ID.
// tether's mock numbers chunks from 1 (API.md); the load generator counts from 0,
// so `chunk-<i>@` becomes `chunk-<i-1>@` here, and nothing else changes.
import { requestJSON } from '../lib/http.mjs';

export const shift = (text) => text.replace(/chunk-(\d+)@/g, (_, i) => `chunk-${Number(i) - 1}@`);

export function init(opts) {
  const key = opts.key || process.env.OURS_KEY || '';
  return {
    base: (opts.base || process.env.OURS_URL || 'http://127.0.0.1:8080').replace(/\/$/, ''),
    auth: key ? { authorization: `Bearer ${key}` } : {},
  };
}

export default {
  name: 'tether',
  supportsDelay: false,
  init,
  async startRun(ctx, { n, ms }) {
    const th = await requestJSON('POST', `${ctx.base}/v1/threads`, { body: {}, headers: ctx.auth });
    const run = await requestJSON('POST', `${ctx.base}/v1/threads/${th.id}/runs`, {
      body: { input: `bench slow:${n}x${ms} emit` },
      headers: ctx.auth,
    });
    return { id: run.run_id, thread: th.id };
  },
  eventsRequest(ctx, run, resume) {
    return {
      url: `${ctx.base}/v1/runs/${run.id}/events`,
      headers: { ...ctx.auth, accept: 'text/event-stream', ...(resume ? { 'last-event-id': resume } : {}) },
    };
  },
  onEvent(ev, st) {
    if (ev.id) st.resume = ev.id;
    if (ev.event === 'delta') {
      try { return { text: shift(JSON.parse(ev.data).text ?? '') }; } catch { return { error: `bad delta ${ev.data.slice(0, 80)}` }; }
    }
    if (ev.event === 'done') {
      const d = JSON.parse(ev.data);
      return d.status === 'completed' ? { done: true } : { error: `run ${d.status}` };
    }
    return {};
  },
};
