"""Hostile and broken input, and the configured limits: each gets its documented
status and JSON error; afterwards every pod still has its original worker PIDs and
a normal run works. Table-driven, through nginx.

    python3 tests/integration/test_hostile.py [name-filter]
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import Client, Stack, Watcher, run_tests, stack_ctx, stack_teardown, wait_until, watch  # noqa: E402

JSON = {"Content-Type": "application/json"}
PODS = ("pod-1", "pod-2")


def setup():
    c = stack_ctx("test-hostile", "hostile", pods=2, workers=1, env={
        "TETHER_THREADS": "16", "TETHER_MAX_WATCHERS": "4", "TETHER_MAX_RUNS": "3",
        "TETHER_TENANT_MAX_ACTIVE_RUNS": "2", "TETHER_HUB_MAX_BYTES": "1024"})
    c.tid = c.api.thread()
    c.run = c.api.run(c.tid, "for the table slow:2x10")
    c.api.wait_terminal(c.run)
    c.pids = {p: c.stack.worker_pids(p) for p in PODS}
    return c


teardown = stack_teardown


def raw(c, data, timeout=10):
    """Send raw bytes to nginx; return (status, body)."""
    host, port = c.stack.url.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf:
                head, _, body = buf.partition(b"\r\n\r\n")
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0].split(b":")[1]):
                    break
        head, _, body = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
        return status, body
    finally:
        s.close()


def case_table(c):
    t, r = c.tid, c.run
    long_id = "a" * 5000
    deep = '{"input":"x","params":' + '{"a":' * 40 + "1" + "}" * 40 + "}"
    return [
        # name, method, path, headers, body, status, code
        ("malformed json", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":', 400, "invalid_json"),
        ("truncated json", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":"abc', 400, "invalid_json"),
        ("json then garbage", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":"a"}}', 400, "invalid_json"),
        ("deeply nested", "POST", f"/v1/threads/{t}/runs", JSON, deep, 400, "invalid_json"),
        ("deep arrays", "POST", "/v1/threads", JSON, '{"metadata":{"a":' + "[" * 100 + "]" * 100 + "}}", 400,
         "invalid_json"),
        ("invalid utf-8", "POST", f"/v1/threads/{t}/runs", JSON, b'{"input":"\xc3\x28"}', 400, "invalid_json"),
        ("overlong utf-8", "POST", f"/v1/threads/{t}/runs", JSON, b'{"input":"\xc0\xaf"}', 400, "invalid_json"),
        ("NaN", "POST", "/v1/threads", JSON, '{"metadata":{"x":NaN}}', 400, "invalid_json"),
        ("top-level array", "POST", "/v1/threads", JSON, "[]", 400, "invalid_json"),
        ("top-level string", "POST", "/v1/threads", JSON, '"x"', 400, "invalid_json"),
        ("wrong type input", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":["x"]}', 400, "invalid_field"),
        ("wrong type model", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":"x","model":1}', 400, "invalid_field"),
        ("wrong type params", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":"x","params":[]}', 400,
         "invalid_field"),
        ("unknown field", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":"x","inputs":"y"}', 400,
         "invalid_field"),
        ("escaped NUL", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":"a\\u0000b"}', 400, "invalid_field"),
        ("NUL in metadata", "POST", "/v1/threads", JSON, '{"metadata":{"k":["\\u0000"]}}', 400, "invalid_field"),
        ("huge body", "POST", f"/v1/threads/{t}/runs", JSON, '{"input":"' + "a" * (5 << 20) + '"}', 413,
         "payload_too_large"),
        ("no content type", "POST", f"/v1/threads/{t}/runs", {}, '{"input":"x"}', 415, "unsupported_media_type"),
        ("form content type", "POST", "/v1/threads", {"Content-Type": "application/x-www-form-urlencoded"},
         "title=x", 415, "unsupported_media_type"),
        ("absurd Last-Event-ID", "GET", f"/v1/runs/{r}/events", {"Last-Event-ID": "9" * 400}, None, 400,
         "bad_request"),
        ("negative Last-Event-ID", "GET", f"/v1/runs/{r}/events", {"Last-Event-ID": "-1:-1"}, None, 400,
         "bad_request"),
        ("future attempt", "GET", f"/v1/runs/{r}/events", {"Last-Event-ID": "7:0"}, None, 400, "bad_request"),
        ("absurd after", "GET", f"/v1/runs/{r}/events?after=1:1e9", None, None, 400, "bad_request"),
        ("after with NUL", "GET", f"/v1/runs/{r}/events?after=1%000", None, None, 400, "bad_request"),
        ("bad run id", "GET", "/v1/runs/xyz", None, None, 400, "invalid_id"),
        ("very long path", "GET", f"/v1/runs/{long_id}", None, None, 404, "not_found"),
        ("long id", "GET", "/v1/runs/" + "a" * 200, None, None, 400, "invalid_id"),
        ("upper-case id", "GET", f"/v1/runs/{r.upper()}", None, None, 400, "invalid_id"),
        ("nats wildcard id *", "GET", "/v1/runs/*/events", None, None, 400, "invalid_id"),
        ("nats wildcard id >", "GET", "/v1/runs/%3E/events", None, None, 400, "invalid_id"),
        ("nats subject dots", "POST", "/v1/runs/a.b.c/cancel", None, None, 400, "invalid_id"),
        ("id with spaces", "GET", "/v1/threads/%20" + t[1:], None, None, 400, "invalid_id"),
        ("missing id (nginx merges the slashes)", "GET", "/v1/runs//events", None, None, 400, "invalid_id"),
        ("encoded slash in id", "GET", f"/v1/threads/{t[:8]}%2F{t[9:]}", None, None, 404, "not_found"),
        ("dot-dot to admin", "POST", "/v1/threads/../admin/recover", None, None, 401, "unauthorized"),
        ("encoded dot-dot", "GET", f"/v1/threads/%2e%2e/runs/{r}", None, None, 200, None),
        ("NUL in path", "GET", "/v1/threads/%00", None, None, 400, "bad_request"),
        ("method on wrong route", "DELETE", f"/v1/runs/{r}", None, None, 405, "method_not_allowed"),
        ("PUT threads", "PUT", "/v1/threads", JSON, "{}", 405, "method_not_allowed"),
        ("unknown route", "GET", "/v1/everything", None, None, 404, "not_found"),
        ("bad idempotency key", "POST", f"/v1/threads/{t}/runs", dict(JSON, **{"Idempotency-Key": "x" * 300}),
         '{"input":"x"}', 400, "bad_request"),
        ("limit injection", "GET", "/v1/threads?limit=1;DROP%20TABLE%20runs", None, None, 400, "invalid_field"),
        ("before injection", "GET", "/v1/threads?before='%20OR%201=1--", None, None, 400, "invalid_field"),
        ("tenant name injection", "POST", "/v1/admin/tenants/a'b/keys", None, None, 401, "unauthorized"),
    ]


def test_table(c):
    failures = []
    for name, method, path, headers, body, status, code in case_table(c):
        data = body.encode() if isinstance(body, str) else body
        r = c.api.req(method, path, raw=data, headers=headers)
        ok = r.status == status
        if ok and code:
            ok = (r.headers.get("content-type", "").startswith("application/json") and r.json is not None
                  and r.json["error"]["code"] == code and isinstance(r.json["error"]["message"], str))
        if not ok:
            failures.append((name, status, code, r))
    assert not failures, "\n".join(f"{n}: expected {s} {c}, got {r}" for n, s, c, r in failures)


def test_oversized_and_odd_headers(c):
    big = b"GET /v1/threads HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"
    st, body = raw(c, big)
    assert st in (400, 431) and json.loads(body)["error"]["code"] == "bad_request", (st, body[:200])
    many = b"GET /v1/threads HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(3000)) + b"\r\n"
    st, body = raw(c, many)
    assert st in (400, 431), (st, body[:200])
    st, body = raw(c, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st in (400, 414) and json.loads(body)["error"]["code"] == "bad_request", (st, body[:200])
    auth = b"GET /v1/threads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"k" * 10000 + b"\r\n\r\n"
    st, body = raw(c, auth)
    assert st == 401 and json.loads(body)["error"]["code"] == "unauthorized", (st, body[:200])
    st, body = raw(c, b"GARBAGE\r\n\r\n")
    assert st == 400, st
    st, body = raw(c, b"POST /v1/threads HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert st == 400, st


def test_slow_bodies_do_not_hold_request_threads(c):
    """nginx reads whole bodies before it passes a request on (request buffering), so
    bodies that trickle in cost tether nothing; one that stops is dropped by nginx
    after client_body_timeout (10 s)."""
    host, port = c.stack.url.split("//")[1].split(":")
    head = (f"POST /v1/threads/{c.tid}/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {c.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
    trickle = []
    for _ in range(40):  # more than the 16 request threads of each worker
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(head)
        trickle.append(s)
    stalled = socket.create_connection((host, int(port)), timeout=30)
    stalled.sendall(head)
    t0 = time.monotonic()
    served = 0
    while time.monotonic() - t0 < 12:
        for s in trickle:
            s.sendall(b" ")
        assert c.api.get("/v1/threads?limit=1", timeout=3).status == 200
        served += 1
        time.sleep(0.5)
    assert served >= 15
    stalled.settimeout(10)
    st = stalled.recv(65536)
    assert st == b"" or b" 408 " in st.split(b"\r\n")[0], st[:100]
    assert time.monotonic() - t0 < 20
    for s in trickle + [stalled]:
        s.close()


def test_tenant_active_runs_limit(c):
    api = Client(c.stack.url, c.stack.new_key("limited"))
    r1 = api.run(api.thread(), "long 1 slow:1x60000")
    r2 = api.run(api.thread(), "long 2 slow:1x60000")
    r = api.post(f"/v1/threads/{api.thread()}/runs", {"input": "third"})
    assert r.status == 429 and r.json["error"]["code"] == "quota_exceeded", r
    assert r.json["error"]["limit"] == "max_active_runs", r
    assert r.headers.get("retry-after") == "1"
    for rid in (r1, r2):
        api.post(f"/v1/runs/{rid}/cancel")
    rid = api.run(api.thread(), "now it fits slow:1x10")
    assert api.wait_terminal(rid)["status"] == "completed"


def generators_idle(c):
    """Every worker reported, in a heartbeat newer than this call, that it runs no
    generator (runs that ended release their slots when their threads finish)."""
    since = c.stack.psql("SELECT clock_timestamp()")
    return wait_until(lambda: c.stack.psql(
        "SELECT count(*) FILTER (WHERE heartbeat_at <= '%s') || '/' ||"
        " COALESCE(sum((counters -> 'gauges' ->> 'generators')::int), 0) FROM workers" % since) == "0/0",
        30, "fresh heartbeats with no generator running")


def test_runs_per_worker_limit(c):
    # 1 worker per pod x max_runs 3: the 4th run on a pod is refused. Tenants of two
    # active runs each (TETHER_TENANT_MAX_ACTIVE_RUNS=2), so that limit stays out of it.
    generators_idle(c)
    started, refused = [], []
    try:
        for pod in PODS:
            apis = [Client(c.stack.url, c.stack.new_key(f"cap{pod[-1]}{i}")) for i in range(2)]
            for api in apis:
                for _ in range(2):
                    r = api.post(f"/pod/{pod}/v1/threads/{api.thread()}/runs", {"input": "hold slow:1x60000"})
                    if r.status == 202:
                        started.append((api, r.json["run_id"]))
                    else:
                        refused.append(r)
        assert len(started) == 6, (len(started), refused)
        assert len(refused) == 2 and all(
            r.status == 503 and r.json["error"]["code"] == "at_capacity" and r.headers.get("retry-after") == "1"
            for r in refused), refused
    finally:
        for api, rid in started:
            api.post(f"/v1/runs/{rid}/cancel")


def test_watchers_per_worker_limit(c):
    rid = c.api.run(c.api.thread(), "watched slow:1x60000")
    ws = []
    for pod in PODS:
        for _ in range(4):
            w = Watcher(Client(c.stack.url, c.key), f"/pod/{pod}/v1/runs/{rid}/events")
            w.start()
            ws.append(w)
    wait_until(lambda: all(w.kinds() == ["start"] for w in ws), 20, "8 watchers attached")
    for pod in PODS:
        r = c.api.get(f"/pod/{pod}/v1/runs/{rid}/events")
        assert r.status == 503 and r.json["error"]["code"] == "at_capacity", r
        # Request threads remain for everything else.
        assert c.api.get(f"/pod/{pod}/healthz").status == 200
        assert c.api.get(f"/pod/{pod}/v1/threads?limit=1").status == 200
    c.api.post(f"/v1/runs/{rid}/cancel")
    for w in ws:
        w.wait(20)
        assert w.final_status() == "cancelled"
    # Ended streams free their slots (as their connections close, a moment after the
    # client has its done).
    w = wait_until(lambda: (lambda w: w if w.status == 200 else None)(watch(c.api, rid).wait(20)), 10,
                   "a slot freed by the ended streams")
    assert w.final_status() == "cancelled"


def test_disconnecting_watchers_free_their_slots(c):
    rid = c.api.run(c.api.thread(), "hangups slow:1x60000")
    path = f"/pod/pod-1/v1/runs/{rid}/events"

    def attach():
        w = Watcher(Client(c.stack.url, c.key), path)
        w.start()
        wait_until(lambda: w.kinds() == ["start"] or w.status == 503, 20, "attach or refusal")
        return w

    def attach_when_free():
        w = attach()
        if w.kinds() == ["start"]:
            return w
        w.close()
        return None

    for _ in range(6):
        # The worker notices each hangup of the round before (POLLRDHUP on its
        # FastCGI socket, checked at least every second) and frees its slot.
        t0 = time.monotonic()
        ws = [wait_until(attach_when_free, 10, "a free watcher slot", interval=0.1) for _ in range(4)]
        assert time.monotonic() - t0 < 6
        assert attach().status == 503
        for w in ws:
            w.close()
    c.api.post(f"/v1/runs/{rid}/cancel")


def test_watcher_behind_the_hub_window_reads_jetstream(c):
    """Each worker keeps at most TETHER_HUB_MAX_BYTES (1024 here) of a run's events for
    its watchers; a watcher that attaches later still gets every event exactly once."""
    rid = c.api.run(c.api.thread(), "long window slow:60x30")
    early = Watcher(Client(c.stack.url, c.key), f"/pod/pod-1/v1/runs/{rid}/events")
    early.start()
    wait_until(lambda: early.kinds().count("delta") >= 50, 30, "50 deltas at the early watcher")
    late = Watcher(Client(c.stack.url, c.key), f"/pod/pod-1/v1/runs/{rid}/events")
    late.start()
    resumed = Watcher(Client(c.stack.url, c.key), f"/pod/pod-1/v1/runs/{rid}/events", last_event_id="1:20")
    resumed.start()
    for w in (early, late, resumed):
        w.wait(30)
    out = c.api.run_state(rid)["output"]
    assert len(out) > 1024
    for w in (early, late):
        assert w.ids() == [f"1:{i}" for i in range(62)], w.ids()
        assert w.all_text() == out
    assert resumed.ids() == [f"1:{i}" for i in range(21, 62)], resumed.ids()
    assert f"run={rid} attempt=1 msg=\"watcher behind the hub's window" in c.stack.log("pod-1")


def test_slow_reader_holds_up_no_other_watcher(c):
    """One watcher of a run reads nothing at all (a 4 KiB receive buffer, never read).
    On the same worker (a 1 x 1 stack) the hub's delivery thread must not wait for it:
    the other watchers get every one of 100 000 chunks exactly once (resuming with
    Last-Event-ID if they themselves fall 1 MiB behind, as any client must), the
    median spread between them stays far below the old 5 s send timeout, and the
    stalled stream is closed once its unsent bytes pass the bound (it does not
    grow), ending without `done`."""
    # 100 000 chunks are about 2.5 MB of output: past the default quota (1 MiB).
    st = Stack("hostile-slowreader", pods=1, workers=1, env={"TETHER_TENANT_MAX_OUTPUT_BYTES": str(8 << 20)})
    st.up()
    try:
        cl = Client(st.env["TETHER_URL"], st.new_key("slowreader"))
        rid = cl.run(cl.thread(), "slow:100000x0")
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((cl.host, cl.port))
        s.sendall((f"GET /v1/runs/{rid}/events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   f"Authorization: Bearer {cl.key}\r\nAccept: text/event-stream\r\n\r\n").encode())
        readers = [watch(cl, rid, reconnect=True) for _ in range(2)]
        for w in readers:
            w.wait(300)
            assert w.error is None, w.error
            assert w.final_status() == "completed"
            deltas = [i for i in w.ids() if not i.endswith(":0")]
            assert deltas == [f"1:{n}" for n in range(1, 100001)] + ["1:100001"], deltas[-3:]
        # Both readers saw each delta at about the same time.
        t = [{e[1]: e[0] for e in w.events} for w in readers]
        spread = sorted(abs(t[0][i] - t[1][i]) for i in t[0] if i in t[1])
        p50, p99, top = spread[len(spread) // 2], spread[int(len(spread) * 0.99)], spread[-1]
        print(f"  spread between the two readers: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
              f"max {top * 1000:.1f} ms; reader reconnects {[w.drops for w in readers]}")
        assert p50 < 1.0, p50
        line = wait_until(lambda: [ln for ln in st.log("pod-1").splitlines()
                                   if "watcher not reading" in ln and rid in ln], 30,
                          "the stalled stream to be closed")
        unsent = int(line[0].split("(")[1].split(" ")[0])
        assert unsent > 1 << 20 and unsent <= (1 << 20) + (64 << 10), line
        # What was buffered on the way still arrives, then the response ends, not done.
        s.settimeout(30)
        got = b""
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += b
        assert got.startswith(b"HTTP/1.1 200"), got[:100]
        assert b"event: done" not in got and b"event: delta" in got
        s.close()
    finally:
        st.down()


def test_workers_survived_everything(c):
    now = {p: c.stack.worker_pids(p) for p in PODS}
    assert now == c.pids, f"worker processes changed (a crash?): {c.pids} -> {now}"
    logs = c.stack.log("pod-1") + c.stack.log("pod-2")
    assert "was killed by signal" not in logs and "exited with status" not in logs
    rid = c.api.run(c.api.thread(), "still fine slow:3x20")
    w = watch(c.api, rid).wait(30)
    assert w.final_status() == "completed" and w.all_text() == c.api.run_state(rid)["output"]


ORDER = ["test_table", "test_oversized_and_odd_headers", "test_slow_bodies_do_not_hold_request_threads",
         "test_tenant_active_runs_limit", "test_runs_per_worker_limit", "test_watchers_per_worker_limit",
         "test_disconnecting_watchers_free_their_slots", "test_watcher_behind_the_hub_window_reads_jetstream",
         "test_workers_survived_everything"]

if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
