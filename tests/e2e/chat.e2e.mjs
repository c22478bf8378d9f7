// End-to-end tests of the web chat page (web/) in headless Debian Chromium,
// driven by playwright-core, against a real stack (tests/e2e/run starts it).
//   TETHER_URL, TETHER_KEY, TETHER_STACK_DIR   the stack and an API key
//   E2E_ARTIFACTS   where screenshots go (default artifacts/e2e)
//   node tests/e2e/chat.e2e.mjs [name-filter]
// Every wait polls a condition with a deadline; every test has a time bound;
// assertions compare exact values (the run's output, the mock model's chunks).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASE = process.env.TETHER_URL;
const KEY = process.env.TETHER_KEY;
const ARTIFACTS = path.resolve(ROOT, process.env.E2E_ARTIFACTS || 'artifacts/e2e');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TEST_TIMEOUT_MS = Number(process.env.E2E_TEST_TIMEOUT_S || 180) * 1000;
if (!BASE || !KEY) {
  console.error('chat.e2e: set TETHER_URL and TETHER_KEY (tests/e2e/run does)');
  process.exit(2);
}
mkdirSync(ARTIFACTS, { recursive: true });

// ---------- helpers ----------

async function api(method, p, body) {
  const res = await fetch(BASE + p, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function runState(runId) {
  const r = await api('GET', `/v1/runs/${runId}`);
  assert.equal(r.status, 200, `GET /v1/runs/${runId}: ${JSON.stringify(r.json)}`);
  return r.json;
}

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

function stack(...args) {
  return new Promise((resolve, reject) => {
    execFile(path.join(ROOT, 'scripts/stack'), args, { env: process.env, timeout: 120000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/stack ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

// The mock model's reply to "... slow:NxMS": chunk i is "t<stamp> chunk-<i> ".
function mockText(stamp, n) {
  let s = '';
  for (let i = 1; i <= n; i++) s += `t${stamp} chunk-${i} `;
  return s;
}

// The single call stamp of a one-attempt reply holding chunks 1..n once each, in order.
function oneAttemptStamp(text, n) {
  const m = /^t(\d+) chunk-1 /.exec(text);
  assert.ok(m, `reply does not start with chunk 1: ${JSON.stringify(text.slice(0, 80))}`);
  assert.equal(text, mockText(m[1], n), 'reply is not chunks 1..n of one call, each once');
  const nums = [...text.matchAll(/chunk-(\d+) /g)].map((x) => Number(x[1]));
  assert.deepEqual(nums, Array.from({ length: n }, (_, i) => i + 1));
  return m[1];
}

// Record every text the last assistant reply shows, in every document the page loads,
// so a test can check that the screen never showed a duplicated or mixed reply.
function recordReplies() {
  window.__replyStates = [];
  window.__statusStates = [];
  window.__toolCalls = []; // every tool-call block the page ever showed: "<call id>@<attempt>"
  window.__maxToolBlocks = 0; // the most tool-call blocks shown at once
  document.addEventListener('DOMContentLoaded', () => {
    const list = document.getElementById('messages');
    const status = document.getElementById('status');
    if (!list || !status) return;
    new MutationObserver(() => window.__statusStates.push(status.textContent)).observe(status, {
      childList: true,
      subtree: true,
      characterData: true,
    });
    const take = () => {
      const blocks = list.querySelectorAll('.tool-call');
      window.__maxToolBlocks = Math.max(window.__maxToolBlocks, blocks.length);
      for (const b of blocks) {
        const k = `${b.dataset.callId}@${b.dataset.attempt || ''}`;
        if (!window.__toolCalls.includes(k)) window.__toolCalls.push(k);
      }
      const li = list.querySelector('li.assistant:last-child');
      if (!li) return;
      const t = li.querySelector('.text').textContent;
      const a = window.__replyStates;
      if (a[a.length - 1] !== t) a.push(t);
    };
    new MutationObserver(take).observe(list, { childList: true, subtree: true, characterData: true });
  });
}

const LAUNCH_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

let browser;
let profileDir;

async function newPage(t, viewport = { width: 1100, height: 800 }) {
  const context = await browser.newContext({ viewport });
  await context.addInitScript(recordReplies);
  const page = await context.newPage();
  t.context = context;
  t.page = page;
  page.on('console', (m) => {
    if (m.type() === 'error') t.consoleErrors.push(`console: ${m.text()} @ ${JSON.stringify(m.location())}`);
  });
  page.on('pageerror', (e) => t.consoleErrors.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(60000);
  return page;
}

// Open the page through the dev link (#key=...), as scripts/demo prints it.
async function openWithKey(page) {
  await page.goto(`${BASE}/#key=${KEY}`);
  await page.waitForFunction(() => document.getElementById('key-panel').hidden === true);
  await page.locator('#input').waitFor({ state: 'visible' });
}

async function send(page, text) {
  await page.locator('#input').fill(text);
  await page.locator('#input').press('Enter'); // keyboard submit
  const li = page.locator('#messages li.assistant').last();
  await li.waitFor({ state: 'attached' });
  const runId = await until(() => li.getAttribute('data-run-id'), 30000, 'the reply element to name its run');
  return { li, runId };
}

const replyText = (li) => li.locator('.text').evaluate((e) => e.textContent);

async function waitState(li, stateName, timeoutMs = 90000) {
  await until(async () => (await li.getAttribute('data-state')) === stateName, timeoutMs, `reply state ${stateName}`);
}

async function waitText(li, needle, timeoutMs = 60000) {
  await until(async () => (await replyText(li)).includes(needle), timeoutMs, `reply to contain ${JSON.stringify(needle)}`);
}

function assertAllPrefixes(states, finals, what) {
  for (const s of states) {
    assert.ok(
      finals.some((f) => f.startsWith(s)),
      `${what}: the page showed a text that is not a prefix of ${finals.length > 1 ? 'either attempt' : 'the reply'}: ${JSON.stringify(s)}`,
    );
  }
}

// ---------- tests ----------

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('dev_link_key_and_empty_page', async (t) => {
  const page = await newPage(t);
  await openWithKey(page);
  // The key went to localStorage and left the address bar.
  assert.equal(await page.evaluate(() => localStorage.getItem('tether.apiKey')), KEY);
  assert.equal(await page.evaluate(() => location.hash.includes('key')), false, 'the key stays in the URL');
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'input');
  // nginx: CSP that allows only this origin, revalidated page, JS served as JavaScript.
  const res = await fetch(`${BASE}/`);
  const csp = res.headers.get('content-security-policy') || '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self';/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
  assert.equal(res.headers.get('cache-control'), 'no-cache');
  const js = await fetch(`${BASE}/app.js`);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.equal(js.headers.get('cache-control'), 'no-cache');
  assert.ok(js.headers.get('etag'), 'assets revalidate by ETag');
  // A key that the server rejects brings the key form back, with a message.
  const bad = await newPage({ ...t, consoleErrors: [] }); // its 401s are expected console noise
  await bad.goto(`${BASE}/#key=tk_not_a_real_key`);
  await bad.waitForFunction(() => !document.getElementById('key-panel').hidden &&
    document.getElementById('key-hint').textContent.includes('did not accept'));
  // A link with another key asks before replacing the stored one: declined, the
  // stored key stays (and the link's key leaves the address bar); accepted, it goes.
  const stored = () => bad.evaluate(() => localStorage.getItem('tether.apiKey'));
  const asked = [];
  bad.once('dialog', (d) => { asked.push(d.type()); d.dismiss(); });
  await bad.evaluate((k) => { location.hash = `key=${k}`; }, KEY);
  await until(async () => asked.length === 1 && !(await bad.evaluate(() => location.hash.includes('key'))),
    10000, 'the confirm() to be answered');
  assert.deepEqual(asked, ['confirm']);
  assert.equal(await stored(), 'tk_not_a_real_key');
  bad.once('dialog', (d) => { asked.push(d.type()); d.accept(); });
  await bad.evaluate((k) => { location.hash = `key=${k}`; }, KEY);
  await until(async () => (await stored()) === KEY, 10000, 'the accepted key to be stored');
  await bad.waitForFunction(() => document.getElementById('key-panel').hidden === true);
  assert.deepEqual(asked, ['confirm', 'confirm']);
  await bad.context().close();
});

test('send_message_streams_full_reply', async (t) => {
  const page = await newPage(t);
  await openWithKey(page);
  const input = 'hello slow:20x150';
  const { li, runId } = await send(page, input);
  await waitState(li, 'completed');
  const text = await replyText(li);
  const run = await runState(runId);
  assert.equal(run.status, 'completed');
  assert.equal(run.attempt, 1);
  assert.equal(text, run.output, 'the page shows exactly the run output');
  oneAttemptStamp(text, 20);
  // token by token: the page showed growing prefixes of the reply on the way
  const states = (await page.evaluate(() => window.__replyStates)).filter((s) => s !== '');
  assertAllPrefixes(states, [run.output], 'streaming');
  assert.ok(states.length >= 5, `expected the reply to appear in pieces, saw ${states.length} states`);
  assert.equal(await li.getAttribute('data-skipped'), '0', 'the server sent an event twice');
  assert.equal(await page.locator('#status').textContent(), 'completed');
  assert.equal(await page.locator('#messages li.user .text').textContent(), input);
  // the new thread is listed, named after the message, and in the URL
  const threadId = run.thread_id;
  assert.equal(await page.evaluate(() => location.hash), `#thread=${threadId}`);
  const item = page.locator(`#threads button.thread[data-thread-id="${threadId}"]`);
  await item.waitFor();
  assert.equal(await item.locator('.title').textContent(), input);
  assert.equal(await item.getAttribute('aria-current'), 'true');
  // past messages: a fresh load of the thread shows both, from the server
  await page.reload();
  const reloaded = page.locator('#messages li.assistant');
  await until(async () => (await reloaded.count()) === 1 && (await replyText(reloaded)) === run.output, 30000,
    'the past messages after a reload');
  assert.equal(await page.locator('#messages li.user').count(), 1);
  assert.equal(await page.locator('#messages li.user .text').textContent(), input);
  // opening a thread from the list (a second thread, then back)
  await page.locator('#new-thread').click();
  assert.equal(await page.locator('#messages li').count(), 0);
  await item.click();
  await until(async () => (await page.locator('#messages li').count()) === 2, 30000, 'the thread to open from the list');
  assert.equal(await replyText(page.locator('#messages li.assistant')), run.output);
});

test('reload_mid_stream_continues_without_duplicates', async (t) => {
  const page = await newPage(t);
  await openWithKey(page);
  const { li, runId } = await send(page, 'reload me slow:20x300');
  await waitText(li, 'chunk-3 ');
  const before = await replyText(li);
  assert.ok(!before.includes('chunk-20 '), 'the reply finished before the reload: not mid-stream');
  await page.reload();
  // After the reload the page finds the thread's active run and attaches to it.
  const li2 = page.locator(`#messages li.assistant[data-run-id="${runId}"]`);
  await li2.waitFor({ state: 'attached', timeout: 30000 });
  await waitState(li2, 'completed');
  const run = await runState(runId);
  assert.equal(run.status, 'completed');
  const text = await replyText(li2);
  assert.equal(text, run.output, 'after the reload the page shows exactly the run output');
  oneAttemptStamp(text, 20);
  assert.ok(run.output.startsWith(before), 'the text before the reload was a prefix of the reply');
  const states = (await page.evaluate(() => window.__replyStates)).filter((s) => s !== '');
  assertAllPrefixes(states, [run.output], 'after the reload');
  assert.ok(states.some((s) => !s.includes('chunk-20 ')), 'the reloaded page did not see the reply still streaming');
  assert.equal(await li2.getAttribute('data-skipped'), '0');
  assert.equal(await page.locator('#messages li.user').count(), 1, 'the user message shows once');
  assert.equal(await page.locator('#messages li.assistant').count(), 1, 'the reply shows once');
  assert.equal(await page.locator('#status').textContent(), 'completed');
});

test('cancel_running_reply', async (t) => {
  const page = await newPage(t);
  await openWithKey(page);
  const { li, runId } = await send(page, 'cancel me slow:100x200');
  await waitText(li, 'chunk-2 ');
  assert.equal(await page.locator('#send').isDisabled(), true, 'send is disabled while a reply runs');
  await page.locator('#cancel').click();
  await waitState(li, 'cancelled', 30000);
  const run = await runState(runId);
  assert.equal(run.status, 'cancelled');
  assert.equal(await page.locator('#status').textContent(), 'cancelled');
  assert.ok(!(await replyText(li)).includes('chunk-100 '));
  assert.equal(await page.locator('#send').isDisabled(), false);
  assert.equal(await page.locator('#cancel').isDisabled(), true);
});

test('phone_width_keyboard_and_focus', async (t) => {
  const page = await newPage(t, { width: 375, height: 740 });
  await openWithKey(page);
  // nothing wider than the screen
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
    'the page scrolls sideways at phone width');
  // keyboard: Tab from the message box reaches Send, and the focus is visible
  await page.locator('#input').focus();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'send');
  const outline = await page.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return `${s.outlineStyle} ${s.outlineWidth}`;
  });
  assert.equal(outline, 'solid 3px', 'no visible focus');
  // Shift+Enter is a new line; Enter sends the two-line message
  await page.locator('#input').focus();
  await page.keyboard.type('two lines');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('slow:3x50');
  assert.equal(await page.locator('#input').inputValue(), 'two lines\nslow:3x50');
  await page.keyboard.press('Enter');
  const li = page.locator('#messages li.assistant').last();
  await waitState(li, 'completed');
  assert.equal(await page.locator('#messages li.user .text').textContent(), 'two lines\nslow:3x50');
  oneAttemptStamp(await replyText(li), 3);
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
});

// Kill the run's owner pod (scripts/stack kill: SIGKILL to its master and workers)
// while the page shows the reply. `streamFrom` picks the pod that serves the page's
// first event stream, through nginx's /pod/<name>/ route (later requests, such as
// reconnects, go through the balancer as usual):
//   'survivor'  a pod that lives: its watcher notices the stall and takes the run
//               over; the page's stream never drops and gets `reset` in-stream;
//   'owner'     the pod that dies: the page sees its stream end without `done`,
//               reconnects with Last-Event-ID and gets `reset` from a survivor.
async function routeFirstStream(page, streamFrom) {
  const r = { owner: null, streamPod: null, streamUrls: [] };
  await page.route('**/v1/runs/*/events', async (route) => {
    const url = new URL(route.request().url());
    r.streamUrls.push(url.pathname);
    if (r.streamPod !== null) return route.continue(); // reconnects: the balancer chooses
    const runId = url.pathname.split('/')[3];
    const s = await until(async () => {
      const x = await runState(runId);
      return x.owner && x.owner.pod ? x : null;
    }, 30000, 'the run to have an owner');
    r.owner = s.owner.pod;
    const pods = (await stack('pods')).split('\n').filter((l) => / up /.test(l)).map((l) => l.split(' ')[0]);
    r.streamPod = streamFrom === 'owner' ? r.owner : pods.find((p) => p !== r.owner);
    assert.ok(r.streamPod, `no pod to stream from (pods up: ${pods})`);
    return route.continue({ url: `${BASE}/pod/${r.streamPod}${url.pathname}${url.search}` });
  });
  return r;
}

async function killOwnerMidStream(t, streamFrom, input) {
  const page = await newPage(t);
  await openWithKey(page);
  const routed = await routeFirstStream(page, streamFrom);
  const { li, runId } = await send(page, input);
  await waitText(li, 'chunk-3 ');
  const before = await replyText(li);
  assert.ok(!before.includes('chunk-20 '), 'the reply finished before the kill: not mid-stream');
  const stamp1 = oneAttemptStamp(before.slice(0, before.lastIndexOf('chunk-3 ') + 8), 3);
  const { owner, streamPod, streamUrls } = routed;
  assert.ok(owner && streamPod, 'the page did not open the event stream');
  assert.equal((await runState(runId)).owner.pod, owner);
  await stack('kill', owner);
  t.log(`page streams from ${streamPod}; killed the owner ${owner} after ${before.split('chunk-').length - 1} chunks`);
  await waitState(li, 'completed', 120000);
  const run = await runState(runId);
  assert.equal(run.status, 'completed');
  assert.equal(run.attempt, 2, 'one takeover');
  assert.notEqual(run.owner && run.owner.pod, owner, 'the dead pod still owns the run');
  const text = await replyText(li);
  assert.equal(text, run.output, 'the page shows exactly the final output');
  const stamp2 = oneAttemptStamp(text, 20); // chunks 1..20, each exactly once, one call
  assert.notEqual(stamp2, stamp1, 'the final reply is not the new attempt');
  // On screen: the first attempt's text until the reset, then only the new attempt.
  const states = (await page.evaluate(() => window.__replyStates)).filter((s) => s !== '');
  assertAllPrefixes(states, [mockText(stamp1, 20), run.output], 'during the takeover');
  assert.ok(states.some((s) => s.includes(`t${stamp1} chunk-3 `)), 'attempt 1 was not on screen');
  assert.equal(await li.getAttribute('data-skipped'), '0', 'the server sent an event twice');
  assert.equal(await li.getAttribute('data-attempt'), '2');
  assert.equal(await page.locator('#status').textContent(), 'completed · recovered on another server (attempt 2)');
  assert.equal(await li.locator('.note').textContent(), 'Recovered on another server (attempt 2).');
  assert.equal(await page.locator('#messages li.assistant').count(), 1);
  const statuses = await page.evaluate(() => window.__statusStates);
  const reconnected = statuses.some((s) => s.startsWith('reconnecting'));
  t.log(`status line: ${statuses.filter((s, i) => s && s !== statuses[i - 1]).join(' | ')}`);
  if (streamFrom === 'owner') {
    assert.ok(reconnected, `the page did not show that it reconnected: ${JSON.stringify(statuses)}`);
    assert.ok(streamUrls.length >= 2, `the page did not open a second stream: ${streamUrls}`);
  } else {
    assert.ok(!reconnected, `the stream from a survivor dropped: ${JSON.stringify(statuses)}`);
    assert.equal(streamUrls.length, 1, `the page opened more than one stream: ${streamUrls}`);
  }
  assert.ok(statuses.includes('streaming · recovered on another server (attempt 2)'),
    `the recovery was not shown while streaming: ${JSON.stringify(statuses)}`);
  await stack('start', owner);
}

test('owner_pod_killed_page_on_survivor_shows_each_chunk_once', (t) =>
  killOwnerMidStream(t, 'survivor', 'survive slow:20x400'));

test('owner_pod_killed_page_on_dead_pod_reconnects_each_chunk_once', (t) =>
  killOwnerMidStream(t, 'owner', 'reconnect slow:20x400'));

// ---------- tool calls (API.md "v1 additions: tools") ----------

// A reply's element by its run (send's `li` is the last reply, which a continuation changes).
const runItem = (page, runId) => page.locator(`#messages li.assistant[data-run-id="${runId}"]`);

// The reply ended requires_action: its call blocks, checked against required_action.
async function pendingCalls(li, runId) {
  await waitState(li, 'requires_action', 120000);
  const run = await runState(runId);
  assert.equal(run.status, 'requires_action');
  const want = run.required_action.tool_calls;
  const blocks = li.locator('.tool-call');
  await until(async () => (await li.locator('textarea.tool-output-input').count()) === want.length, 30000,
    'a text area per pending call');
  assert.equal(await blocks.count(), want.length, 'one block per pending call');
  for (let i = 0; i < want.length; i++) {
    const b = blocks.nth(i);
    assert.equal(await b.getAttribute('data-call-id'), want[i].id);
    assert.equal(await b.locator('.tool-name').textContent(), want[i].name);
    assert.equal(await b.locator('.tool-args').textContent(), JSON.stringify(want[i].arguments, null, 2));
  }
  return { run, calls: want };
}

// Type one output per call, submit, and follow the continuation to its end.
async function answerCalls(page, li, runId, calls, outputs) {
  const areas = li.locator('textarea.tool-output-input');
  for (let i = 0; i < calls.length; i++) await areas.nth(i).fill(outputs[i]);
  await li.locator('button.tool-submit').click();
  const cont = page.locator('#messages li.assistant').last();
  const contId = await until(async () => {
    const id = await cont.getAttribute('data-run-id');
    return id && id !== runId ? id : null;
  }, 30000, 'the continuation to start');
  await waitState(cont, 'completed');
  const run = await runState(contId);
  assert.equal(run.status, 'completed');
  assert.equal(run.continues, runId, 'the continuation names the run it continues');
  assert.equal(await replyText(cont), run.output, 'the page shows exactly the continuation output');
  for (let i = 0; i < calls.length; i++) {
    const needle = `tool=${calls[i].id}:${outputs[i]} `;
    assert.equal(run.output.split(needle).length - 1, 1, `the continuation holds ${needle} once: ${run.output}`);
  }
  // Each output now shows under its call, as text; the form is gone.
  assert.equal(await li.locator('textarea').count(), 0);
  assert.deepEqual(await li.locator('.tool-output').allTextContents(), outputs);
  assert.equal(await page.locator('#status').textContent(), 'completed');
  return { cont, run };
}

test('tool_call_loop_completes', async (t) => {
  const page = await newPage(t);
  await openWithKey(page);
  const { runId } = await send(page, 'what is the weather? tool:get_weather slow:3x50');
  const li = runItem(page, runId);
  const { calls } = await pendingCalls(li, runId);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(calls[0].arguments, { n: 1 });
  assert.equal(await page.locator('#status').textContent(), 'waiting for tool outputs');
  assert.equal(await page.locator('#send').isDisabled(), true, 'send is enabled while the thread waits');
  assert.equal(await page.locator('#cancel').isDisabled(), false, 'a waiting run cannot be cancelled');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'tool-output-input');
  // Markup in an output is text: nothing of it becomes an element.
  const output = 'sunny <b>hot</b> & "dry"';
  const { run } = await answerCalls(page, li, runId, calls, [output]);
  assert.equal(await page.locator('#messages b').count(), 0, 'an output was rendered as HTML');
  assert.equal(await li.getAttribute('data-skipped'), '0', 'the server sent an event twice');
  assert.equal(await page.locator('#send').isDisabled(), false);
  // A reload shows the whole loop from the thread's messages: the call, its output, the reply.
  await page.reload();
  const block = page.locator('#messages li.assistant .tool-call');
  await until(async () => (await block.count()) === 1 && (await page.locator('#messages li.assistant').count()) === 2,
    30000, 'the tool loop after a reload');
  assert.equal(await block.getAttribute('data-call-id'), calls[0].id);
  assert.equal(await block.locator('.tool-name').textContent(), 'get_weather');
  assert.equal(await block.locator('.tool-output').textContent(), output);
  assert.equal(await replyText(page.locator('#messages li.assistant').last()), run.output);
  assert.equal(await page.locator('#messages textarea').count(), 0, 'an answered call asks again');
});

test('tool_call_reload_while_waiting_then_cancel', async (t) => {
  const page = await newPage(t);
  await openWithKey(page);
  const { runId } = await send(page, 'tool:get_weather slow:2x50');
  await pendingCalls(runItem(page, runId), runId);
  // A reload finds the thread busy with the waiting run and asks again.
  await page.reload();
  const li2 = runItem(page, runId);
  await li2.waitFor({ state: 'attached', timeout: 30000 });
  await pendingCalls(li2, runId);
  assert.equal(await page.locator('#messages li.assistant').count(), 1, 'the waiting reply shows once');
  await page.locator('#cancel').click();
  await until(async () => (await page.locator('#status').textContent()) === 'cancelled', 30000, 'the cancel');
  assert.equal((await runState(runId)).status, 'cancelled');
  assert.equal(await li2.locator('textarea').count(), 0);
  assert.equal(await page.locator('#send').isDisabled(), false);
});

// The owner dies while the reply that ends in a tool call streams (the page's stream on
// the dying pod: a reconnect, then `reset` from a survivor). The page shows the new
// attempt's call exactly once and the loop completes with the output once.
test('tool_call_owner_killed_mid_call_shows_call_once', async (t) => {
  const page = await newPage(t);
  await openWithKey(page);
  const routed = await routeFirstStream(page, 'owner');
  const { runId } = await send(page, 'tool:get_weather slow:20x400');
  const li = runItem(page, runId);
  await waitText(li, 'chunk-3 ');
  const before = await replyText(li);
  assert.ok(!before.includes('chunk-20 '), 'the reply finished before the kill: not mid-stream');
  const stamp1 = oneAttemptStamp(before.slice(0, before.lastIndexOf('chunk-3 ') + 8), 3);
  assert.ok(routed.owner, 'the page did not open the event stream');
  await stack('kill', routed.owner);
  try {
    const { run, calls } = await pendingCalls(li, runId);
    assert.equal(run.attempt, 2, 'one takeover');
    assert.equal(calls.length, 1);
    assert.equal(await li.locator('.tool-call').getAttribute('data-attempt'), '2');
    const text = await replyText(li);
    assert.notEqual(oneAttemptStamp(text, 20), stamp1, 'the text is not the new attempt\'s');
    const seen = await page.evaluate(() => window.__toolCalls);
    t.log(`tool-call blocks ever shown: ${seen.join(', ')}`);
    assert.ok(seen.every((k) => k.endsWith('@2') ? k === `${calls[0].id}@2` : true), `blocks: ${seen}`);
    assert.ok(await page.evaluate(() => window.__maxToolBlocks) <= 1, 'two call blocks at once');
    assert.equal(await li.getAttribute('data-skipped'), '0', 'the server sent an event twice');
    assert.equal(await page.locator('#status').textContent(), 'waiting for tool outputs · recovered on another server (attempt 2)');
    assert.ok(routed.streamUrls.length >= 2, `the page did not reconnect: ${routed.streamUrls}`);
    await answerCalls(page, li, runId, calls, ['sunny']);
    assert.equal(await page.locator('#messages .tool-call').count(), 1, 'the call shows once');
  } finally {
    await stack('start', routed.owner);
  }
});

// ---------- runner ----------

async function main() {
  const filter = process.argv[2];
  const selected = tests.filter((x) => !filter || x.name.includes(filter));
  profileDir = mkdtempSync(path.join(tmpdir(), 'tether-e2e-chromium-'));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: LAUNCH_ARGS,
    env: { ...process.env, HOME: profileDir, XDG_CONFIG_HOME: profileDir, XDG_CACHE_HOME: profileDir },
    timeout: 60000,
  });
  console.log(`chromium ${browser.version()}; ${BASE}; screenshots in ${path.relative(ROOT, ARTIFACTS)}/`);
  const failed = [];
  for (const x of selected) {
    const t = { consoleErrors: [], log: (m) => console.log(`  ${x.name}: ${m}`) };
    const t0 = Date.now();
    let timer;
    try {
      await Promise.race([
        x.fn(t),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`test exceeded its ${TEST_TIMEOUT_MS / 1000}s bound`)), TEST_TIMEOUT_MS);
        }),
      ]);
      assert.deepEqual(t.consoleErrors, [], 'console errors on the page');
      if (t.page) await t.page.screenshot({ path: path.join(ARTIFACTS, `${x.name}.png`), fullPage: true });
      console.log(`PASS ${x.name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed.push(x.name);
      console.log(`FAIL ${x.name} (${((Date.now() - t0) / 1000).toFixed(1)}s)\n${e.stack || e}`);
      if (t.consoleErrors.length) console.log(`  console errors:\n    ${t.consoleErrors.join('\n    ')}`);
      if (t.page) {
        await t.page
          .screenshot({ path: path.join(ARTIFACTS, `${x.name}-FAILED.png`), fullPage: true, timeout: 10000 })
          .catch(() => {});
        const status = await t.page.locator('#status').textContent({ timeout: 2000 }).catch(() => '?');
        console.log(`  status line: ${JSON.stringify(status)}`);
      }
    } finally {
      clearTimeout(timer);
      if (t.context) await t.context.close().catch(() => {});
    }
  }
  await browser.close();
  rmSync(profileDir, { recursive: true, force: true });
  console.log(`${selected.length - failed.length}/${selected.length} passed${failed.length ? `; failed: ${failed.join(', ')}` : ''}`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
