// tether web chat: threads, messages and a reply that streams in token by token
// and survives the death of the server generating it (API.md, "Events"); a
// reply that calls tools shows each call and asks for its output (API.md, "v1
// additions: tools"). Untrusted text only ever goes into textContent.
import { followEvents, FatalStreamError, backoffMs } from './sse.js';

const KEY_STORAGE = 'tether.apiKey';
const $ = (id) => document.getElementById(id);

const ui = {
  keyButton: $('key-button'),
  keyPanel: $('key-panel'),
  keyForm: $('key-form'),
  keyInput: $('key-input'),
  keyForget: $('key-forget'),
  keyHint: $('key-hint'),
  threads: $('threads'),
  threadsEmpty: $('threads-empty'),
  moreThreads: $('more-threads'),
  newThread: $('new-thread'),
  title: $('thread-title'),
  messages: $('messages'),
  composer: $('composer'),
  input: $('input'),
  send: $('send'),
  cancel: $('cancel'),
  status: $('status'),
};

const state = {
  key: '',
  threadId: null, // the open thread (null: a new one starts with the first message)
  threadsNext: null,
  run: null, // {id, ctl, li, attempt, recovered, state}
  sending: false,
  openSeq: 0, // guards against out-of-order thread loads
};

// ---------- small helpers ----------

class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (error && error.code) || `http_${status}`;
    this.detail = error || {};
  }
}

function authHeaders() {
  return { Authorization: `Bearer ${state.key}` };
}

async function api(method, path, body, headers = {}) {
  const h = { Accept: 'application/json', ...authHeaders(), ...headers };
  const init = { method, headers: h, cache: 'no-store' };
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let json = null;
  try {
    json = await res.json();
  } catch (_) {
    /* an empty or non-JSON body */
  }
  if (!res.ok) {
    const err = new ApiError(res.status, json && json.error);
    if (res.status === 401) askForKey('The server did not accept this API key. Enter a valid one.');
    throw err;
  }
  return json;
}

function uuid() {
  if (globalThis.crypto && crypto.randomUUID && globalThis.isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const wait = (ms) => new Promise((r) => setTimeout(r, ms));

function setStatus(text, kind = '') {
  ui.status.textContent = text;
  ui.status.className = kind;
}

function showError(prefix, e) {
  const msg = e instanceof ApiError || e instanceof FatalStreamError ? e.message : String((e && e.message) || e);
  setStatus(`${prefix}: ${msg}`, 'error');
}

function fmtTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

// ---------- URL hash: #key=… (the dev link) and #thread=<id> ----------

function hashParams() {
  return new URLSearchParams(location.hash.replace(/^#/, ''));
}

function setHashThread(id) {
  const p = hashParams();
  p.delete('key');
  if (id) p.set('thread', id);
  else p.delete('thread');
  const h = p.toString();
  history.replaceState(null, '', location.pathname + location.search + (h ? `#${h}` : ''));
}

function takeKeyFromHash() {
  const p = hashParams();
  const k = p.get('key');
  if (k === null) return;
  // A link must not silently swap the key this browser uses (someone else's link
  // would send your messages to their account): ask before replacing one.
  const stored = localStorage.getItem(KEY_STORAGE);
  if (k && (!stored || stored === k ||
      window.confirm('This link carries a different API key than the one this browser uses. Replace the stored key?'))) {
    localStorage.setItem(KEY_STORAGE, k);
  }
  p.delete('key');
  const h = p.toString();
  // The key must not stay in the address bar, the history or a bookmark.
  history.replaceState(null, '', location.pathname + location.search + (h ? `#${h}` : ''));
}

// ---------- API key ----------

function askForKey(message) {
  ui.keyPanel.hidden = false;
  ui.keyButton.setAttribute('aria-expanded', 'true');
  if (message) {
    ui.keyHint.textContent = message;
    ui.keyHint.classList.add('error');
  }
  ui.keyInput.focus();
}

function hideKeyPanel() {
  ui.keyPanel.hidden = true;
  ui.keyButton.setAttribute('aria-expanded', 'false');
}

ui.keyButton.addEventListener('click', () => {
  if (ui.keyPanel.hidden) {
    ui.keyInput.value = '';
    askForKey();
  } else {
    hideKeyPanel();
  }
});

ui.keyForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const k = ui.keyInput.value.trim();
  if (!k) return;
  state.key = k;
  localStorage.setItem(KEY_STORAGE, k);
  ui.keyInput.value = '';
  ui.keyHint.classList.remove('error');
  hideKeyPanel();
  start();
});

ui.keyForget.addEventListener('click', () => {
  localStorage.removeItem(KEY_STORAGE);
  state.key = '';
  stopFollowing();
  ui.threads.replaceChildren();
  ui.messages.replaceChildren();
  askForKey('Key forgotten. Enter one to continue.');
});

// ---------- threads ----------

function threadItem(t) {
  const li = document.createElement('li');
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'thread';
  b.dataset.threadId = t.id;
  const title = document.createElement('span');
  title.className = 'title';
  title.textContent = t.title || 'Untitled thread';
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = (t.status === 'running' ? 'replying… · ' : '') + fmtTime(t.created_at);
  b.append(title, meta);
  if (t.id === state.threadId) b.setAttribute('aria-current', 'true');
  b.addEventListener('click', () => openThread(t.id));
  li.append(b);
  return li;
}

async function loadThreads(more = false) {
  try {
    const q = more && state.threadsNext ? `?limit=50&before=${encodeURIComponent(state.threadsNext)}` : '?limit=50';
    const r = await api('GET', `/v1/threads${q}`);
    const items = (r && r.items) || [];
    if (!more) ui.threads.replaceChildren();
    ui.threads.append(...items.map(threadItem));
    state.threadsNext = (r && r.next) || null;
    ui.moreThreads.hidden = !state.threadsNext;
    ui.threadsEmpty.hidden = ui.threads.children.length > 0;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) showError('Could not list threads', e);
  }
}

function markCurrentThread() {
  for (const b of ui.threads.querySelectorAll('button.thread')) {
    if (b.dataset.threadId === state.threadId) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
  }
}

ui.moreThreads.addEventListener('click', () => loadThreads(true));

ui.newThread.addEventListener('click', () => {
  stopFollowing();
  state.threadId = null;
  state.openSeq++;
  setHashThread(null);
  ui.title.textContent = 'New thread';
  ui.messages.replaceChildren();
  markCurrentThread();
  setStatus('A new thread starts with your first message.');
  updateButtons();
  ui.input.focus();
});

// ---------- messages ----------

const ROLE_NAMES = { user: 'You', assistant: 'Assistant', tool: 'Tool output' };

function messageItem(role, text, runId) {
  const li = document.createElement('li');
  li.className = `msg ${role}`;
  if (runId) li.dataset.runId = runId;
  const who = document.createElement('div');
  who.className = 'role';
  who.textContent = ROLE_NAMES[role] || role;
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text || '';
  const calls = document.createElement('div');
  calls.className = 'calls';
  const note = document.createElement('div');
  note.className = 'note';
  li.append(who, body, calls, note);
  ui.messages.append(li);
  return li;
}

// ---------- tool calls ----------

// A call as the events, required_action and the thread's messages give it:
// {id, name, arguments: {...}}; an OpenAI-shaped {function: {name, arguments: "<json>"}} too.
function normalizeCall(c) {
  if (!c || typeof c !== 'object') return null;
  const fn = c.function && typeof c.function === 'object' ? c.function : {};
  let args = c.arguments !== undefined ? c.arguments : fn.arguments;
  if (typeof args === 'string') {
    try {
      args = JSON.parse(args);
    } catch (_) {
      /* shown as the text it is */
    }
  }
  const id = typeof c.id === 'string' ? c.id : '';
  const name = typeof c.name === 'string' ? c.name : typeof fn.name === 'string' ? fn.name : '';
  return id || name ? { id, name, arguments: args === undefined ? {} : args } : null;
}

function prettyArgs(args) {
  if (typeof args === 'string') return args;
  try {
    return JSON.stringify(args, null, 2);
  } catch (_) {
    return String(args);
  }
}

// A tool call as its own block: the tool's name and its arguments, pretty.
function callBlock(call, attempt) {
  const box = document.createElement('div');
  box.className = 'tool-call';
  box.dataset.callId = call.id;
  if (attempt) box.dataset.attempt = String(attempt);
  const head = document.createElement('div');
  head.className = 'tool-head';
  const name = document.createElement('code');
  name.className = 'tool-name';
  name.textContent = call.name;
  head.append('Tool call ', name);
  const id = document.createElement('span');
  id.className = 'tool-id';
  id.textContent = call.id;
  head.append(' ', id);
  const pre = document.createElement('pre');
  pre.className = 'tool-args';
  pre.textContent = prettyArgs(call.arguments);
  box.append(head, pre);
  return box;
}

function callsOf(li) {
  return li.querySelector('.calls');
}

function addCall(li, call, attempt) {
  const box = callsOf(li);
  // One block per call id: a replay or a resume never shows a call twice.
  for (const b of box.querySelectorAll('.tool-call')) if (b.dataset.callId === call.id) b.remove();
  box.append(callBlock(call, attempt));
}

function clearCalls(li) {
  callsOf(li).replaceChildren();
}

// A call's output, under its block: a label and the text.
function outputView(text) {
  const label = document.createElement('div');
  label.className = 'tool-output-label';
  label.textContent = 'Output';
  const out = document.createElement('pre');
  out.className = 'tool-output';
  out.textContent = text;
  return [label, out];
}

let toolFormSeq = 0;

// The run ended requires_action: a text area per pending call and one submit that
// posts all the outputs together, then follows the continuation run.
async function askForOutputs(run) {
  let pending = null;
  try {
    const r = await api('GET', `/v1/runs/${encodeURIComponent(run.id)}`);
    const calls = r && r.required_action && Array.isArray(r.required_action.tool_calls) ? r.required_action.tool_calls : null;
    if (calls) pending = calls.map(normalizeCall).filter((c) => c && c.id);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
  }
  if (state.run !== run || !run.waiting) return;
  const box = callsOf(run.li);
  if (pending) {
    // What the server will check the outputs against wins over what the events showed.
    const want = new Set(pending.map((c) => c.id));
    for (const b of box.querySelectorAll('.tool-call')) if (!want.has(b.dataset.callId)) b.remove();
    const have = new Set([...box.querySelectorAll('.tool-call')].map((b) => b.dataset.callId));
    for (const c of pending) if (!have.has(c.id)) box.append(callBlock(c, run.attempt));
  }
  const blocks = [...box.querySelectorAll('.tool-call')];
  if (!blocks.length) {
    run.phase = 'waiting for tool outputs, but no call was named';
    renderRun(run, 'error');
    return;
  }
  const form = document.createElement('form');
  form.className = 'tool-form';
  const seq = ++toolFormSeq;
  form.id = `tool-form-${seq}`;
  const areas = blocks.map((b, i) => {
    const label = document.createElement('label');
    const id = `tool-output-${seq}-${i}`;
    label.htmlFor = id;
    label.className = 'tool-output-label';
    label.textContent = `Output of ${b.querySelector('.tool-name').textContent}`;
    const ta = document.createElement('textarea');
    ta.id = id;
    ta.className = 'tool-output-input';
    ta.rows = 2;
    ta.dataset.callId = b.dataset.callId;
    ta.setAttribute('form', form.id); // a field of the form below, shown in its call's block
    b.append(label, ta);
    return ta;
  });
  const actions = document.createElement('div');
  actions.className = 'actions';
  const submit = document.createElement('button');
  submit.type = 'submit';
  submit.className = 'tool-submit';
  submit.textContent = areas.length > 1 ? 'Send tool outputs' : 'Send tool output';
  actions.append(submit);
  form.append(actions);
  box.append(form);
  run.toolForm = form;
  // One Idempotency-Key per body: sending the same outputs again (after a network
  // error) starts no second continuation; changed outputs are a new request.
  let sent = { body: '', key: '' };
  const submitOutputs = async () => {
    const outputs = areas.map((ta) => ({ tool_call_id: ta.dataset.callId, output: ta.value }));
    const body = JSON.stringify({ outputs });
    if (sent.body !== body) sent = { body, key: uuid() };
    for (const ta of areas) ta.readOnly = true;
    submit.disabled = true;
    setStatus('sending the tool outputs…');
    try {
      const r = await postToolOutputs(run.id, outputs, sent.key);
      if (state.run !== run) return;
      form.remove();
      for (const ta of areas) {
        ta.previousElementSibling.remove(); // its label
        ta.replaceWith(...outputView(ta.value));
      }
      run.waiting = false;
      follow(r.run_id, messageItem('assistant', '', r.run_id));
      keepScrolled(true);
    } catch (e) {
      if (state.run !== run) return;
      for (const ta of areas) ta.readOnly = false;
      submit.disabled = false;
      if (e instanceof ApiError && e.status === 409) {
        run.waiting = false;
        updateButtons();
        setStatus('This run no longer waits for tool outputs (answered or cancelled elsewhere): reloading the thread.', 'warn');
        await openThread(state.threadId, { focus: false });
      } else if (!(e instanceof ApiError && e.status === 401)) {
        showError('Could not send the tool outputs', e);
      }
    }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submitOutputs();
  });
  for (const ta of areas) {
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (!submit.disabled) submitOutputs();
      }
    });
  }
  updateButtons();
  areas[0].focus();
}

// POST with retries under one Idempotency-Key, as run creation.
async function postToolOutputs(runId, outputs, key) {
  for (let tries = 0; ; tries++) {
    try {
      return await api('POST', `/v1/runs/${encodeURIComponent(runId)}/tool_outputs`, { outputs }, { 'Idempotency-Key': key });
    } catch (e) {
      const retryable = !(e instanceof ApiError) || e.status >= 500 || e.status === 429;
      if (!retryable || tries >= 5) throw e;
      setStatus(`sending the tool outputs again (try ${tries + 2})…`, 'warn');
      await wait(backoffMs(tries + 1));
    }
  }
}

function nearBottom() {
  const el = document.scrollingElement || document.documentElement;
  return el.scrollHeight - el.scrollTop - el.clientHeight < 120;
}

function keepScrolled(wasNear) {
  if (wasNear) ui.composer.scrollIntoView({ block: 'end' });
}

async function openThread(id, { focus = true } = {}) {
  stopFollowing();
  const seq = ++state.openSeq;
  state.threadId = id;
  setHashThread(id);
  markCurrentThread();
  ui.messages.replaceChildren();
  ui.title.textContent = 'Loading…';
  setStatus('');
  updateButtons();
  let t;
  try {
    t = await api('GET', `/v1/threads/${encodeURIComponent(id)}`);
  } catch (e) {
    if (seq !== state.openSeq) return;
    ui.title.textContent = 'Thread';
    if (e instanceof ApiError && e.status === 404) {
      state.threadId = null;
      setHashThread(null);
      ui.title.textContent = 'New thread';
      setStatus('That thread does not exist (or belongs to another key).', 'error');
    } else if (!(e instanceof ApiError && e.status === 401)) {
      showError('Could not open the thread', e);
    }
    return;
  }
  if (seq !== state.openSeq) return;
  ui.title.textContent = t.title || 'Untitled thread';
  for (const m of t.messages || []) {
    // The active run's reply comes from its stream below (a run waiting for tool
    // outputs has its assistant message stored already).
    if (m.role === 'assistant' && t.active_run_id && m.run_id === t.active_run_id) continue;
    if (m.role === 'tool') {
      // A tool's output goes under its call's block (a separate item if none shows it).
      const block = [...ui.messages.querySelectorAll('.tool-call')].find((b) => b.dataset.callId === m.tool_call_id);
      if (block && !block.querySelector('.tool-output')) block.append(...outputView(m.content || ''));
      else messageItem('tool', m.content, m.run_id).dataset.toolCallId = m.tool_call_id || '';
      continue;
    }
    const li = messageItem(m.role, m.content, m.run_id);
    for (const c of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
      const call = normalizeCall(c);
      if (call) callsOf(li).append(callBlock(call));
    }
  }
  if (t.active_run_id) {
    // A reply is being generated (or waits for tool outputs): attach to its stream
    // from the start of its current attempt (late watchers get no text of an
    // abandoned attempt).
    follow(t.active_run_id, messageItem('assistant', '', t.active_run_id));
  }
  keepScrolled(true);
  if (focus) ui.input.focus();
}

// ---------- sending and following a run ----------

// A run keeps the thread busy while it streams and while it waits for tool outputs.
function runBusy(run) {
  return !!run && (run.state !== 'ended' || run.waiting);
}

function updateButtons() {
  const busy = state.sending || runBusy(state.run);
  ui.send.disabled = !!busy;
  ui.cancel.disabled = !(runBusy(state.run) && !state.run.cancelling);
}

function stopFollowing() {
  if (state.run) {
    state.run.ctl.abort();
    state.run = null;
  }
  updateButtons();
}

function runStatus(run) {
  const parts = [run.phase];
  if (run.recovered) parts.push(`recovered on another server (attempt ${run.attempt})`);
  return parts.join(' · ');
}

function renderRun(run, kind = '') {
  run.li.dataset.state = run.phase === 'streaming' ? 'streaming' : run.final || run.phase;
  run.li.dataset.attempt = String(run.attempt);
  run.li.querySelector('.note').textContent = run.recovered
    ? `Recovered on another server (attempt ${run.attempt}).`
    : '';
  if (state.run === run) setStatus(runStatus(run), kind);
}

function parseId(id) {
  const m = /^(\d+):(\d+)$/.exec(id || '');
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function follow(runId, li) {
  stopFollowing();
  const run = {
    id: runId,
    li,
    ctl: new AbortController(),
    attempt: 0,
    last: null, // [attempt, seq] of the last applied event
    recovered: false,
    phase: 'connecting…',
    final: null,
    state: 'live',
    cancelling: false,
    waiting: false, // ended requires_action: the thread waits for tool outputs
  };
  li.dataset.runId = runId;
  li.dataset.skipped = '0';
  li.classList.add('live');
  state.run = run;
  updateButtons();
  renderRun(run);
  const textEl = li.querySelector('.text');

  const onEvent = (ev) => {
    if (state.run !== run) return;
    // Apply each event once: ids only grow within a stream and across resumes.
    const id = parseId(ev.id);
    if (id && run.last && (id[0] < run.last[0] || (id[0] === run.last[0] && id[1] <= run.last[1]))) {
      li.dataset.skipped = String(Number(li.dataset.skipped) + 1);
      return;
    }
    if (id) run.last = id;
    let d = {};
    try {
      d = ev.data ? JSON.parse(ev.data) : {};
    } catch (_) {
      return;
    }
    const near = nearBottom();
    switch (ev.event) {
      case 'start':
        // seq 0 of an attempt: its text starts here.
        run.attempt = d.attempt || (id && id[0]) || 1;
        textEl.textContent = '';
        clearCalls(li);
        if (run.attempt > 1) run.recovered = true;
        run.phase = 'streaming';
        break;
      case 'reset':
        // The owner died; a survivor restarts the reply: replace, never append.
        run.attempt = d.attempt || (id && id[0]) || run.attempt + 1;
        textEl.textContent = '';
        clearCalls(li); // the older attempt's tool calls are void too
        run.recovered = true;
        run.phase = 'streaming';
        break;
      case 'delta':
        if (typeof d.text === 'string') textEl.append(d.text);
        if (!run.attempt && id) run.attempt = id[0];
        run.phase = 'streaming';
        break;
      case 'tool_call': {
        const call = normalizeCall(d);
        if (!call) return;
        if (!run.attempt && id) run.attempt = id[0];
        addCall(li, call, run.attempt);
        run.phase = 'streaming';
        break;
      }
      case 'done':
        run.final = d.status || 'completed';
        if (run.final === 'requires_action') {
          run.waiting = true;
          run.phase = 'waiting for tool outputs';
        } else if (run.final === 'failed') {
          const why = (d.error && (d.error.message || d.error.code)) || 'the reply failed';
          run.phase = `failed: ${why}`;
        } else {
          run.phase = run.final;
        }
        break;
      default:
        return;
    }
    renderRun(run, run.final === 'failed' ? 'error' : '');
    keepScrolled(near);
  };

  const onState = (s) => {
    if (state.run !== run || run.final) return;
    if (s.state === 'reconnecting') {
      run.phase = `reconnecting in ${(s.delayMs / 1000).toFixed(s.delayMs < 1000 ? 2 : 1)} s (try ${s.tries}; ${s.reason})`;
      renderRun(run, 'warn');
    } else if (s.state === 'connecting' && s.tries > 0) {
      run.phase = `reconnecting (try ${s.tries})…`;
      renderRun(run, 'warn');
    } else if (s.state === 'streaming') {
      run.phase = 'streaming';
      renderRun(run);
    }
  };

  followEvents(`/v1/runs/${encodeURIComponent(runId)}/events`, {
    headers: authHeaders(),
    signal: run.ctl.signal,
    onEvent,
    onState,
  })
    .then((r) => {
      if (r.aborted || state.run !== run) return;
      if (!run.final) {
        run.phase = 'ended';
        renderRun(run);
      }
      if (run.waiting) askForOutputs(run);
    })
    .catch((e) => {
      if (state.run !== run) return;
      run.phase = `stream failed: ${e.message}`;
      renderRun(run, 'error');
      if (e instanceof FatalStreamError && e.status === 401) askForKey('The server did not accept this API key.');
    })
    .finally(() => {
      li.classList.remove('live');
      if (state.run !== run) return;
      run.state = 'ended';
      updateButtons();
      loadThreads();
    });
}

ui.cancel.addEventListener('click', async () => {
  const run = state.run;
  if (!runBusy(run)) return;
  run.cancelling = true;
  updateButtons();
  try {
    // A streaming run's stream then ends with done{cancelled}; a run waiting for
    // tool outputs has no stream left: its answer is the news.
    const r = await api('POST', `/v1/runs/${encodeURIComponent(run.id)}/cancel`);
    if (run.waiting && state.run === run && r && r.status !== 'requires_action') {
      run.waiting = false;
      run.cancelling = false;
      run.final = r.status;
      run.phase = r.status;
      if (run.toolForm) run.toolForm.remove();
      for (const ta of run.li.querySelectorAll('.tool-output-input, .tool-output-label')) ta.remove();
      renderRun(run);
      updateButtons();
      loadThreads();
    }
  } catch (e) {
    run.cancelling = false;
    updateButtons();
    showError('Could not cancel', e);
  }
});

// POST with retries: the Idempotency-Key makes a retried request start one run only.
async function postRun(threadId, input) {
  const key = uuid();
  for (let tries = 0; ; tries++) {
    try {
      return await api('POST', `/v1/threads/${encodeURIComponent(threadId)}/runs`, { input }, { 'Idempotency-Key': key });
    } catch (e) {
      const retryable = !(e instanceof ApiError) || e.status >= 500 || e.status === 429;
      if (!retryable || tries >= 5) throw e;
      setStatus(`sending again (try ${tries + 2})…`, 'warn');
      await wait(backoffMs(tries + 1));
    }
  }
}

async function sendMessage() {
  const input = ui.input.value;
  if (!input.trim() || state.sending || runBusy(state.run)) return;
  if (!state.key) {
    askForKey('Enter an API key first.');
    return;
  }
  state.sending = true;
  updateButtons();
  setStatus('sending…');
  try {
    if (!state.threadId) {
      const title = input.trim().split('\n')[0].slice(0, 80);
      const t = await api('POST', '/v1/threads', { title });
      state.threadId = t.id;
      state.openSeq++;
      setHashThread(t.id);
      ui.title.textContent = t.title || 'Untitled thread';
      ui.threads.prepend(threadItem(t));
      ui.threadsEmpty.hidden = true;
      markCurrentThread();
    }
    const threadId = state.threadId;
    const r = await postRun(threadId, input);
    if (state.threadId !== threadId) return;
    ui.input.value = '';
    messageItem('user', input, r.run_id);
    state.sending = false;
    follow(r.run_id, messageItem('assistant', '', r.run_id));
    keepScrolled(true);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'thread_busy' && e.detail.active_run_id) {
      setStatus('A reply is still being written in this thread: showing it.', 'warn');
      state.sending = false;
      await openThread(state.threadId);
    } else if (!(e instanceof ApiError && e.status === 401)) {
      showError('Could not send', e);
    }
  } finally {
    state.sending = false;
    updateButtons();
  }
}

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  sendMessage();
});

ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendMessage();
  }
});

window.addEventListener('hashchange', () => {
  takeKeyFromHash();
  const k = localStorage.getItem(KEY_STORAGE) || '';
  if (k && k !== state.key) {
    state.key = k;
    hideKeyPanel();
    start();
    return;
  }
  const id = hashParams().get('thread');
  if (id && id !== state.threadId && state.key) openThread(id);
});

// ---------- start ----------

function start() {
  loadThreads();
  const id = hashParams().get('thread');
  if (id) openThread(id);
  else ui.input.focus();
}

takeKeyFromHash();
state.key = localStorage.getItem(KEY_STORAGE) || '';
updateButtons();
if (state.key) start();
else askForKey();
