// tether web chat: threads, messages and a reply that streams in token by token
// and survives the death of the server generating it (API.md, "Events").
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
  if (k) localStorage.setItem(KEY_STORAGE, k);
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

function messageItem(role, text, runId) {
  const li = document.createElement('li');
  li.className = `msg ${role}`;
  if (runId) li.dataset.runId = runId;
  const who = document.createElement('div');
  who.className = 'role';
  who.textContent = role === 'user' ? 'You' : 'Assistant';
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text || '';
  const note = document.createElement('div');
  note.className = 'note';
  li.append(who, body, note);
  ui.messages.append(li);
  return li;
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
  const answered = new Set();
  for (const m of t.messages || []) {
    messageItem(m.role, m.content, m.run_id);
    if (m.role === 'assistant' && m.run_id) answered.add(m.run_id);
  }
  if (t.active_run_id && !answered.has(t.active_run_id)) {
    // A reply is being generated: attach to its stream from the start of its
    // current attempt (late watchers get no text of an abandoned attempt).
    follow(t.active_run_id, messageItem('assistant', '', t.active_run_id));
  }
  keepScrolled(true);
  if (focus) ui.input.focus();
}

// ---------- sending and following a run ----------

function updateButtons() {
  const busy = state.sending || (state.run && state.run.state !== 'ended');
  ui.send.disabled = !!busy;
  ui.cancel.disabled = !(state.run && state.run.state !== 'ended' && !state.run.cancelling);
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
        if (run.attempt > 1) run.recovered = true;
        run.phase = 'streaming';
        break;
      case 'reset':
        // The owner died; a survivor restarts the reply: replace, never append.
        run.attempt = d.attempt || (id && id[0]) || run.attempt + 1;
        textEl.textContent = '';
        run.recovered = true;
        run.phase = 'streaming';
        break;
      case 'delta':
        if (typeof d.text === 'string') textEl.append(d.text);
        if (!run.attempt && id) run.attempt = id[0];
        run.phase = 'streaming';
        break;
      case 'done':
        run.final = d.status || 'completed';
        if (run.final === 'failed') {
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
  if (!run || run.state === 'ended') return;
  run.cancelling = true;
  updateButtons();
  try {
    // The stream then ends with done{cancelled}.
    await api('POST', `/v1/runs/${encodeURIComponent(run.id)}/cancel`);
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
  if (!input.trim() || state.sending || (state.run && state.run.state !== 'ended')) return;
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
