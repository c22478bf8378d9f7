#!/usr/bin/env python3
"""A fake OpenAI-compatible upstream for tether's provider tests (stdlib only).

    python3 tests/fakes/fake_openai.py PORT [--log FILE]

Listens on 127.0.0.1:PORT (0: any free port) and prints "listening 127.0.0.1:<port>"
once ready. Endpoints:

  POST /v1/chat/completions   the OpenAI-compatible endpoint (also /chat/completions):
                              answers `"stream": true` requests with an SSE stream
  POST /_scripts              {"name": N, "responses": [SPEC, ...]}: register script N
  GET  /_requests[?script=N]  every request received so far (JSON list, oldest first)
  POST /_reset                forget all scripts and requests
  GET  /_health               {"ok": true}

Which behaviour a request gets: the *last user message* names a script with a word
`fake:<name>`. The script's responses are consumed in order, one per request; the
last one repeats. No script named (or an unknown one): SPEC {} (3 chunks at once).

SPEC fields (all optional):
  status        HTTP status (200). Non-200 answers carry `body` (a string or a JSON
                value; default {"error":{"message":"fake upstream error <status>",...}})
                and, if given, the header Retry-After: <retry_after>.
  n             chunks to stream (3); `texts` (a list of strings) overrides them.
                Default text of chunk i (1-based) of request R: "r<R>c<i> ", chunk 1
                being 'r<R>c1 "«q»"\\n ' (quotes, non-ASCII and a newline to escape).
  first_delay_ms  wait before the first chunk (0)
  interval_ms   wait between chunks (0)
  fail_after    K: after K chunks send `data: {"error": {...}}` (status `fail_status`,
                default 500, in error.code) and end the stream
  stall_after   K: after K chunks send nothing more and hold the connection open
                until the client leaves (at most 300 s)
  drop_after    K: after K chunks close the socket abruptly (no [DONE], no last chunk)
  crlf          CRLF line ends (false)
  split         write every event in 3 pieces, flushed apart (false)
  keepalive     a ": keep-alive" comment before every chunk (false)
  no_done       omit `data: [DONE]` (the finish_reason chunk is still sent)
  usage         send the usage chunk when the request asked for it
                (stream_options.include_usage) (true). prompt_tokens = the number of
                whitespace-separated words in all messages, completion_tokens = the
                chunks sent (text and tool-call fragments), total_tokens = their sum.
  tool_calls    [{"id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                ...]: after the text chunks (none by default when tool_calls is given;
                `n` or `texts` asks for some), stream these calls as OpenAI does in
                choices[0].delta.tool_calls: each call's first fragment carries
                {"index", "id", "type": "function", "function": {"name", "arguments": ""}},
                then its arguments follow in `split_args` fragments {"index",
                "function": {"arguments": piece}}; the finish_reason is "tool_calls".
                `arguments` may be a JSON value (sent as its json.dumps text) or a
                string sent as is (invalid JSON included); `id` may be null (not sent);
                `index` overrides the call's position.
  split_args    K: each call's arguments in K fragments of about equal length, cut
                anywhere in the text, inside an escape sequence too (1; at most one
                fragment per character)
  interleave    with several calls, send fragment j of every call before fragment
                j+1 of any (call 0's first, call 1's first, call 0's second, ...), as
                some servers do (true); false: one call after the other
  Text chunks and tool-call fragments count alike for fail_after, stall_after,
  drop_after and interval_ms: a tool-call fragment is a chunk.

Every request is recorded (GET /_requests, and one JSON line per finished request in
--log FILE): id, path, script, model, body (the parsed JSON, so a test sees the
tools, tool_choice and messages sent upstream), authorization (the header as
received), status, sent (the texts of the chunks written), tool_fragments (the
tool_calls deltas written, in order), outcome
(completed, error_status, failed_in_stream, dropped, stalled, client_disconnected)
and disconnected (true when the client went away before the response was complete:
a cancel or a dead worker).
"""
import json
import os
import re
import select
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SCRIPTS = {}      # name -> {"responses": [...], "next": int}
REQUESTS = []     # recorded requests, oldest first
LOG = None


class ClientGone(Exception):
    pass


def pick_spec(name):
    with LOCK:
        s = SCRIPTS.get(name)
        if not s or not s["responses"]:
            return {}
        i = min(s["next"], len(s["responses"]) - 1)
        s["next"] += 1
        return dict(s["responses"][i])


def script_of(body):
    msgs = body.get("messages") or []
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role") == "user":
            hit = re.search(r"(?:^|\s)fake:([A-Za-z0-9_.-]+)", str(m.get("content", "")))
            return hit.group(1) if hit else None
    return None


def tool_fragments(spec):
    """The tool_calls deltas of SPEC's tool_calls, in the order they are sent."""
    k = max(1, int(spec.get("split_args", 1)))
    per_call = []
    for pos, c in enumerate(spec.get("tool_calls") or []):
        index = int(c.get("index", pos))
        args = c.get("arguments", "")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        head = {"index": index}
        if c.get("id") is not None:
            head["id"] = c["id"]
        head.update({"type": "function", "function": {"name": c.get("name", ""), "arguments": ""}})
        parts = min(k, len(args))
        cuts = [round(i * len(args) / parts) for i in range(parts + 1)] if parts else [0]
        frags = [head] + [{"index": index, "function": {"arguments": args[a:b]}}
                          for a, b in zip(cuts, cuts[1:])]
        per_call.append(frags)
    if not spec.get("interleave", True):
        return [f for frags in per_call for f in frags]
    out = []
    for j in range(max((len(f) for f in per_call), default=0)):
        out += [frags[j] for frags in per_call if j < len(frags)]
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- plumbing ----
    def _json(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _client_left(self, timeout):
        """Wait up to timeout seconds; True as soon as the client closed its side."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            r, _, _ = select.select([self.connection], [], [], max(0.0, min(left, 0.05)))
            if r:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except (ConnectionError, OSError):
                    return True
            if left <= 0:
                return False

    def _chunk(self, data):
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (ConnectionError, OSError):
            raise ClientGone()

    def _sleep(self, ms):
        if ms > 0 and self._client_left(ms / 1000.0):
            raise ClientGone()

    # ---- routes ----
    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_health":
            return self._json(200, {"ok": True})
        if u.path == "/_requests":
            q = urllib.parse.parse_qs(u.query)
            with LOCK:
                items = [dict(r) for r in REQUESTS]
            if "script" in q:
                items = [r for r in items if r["script"] == q["script"][0]]
            return self._json(200, items)
        return self._json(404, {"error": {"message": "no such route", "type": "not_found"}})

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        raw = self._body()
        if u.path == "/_scripts":
            s = json.loads(raw)
            with LOCK:
                SCRIPTS[s["name"]] = {"responses": list(s.get("responses") or []), "next": 0}
            return self._json(200, {"ok": True})
        if u.path == "/_reset":
            with LOCK:
                SCRIPTS.clear()
                REQUESTS.clear()
            return self._json(200, {"ok": True})
        if u.path in ("/v1/chat/completions", "/chat/completions"):
            return self._completions(u.path, raw)
        return self._json(404, {"error": {"message": "no such route", "type": "not_found"}})

    def _completions(self, path, raw):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        script = script_of(body) if isinstance(body, dict) else None
        spec = pick_spec(script) if script else {}
        with LOCK:
            rec = {"id": len(REQUESTS) + 1, "path": path, "script": script,
                   "model": body.get("model") if isinstance(body, dict) else None,
                   "body": body, "authorization": self.headers.get("Authorization"),
                   "t_start": time.time(), "t_end": None, "status": None, "sent": [],
                   "tool_fragments": [], "outcome": None, "disconnected": False}
            REQUESTS.append(rec)
        try:
            self._answer(rec, body, spec)
        except ClientGone:
            rec["outcome"] = "client_disconnected"
            rec["disconnected"] = True
        finally:
            rec["t_end"] = time.time()
            if LOG:
                with LOCK:
                    LOG.write(json.dumps(rec) + "\n")
                    LOG.flush()
            if rec["outcome"] != "completed" and rec["outcome"] != "error_status":
                self.close_connection = True

    def _answer(self, rec, body, spec):
        status = int(spec.get("status", 200))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            status, spec = 400, {"body": {"error": {"message": "messages is required",
                                                    "type": "invalid_request_error"}}}
        rec["status"] = status
        if status != 200:
            b = spec.get("body", {"error": {"message": f"fake upstream error {status}",
                                            "type": "server_error" if status >= 500 else
                                            "invalid_request_error", "code": status}})
            data = b.encode() if isinstance(b, str) else json.dumps(b).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if "retry_after" in spec:
                self.send_header("Retry-After", str(spec["retry_after"]))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            rec["outcome"] = "error_status"
            return
        rid = rec["id"]
        calls = spec.get("tool_calls") or []
        texts = spec.get("texts")
        if texts is None:
            n = int(spec.get("n", 0 if calls else 3))
            texts = [f"r{rid}c{i} " for i in range(1, n + 1)]
            if texts:
                texts[0] = f'r{rid}c1 "\u00abq\u00bb"\n '
        eol = b"\r\n" if spec.get("crlf") else b"\n"
        model = body.get("model")
        base = {"id": f"chatcmpl-fake{rid}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}

        def event(obj):
            data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            ev = b"data: " + data + eol + eol
            if spec.get("keepalive"):
                self._chunk(b": keep-alive" + eol + eol)
            if spec.get("split") and len(ev) >= 3:
                a, b = len(ev) // 3, 2 * len(ev) // 3
                for piece in (ev[:a], ev[a:b], ev[b:]):
                    self._chunk(piece)
                    time.sleep(0.005)
            else:
                self._chunk(ev)

        def choice(delta, finish=None):
            return dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self.wfile.flush()
        except (ConnectionError, OSError):
            raise ClientGone()
        self._sleep(int(spec.get("first_delay_ms", 0)))
        event(choice({"role": "assistant", "content": ""}))
        interval = int(spec.get("interval_ms", 0))
        items = [("text", t) for t in texts] + [("tool", d) for d in tool_fragments(spec)]
        for k in range(len(items) + 1):  # k: chunks already sent
            if "fail_after" in spec and k == int(spec["fail_after"]):
                code = int(spec.get("fail_status", 500))
                event({"error": {"message": f"fake failure after {k} chunks",
                                 "type": "server_error", "code": code}})
                self._chunk(b"")  # ends the chunked body
                rec["outcome"] = "failed_in_stream"
                return
            if "stall_after" in spec and k == int(spec["stall_after"]):
                rec["outcome"] = "stalled"
                if self._client_left(300):
                    rec["disconnected"] = True
                return
            if "drop_after" in spec and k == int(spec["drop_after"]):
                rec["outcome"] = "dropped"
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if k == len(items):
                break
            if k > 0:
                self._sleep(interval)
            kind, item = items[k]
            if kind == "text":
                event(choice({"content": item}))
                rec["sent"].append(item)
            else:
                event(choice({"tool_calls": [item]}))
                rec["tool_fragments"].append(item)
        event(choice({}, "tool_calls" if calls else "stop"))
        opts = body.get("stream_options") or {}
        if spec.get("usage", True) and isinstance(opts, dict) and opts.get("include_usage"):
            words = sum(len(str(m.get("content") or "").split()) for m in body["messages"]
                        if isinstance(m, dict))
            n = len(rec["sent"]) + len(rec["tool_fragments"])
            event(dict(base, choices=[], usage={"prompt_tokens": words, "completion_tokens": n,
                                                "total_tokens": words + n}))
        if not spec.get("no_done"):
            event(b"[DONE]")
        self._chunk(b"")
        rec["outcome"] = "completed"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that resets its connection (tether closing a call early, or a
        # killed worker) is expected here, not an error of the fake.
        if isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            return
        super().handle_error(request, client_address)


def main():
    global LOG
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    port = int(sys.argv[1])
    if "--log" in sys.argv:
        LOG = open(sys.argv[sys.argv.index("--log") + 1], "a")
    srv = Server(("127.0.0.1", port), Handler)
    print(f"listening 127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
