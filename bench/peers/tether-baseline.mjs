// Baseline for tether in ../shared/peers' load generator: the same mock generator
// streamed straight to the client by a FastCGI handler (GET /v1/bench/stream,
// TETHER_BENCH_ROUTES=1), through the same nginx, without JetStream or PostgreSQL.
// The generator starts when the watcher connects: use it with W=1.
import { init, shift } from './tether.mjs';

export default {
  name: 'tether-baseline',
  supportsDelay: false,
  init,
  async startRun(ctx, { n, ms }) {
    return { id: `${n}x${ms}`, n, ms };
  },
  eventsRequest(ctx, run) {
    return {
      url: `${ctx.base}/v1/bench/stream?n=${run.n}&ms=${run.ms}`,
      headers: { ...ctx.auth, accept: 'text/event-stream' },
    };
  },
  onEvent(ev) {
    if (ev.event === 'delta') {
      try { return { text: shift(JSON.parse(ev.data).text ?? '') }; } catch { return { error: `bad delta ${ev.data.slice(0, 80)}` }; }
    }
    if (ev.event === 'done') return { done: true };
    return {};
  },
};
