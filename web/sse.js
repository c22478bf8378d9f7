// Server-Sent Events: a parser for the text/event-stream format (WHATWG HTML,
// "Parsing an event stream") and a follower that reads one tether run's events
// with fetch() — so the Authorization header can be sent — and reconnects with
// Last-Event-ID after a drop. No DOM use: this module also runs under Node
// (tests/e2e/sse.test.mjs).

// SSEParser: feed() it decoded text in pieces of any size; it calls
// onEvent({id, event, data}) for each complete event and onComment(text) for
// each comment line. Lines end in CRLF, LF or CR (a CR at the end of one piece
// and an LF at the start of the next are one line end). Several data lines are
// joined with "\n". The id persists across events until changed (lastEventId).
export class SSEParser {
  constructor({ onEvent, onComment } = {}) {
    this.onEvent = onEvent || (() => {});
    this.onComment = onComment || (() => {});
    this.lastEventId = '';
    this.retry = null;
    this._buf = '';
    this._sawCR = false;
    this._first = true;
    this._reset();
  }

  _reset() {
    this._data = [];
    this._hasData = false;
    this._event = '';
  }

  feed(text) {
    if (!text) return;
    if (this._first) {
      this._first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this._sawCR && text[0] === '\n') text = text.slice(1);
    this._sawCR = false;
    let buf = this._buf + text;
    let start = 0;
    for (;;) {
      let i = start;
      const n = buf.length;
      while (i < n && buf[i] !== '\n' && buf[i] !== '\r') i++;
      if (i >= n) break;
      const line = buf.slice(start, i);
      if (buf[i] === '\r') {
        if (i + 1 < n) {
          if (buf[i + 1] === '\n') i++;
        } else {
          this._sawCR = true; // the LF of a CRLF may come with the next piece
        }
      }
      start = i + 1;
      this._line(line);
    }
    this._buf = buf.slice(start);
  }

  // The stream ended: an event without its terminating blank line is discarded
  // (the spec's rule), so a cut-off event is never half-applied.
  end() {
    this._buf = '';
    this._sawCR = false;
    this._reset();
  }

  _line(line) {
    if (line === '') {
      this._dispatch();
      return;
    }
    if (line[0] === ':') {
      this.onComment(line.slice(1).replace(/^ /, ''));
      return;
    }
    const colon = line.indexOf(':');
    let field, value;
    if (colon < 0) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this._event = value;
        break;
      case 'data':
        this._data.push(value);
        this._hasData = true;
        break;
      case 'id':
        if (value.indexOf('\0') < 0) this.lastEventId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retry = parseInt(value, 10);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  _dispatch() {
    if (!this._hasData) {
      this._reset();
      return;
    }
    const ev = { id: this.lastEventId, event: this._event || 'message', data: this._data.join('\n') };
    this._reset();
    this.onEvent(ev);
  }
}

// Backoff before reconnect number `tries` (1, 2, ...): 250 ms doubling to 4 s.
export function backoffMs(tries, base = 250, max = 4000) {
  return Math.min(max, base * 2 ** Math.max(0, tries - 1));
}

// An error that ends following for good (4xx other than 408/429): no retry helps.
export class FatalStreamError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function errorOf(res) {
  try {
    const j = await res.json();
    if (j && j.error) return j.error;
  } catch (_) {
    /* not JSON */
  }
  return { code: 'http_' + res.status, message: `HTTP ${res.status}` };
}

// followEvents: read an event stream until its `done` event, reconnecting with
// Last-Event-ID after a network error, a 5xx/429/408, or an end of stream
// without `done` (a worker killed after the headers looks like a clean EOF).
//   url        the events URL (/v1/runs/{id}/events)
//   headers    extra request headers (Authorization)
//   onEvent    ({id, event, data}) => void — data is the raw JSON text
//   onState    ({state: 'connecting'|'streaming'|'reconnecting'|'empty', tries, delayMs, reason})
//   signal     AbortSignal: stop following (then it resolves with {aborted: true})
//   lastEventId  resume after this id (optional)
//   idleMs     reconnect when not even a heartbeat came for this long
//   fetchImpl  fetch (for tests)
// Resolves {done: true, lastEventId} after `done`, {empty: true} on 204 (the thread
// never had a run), {aborted: true} when signalled; rejects with FatalStreamError.
export async function followEvents(url, opts = {}) {
  const {
    headers = {},
    onEvent = () => {},
    onState = () => {},
    signal,
    idleMs = 45000,
    fetchImpl = globalThis.fetch.bind(globalThis),
    maxDelayMs = 4000,
    baseDelayMs = 250,
  } = opts;
  let lastEventId = opts.lastEventId || '';
  let tries = 0;
  let reason = '';
  for (;;) {
    if (signal && signal.aborted) return { aborted: true, lastEventId };
    if (tries > 0) {
      const delayMs = backoffMs(tries, baseDelayMs, maxDelayMs);
      onState({ state: 'reconnecting', tries, delayMs, reason });
      try {
        await sleep(delayMs, signal);
      } catch (_) {
        return { aborted: true, lastEventId };
      }
    }
    onState({ state: 'connecting', tries, reason });
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    let idleTimer = null;
    const touch = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => ctl.abort(), idleMs);
    };
    let gotDone = false;
    let gotEvent = false;
    try {
      const h = { Accept: 'text/event-stream', ...headers };
      if (lastEventId) h['Last-Event-ID'] = lastEventId;
      touch();
      const res = await fetchImpl(url, { headers: h, signal: ctl.signal, cache: 'no-store' });
      if (res.status === 204) {
        onState({ state: 'empty' });
        return { empty: true, lastEventId };
      }
      if (res.status !== 200) {
        const err = await errorOf(res);
        if (res.status >= 500 || res.status === 429 || res.status === 408) {
          reason = `${res.status} ${err.code}`;
          tries++;
          continue;
        }
        throw new FatalStreamError(res.status, err.code, err.message);
      }
      onState({ state: 'streaming', tries, reason });
      const parser = new SSEParser({
        onEvent: (ev) => {
          if (gotDone) return;
          gotEvent = true;
          if (ev.id) lastEventId = ev.id;
          if (ev.event === 'done') gotDone = true;
          onEvent(ev);
        },
      });
      parser.lastEventId = lastEventId;
      const reader = res.body.getReader();
      const dec = new TextDecoder('utf-8');
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        touch();
        parser.feed(dec.decode(value, { stream: true }));
        if (gotDone) {
          reader.cancel().catch(() => {});
          break;
        }
      }
      parser.feed(dec.decode());
      parser.end();
      if (gotDone) return { done: true, lastEventId };
      reason = 'the stream ended without done';
    } catch (e) {
      if (e instanceof FatalStreamError) throw e;
      if (signal && signal.aborted) return { aborted: true, lastEventId };
      if (gotDone) return { done: true, lastEventId };
      reason = ctl.signal.aborted ? 'no data for too long' : 'network error';
    } finally {
      clearTimeout(idleTimer);
      if (signal) signal.removeEventListener('abort', onAbort);
    }
    // A connection that delivered events starts the backoff over.
    tries = gotEvent ? 1 : tries + 1;
  }
}
