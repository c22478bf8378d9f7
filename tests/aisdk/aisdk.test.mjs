// format=ai-sdk (API.md, "v1 additions: AI SDK UI message stream") against the real
// Vercel AI SDK: its DefaultChatTransport, readUIMessageStream and chat state
// (AbstractChat, what @ai-sdk/react's useChat wraps), through nginx on a local stack
// of 3 pods. tests/aisdk/run starts the stack and sets TETHER_URL and TETHER_KEY.
// The onData snippet of the README ("Using tether from the AI SDK") is read from the
// README itself and run here, so the README's code is the tested code.
// Tool calls: tether has no tools yet (the tools issue); nothing of them is tested.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AbstractChat, DefaultChatTransport, readUIMessageStream } from 'ai';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASE = process.env.TETHER_URL;
const KEY = process.env.TETHER_KEY;
if (!BASE || !KEY) {
  console.error('aisdk.test: set TETHER_URL and TETHER_KEY (tests/aisdk/run does)');
  process.exit(2);
}
const TEST_TIMEOUT_MS = 120000;

// ---------- helpers ----------

async function until(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await pred();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A promise with a deadline: a hung stream fails the test instead of hanging it.
function within(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function stack(...args) {
  return new Promise((resolve, reject) => {
    execFile(path.join(ROOT, 'scripts/stack'), args, { env: process.env, timeout: 120000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/stack ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

async function api(method, p, body, headers = {}) {
  const res = await fetch(`${BASE}${p}`, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : null };
}

async function newThread() {
  const r = await api('POST', '/v1/threads', { title: 'aisdk' });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

async function runState(id) {
  const r = await api('GET', `/v1/runs/${id}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const terminal = (s) => ['completed', 'failed', 'cancelled'].includes(s.status);
const finished = (id) => until(async () => { const s = await runState(id); return terminal(s) ? s : null; }, 60000, `run ${id} to end`);

// The transport an application configures (the README's, with the pod override the
// takeover test needs): chat id = tether thread id.
function transport(pod) {
  const base = pod ? `${BASE}/pod/${pod}` : BASE;
  return new DefaultChatTransport({
    api: `${BASE}/v1/threads`,
    headers: { Authorization: `Bearer ${KEY}` },
    prepareSendMessagesRequest: ({ id, headers }) => ({
      api: `${BASE}/v1/threads/${id}/runs?format=ai-sdk`,
      headers: { ...headers, Accept: 'text/event-stream' },
    }),
    prepareReconnectToStreamRequest: ({ id, headers }) => ({
      api: `${base}/v1/threads/${id}/events?format=ai-sdk`,
      headers,
    }),
  });
}

// The chat state @ai-sdk/react keeps (snapshots, new arrays on change), without React.
class MemoryChatState {
  constructor(messages = []) { this.messages = messages; this.status = 'ready'; this.error = undefined; }
  pushMessage(m) { this.messages = this.messages.concat(this.snapshot(m)); }
  popMessage() { this.messages = this.messages.slice(0, -1); }
  replaceMessage(i, m) { this.messages = [...this.messages.slice(0, i), this.snapshot(m), ...this.messages.slice(i + 1)]; }
  snapshot(x) { return structuredClone(x); }
}
class Chat extends AbstractChat {
  constructor({ messages, ...init }) { super({ ...init, state: new MemoryChatState(messages) }); }
}

const userMessage = (text) => ({ id: `u-${Date.now()}`, role: 'user', parts: [{ type: 'text', text }] });
const textOf = (parts) => parts.filter((p) => p.type === 'text').map((p) => p.text).join('');

// The README's snippet, run as written: it declares onData, visibleParts and
// onFinish, and reads `chat`.
function readmeSnippet() {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const m = readme.match(/<!-- aisdk-reset-snippet -->\s*```js\n([\s\S]*?)```/);
  assert.ok(m, 'README.md has no aisdk-reset-snippet block');
  return new Function(`let chat;\n${m[1]}\nreturn { onData, onFinish, visibleParts, bind(c) { chat = c; } };`)();
}

// The mock model's reply: chunk i is "t<stamp> chunk-<i> ".
function mockText(stamp, n) {
  let s = '';
  for (let i = 1; i <= n; i++) s += `t${stamp} chunk-${i} `;
  return s;
}
const stampOf = (text) => /^t(\d+) chunk-1 /.exec(text)?.[1];

// A raw SSE body: frames of { id, data } (comments skipped).
function frames(body) {
  return body.split('\n\n').filter((f) => f.trim() && !f.startsWith(':')).map((f) => {
    const out = { id: null, data: '' };
    for (const line of f.split('\n')) {
      if (line.startsWith('id: ')) out.id = line.slice(4);
      else if (line.startsWith('data: ')) out.data += line.slice(6);
      else assert.fail(`unexpected line ${JSON.stringify(line)} in frame ${JSON.stringify(f)}`);
    }
    return out;
  });
}

// ---------- tests ----------

test('sendMessages_default_body_readUIMessageStream_text_equals_output', { timeout: TEST_TIMEOUT_MS }, async () => {
  const thread = await newThread();
  const t = transport();
  const stream = await t.sendMessages({
    chatId: thread, messages: [userMessage('hello slow:5x20')], trigger: 'submit-message',
    messageId: undefined, abortSignal: undefined,
  });
  let last;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) last = message;
  assert.ok(last, 'no message from the stream');
  const run = await finished(last.id);
  assert.equal(run.status, 'completed');
  assert.equal(run.thread_id, thread);
  assert.equal(last.role, 'assistant');
  assert.equal(textOf(last.parts), run.output);
  assert.equal(run.output, mockText(stampOf(run.output), 5));
  assert.deepEqual(last.parts.map((p) => `${p.type}:${p.state ?? ''}`), ['step-start:', 'text:done']);
  // The thread's history is tether's own: the SDK's text became the run's input.
  const th = await api('GET', `/v1/threads/${thread}`);
  assert.deepEqual(th.json.messages.map((m) => [m.role, m.content]), [['user', 'hello slow:5x20'], ['assistant', run.output]]);
});

test('wire_format_header_ids_done_and_last_event_id', { timeout: TEST_TIMEOUT_MS }, async () => {
  const thread = await newThread();
  const created = await api('POST', `/v1/threads/${thread}/runs`, { input: 'wire slow:3x10' });
  assert.equal(created.status, 202, created.text);
  const id = created.json.run_id;
  const run = await finished(id);
  const r = await api('GET', `/v1/runs/${id}/events?format=ai-sdk`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
  assert.match(r.headers.get('content-type'), /^text\/event-stream/);
  const part = `${id}:1`;
  const d = (i) => ({ type: 'text-delta', id: part, delta: run.output.split(/(?<=chunk-\d+ )/)[i] });
  const want = [
    ['1:0', { type: 'start', messageId: id }], ['1:0', { type: 'start-step' }], ['1:0', { type: 'text-start', id: part }],
    ['1:1', d(0)], ['1:2', d(1)], ['1:3', d(2)],
    ['1:4', { type: 'text-end', id: part }], ['1:4', { type: 'finish-step' }], ['1:4', { type: 'finish' }],
  ];
  const got = frames(r.text);
  assert.deepEqual(got.slice(0, -1).map((f) => [f.id, JSON.parse(f.data)]), want);
  assert.deepEqual(got.at(-1), { id: '1:4', data: '[DONE]' });
  // Last-Event-ID resumes after that event; the part is opened again for the reader.
  const resumed = await api('GET', `/v1/runs/${id}/events?format=ai-sdk`, null, { 'Last-Event-ID': '1:2' });
  assert.deepEqual(frames(resumed.text).map((f) => [f.id, f.data === '[DONE]' ? f.data : JSON.parse(f.data)]), [
    ['1:3', { type: 'text-start', id: part }], ['1:3', d(2)],
    ['1:4', { type: 'text-end', id: part }], ['1:4', { type: 'finish-step' }], ['1:4', { type: 'finish' }], ['1:4', '[DONE]'],
  ]);
  // Tether's own format is unchanged.
  const plain = await api('GET', `/v1/runs/${id}/events`);
  assert.equal(plain.headers.get('x-vercel-ai-ui-message-stream'), null);
  assert.match(plain.text, /^id: 1:0\nevent: start\n/);
  // The thread has no active run: 204 with format=ai-sdk (its latest run without).
  assert.equal((await api('GET', `/v1/threads/${thread}/events?format=ai-sdk`)).status, 204);
  assert.equal((await api('GET', `/v1/threads/${thread}/events`)).status, 200);
});

test('bad_format_and_bad_sdk_body_are_400_invalid_field', { timeout: TEST_TIMEOUT_MS }, async () => {
  const thread = await newThread();
  const created = await api('POST', `/v1/threads/${thread}/runs`, { input: 'x slow:1x0' });
  const id = created.json.run_id;
  for (const [method, p, body] of [
    ['GET', `/v1/runs/${id}/events?format=vercel`],
    ['GET', `/v1/threads/${thread}/events?format=`],
    ['POST', `/v1/threads/${thread}/runs?format=AI-SDK`, { input: 'y' }],
  ]) {
    const r = await api(method, p, body, { Accept: 'text/event-stream' });
    assert.equal(r.status, 400, `${method} ${p}: ${r.text}`);
    assert.equal(r.json.error.code, 'invalid_field');
    assert.equal(r.json.error.field, 'format');
  }
  await finished(id);
  const noUser = await api('POST', `/v1/threads/${thread}/runs?format=ai-sdk`,
    { id: thread, messages: [{ id: 'a', role: 'assistant', parts: [{ type: 'text', text: 'hi' }] }], trigger: 'submit-message' },
    { Accept: 'text/event-stream' });
  assert.equal(noUser.status, 400, noUser.text);
  assert.deepEqual([noUser.json.error.code, noUser.json.error.field], ['invalid_field', 'messages']);
  // The SDK's body is for format=ai-sdk only.
  const plain = await api('POST', `/v1/threads/${thread}/runs`, { id: thread, messages: [userMessage('x')], trigger: 'submit-message' });
  assert.equal(plain.status, 400, plain.text);
  assert.deepEqual([plain.json.error.code, plain.json.error.field], ['invalid_field', 'id']);
});

test('reconnectToStream_mid_run_returns_the_reply_then_null_after_the_end', { timeout: TEST_TIMEOUT_MS }, async () => {
  const thread = await newThread();
  const t = transport();
  const stream = await t.sendMessages({
    chatId: thread, messages: [userMessage('resume slow:40x50')], trigger: 'submit-message',
    messageId: undefined, abortSignal: undefined,
  });
  const reader = stream.getReader();
  const first = [];
  while (!first.some((c) => c.type === 'text-delta')) {
    const { value, done } = await within(reader.read(), 10000, 'the first text-delta');
    assert.ok(!done, 'the stream ended before any text');
    first.push(value);
  }
  const id = first[0].messageId;
  assert.equal(first[0].type, 'start');
  const again = await t.reconnectToStream({ chatId: thread });
  assert.ok(again, 'reconnectToStream returned null while the run was running');
  assert.equal((await runState(id)).status, 'running', 'the run ended before the reconnect: not mid-run');
  let last;
  for await (const message of readUIMessageStream({ stream: again, terminateOnError: true })) last = message;
  const run = await finished(id);
  assert.equal(run.status, 'completed');
  assert.equal(last.id, id);
  assert.equal(textOf(last.parts), run.output);
  // The first stream goes on to the end too.
  const rest = [...first];
  for (;;) {
    const { value, done } = await within(reader.read(), 10000, 'the first stream');
    if (done) break;
    rest.push(value);
  }
  assert.equal(rest.filter((c) => c.type === 'text-delta').map((c) => c.delta).join(''), run.output);
  assert.equal(rest.at(-1).type, 'finish');
  // After the end: nothing to resume (204).
  assert.equal(await t.reconnectToStream({ chatId: thread }), null);
});

test('owner_pod_killed_reset_with_readme_onData_text_exactly_once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const thread = await newThread();
  const input = 'survive slow:30x100';
  const created = await api('POST', `/v1/threads/${thread}/runs`, { input });
  assert.equal(created.status, 202, created.text);
  const id = created.json.run_id;
  const owner = (await until(async () => (await runState(id)).owner?.pod, 10000, 'the run to have an owner'));
  const pods = (await stack('pods')).split('\n').filter((l) => / up /.test(l)).map((l) => l.split(' ')[0]);
  const survivor = pods.find((p) => p !== owner);
  assert.ok(survivor, `no other pod up: ${pods}`);
  // The application's chat resumes the thread's stream (as useChat({ resume: true })
  // does), here through a pod that survives, so the takeover reaches it in-stream.
  const snippet = readmeSnippet();
  const resets = [];
  const chat = new Chat({
    id: thread,
    transport: transport(survivor),
    messages: [userMessage(input)],
    onData: (part) => { resets.push(part); snippet.onData(part); },
    onFinish: (e) => { finishes.push(e); snippet.onFinish(e); },
  });
  const finishes = [];
  snippet.bind(chat);
  const done = chat.resumeStream();
  await until(() => textOf(chat.lastMessage.parts).includes('chunk-3 '), 20000, 'attempt 1 to stream');
  assert.equal(chat.lastMessage.id, id);
  const killed = await stack('kill-owner', id);
  assert.equal(killed, owner);
  t.diagnostic(`streaming from ${survivor}; killed ${owner}`);
  await within(done, 90000, 'the chat to finish after the takeover');
  const run = await runState(id);
  assert.equal(run.status, 'completed');
  assert.equal(run.attempt, 2, 'one takeover');
  assert.equal(chat.status, 'ready');
  assert.equal(chat.error, undefined);
  const message = chat.lastMessage;
  assert.equal(message.id, id);
  assert.equal(finishes.length, 1, 'the stream that went on was resumed');
  assert.deepEqual(resets, [{ type: 'data-tether-reset', data: { attempt: 2, reason: 'owner_lost', abandoned: `${id}:1` }, transient: true }]);
  assert.ok(!message.parts.some((p) => p.type.startsWith('data-')), 'the transient reset part was stored');
  // With the README's snippet: the reply, exactly once.
  assert.equal(textOf(snippet.visibleParts(message)), run.output);
  const stamp2 = stampOf(run.output);
  assert.equal(run.output, mockText(stamp2, 30));
  // Without it (a client that ignores resets): the abandoned attempt's text stays
  // in front of the whole new reply.
  const texts = message.parts.filter((p) => p.type === 'text').map((p) => p.text);
  assert.equal(texts.length, 2);
  const stamp1 = stampOf(texts[0]);
  assert.ok(stamp1 && stamp1 !== stamp2, `the abandoned part is not attempt 1's text: ${texts[0]}`);
  assert.ok(mockText(stamp1, 30).startsWith(texts[0]) && texts[0].includes('chunk-3 '), texts[0]);
  assert.equal(texts[1], run.output);
  assert.equal(textOf(message.parts), texts[0] + run.output);
  await stack('start', owner);
});

// The usual case: the reply streams from the pod that generates it (run creation
// streams from the worker that created the run), and that pod dies. The SDK ends
// the broken stream like a finished one; the README's onFinish sees the text part
// left streaming and resumes (from a survivor, the reply replayed from its start).
// Whether the replay carries the first attempt and a reset depends on when it
// attaches; with the README's snippet the text is the reply exactly once either way.
test('owner_pod_killed_under_the_post_stream_onFinish_resumes_text_exactly_once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const thread = await newThread();
  const snippet = readmeSnippet();
  const finishes = [];
  const chat = new Chat({
    id: thread,
    transport: transport(),
    onData: snippet.onData,
    onFinish: (e) => { finishes.push({ ...e, message: structuredClone(e.message) }); snippet.onFinish(e); },
  });
  snippet.bind(chat);
  const sent = chat.sendMessage({ text: 'reconnect slow:30x100' });
  await until(() => chat.lastMessage?.role === 'assistant' && textOf(chat.lastMessage.parts).includes('chunk-3 '), 20000, 'attempt 1 to stream');
  const id = chat.lastMessage.id;
  const owner = (await runState(id)).owner.pod;
  assert.equal(await stack('kill-owner', id), owner);
  await within(sent, 30000, 'the broken stream to end');
  const run = await finished(id);
  assert.equal(run.status, 'completed');
  assert.equal(run.attempt, 2, 'one takeover');
  await until(() => finishes.length === 2 && chat.status === 'ready', 60000, 'the resumed stream to end');
  // How the SDK ended the broken stream: as if complete, the text part streaming.
  const [cut, resumed] = finishes;
  assert.deepEqual([cut.isAbort, cut.isDisconnect, cut.isError], [false, false, false]);
  assert.deepEqual(cut.message.parts.filter((p) => p.type === 'text').map((p) => p.state), ['streaming']);
  assert.deepEqual([resumed.isAbort, resumed.isDisconnect, resumed.isError], [false, false, false]);
  assert.equal(chat.error, undefined);
  assert.deepEqual(chat.messages.map((m) => m.role), ['user', 'assistant'], 'the reply is not one message');
  const message = chat.lastMessage;
  assert.equal(message.id, id);
  assert.ok(message.parts.filter((p) => p.type === 'text').every((p) => p.state === 'done'));
  assert.equal(textOf(snippet.visibleParts(message)), run.output);
  assert.equal(run.output, mockText(stampOf(run.output), 30));
  t.diagnostic(`killed ${owner}; the replay had ${message.parts.filter((p) => p.type === 'text').length} text part(s)`);
  await stack('start', owner);
});

test('failed_run_is_the_sdk_error_state', { timeout: TEST_TIMEOUT_MS }, async () => {
  const thread = await newThread();
  const errors = [];
  const chat = new Chat({ id: thread, transport: transport(), onError: (e) => errors.push(e) });
  await within(chat.sendMessage({ text: 'oops fail:2 slow:5x10' }), 30000, 'the failed run');
  assert.equal(chat.status, 'error');
  const id = chat.lastMessage.id;
  const run = await finished(id);
  assert.equal(run.status, 'failed');
  assert.equal(run.error.code, 'provider_error');
  assert.ok(chat.error instanceof Error);
  assert.equal(chat.error.message, run.error.message);
  assert.deepEqual(errors.map((e) => e.message), [run.error.message]);
  assert.equal(chat.lastMessage.role, 'assistant');
  assert.match(textOf(chat.lastMessage.parts), /^t(\d+) chunk-1 t\1 chunk-2 $/);
});

test('cancelled_run_is_an_abort', { timeout: TEST_TIMEOUT_MS }, async () => {
  const thread = await newThread();
  const t = transport();
  const stream = await t.sendMessages({
    chatId: thread, messages: [userMessage('stop slow:100x50')], trigger: 'submit-message',
    messageId: undefined, abortSignal: undefined,
  });
  const reader = stream.getReader();
  const chunks = [];
  for (;;) {
    const { value, done } = await within(reader.read(), 15000, 'the cancelled stream');
    if (done) break;
    chunks.push(value);
    if (value.type === 'text-delta' && chunks.filter((c) => c.type === 'text-delta').length === 1) {
      const c = await api('POST', `/v1/runs/${chunks[0].messageId}/cancel`);
      assert.equal(c.status, 200, c.text);
    }
  }
  const run = await runState(chunks[0].messageId);
  assert.equal(run.status, 'cancelled');
  assert.equal(chunks.at(-1).type, 'abort');
  assert.deepEqual(chunks.slice(0, 3).map((c) => c.type), ['start', 'start-step', 'text-start']);
  assert.ok(chunks.slice(3, -1).every((c) => c.type === 'text-delta'), JSON.stringify(chunks.map((c) => c.type)));
  assert.ok(!chunks.some((c) => c.type === 'finish' || c.type === 'error'));
  // The SDK's chat ends such a stream ready, without an error, the text so far kept.
  const thread2 = await newThread();
  const chat = new Chat({ id: thread2, transport: transport() });
  const sent = chat.sendMessage({ text: 'stop slow:100x50' });
  await until(() => chat.lastMessage?.role === 'assistant' && textOf(chat.lastMessage.parts).includes('chunk-2 '), 20000, 'text');
  assert.equal((await api('POST', `/v1/runs/${chat.lastMessage.id}/cancel`)).status, 200);
  await within(sent, 20000, 'the chat after the cancel');
  assert.equal(chat.status, 'ready');
  assert.equal(chat.error, undefined);
  assert.ok(!textOf(chat.lastMessage.parts).includes('chunk-100 '));
});
