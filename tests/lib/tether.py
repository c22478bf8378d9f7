"""Test helpers for tether: the local stack, an HTTP client, SSE watchers, polling.

Standard library only (Debian's python3). Every wait has a deadline; nothing sleeps
and hopes: poll a condition, then assert exact values.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
            if last:
                return last
        except AssertionError:
            raise
        except Exception as e:  # keep polling through transient errors
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class Stack:
    """scripts/stack in its own directory."""

    def __init__(self, name, pods=2, workers=2, env=None, up_args=()):
        self.dir = os.environ.get("TETHER_TEST_STACK_DIR_BASE", os.path.join(ROOT, "var")) + "/" + name
        self.pods = pods
        self.workers = workers
        self.up_args = tuple(up_args)  # e.g. ("--nats", "3", "--pg-standby", "--netns")
        self.extra_env = env or {}
        self.env = {}

    def _run(self, *args, check=True, timeout=180):
        env = dict(os.environ)
        env.update(self.extra_env)
        env["TETHER_STACK_DIR"] = self.dir
        p = subprocess.run([os.path.join(ROOT, "scripts/stack"), *args], env=env, text=True,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"scripts/stack {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def up(self):
        p = self._run("up", "--pods", str(self.pods), "--workers", str(self.workers), *self.up_args,
                      timeout=300)
        self.env = dict(line.split("=", 1) for line in p.stdout.split("\n") if "=" in line)
        self.url = self.env["TETHER_URL"]
        self.admin = self.env["TETHER_ADMIN_TOKEN"]
        return self

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer")

    def sanitizer_reports(self):
        """Sanitizer reports in the pods' logs (a build with --enable-asan writes them there)."""
        found = []
        logs = os.path.join(self.dir, "logs")
        if os.path.isdir(logs):
            for name in sorted(os.listdir(logs)):
                if name.startswith("pod-"):
                    with open(os.path.join(logs, name), errors="replace") as f:
                        for line in f:
                            if any(m in line for m in self.SANITIZER_MARKS):
                                found.append(f"{name}: {line.rstrip()}")
        return found

    def down(self, purge=True):
        """Stop the stack; fails (after stopping it) when a pod logged a sanitizer report."""
        reports = self.sanitizer_reports()
        self._run("down", *(["--purge"] if purge and not reports else []), check=False)
        if reports:
            raise AssertionError("sanitizer reports in the pod logs (kept in %s):\n%s"
                                 % (self.dir, "\n".join(reports[:20])))

    def kill(self, pod, sig="KILL"):
        self._run("kill", pod, sig, timeout=120)

    def start(self, pod):
        self._run("start", pod, timeout=120)

    def pg(self, action):
        self._run("pg", action)

    def nats(self, action):
        self._run("nats", action)

    def stack_pgdata(self):
        with open(os.path.join(self.dir, "state.env")) as f:
            return dict(l.strip().split("=", 1) for l in f if "=" in l)["PGDATA"]

    def pods_state(self):
        out = self._run("pods").stdout.strip().split("\n")
        return {l.split()[0]: (l.split()[1], l.split()[2]) for l in out if l}

    def worker_pids(self, pod):
        master = self.pods_state()[pod][1]
        p = subprocess.run(["pgrep", "-P", master], text=True, capture_output=True)
        return sorted(int(x) for x in p.stdout.split())

    def log(self, name):
        try:
            with open(os.path.join(self.dir, "logs", name + ".log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def psql(self, sql):
        url = self.env["DATABASE_URL"]
        p = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                           text=True, capture_output=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"psql failed: {p.stderr}")
        return p.stdout.strip()

    def new_key(self, tenant="t" + str(os.getpid())):
        r = Client(self.url, self.admin).post(f"/v1/admin/tenants/{tenant}/keys")
        assert r.status == 201, r
        return r.json["key"]


class Ctx:
    """What a suite's tests share: its stack, an API client with a fresh tenant's key,
    and an admin client."""


def stack_ctx(name, tenant, pods=2, workers=2, env=None, up_args=()):
    """Bring up a clean stack for a suite (tests/lib's usual setup)."""
    c = Ctx()
    c.stack = Stack(name, pods=pods, workers=workers, env=env, up_args=up_args)
    c.stack.down()
    c.stack.up()
    c.key = c.stack.new_key(tenant)
    c.api = Client(c.stack.url, c.key)
    c.admin = Client(c.stack.url, c.stack.admin)
    return c


def stack_teardown(c):
    """Stop the suite's stack unless TETHER_KEEP_STACK is set (to look at its logs)."""
    if not os.environ.get("TETHER_KEEP_STACK"):
        c.stack.down()


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Client:
    def __init__(self, url, key=None, timeout=30):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.key = key
        self.timeout = timeout

    def conn(self, timeout=None):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)

    def req(self, method, path, body=None, headers=None, raw=None, key=None, timeout=None):
        h = {}
        k = key if key is not None else self.key
        if k:
            h["Authorization"] = "Bearer " + k
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        c = self.conn(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return Resp(r.status, r.getheaders(), r.read())
        finally:
            c.close()

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body=body, **kw)

    # conveniences
    def thread(self, title=None):
        r = self.post("/v1/threads", {"title": title} if title else {})
        assert r.status == 201, r
        return r.json["id"]

    def run(self, thread_id, text, **kw):
        body = {"input": text}
        body.update(kw)
        r = self.post(f"/v1/threads/{thread_id}/runs", body)
        assert r.status == 202, r
        return r.json["run_id"]

    def run_state(self, run_id):
        r = self.get(f"/v1/runs/{run_id}")
        assert r.status == 200, r
        return r.json

    def run_state_or_none(self, run_id):
        """For polling while pods die: None on a 5xx (nginx found no pod for a moment,
        or the one it reached was going away), the state otherwise."""
        r = self.get(f"/v1/runs/{run_id}")
        if 500 <= r.status < 600:
            return None
        assert r.status == 200, r
        return r.json

    def wait_terminal(self, run_id, timeout=60):
        return wait_until(lambda: (lambda s: s if s and s["status"] in ("completed", "failed", "cancelled")
                                   else None)(self.run_state_or_none(run_id)), timeout, f"run {run_id} to end")


class Watcher(threading.Thread):
    """Reads one event stream; records (monotonic time, id, event, data) per event.

    Follows the client rules of API.md: EOF without `done` is a drop. With
    reconnect=True it reconnects with Last-Event-ID like a browser would."""

    def __init__(self, client, path, last_event_id=None, reconnect=False, method="GET", body=None,
                 name=None, max_reconnects=50, reconnect_path=None):
        super().__init__(daemon=True, name=name or path)
        self.client = client
        self.path = path
        self.reconnect_path = reconnect_path or path
        self.last_id = last_event_id
        self.reconnect = reconnect
        self.method = method
        self.body = body
        self.events = []
        self.comments = []
        self.status = None
        self.error = None
        self.done = threading.Event()
        self.connected = threading.Event()
        self.drops = 0
        self.max_reconnects = max_reconnects
        self._stop = False
        self._conn = None

    def run(self):
        try:
            while True:
                finished = self._once()
                if finished or not self.reconnect or self._stop or self.drops > self.max_reconnects:
                    break
                self.drops += 1
                self.path = self.reconnect_path
                self.method, self.body = "GET", None
                time.sleep(min(2.0, 0.1 * (1.5 ** min(self.drops, 10))))
        except Exception:
            self.error = traceback.format_exc()
        finally:
            self.done.set()

    def _once(self):
        h = {"Accept": "text/event-stream", "Connection": "close"}
        if self.client.key:
            h["Authorization"] = "Bearer " + self.client.key
        if self.last_id:
            h["Last-Event-ID"] = self.last_id
        data = None
        if self.body is not None:
            data = json.dumps(self.body).encode()
            h["Content-Type"] = "application/json"
        c = self.client.conn(timeout=120)
        self._conn = c
        try:
            c.request(self.method, self.path, body=data, headers=h)
            self._sock = c.sock  # http.client drops its reference once the response owns it
            r = c.getresponse()
            self.status = r.status
            if r.status != 200:
                self.error_body = r.read()
                if 500 <= r.status < 600 and self.reconnect:
                    return False
                return True
            self.connected.set()
            ev = {"data": []}
            while True:
                line = r.readline()  # decodes chunked transfer encoding
                if not line:
                    return False  # EOF without done: a drop
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if ev["data"]:
                        e = (time.monotonic(), ev.get("id"), ev.get("event", "message"),
                             "\n".join(ev["data"]))
                        self.events.append(e)
                        if e[1]:
                            self.last_id = e[1]
                        if e[2] == "done":
                            return True
                    ev = {"data": []}
                elif line.startswith(":"):
                    self.comments.append((time.monotonic(), line[1:].strip()))
                else:
                    f, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    if f == "data":
                        ev["data"].append(v)
                    elif f in ("id", "event"):
                        ev[f] = v
        except (ConnectionError, http.client.HTTPException, OSError):
            return False
        finally:
            c.close()

    def drop(self):
        """Cut the connection as a network drop would; a reconnecting watcher resumes."""
        try:
            if getattr(self, "_sock", None):
                self._sock.shutdown(2)
        except OSError:
            pass

    def close(self):
        self._stop = True
        self.reconnect = False
        try:
            if getattr(self, "_sock", None):
                self._sock.shutdown(2)
        except OSError:
            pass

    # views
    def kinds(self):
        return [e[2] for e in self.events]

    def ids(self):
        return [e[1] for e in self.events]

    def data(self, i):
        return json.loads(self.events[i][3])

    def text_after_last_reset(self):
        last = max([i for i, e in enumerate(self.events) if e[2] == "reset"], default=-1)
        return "".join(json.loads(e[3])["text"] for e in self.events[last + 1:] if e[2] == "delta")

    def all_text(self):
        return "".join(json.loads(e[3])["text"] for e in self.events if e[2] == "delta")

    def final_status(self):
        for e in reversed(self.events):
            if e[2] == "done":
                return json.loads(e[3])["status"]
        return None

    def wait(self, timeout, what="the stream to end"):
        if not self.done.wait(timeout):
            self.close()
            raise AssertionError(f"timed out after {timeout}s waiting for {what} on {self.path}; "
                                 f"events so far: {self.kinds()}")
        if self.error:
            raise AssertionError(f"watcher failed: {self.error}")
        return self


def watch(client, run_id, **kw):
    w = Watcher(client, f"/v1/runs/{run_id}/events", **kw)
    w.start()
    return w


def chunks(text):
    """'t123 chunk-1 t123 chunk-2 ' -> [('123', 1), ('123', 2)]"""
    out = []
    parts = text.split()
    for i in range(0, len(parts) - 1, 2):
        stamp, c = parts[i], parts[i + 1]
        assert stamp.startswith("t") and c.startswith("chunk-"), (stamp, c)
        out.append((stamp[1:], int(c[6:])))
    return out


def assert_one_attempt_text(text, n):
    """The output holds chunks 1..n of exactly one call stamp, each once, in order."""
    cs = chunks(text)
    assert [c[1] for c in cs] == list(range(1, n + 1)), f"chunks {[c[1] for c in cs]} != 1..{n}"
    stamps = {c[0] for c in cs}
    assert len(stamps) == 1, f"more than one call stamp in one attempt's text: {stamps}"
    return stamps.pop()


# ---- a tiny runner: python3 tests/x.py [name-filter] ----

def run_tests(module_globals, setup=None, teardown=None, per_test_timeout=240):
    names = [n for n in module_globals if n.startswith("test_") and callable(module_globals[n])]
    order = module_globals.get("ORDER")
    if order:
        names = [n for n in order if n in names] + [n for n in names if n not in order]
    flt = sys.argv[1] if len(sys.argv) > 1 else None
    if flt:
        names = [n for n in names if flt in n]
    ctx = setup() if setup else None
    failed = []

    def on_alarm(signum, frame):
        raise AssertionError(f"test exceeded its {per_test_timeout}s bound")

    signal.signal(signal.SIGALRM, on_alarm)
    try:
        for n in names:
            t0 = time.monotonic()
            signal.alarm(per_test_timeout)
            try:
                module_globals[n](ctx) if ctx is not None else module_globals[n]()
                signal.alarm(0)
                print(f"PASS {n} ({time.monotonic() - t0:.1f}s)", flush=True)
            except Exception:
                signal.alarm(0)
                failed.append(n)
                print(f"FAIL {n} ({time.monotonic() - t0:.1f}s)\n{traceback.format_exc()}", flush=True)
    finally:
        if teardown:
            try:
                teardown(ctx)
            except Exception:
                failed.append("teardown")
                print(f"FAIL teardown\n{traceback.format_exc()}", flush=True)
    print(f"{len(names) - len(failed)}/{len(names)} passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)
