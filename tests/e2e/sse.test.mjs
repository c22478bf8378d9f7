// Unit tests of web/sse.js (the page's SSE parser and reconnecting follower)
// under Node: node --test tests/e2e/sse.test.mjs
import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// web/ has no package.json: load the module through an .mjs copy, so every Node
// version reads it as an ES module.
const dir = mkdtempSync(path.join(tmpdir(), 'tether-sse-'));
const copy = path.join(dir, 'sse.mjs');
copyFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web/sse.js'), copy);
const { SSEParser, followEvents, FatalStreamError, backoffMs } = await import(pathToFileURL(copy).href);
rmSync(dir, { recursive: true, force: true });

function parseAll(pieces) {
  const events = [];
  const comments = [];
  const p = new SSEParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c) });
  for (const s of pieces) p.feed(s);
  return { events, comments, p };
}

const STREAM =
  '\ufeff: hello\n' +
  'id: 1:0\nevent: start\ndata: {"attempt":1}\n\n' +
  ': ping\n\n' +
  'id: 1:1\r\nevent: delta\r\ndata: {"text":"a"}\r\n\r\n' +
  'id: 1:2\revent: delta\rdata:{"text":"é€😀"}\r\r' +
  'event: note\ndata: line one\ndata:\ndata: line three\n\n' +
  'data\n\n' +
  'retry: 1500\nretry: x\nfoo: bar\nevent: lonely\n\n' +
  'id: 2:0\nevent: reset\ndata: {"attempt":2}\n\n' +
  'id\ndata: no id\n\n' +
  'id: a\u0000b\ndata: nul id ignored\n\n' +
  'data: cut off at the end';

const EXPECTED = [
  { id: '1:0', event: 'start', data: '{"attempt":1}' },
  { id: '1:1', event: 'delta', data: '{"text":"a"}' },
  { id: '1:2', event: 'delta', data: '{"text":"é€😀"}' },
  { id: '1:2', event: 'note', data: 'line one\n\nline three' },
  { id: '1:2', event: 'message', data: '' },
  { id: '2:0', event: 'reset', data: '{"attempt":2}' },
  { id: '', event: 'message', data: 'no id' },
  { id: '', event: 'message', data: 'nul id ignored' },
];

test('parses a whole stream: ids persist, comments, multi-line data, CRLF/CR/LF, BOM', () => {
  const { events, comments, p } = parseAll([STREAM]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(comments, ['hello', 'ping']);
  assert.equal(p.retry, 1500);
});

test('gives the same events whatever the piece boundaries (one char at a time, CR|LF split)', () => {
  const { events } = parseAll([...STREAM]);
  assert.deepEqual(events, EXPECTED);
  for (let cut = 1; cut < STREAM.length; cut += 7) {
    assert.deepEqual(parseAll([STREAM.slice(0, cut), STREAM.slice(cut)]).events, EXPECTED, `cut at ${cut}`);
  }
  // a CRLF split across pieces is one line end, not an empty line
  assert.deepEqual(parseAll(['data: x\r', '\ndata: y\r', '\n\r', '\n']).events, [
    { id: '', event: 'message', data: 'x\ny' },
  ]);
});

test('an event cut off by the end of the stream is not dispatched', () => {
  const { events, p } = parseAll(['id: 1:5\nevent: delta\ndata: {"text":"half"}\n']);
  p.end();
  assert.deepEqual(events, []);
});

test('backoff: 250 ms doubling to 4 s', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 9].map((n) => backoffMs(n)), [250, 500, 1000, 2000, 4000, 4000, 4000]);
});

// A fetch stand-in: each call takes the next scripted answer and records the request.
function fakeFetch(script) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, headers: { ...init.headers } });
    const step = script.shift();
    if (!step) throw new Error('unexpected fetch');
    if (step.error) throw new TypeError('Failed to fetch');
    if (step.status && step.status !== 200) {
      return new Response(step.body || null, { status: step.status });
    }
    const enc = new TextEncoder();
    // Send the body byte by byte so multi-byte characters are split across reads.
    const bytes = enc.encode(step.body);
    let i = 0;
    const body = new ReadableStream({
      pull(ctl) {
        if (i < bytes.length) ctl.enqueue(bytes.slice(i, ++i));
        else ctl.close();
      },
    });
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  };
  fn.calls = calls;
  return fn;
}

const ev = (id, event, data) => `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

test('follows across drops: EOF without done, 503 and network errors reconnect with Last-Event-ID', async () => {
  const fetchImpl = fakeFetch([
    { body: ev('1:0', 'start', { attempt: 1 }) + ev('1:1', 'delta', { text: 'héllo ' }) }, // EOF, no done
    { status: 503, body: '{"error":{"code":"unavailable","message":"no server"}}' },
    { error: true },
    { body: ': ping\n\n' + ev('2:0', 'reset', { attempt: 2 }) + ev('2:1', 'delta', { text: 'wörld' }) + 'id: 2:2\nevent: del' }, // cut mid-event
    { body: ev('2:2', 'delta', { text: '!' }) + ev('2:3', 'done', { status: 'completed' }) + ev('2:4', 'delta', { text: 'never' }) },
  ]);
  const events = [];
  const states = [];
  const r = await followEvents('/v1/runs/x/events', {
    headers: { Authorization: 'Bearer k' },
    fetchImpl,
    baseDelayMs: 1,
    maxDelayMs: 4,
    onEvent: (e) => events.push(e),
    onState: (s) => states.push(s.state),
  });
  assert.deepEqual(r, { done: true, lastEventId: '2:3' });
  assert.deepEqual(
    fetchImpl.calls.map((c) => c.headers['Last-Event-ID']),
    [undefined, '1:1', '1:1', '1:1', '2:1'],
  );
  assert.ok(fetchImpl.calls.every((c) => c.headers.Authorization === 'Bearer k'));
  assert.deepEqual(events.map((e) => e.id), ['1:0', '1:1', '2:0', '2:1', '2:2', '2:3']);
  const texts = events.filter((e) => e.event === 'delta').map((e) => JSON.parse(e.data).text);
  assert.deepEqual(texts, ['héllo ', 'wörld', '!']);
  assert.ok(states.includes('reconnecting'));
  assert.equal(states.filter((s) => s === 'streaming').length, 3);
});

test('204 means no run; 4xx is fatal; abort stops', async () => {
  assert.deepEqual(await followEvents('/u', { fetchImpl: fakeFetch([{ status: 204 }]) }), {
    empty: true,
    lastEventId: '',
  });
  await assert.rejects(
    followEvents('/u', {
      fetchImpl: fakeFetch([{ status: 404, body: '{"error":{"code":"not_found","message":"no such run"}}' }]),
    }),
    (e) => e instanceof FatalStreamError && e.status === 404 && e.code === 'not_found' && e.message === 'no such run',
  );
  const ctl = new AbortController();
  const p = followEvents('/u', {
    fetchImpl: fakeFetch([{ status: 503 }]),
    signal: ctl.signal,
    baseDelayMs: 60000,
    onState: (s) => s.state === 'reconnecting' && ctl.abort(),
  });
  assert.deepEqual(await p, { aborted: true, lastEventId: '' });
});
