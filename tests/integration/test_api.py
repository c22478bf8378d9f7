"""Integration suite: the foundation (daemon, stack, admin, health) and the
single-owner run path, through nginx against real PostgreSQL and NATS.

    python3 tests/integration/test_api.py [name-filter]
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import (ROOT, Client, Stack, Watcher, assert_one_attempt_text, run_tests,  # noqa: E402
                    stack_ctx, stack_teardown, wait_until, watch)

BIN = os.environ.get("TETHER_BIN_DIR", os.path.join(ROOT, "build"))


def setup():
    c = stack_ctx("test-integration", "alpha", env={"TETHER_HEARTBEAT_S": "1", "TETHER_DRAIN_S": "3"})
    c.key_b = c.stack.new_key("bravo")
    c.api_b = Client(c.stack.url, c.key_b)
    return c


teardown = stack_teardown


def pod_client(c, pod, key=None):
    """A client whose paths go to one pod (nginx /pod/<name>/ locations)."""
    base = Client(c.stack.url, key or c.key)

    class PodClient(Client):
        def req(self, method, path, **kw):
            return Client.req(self, method, f"/pod/{pod}{path}", **kw)

        def conn(self, timeout=None):
            return base.conn(timeout)

    pc = PodClient(c.stack.url, key or c.key)
    return pc


class PodWatcher(Watcher):
    def __init__(self, c, pod, run_id, **kw):
        super().__init__(Client(c.stack.url, c.key), f"/pod/{pod}/v1/runs/{run_id}/events", **kw)


def assert_error(r, status, code, field=None):
    assert r.status == status, f"expected {status} {code}, got {r}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert isinstance(r.json, dict) and set(r.json) == {"error"}, r.body
    e = r.json["error"]
    assert e["code"] == code, f"expected code {code}, got {e}"
    assert isinstance(e["message"], str) and e["message"], e
    if field is not None:
        assert e.get("field") == field, f"expected field {field}, got {e}"


# ---------------------------------------------------------------- foundation

def test_health_every_pod(c):
    for pod in ("pod-1", "pod-2"):
        r = Client(c.stack.url).get(f"/pod/{pod}/healthz")
        assert r.status == 200, r
        assert r.json["status"] == "ok" and r.json["pod"] == pod and r.json["worker"] > 0, r.json
        r = Client(c.stack.url).get(f"/pod/{pod}/readyz")
        assert r.status == 200, r
        assert r.json == {"status": "ready", "postgres": "ok", "nats": "ok", "pod": pod,
                          "worker": r.json["worker"]}, r.json


def test_nginx_balances_across_pods_and_workers(c):
    # Within a pod, idle request threads queue on accept() in FIFO order, so each
    # worker answers a block of `threads` requests in turn; across pods nginx
    # alternates request by request.
    seen, pods = set(), []
    for _ in range(1200):
        r = Client(c.stack.url).get("/healthz")
        assert r.status == 200, r
        seen.add((r.json["pod"], r.json["worker"]))
        pods.append(r.json["pod"])
    assert {p for p, _ in seen} == {"pod-1", "pod-2"}, f"healthz answered only by {seen}"
    assert len(seen) == 4, f"expected all 4 workers to answer, saw {seen}"
    # Each nginx worker process round-robins on its own: shares are even, not strict.
    share = pods.count("pod-1") / len(pods)
    assert 0.35 < share < 0.65, f"pod-1 answered {share:.0%} of the requests"


def test_admin_keys(c):
    anon = Client(c.stack.url)
    assert_error(anon.post("/v1/admin/tenants/zed/keys"), 401, "unauthorized")
    assert_error(anon.post("/v1/admin/tenants/zed/keys", key="adm_wrong"), 401, "unauthorized")
    assert_error(anon.post("/v1/admin/recover", key=c.key), 401, "unauthorized")
    r = c.admin.post("/v1/admin/tenants/zed/keys")
    assert r.status == 201, r
    assert set(r.json) == {"tenant", "key", "id"} and r.json["tenant"] == "zed", r.json
    key = r.json["key"]
    assert key.startswith("tk_") and len(key) == 43, key
    # Stored only as a hash: no column of api_keys holds the key text.
    assert c.stack.psql(f"SELECT count(*) FROM api_keys WHERE key_hash = sha256('{key}'::bytea)") == "1"
    assert c.stack.psql(f"SELECT count(*) FROM api_keys k WHERE k::text LIKE '%{key[3:]}%'") == "0"
    # A second key for the same tenant works; both authenticate.
    key2 = c.admin.post("/v1/admin/tenants/zed/keys").json["key"]
    assert key2 != key
    for k in (key, key2):
        assert Client(c.stack.url, k).get("/v1/threads").status == 200
    assert_error(c.admin.post("/v1/admin/tenants/Bad!Name/keys"), 400, "invalid_field", "name")
    assert_error(c.admin.post("/v1/admin/tenants/" + "a" * 65 + "/keys"), 400, "invalid_field", "name")


def test_unknown_route_and_wrong_method(c):
    assert_error(c.api.get("/v1/nope"), 404, "not_found")
    assert_error(c.api.get("/v1/threads/x/y/z"), 404, "not_found")
    r = c.api.req("DELETE", "/v1/threads")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, POST", r.headers
    r = c.api.req("PUT", "/v1/runs/00000000-0000-0000-0000-000000000000/cancel")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST", r.headers


def test_sigkill_worker_is_replaced(c):
    before = c.stack.worker_pids("pod-1")
    assert len(before) == 2, before
    os.kill(before[0], signal.SIGKILL)
    after = wait_until(lambda: (lambda p: p if len(p) == 2 and before[0] not in p else None)(
        c.stack.worker_pids("pod-1")), 20, "the master to replace the killed worker")
    assert before[1] in after and before[0] not in after, (before, after)
    assert "was killed by signal 9" in c.stack.log("pod-1")
    wait_until(lambda: Client(c.stack.url).get("/pod/pod-1/readyz").status == 200, 30, "pod-1 ready")


def test_sigterm_pod_exits_cleanly(c):
    master = int(c.stack.pods_state()["pod-2"][1])
    workers = wait_until(lambda: (lambda w: w if len(w) == c.stack.workers else None)(
        c.stack.worker_pids("pod-2")), 20, f"pod-2's {c.stack.workers} workers")
    t0 = time.monotonic()
    c.stack.kill("pod-2", "TERM")
    took = time.monotonic() - t0
    for pid in [master] + workers:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} still there"
    log = c.stack.log("pod-2")
    assert "pod stopped" in log and "did not stop in time" not in log, log[-2000:]
    assert took < 20, took
    assert c.stack.pods_state()["pod-2"][0] == "down"
    # The API keeps working on the other pod meanwhile.
    assert c.api.get("/v1/threads").status == 200
    c.stack.start("pod-2")
    assert c.stack.pods_state()["pod-2"][0] == "up"


def test_sigterm_with_runs_and_streams_in_flight_exits_cleanly(c):
    """SIGTERM a pod whose workers generate runs longer than the drain (3 s) and
    serve their streams: generators are aborted at the deadline, hub consumers and
    request threads may still be inside the bus when the worker leaves. The worker
    must exit without touching freed memory (this daemon runs under ASan; the
    suite's teardown fails on any report in a pod log) and the runs go on
    elsewhere."""
    runs = []
    for i in range(8):
        tid = c.api.thread()
        r = Client(c.stack.url, c.key).post(f"/pod/pod-2/v1/threads/{tid}/runs",
                                             {"input": f"in flight {i} slow:60x100"})
        assert r.status == 202, r
        runs.append(r.json["run_id"])
    ws = [PodWatcher(c, "pod-2", rid) for rid in runs]
    for w in ws:
        w.start()
    wait_until(lambda: all(w.kinds().count("delta") >= 2 for w in ws), 30, "2 deltas on every stream")
    workers = c.stack.worker_pids("pod-2")
    assert len(workers) == c.stack.workers, workers
    c.stack.kill("pod-2", "TERM")
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} still there"
    log = c.stack.log("pod-2")
    assert log.count("drained; exiting") >= len(workers) and "did not stop in time" not in log, log[-3000:]
    assert c.stack.sanitizer_reports() == [], c.stack.sanitizer_reports()
    c.stack.start("pod-2")
    for rid in runs:
        s = c.api.wait_terminal(rid, 90)
        assert s["status"] == "completed" and s["attempt"] >= 2, s
        assert_one_attempt_text(s["output"], 60)


def test_master_sigkill_workers_do_not_linger(c):
    master = int(c.stack.pods_state()["pod-2"][1])
    workers = wait_until(lambda: (lambda w: w if len(w) == c.stack.workers else None)(
        c.stack.worker_pids("pod-2")), 20, f"pod-2's {c.stack.workers} workers")
    # Not vacuous: all([]) is True, so the check below needs workers to look at.
    assert len(workers) == c.stack.workers and master not in workers, (master, workers)
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"
                           for p in workers), 30, "orphaned workers to exit")
    c.stack.kill("pod-2")  # clears the pid file and socket
    c.stack.start("pod-2")


def test_postgres_outage_readyz(c):
    c.stack.pg("stop")
    try:
        r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(
            Client(c.stack.url).get("/pod/pod-1/readyz", timeout=20)), 30, "readyz 503")
        assert r.json["postgres"] == "unavailable" and r.json["nats"] == "ok", r.json
        assert r.json["status"] == "unavailable", r.json
        # healthz has no dependencies
        assert Client(c.stack.url).get("/pod/pod-1/healthz").status == 200
        t0 = time.monotonic()
        r = c.api.get("/v1/threads", timeout=30)
        assert_error(r, 503, "unavailable")
        assert time.monotonic() - t0 < 10
    finally:
        c.stack.pg("start")
    for pod in ("pod-1", "pod-2"):
        wait_until(lambda: Client(c.stack.url).get(f"/pod/{pod}/readyz").status == 200, 30,
                   f"{pod} ready after PostgreSQL came back")
    assert c.api.get("/v1/threads").status == 200


def test_migrate_concurrently(c):
    db = "migtest"
    base = c.stack.env["DATABASE_URL"].rsplit("/", 1)[0]
    c.stack.psql(f"DROP DATABASE IF EXISTS {db}")
    c.stack.psql(f"CREATE DATABASE {db}")
    env = dict(os.environ, DATABASE_URL=f"{base}/{db}", TETHER_SQL_DIR=os.path.join(ROOT, "sql"))
    procs = [subprocess.Popen([os.path.join(BIN, "tetherctl"), "migrate"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    nfiles = len([f for f in os.listdir(os.path.join(ROOT, "sql")) if f.endswith(".sql")])
    applied = sorted(int(o[0].split(":")[1]) for o in outs)
    assert applied == [0, 0, 0, nfiles], applied
    n = subprocess.run(["psql", "-X", "-tA", f"{base}/{db}", "-c",
                        "SELECT count(*), count(DISTINCT version) FROM schema_migrations"],
                       text=True, capture_output=True).stdout.strip()
    assert n == f"{nfiles}|{nfiles}", n
    # A second run applies nothing.
    p = subprocess.run([os.path.join(BIN, "tetherctl"), "migrate"], env=env, text=True, capture_output=True)
    assert p.returncode == 0 and p.stdout.strip() == "migrations applied: 0", p
    c.stack.psql(f"DROP DATABASE {db}")


# ---------------------------------------------------------------- runs

def test_smoke_script(c):
    p = subprocess.run([os.path.join(ROOT, "tests/smoke.sh")], text=True, capture_output=True, timeout=120,
                       env=dict(os.environ, TETHER_URL=c.stack.url, TETHER_KEY=c.key))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("smoke: ok"), p.stdout


def test_thread_create_list_get(c):
    api = Client(c.stack.url, c.stack.new_key("lister"))
    r = api.post("/v1/threads", {"title": "first", "metadata": {"k": [1, 2]}})
    assert r.status == 201, r
    t = r.json
    assert t["title"] == "first" and t["status"] == "idle" and t["active_run_id"] is None, t
    assert t["metadata"] == {"k": [1, 2]} and t["created_at"].endswith("Z"), t
    ids = [t["id"]] + [api.thread(f"t{i}") for i in range(4)]
    r = api.get("/v1/threads?limit=2")
    assert r.status == 200 and [x["id"] for x in r.json["items"]] == ids[::-1][:2], r
    seen, nxt = [], None
    while True:
        r = api.get("/v1/threads?limit=2" + (f"&before={nxt}" if nxt else ""))
        assert r.status == 200, r
        seen += [x["id"] for x in r.json["items"]]
        nxt = r.json.get("next")
        if not nxt:
            break
    assert seen == ids[::-1], (seen, ids)
    r = api.get(f"/v1/threads/{ids[0]}")
    assert r.status == 200 and r.json["messages"] == [] and r.json["title"] == "first", r
    assert_error(api.get("/v1/threads?limit=0"), 400, "invalid_field", "limit")
    assert_error(api.get("/v1/threads?limit=101"), 400, "invalid_field", "limit")
    assert_error(api.get("/v1/threads?limit=abc"), 400, "invalid_field", "limit")
    assert_error(api.get("/v1/threads?before=nope"), 400, "invalid_field", "before")
    assert_error(api.get("/v1/threads?before=00000000-0000-0000-0000-000000000000"), 400, "invalid_field", "before")


def test_stream_arrives_incrementally(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "incremental slow:10x200")
    w = watch(c.api, rid).wait(60)
    kinds = w.kinds()
    assert kinds == ["start"] + ["delta"] * 10 + ["done"], kinds
    assert w.ids() == [f"1:{i}" for i in range(12)], w.ids()
    times = [e[0] for e in w.events if e[2] == "delta"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Chunk by chunk, not one burst: 200 ms apart at the source.
    assert times[-1] - times[0] > 1.2, gaps
    assert sum(1 for g in gaps if g > 0.1) >= 7, gaps
    out = c.api.run_state(rid)
    assert out["status"] == "completed" and out["output"] == w.all_text(), (out, w.all_text())
    assert_one_attempt_text(out["output"], 10)
    assert w.data(0) == {"run_id": rid, "thread_id": tid, "attempt": 1}
    assert w.data(-1) == {"status": "completed"}


def test_watchers_on_both_pods_see_the_same(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "two pods slow:8x100")
    ws = [PodWatcher(c, p, rid) for p in ("pod-1", "pod-2", "pod-1", "pod-2")]
    for w in ws:
        w.start()
    for w in ws:
        w.wait(60)
    ref = [(e[1], e[2], e[3]) for e in ws[0].events]
    for w in ws[1:]:
        assert [(e[1], e[2], e[3]) for e in w.events] == ref
    assert c.api.run_state(rid)["output"] == ws[0].all_text()


def test_resume_with_last_event_id(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "resume slow:12x20")
    full = watch(c.api, rid).wait(60)
    ref = [(e[1], e[2], e[3]) for e in full.events]
    for k in (0, 1, 5, 11, 12):
        lei = ref[k][0]
        w = watch(c.api, rid, last_event_id=lei).wait(30)
        assert [(e[1], e[2], e[3]) for e in w.events] == ref[k + 1:], (k, w.ids())
        r = Watcher(c.api, f"/v1/runs/{rid}/events?after={lei}")
        r.start()
        r.wait(30)
        assert [(e[1], e[2], e[3]) for e in r.events] == ref[k + 1:], (k, r.ids())
    # Live: drop after 3 deltas, resume, and get the rest exactly once.
    tid2 = c.api.thread()
    rid2 = c.api.run(tid2, "live resume slow:10x150")
    w1 = watch(c.api, rid2)
    wait_until(lambda: w1.kinds().count("delta") >= 3, 30, "3 deltas")
    w1.close()
    w1.wait(10)
    lei = w1.last_id
    w2 = watch(c.api, rid2, last_event_id=lei).wait(60)
    got = w1.events[:w1.ids().index(lei) + 1] + w2.events
    text = "".join(json.loads(e[3])["text"] for e in got if e[2] == "delta")
    assert text == c.api.run_state(rid2)["output"], text
    assert_one_attempt_text(text, 10)


def test_last_event_id_validation(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "ids slow:2x10")
    c.api.wait_terminal(rid)
    for bad in ("x", "1", "1:", ":1", "0:1", "-1:0", "1:2:3", "1 :1", "999999999999:1", "1:99999999999999999999",
                "%00", "1;1"):
        r = c.api.get(f"/v1/runs/{rid}/events", headers={"Last-Event-ID": bad})
        assert_error(r, 400, "bad_request")
    assert_error(c.api.get(f"/v1/runs/{rid}/events?after=junk"), 400, "bad_request")
    assert_error(c.api.get(f"/v1/runs/{rid}/events?after=%ZZ"), 400, "bad_request")
    r = c.api.get(f"/v1/runs/{rid}/events", headers={"Last-Event-ID": "2:0"})
    assert_error(r, 400, "bad_request")
    assert "attempt" in r.json["error"]["message"]


def test_post_with_accept_event_stream(c):
    tid = c.api.thread()
    w = Watcher(c.api, f"/v1/threads/{tid}/runs", method="POST", body={"input": "post stream slow:5x30"})
    w.start()
    w.wait(60)
    assert w.status == 200
    assert w.kinds() == ["start"] + ["delta"] * 5 + ["done"], w.kinds()
    rid = w.data(0)["run_id"]
    assert c.api.run_state(rid)["output"] == w.all_text()


def test_thread_events_route(c):
    tid = c.api.thread()
    r = c.api.get(f"/v1/threads/{tid}/events")
    assert r.status == 204 and r.body == b"", r
    rid = c.api.run(tid, "thread events slow:4x50")
    w = Watcher(c.api, f"/v1/threads/{tid}/events")
    w.start()
    w.wait(60)
    assert w.data(0)["run_id"] == rid and w.kinds()[-1] == "done", w.kinds()
    r = c.api.get(f"/v1/threads/{tid}")
    assert r.json["status"] == "idle" and r.json["active_run_id"] is None


def test_thread_busy_and_idempotency(c):
    tid = c.api.thread()
    r1 = c.api.post(f"/v1/threads/{tid}/runs", {"input": "busy slow:20x100"}, headers={"Idempotency-Key": "k-1"})
    assert r1.status == 202, r1
    rid = r1.json["run_id"]
    assert r1.json == {"run_id": rid, "thread_id": tid, "status": "running", "attempt": 1,
                       "events_url": f"/v1/runs/{rid}/events"}, r1.json
    r = c.api.get(f"/v1/threads/{tid}")
    assert r.json["status"] == "running" and r.json["active_run_id"] == rid, r.json
    r = c.api.post(f"/v1/threads/{tid}/runs", {"input": "second"})
    assert_error(r, 409, "thread_busy")
    assert r.json["error"]["active_run_id"] == rid
    # Same key, same body: the same run, 200.
    r = c.api.post(f"/v1/threads/{tid}/runs", {"input": "busy slow:20x100"}, headers={"Idempotency-Key": "k-1"})
    assert r.status == 200 and r.json["run_id"] == rid, r
    # Same key, other body: 422.
    r = c.api.post(f"/v1/threads/{tid}/runs", {"input": "different"}, headers={"Idempotency-Key": "k-1"})
    assert_error(r, 422, "idempotency_conflict")
    assert_error(c.api.post(f"/v1/threads/{tid}/runs", {"input": "x"}, headers={"Idempotency-Key": "bad key"}),
                 400, "bad_request")
    # Concurrent creates on an idle thread: exactly one run.
    t2 = c.api.thread()
    res = []
    ths = [threading.Thread(target=lambda: res.append(c.api.post(f"/v1/threads/{t2}/runs",
                                                                 {"input": "race slow:5x50"})))
           for _ in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert sorted(r.status for r in res) == [202] + [409] * 7, [r.status for r in res]
    assert c.stack.psql(f"SELECT count(*) FROM runs WHERE thread_id = '{t2}'") == "1"
    c.api.post(f"/v1/runs/{rid}/cancel")


def test_cancel(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "cancel me slow:50x100")
    w = watch(c.api, rid)
    wait_until(lambda: w.kinds().count("delta") >= 2, 30, "2 deltas")
    # Cancel through the other pod than the owner when possible.
    owner = c.api.run_state(rid)["owner"]["pod"]
    other = "pod-2" if owner == "pod-1" else "pod-1"
    r = pod_client(c, other).post(f"/v1/runs/{rid}/cancel")
    assert r.status == 200 and r.json == {"id": rid, "status": "cancelled"}, r
    w.wait(30)
    assert w.kinds()[-1] == "done" and w.data(-1) == {"status": "cancelled"}, w.kinds()
    s = c.api.run_state(rid)
    assert s["status"] == "cancelled" and s["output"] is None and s["finished_at"], s
    # The owner stopped: its next publish was fenced, so done stays the last event.
    last_id = w.events[-1][1]
    wait_until(lambda: "stopping" in c.stack.log("pod-1") + c.stack.log("pod-2"), 30,
               "the owner to log that it stopped")
    again = watch(c.api, rid).wait(30)
    assert again.kinds()[-1] == "done" and again.events[-1][1] == last_id, (again.ids(), last_id)
    assert again.kinds().count("done") == 1
    # Idempotent; a terminal run answers its status unchanged.
    r = c.api.post(f"/v1/runs/{rid}/cancel")
    assert r.status == 200 and r.json["status"] == "cancelled"
    rid2 = c.api.run(tid, "finish slow:2x10")
    c.api.wait_terminal(rid2)
    r = c.api.post(f"/v1/runs/{rid2}/cancel")
    assert r.status == 200 and r.json == {"id": rid2, "status": "completed"}, r
    assert c.api.run_state(rid2)["status"] == "completed"


def test_multi_turn_history(c):
    tid = c.api.thread()
    r1 = c.api.run(tid, "first question history slow:1x10")
    c.api.wait_terminal(r1)
    r2 = c.api.run(tid, "second question history slow:1x10")
    c.api.wait_terminal(r2)
    o1, o2 = c.api.run_state(r1)["output"], c.api.run_state(r2)["output"]
    assert o1.startswith("history=1 roles=user "), o1
    assert o2.startswith("history=3 roles=user,assistant,user "), o2
    msgs = c.api.get(f"/v1/threads/{tid}").json["messages"]
    assert [(m["role"], m["content"], m["run_id"]) for m in msgs] == [
        ("user", "first question history slow:1x10", r1), ("assistant", o1, r1),
        ("user", "second question history slow:1x10", r2), ("assistant", o2, r2)], msgs


def test_failed_run(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "fail:3 slow:10x10")
    w = watch(c.api, rid).wait(30)
    assert w.kinds() == ["start", "delta", "delta", "delta", "done"], w.kinds()
    d = w.data(-1)
    assert d["status"] == "failed" and d["error"]["code"] == "provider_error", d
    s = c.api.run_state(rid)
    assert s["status"] == "failed" and s["error"]["code"] == "provider_error" and s["output"] is None, s
    # A failed run frees the thread.
    rid2 = c.api.run(tid, "after failure slow:1x10")
    assert c.api.wait_terminal(rid2)["status"] == "completed"


def test_heartbeat_ping(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "quiet slow:2x2500")
    w = watch(c.api, rid).wait(30)
    assert w.kinds() == ["start", "delta", "delta", "done"], w.kinds()
    pings = [t for t, text in w.comments if text == "ping"]
    assert len(pings) >= 2, w.comments  # heartbeat_s=1 in this stack


def test_completion_from_postgres_when_stream_has_no_done(c):
    # A terminal row whose events are not in the stream (expired, or the owner died
    # between the row write and done): watchers complete from PostgreSQL.
    tid = c.api.thread()
    tenant = c.stack.psql(f"SELECT tenant_id FROM threads WHERE id = '{tid}'")
    rid = c.stack.psql(
        "INSERT INTO runs (tenant_id, thread_id, status, attempt, request, model, output, started_at, finished_at)"
        f" VALUES ('{tenant}', '{tid}', 'completed', 2, '{{\"input\":\"x\"}}', 'mock', 'from the row',"
        " now(), now()) RETURNING id").split("\n")[0]
    w = watch(c.api, rid).wait(30)
    assert [(e[1], e[2]) for e in w.events] == [("2:0", "start"), ("2:1", "delta"), ("2:2", "done")], w.events
    assert w.all_text() == "from the row" and w.data(-1) == {"status": "completed"}
    # Resuming from an older attempt: reset first.
    w = watch(c.api, rid, last_event_id="1:7").wait(30)
    assert w.kinds() == ["reset", "delta", "done"] and w.all_text() == "from the row", w.events


def test_errors_of_the_contract(c):
    api = c.api
    tid = api.thread()
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw="{\"input\":", headers={"Content-Type": "application/json"}),
                 400, "invalid_json")
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw="{\"input\":\"a\"} x",
                          headers={"Content-Type": "application/json"}), 400, "invalid_json")
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw="[1]", headers={"Content-Type": "application/json"}),
                 400, "invalid_json")
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw=b"{\"input\":\"\xff\"}",
                          headers={"Content-Type": "application/json"}), 400, "invalid_json")
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw="input=x", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw="{\"input\":\"x\"}"), 415, "unsupported_media_type")
    big = json.dumps({"input": "a" * (1024 * 1024 + 10)})
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw=big, headers={"Content-Type": "application/json"}),
                 413, "payload_too_large")
    huge = "a" * (3 * 1024 * 1024)
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw=huge, headers={"Content-Type": "application/json"}),
                 413, "payload_too_large")
    deep = "{\"input\":\"x\",\"params\":" + "[" * 40 + "]" * 40 + "}"
    assert_error(api.post(f"/v1/threads/{tid}/runs", raw=deep, headers={"Content-Type": "application/json"}),
                 400, "invalid_json")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": ""}), 400, "invalid_field", "input")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {}), 400, "invalid_field", "input")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": 5}), 400, "invalid_field", "input")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": "a" * (256 * 1024 + 1)}), 400, "invalid_field", "input")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": "x", "extra": 1}), 400, "invalid_field", "extra")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": "x", "model": "gpt-none"}), 400, "invalid_field", "model")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": "x", "params": {"temperature": 3}}),
                 400, "invalid_field", "params.temperature")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": "x", "params": {"nope": 1}}),
                 400, "invalid_field", "params.nope")
    assert_error(api.post(f"/v1/threads/{tid}/runs", {"input": "nul\u0000byte"}), 400, "invalid_field", "input")
    assert_error(api.post("/v1/threads", {"title": 7}), 400, "invalid_field", "title")
    assert_error(api.post("/v1/threads", {"metadata": []}), 400, "invalid_field", "metadata")
    for path in ("/v1/threads/not-a-uuid", "/v1/runs/123", "/v1/runs/0000000G-0000-0000-0000-000000000000/events",
                 "/v1/threads/AAAAAAAA-0000-0000-0000-000000000000"):
        assert_error(api.get(path), 400, "invalid_id")
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(api.get(f"/v1/threads/{missing}"), 404, "not_found")
    assert_error(api.get(f"/v1/runs/{missing}"), 404, "not_found")
    assert_error(api.get(f"/v1/runs/{missing}/events"), 404, "not_found")
    assert_error(api.post(f"/v1/runs/{missing}/cancel"), 404, "not_found")
    assert_error(api.post(f"/v1/threads/{missing}/runs", {"input": "x"}), 404, "not_found")
    assert_error(Client(c.stack.url).get("/v1/threads"), 401, "unauthorized")
    assert_error(Client(c.stack.url, "tk_" + "0" * 40).get("/v1/threads"), 401, "unauthorized")
    assert_error(Client(c.stack.url).get("/v1/threads", headers={"Authorization": "Basic abc"}), 401, "unauthorized")


def test_tenant_isolation(c):
    a, b = c.api, c.api_b
    tid = a.thread("mine")
    rid = a.run(tid, "isolated slow:30x100")
    assert_error(b.get(f"/v1/threads/{tid}"), 404, "not_found")
    assert_error(b.get(f"/v1/runs/{rid}"), 404, "not_found")
    assert_error(b.get(f"/v1/runs/{rid}/events"), 404, "not_found")
    assert_error(b.get(f"/v1/threads/{tid}/events"), 404, "not_found")
    assert_error(b.post(f"/v1/runs/{rid}/cancel"), 404, "not_found")
    assert_error(b.post(f"/v1/threads/{tid}/runs", {"input": "x"}), 404, "not_found")
    assert tid not in [t["id"] for t in b.get("/v1/threads?limit=100").json["items"]]
    assert a.run_state(rid)["status"] == "running"
    a.post(f"/v1/runs/{rid}/cancel")


def test_statement_that_may_have_run_is_not_retried(c):
    """The store retried a statement once when its pooled connection died, even
    after the statement had been sent (it may have run: here a trigger's nextval,
    which no rollback undoes). Now only a statement that never left is retried."""
    c.stack.psql("""
        CREATE SEQUENCE IF NOT EXISTS test_retry_probe_seq;
        CREATE OR REPLACE FUNCTION test_retry_probe() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM nextval('test_retry_probe_seq'); PERFORM pg_sleep(2); RETURN NEW; END $$;
        DROP TRIGGER IF EXISTS test_retry_probe ON threads;
        CREATE TRIGGER test_retry_probe BEFORE INSERT ON threads FOR EACH ROW
          WHEN (NEW.title = 'retry-probe') EXECUTE FUNCTION test_retry_probe();""")
    try:
        api = Client(c.stack.url, c.key)
        for _ in range(20):  # every worker of pod-1 has open (reusable) pooled connections
            assert api.get("/pod/pod-1/v1/threads?limit=1").status == 200
        out = {}
        t = threading.Thread(target=lambda: out.update(r=api.post("/pod/pod-1/v1/threads",
                                                                     {"title": "retry-probe"})))
        t.start()
        pid = wait_until(lambda: c.stack.psql(
            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
            " AND query LIKE 'WITH t AS (INSERT INTO threads%'"), 10, "the insert in its trigger")
        assert c.stack.psql(f"SELECT pg_terminate_backend({int(pid)})") == "t"
        t.join(30)
        assert not t.is_alive(), "POST /v1/threads did not answer"
        r = out["r"]
        assert r.status == 503 and r.json["error"]["code"] == "unavailable", r
        # The statement ran once: no second nextval, and no thread (its transaction died).
        assert c.stack.psql("SELECT last_value FROM test_retry_probe_seq") == "1"
        assert c.stack.psql("SELECT count(*) FROM threads WHERE title = 'retry-probe'") == "0"
    finally:
        c.stack.psql("DROP TRIGGER IF EXISTS test_retry_probe ON threads;"
                     " DROP FUNCTION IF EXISTS test_retry_probe(); DROP SEQUENCE IF EXISTS test_retry_probe_seq")


def test_tenant_run_limit_is_atomic(c):
    """Concurrent run creations of one tenant never exceed tenant_max_active_runs
    (it was check-then-insert: each transaction counted before the others inserted)."""
    st = Stack("test-integration-limit", pods=2, workers=2, env={"TETHER_TENANT_MAX_ACTIVE_RUNS": "3"})
    st.down()
    st.up()
    try:
        api = Client(st.url, st.new_key("limit"))
        n = 16
        for rnd in range(3):
            tids = [api.thread() for _ in range(n)]
            barrier = threading.Barrier(n)
            res = [None] * n

            def go(i):
                barrier.wait(10)
                res[i] = api.post(f"/v1/threads/{tids[i]}/runs", {"input": f"limit {rnd} slow:200x100"})

            ths = [threading.Thread(target=go, args=(i,)) for i in range(n)]
            for t in ths:
                t.start()
            for t in ths:
                t.join(60)
            codes = sorted(r.status for r in res)
            assert codes == [202] * 3 + [429] * (n - 3), f"round {rnd}: {codes}"
            assert all(r.json["error"]["code"] == "quota_exceeded" and r.json["error"]["limit"] == "max_active_runs"
                       and r.headers.get("retry-after") == "1" for r in res if r.status == 429)
            assert st.psql("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')") == "3"
            for r in res:
                if r.status == 202:
                    assert api.post(f"/v1/runs/{r.json['run_id']}/cancel").status == 200
            wait_until(lambda: st.psql("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
                       == "0", 20, "the runs to be cancelled")
    finally:
        st.down()


def test_fifty_concurrent_runs_two_watchers_each(c):
    runs = []
    for i in range(50):
        tid = c.api.thread()
        runs.append((tid, c.api.run(tid, f"load {i} slow:10x50")))
    ws = []
    for i, (_, rid) in enumerate(runs):
        for pod in ("pod-1", "pod-2"):
            w = PodWatcher(c, pod, rid, reconnect=True)
            w.start()
            ws.append((rid, w))
    for rid, w in ws:
        w.wait(120, f"run {rid}")
    for rid, w in ws:
        s = c.api.run_state(rid)
        assert s["status"] == "completed", s
        assert w.final_status() == "completed", w.kinds()
        assert w.text_after_last_reset() == s["output"], (rid, w.events)
        assert_one_attempt_text(s["output"], 10)
    assert "AddressSanitizer" not in c.stack.log("pod-1") + c.stack.log("pod-2")


def test_tetherctl_chat_and_watch(c):
    env = dict(os.environ, TETHER_URL=c.stack.url, TETHER_KEY=c.key)
    p = subprocess.run([os.path.join(BIN, "tetherctl"), "chat", "hello from the CLI slow:4x20"], env=env,
                       text=True, capture_output=True, timeout=60)
    assert p.returncode == 0, p
    run_id = [l.split()[1] for l in p.stderr.split("\n") if l.startswith("run ")][0]
    out = c.api.run_state(run_id)["output"]
    assert p.stdout == out + "\n", (p.stdout, out)
    assert_one_attempt_text(out, 4)
    # watch: every event, raw; --from resumes after the given id.
    p = subprocess.run([os.path.join(BIN, "tetherctl"), "watch", run_id], env=env, text=True,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p
    ids = [l.split()[0] for l in p.stdout.strip().split("\n")]
    assert ids == [f"1:{i}" for i in range(6)], ids
    p = subprocess.run([os.path.join(BIN, "tetherctl"), "watch", run_id, "--from", "1:3"], env=env, text=True,
                       capture_output=True, timeout=60)
    assert [l.split()[0] for l in p.stdout.strip().split("\n")] == ["1:4", "1:5"], p.stdout
    # Failures are exit codes with a message, not a hang.
    p = subprocess.run([os.path.join(BIN, "tetherctl"), "chat", "fail:1 slow:3x10"], env=env, text=True,
                       capture_output=True, timeout=60)
    assert p.returncode == 1 and "provider_error" in p.stderr, p
    p = subprocess.run([os.path.join(BIN, "tetherctl"), "watch", "not-a-uuid"], env=env, text=True,
                       capture_output=True, timeout=60)
    assert p.returncode == 2 and "UUID" in p.stderr, p


TOOL_CALL_LINE = re.compile(r"^\[tool call (\S+) (.*), id (\S+)\]$", re.M)


def tetherctl_chat(c, *args, timeout=120):
    """tetherctl chat with the suite's key, stdin not a terminal; (process, run ids in order)."""
    env = dict(os.environ, TETHER_URL=c.stack.url, TETHER_KEY=c.key)
    p = subprocess.run([os.path.join(BIN, "tetherctl"), "chat", *args], env=env, text=True,
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p, [l.split()[1] for l in p.stderr.split("\n") if l.startswith("run ")]


def assert_tool_loop(c, p, runs, output, n_calls=1):
    """One round: the first run asked for get_weather({"n":1}) n_calls times, the
    continuation answered each with output; returns the call ids."""
    assert p.returncode == 0, p
    assert len(runs) == 2, p.stderr
    first, cont = runs
    assert f"run {cont} (continues {first})" in p.stderr, p.stderr
    calls = TOOL_CALL_LINE.findall(p.stdout)
    assert len(calls) == n_calls, p.stdout
    assert all(name == "get_weather" and json.loads(args) == {"n": 1} for name, args, _ in calls), calls
    ids = [cid for _, _, cid in calls]
    s0 = c.api.run_state(first)
    assert s0["status"] != "running", s0
    s = c.api.run_state(cont)
    assert s["status"] == "completed", s
    assert s.get("continues") == first, s
    for cid in ids:
        assert s["output"].count(f"tool={cid}:{output} ") == 1, (cid, s["output"])
        assert p.stdout.count(f"[tool output for {cid}: {json.dumps(output)}]") == 1, p.stdout
    assert p.stdout.endswith(s["output"] + "\n"), (p.stdout, s["output"])
    return ids


def test_tetherctl_tool_loop(c):
    """tetherctl chat answers the mock's tool call from --tool NAME=CMD (the arguments on
    the command's stdin, its stdout the output) and follows the continuation."""
    p, runs = tetherctl_chat(c, "--tool", "get_weather=cat >&2; echo sunny", "tool:get_weather slow:3x20")
    (cid,) = assert_tool_loop(c, p, runs, "sunny")
    assert '{"n":1}' in p.stderr, p.stderr  # what the command read on its stdin
    # The thread holds the whole loop: the call, then its output.
    t = c.api.get(f"/v1/threads/{c.api.run_state(runs[0])['thread_id']}").json
    roles = [m["role"] for m in t["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"], t["messages"]
    assert [x.get("id") for x in t["messages"][1]["tool_calls"]] == [cid], t["messages"][1]
    assert t["messages"][2]["tool_call_id"] == cid and t["messages"][2]["content"] == "sunny", t["messages"][2]
    assert t["status"] == "idle", t
    # --tool-output answers every call; the same text goes back.
    p, runs = tetherctl_chat(c, "--tool-output", "fixed text", "tool:get_weather slow:2x10")
    assert_tool_loop(c, p, runs, "fixed text")


def test_tetherctl_tool_failures(c):
    """A failing or hanging command is answered with an error text that says so; with no
    way to answer (no mapping, no terminal) chat stops at once with status 3."""
    p, runs = tetherctl_chat(c, "--tool", "get_weather=echo half; exit 4", "tool:get_weather slow:2x10")
    assert_tool_loop(c, p, runs, "error: the command for tool get_weather exited with status 4; its output: half")
    assert "exited with status 4; answering call" in p.stderr, p.stderr
    t0 = time.monotonic()
    p, runs = tetherctl_chat(c, "--tool-timeout", "1", "--tool", "get_weather=sleep 60", "tool:get_weather slow:2x10")
    assert time.monotonic() - t0 < 30, "the command's timeout did not hold"
    assert_tool_loop(c, p, runs, "error: the command for tool get_weather timed out after 1 s")
    p, runs = tetherctl_chat(c, "--tool", "other=true", "tool:get_weather slow:2x10")
    assert p.returncode == 3, p
    assert "--tool get_weather=CMD" in p.stderr and "requires_action" in p.stderr, p.stderr
    assert len(runs) == 1, p.stderr
    s = c.api.run_state(runs[0])
    assert s["status"] == "requires_action", s
    assert [x["name"] for x in s["required_action"]["tool_calls"]] == ["get_weather"], s
    r = c.api.post(f"/v1/runs/{runs[0]}/cancel")
    assert r.status == 200 and r.json["status"] == "cancelled", r
    p, _ = tetherctl_chat(c, "--tool", "get weather=true", "hello")
    assert p.returncode == 2 and "NAME=CMD" in p.stderr, p


def test_tetherctl_tool_loop_owner_killed(c):
    """The owner pod dies while the reply that will call a tool streams: tetherctl shows
    the reset, answers the new attempt's call once, and the loop completes."""
    env = dict(os.environ, TETHER_URL=c.stack.url, TETHER_KEY=c.key)
    proc = subprocess.Popen([os.path.join(BIN, "tetherctl"), "chat", "--tool", "get_weather=echo sunny",
                             "tool:get_weather slow:20x250"], env=env, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_lines, out_parts = [], []
    readers = [threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")), daemon=True),
               threading.Thread(target=lambda: out_parts.extend(iter(lambda: proc.stdout.read(1), "")), daemon=True)]
    for r in readers:
        r.start()
    pod = None
    try:
        first = wait_until(lambda: [l.split()[1] for l in err_lines if l.startswith("run ")][:1], 30,
                           "tetherctl to start the run")[0]
        s = wait_until(lambda: (lambda s: s if s and s["owner"] else None)(c.api.run_state_or_none(first)), 30,
                       "an owner")
        pod = s["owner"]["pod"]
        wait_until(lambda: "chunk-3 " in "".join(out_parts), 30, "attempt 1's third chunk on tetherctl's stdout")
        assert c.api.run_state(first)["status"] == "running"
        c.stack.kill(pod)
        proc.wait(timeout=150)
        for r in readers:
            r.join(10)
        out = "".join(out_parts)
    finally:
        if proc.poll() is None:
            proc.kill()
        if pod:
            c.stack.start(pod)
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(err_lines))
    runs = [l.split()[1] for l in p.stderr.split("\n") if l.startswith("run ")]
    assert "[the server generating this reply was lost; attempt 2 restarts it" in p.stdout, p.stdout
    assert c.api.run_state(runs[0])["attempt"] == 2
    after_reset = p.stdout[p.stdout.index("attempt 2 restarts it"):]
    ids = assert_tool_loop(c, subprocess.CompletedProcess(p.args, p.returncode, after_reset, p.stderr), runs, "sunny")
    assert p.stdout.count("[tool output for ") == 1, p.stdout  # answered exactly once
    assert TOOL_CALL_LINE.findall(p.stdout)[-1][2] == ids[0]


def test_stack_contract(c):
    """scripts/stack up --pods 3 --workers 2, pods, kill, start, down: nothing left behind."""
    st = Stack("test-stackctl", pods=3, workers=2)
    st.down()
    st.up()
    try:
        state = st.pods_state()
        assert sorted(state) == ["pod-1", "pod-2", "pod-3"] and all(v[0] == "up" for v in state.values()), state
        pids = [int(v[1]) for v in state.values()]
        for pod in state:
            pids += st.worker_pids(pod)
            assert len(st.worker_pids(pod)) == 2
        for name in ("nats/nats.pid", "nginx/nginx.pid", "cron.pid"):
            with open(os.path.join(st.dir, name)) as f:
                pids.append(int(f.read().strip()))
        pg = subprocess.run(["head", "-1", os.path.join(st.stack_pgdata(), "postmaster.pid")], text=True,
                            capture_output=True).stdout.strip()
        pids.append(int(pg))
        st.kill("pod-2")
        assert st.pods_state()["pod-2"][0] == "down"
        st.start("pod-2")
        assert st.pods_state()["pod-2"][0] == "up"
        pids += [int(st.pods_state()["pod-2"][1])] + st.worker_pids("pod-2")
        assert Client(st.url).get("/pod/pod-2/readyz").status == 200
        st.up()  # twice is harmless
        assert st.pods_state() == {p: ("up", st.pods_state()[p][1]) for p in state}
    finally:
        st.down()
    alive = [p for p in pids if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert not alive, f"processes left behind by down: {alive}"


ORDER = ["test_health_every_pod", "test_nginx_balances_across_pods_and_workers", "test_admin_keys",
         "test_unknown_route_and_wrong_method", "test_smoke_script"]

if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
