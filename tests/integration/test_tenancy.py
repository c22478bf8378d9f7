"""Tenancy suite (issue 13): key ids, listing and revocation on every pod, through
nginx against real PostgreSQL and NATS.

    python3 tests/integration/test_tenancy.py [name-filter]

The revocation figures (revoke -> 401 on every worker, revoke -> end of open
streams) are printed as FIGURE lines.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from natsjs import Nats, run_messages  # noqa: E402
from tether import (ROOT, Client, Watcher, run_tests, stack_ctx, stack_teardown,  # noqa: E402
                    wait_until)

BIN = os.environ.get("TETHER_BIN_DIR", os.path.join(ROOT, "build"))
PODS = ("pod-1", "pod-2")
# Few request threads per worker: a pod's workers answer blocks of THREADS requests
# in turn (idle threads queue on accept() in FIFO order), so a short sequence of
# requests to one pod reaches both of its workers.
THREADS = 4
STREAM_MAX_MB = 64
HISTORY_MAX_BYTES = 65536
HISTORY_MAX_TURNS = 3
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def setup():
    # A long key cache: what refuses a revoked key in time is the broadcast, not
    # the cache's expiry.
    return stack_ctx("test-tenancy", "tenancy-a", env={
        "TETHER_HEARTBEAT_S": "1", "TETHER_THREADS": str(THREADS), "TETHER_AUTH_CACHE_MS": "30000",
        "TETHER_PURGE_GRACE_S": "2", "TETHER_STREAM_MAX_MB": str(STREAM_MAX_MB),
        "TETHER_HISTORY_MAX_BYTES": str(HISTORY_MAX_BYTES),
        "TETHER_HISTORY_MAX_TURNS": str(HISTORY_MAX_TURNS)})


teardown = stack_teardown


def assert_error(r, status, code):
    assert r.status == status, f"expected {status} {code}, got {r}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert set(r.json) == {"error"} and r.json["error"]["code"] == code, r.body
    assert isinstance(r.json["error"]["message"], str) and r.json["error"]["message"], r.json


def new_key(c, tenant):
    r = c.admin.post(f"/v1/admin/tenants/{tenant}/keys")
    assert r.status == 201, r
    assert set(r.json) == {"tenant", "key", "id"} and r.json["tenant"] == tenant, r.json
    assert UUID_RE.match(r.json["id"]), r.json
    return r.json["key"], r.json["id"]


def pod_get(c, pod, path, key):
    return Client(c.stack.url, key).get(f"/pod/{pod}{path}")


def workers_of(c, pod, n):
    """The workers that answer n sequential requests to a pod (one block each)."""
    seen = set()
    for _ in range(n):
        r = Client(c.stack.url).get(f"/pod/{pod}/healthz")
        assert r.status == 200, r
        seen.add(r.json["worker"])
    return seen


class TimedWatcher(Watcher):
    """A watcher that notes when its stream ended."""

    def run(self):
        try:
            super().run()
        finally:
            self.ended_at = time.monotonic()


# ---------------------------------------------------------------- keys

def test_key_ids_list_and_revoke_contract(c):
    k1, id1 = new_key(c, "keys-contract")
    k2, id2 = new_key(c, "keys-contract")
    assert id1 != id2
    r = c.admin.get("/v1/admin/tenants/keys-contract/keys")
    assert r.status == 200, r
    assert set(r.json) == {"items"} and [i["id"] for i in r.json["items"]] == [id1, id2], r.json
    for it in r.json["items"]:
        assert set(it) == {"id", "created_at", "revoked_at"}, it
        assert TS_RE.match(it["created_at"]) and it["revoked_at"] is None, it
    # Only the admin token lists and revokes.
    anon = Client(c.stack.url)
    assert_error(anon.get("/v1/admin/tenants/keys-contract/keys"), 401, "unauthorized")
    assert_error(anon.req("DELETE", f"/v1/admin/keys/{id1}", key=k1), 401, "unauthorized")
    assert Client(c.stack.url, k1).get("/v1/threads").status == 200

    r = c.admin.req("DELETE", f"/v1/admin/keys/{id1}")
    assert r.status == 200, r
    assert set(r.json) == {"id", "revoked_at"} and r.json["id"] == id1, r.json
    assert TS_RE.match(r.json["revoked_at"]), r.json
    revoked_at = r.json["revoked_at"]
    # Idempotent: the same answer, the first revocation's time.
    r = c.admin.req("DELETE", f"/v1/admin/keys/{id1}")
    assert r.status == 200 and r.json == {"id": id1, "revoked_at": revoked_at}, r
    items = c.admin.get("/v1/admin/tenants/keys-contract/keys").json["items"]
    assert items == [{"id": id1, "created_at": items[0]["created_at"], "revoked_at": revoked_at},
                     {"id": id2, "created_at": items[1]["created_at"], "revoked_at": None}], items
    assert_error(Client(c.stack.url, k1).get("/v1/threads"), 401, "unauthorized")
    assert Client(c.stack.url, k2).get("/v1/threads").status == 200

    assert_error(c.admin.req("DELETE", "/v1/admin/keys/00000000-0000-4000-8000-000000000000"),
                 404, "not_found")
    assert_error(c.admin.req("DELETE", "/v1/admin/keys/not-a-uuid"), 400, "invalid_id")
    assert_error(c.admin.get("/v1/admin/tenants/nobody-here/keys"), 404, "not_found")
    assert_error(c.admin.get("/v1/admin/tenants/Bad!/keys"), 400, "invalid_field")


def test_tetherctl_key_list_and_revoke(c):
    env = dict(os.environ, TETHER_URL=c.stack.url, TETHER_ADMIN_TOKEN=c.stack.admin)
    ctl = os.path.join(BIN, "tetherctl")

    def run(*args):
        return subprocess.run([ctl, *args], env=env, text=True, capture_output=True, timeout=30)

    p = run("key", "keys-ctl")
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    p = run("key", "list", "keys-ctl")
    assert p.returncode == 0, p.stderr
    items = json.loads(p.stdout)["items"]
    assert [i["id"] for i in items] == [made["id"]] and items[0]["revoked_at"] is None, items
    p = run("key", "revoke", made["id"])
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["id"] == made["id"] and TS_RE.match(out["revoked_at"]), out
    assert_error(Client(c.stack.url, made["key"]).get("/v1/threads"), 401, "unauthorized")
    p = run("key", "revoke", "00000000-0000-4000-8000-000000000000")
    assert p.returncode == 1 and '"not_found"' in p.stdout, (p.returncode, p.stdout, p.stderr)


def test_revoke_refused_on_every_worker_within_1s(c):
    key, kid = new_key(c, "revoke-latency")
    # Every worker of every pod has the key cached (valid for 30 s).
    for pod in PODS:
        assert len(workers_of(c, pod, 4 * THREADS)) == 2, f"{pod} did not show both workers"
        for _ in range(4 * THREADS):
            r = pod_get(c, pod, "/v1/threads", key)
            assert r.status == 200, r
    t0 = time.monotonic()
    r = c.admin.req("DELETE", f"/v1/admin/keys/{kid}")
    assert r.status == 200, r
    figures = {}
    for pod in PODS:
        # Poll until a run of 4 blocks of requests (both workers, twice) is all 401;
        # the figure is the time of the first request of that run.
        run_start, streak = None, 0
        deadline = t0 + 5
        while streak < 4 * THREADS:
            assert time.monotonic() < deadline, f"{pod} still accepts the revoked key after 5 s"
            ts = time.monotonic()
            r = pod_get(c, pod, "/v1/threads", key)
            if r.status == 401:
                assert r.json["error"]["code"] == "unauthorized", r
                if streak == 0:
                    run_start = ts
                streak += 1
            else:
                assert r.status == 200, r
                streak = 0
        figures[pod] = run_start - t0
    worst = max(figures.values())
    print(f"FIGURE revoke -> 401 on every worker: worst {worst * 1000:.1f} ms "
          f"({', '.join(f'{p} {v * 1000:.1f} ms' for p, v in figures.items())}; "
          f"measured from sending DELETE)", flush=True)
    assert worst <= 1.0, figures


def test_revoke_ends_open_streams_within_1s(c):
    key, kid = new_key(c, "revoke-streams")
    api = Client(c.stack.url, key)
    other_key, _ = new_key(c, "revoke-streams")
    other = Client(c.stack.url, other_key)
    runs = []
    for _ in range(2):
        tid = api.thread()
        runs.append(api.run(tid, "long slow:600x100"))  # 60 s of output
    watchers = []
    for rid in runs:
        for pod in PODS:
            for _ in range(2):
                w = TimedWatcher(api, f"/pod/{pod}/v1/runs/{rid}/events")
                w.start()
                watchers.append(w)
    # The same runs watched with another key of the tenant: those streams stay.
    keep = [TimedWatcher(other, f"/pod/{pod}/v1/runs/{runs[0]}/events") for pod in PODS]
    for w in keep:
        w.start()
    for w in watchers + keep:
        assert w.connected.wait(10), f"stream {w.path} did not open: {w.status} {w.error}"
    # Streams are live (deltas arriving) before the revocation.
    wait_until(lambda: all(w.kinds().count("delta") >= 2 for w in watchers + keep), 10,
               "deltas on every stream")
    t0 = time.monotonic()
    r = c.admin.req("DELETE", f"/v1/admin/keys/{kid}")
    assert r.status == 200, r
    for w in watchers:
        w.wait(5, "the revoked key's stream to end")
    lat = [w.ended_at - t0 for w in watchers]
    print(f"FIGURE revoke -> end of open streams: worst {max(lat) * 1000:.1f} ms over {len(lat)} "
          f"streams on {len(PODS)} pods (median {sorted(lat)[len(lat) // 2] * 1000:.1f} ms; "
          f"measured from sending DELETE)", flush=True)
    assert max(lat) <= 1.0, lat
    for w in watchers:
        assert w.status == 200 and "done" not in w.kinds(), (w.status, w.kinds()[-3:])
        assert not [e for e in w.events if e[0] > w.ended_at], "events after the end"
    # Resuming with the revoked key is refused; the other key's streams go on.
    w = watchers[0]
    r = api.get(f"/v1/runs/{runs[0]}/events", headers={"Last-Event-ID": w.last_id or "0:0"})
    assert_error(r, 401, "unauthorized")
    n = [len(k.events) for k in keep]
    wait_until(lambda: all(len(k.events) > m for k, m in zip(keep, n)), 5,
               "the other key's streams to go on")
    assert not any(k.done.is_set() for k in keep), "a stream of an unrevoked key ended"
    for k in keep:
        k.close()
    for rid in runs:
        assert other.post(f"/v1/runs/{rid}/cancel").status == 200


# ---------------------------------------------------------------- quotas

DEFAULTS = {"max_active_runs": 256, "max_streams": 4096, "max_output_bytes": 1 << 20,
            "requests_per_s": 1000}


def set_limits(c, tenant, **limits):
    r = c.admin.req("PUT", f"/v1/admin/tenants/{tenant}/limits", body=limits)
    assert r.status == 200, r
    return r.json


def assert_quota(r, limit):
    assert r.status == 429, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert set(r.json) == {"error"} and set(r.json["error"]) == {"code", "message", "limit"}, r.json
    assert r.json["error"]["code"] == "quota_exceeded" and r.json["error"]["limit"] == limit, r.json
    assert r.headers.get("retry-after") == "1", r.headers


def test_limits_route_contract(c):
    new_key(c, "limits-contract")
    path = "/v1/admin/tenants/limits-contract/limits"
    r = c.admin.get(path)
    assert r.status == 200 and r.json == DEFAULTS, r
    assert set_limits(c, "limits-contract", max_streams=7) == dict(DEFAULTS, max_streams=7)
    assert set_limits(c, "limits-contract", max_active_runs=2, requests_per_s=9) == dict(
        DEFAULTS, max_streams=7, max_active_runs=2, requests_per_s=9)
    assert set_limits(c, "limits-contract", max_streams=None, max_output_bytes=0) == dict(
        DEFAULTS, max_active_runs=2, requests_per_s=9, max_output_bytes=0)
    assert set_limits(c, "limits-contract") == dict(DEFAULTS, max_active_runs=2, requests_per_s=9,
                                                    max_output_bytes=0)
    assert c.admin.get(path).json == dict(DEFAULTS, max_active_runs=2, requests_per_s=9, max_output_bytes=0)
    for bad in ({"max_streams": -1}, {"max_streams": "3"}, {"max_streams": 1.5},
                {"requests_per_s": 10 ** 7}, {"max_runs": 3}):
        r = c.admin.req("PUT", path, body=bad)
        assert_error(r, 400, "invalid_field")
        assert r.json["error"]["field"] == list(bad)[0], r.json
    assert c.admin.get(path).json["max_streams"] == DEFAULTS["max_streams"]
    assert_error(c.admin.get("/v1/admin/tenants/nobody-here/limits"), 404, "not_found")
    assert_error(c.admin.req("PUT", "/v1/admin/tenants/nobody-here/limits", body={}), 404, "not_found")
    assert_error(Client(c.stack.url).get(path), 401, "unauthorized")


def test_output_bytes_quota_fails_the_run(c):
    key, _ = new_key(c, "quota-output")
    set_limits(c, "quota-output", max_output_bytes=300)
    api = Client(c.stack.url, key)
    rid = api.run(api.thread(), "too long slow:100x5")  # ~25 bytes a chunk
    w = TimedWatcher(api, f"/v1/runs/{rid}/events")
    w.start()
    w.wait(30)
    assert w.final_status() == "failed", w.kinds()
    assert w.data(-1)["error"]["code"] == "output_limit", w.data(-1)
    assert len(w.all_text().encode()) <= 300, len(w.all_text())
    st = api.wait_terminal(rid)
    assert st["status"] == "failed" and st["error"]["code"] == "output_limit", st
    # Within the quota a run completes.
    rid = api.run(api.thread(), "short slow:3x5")
    assert api.wait_terminal(rid)["status"] == "completed"


def test_streams_quota_across_the_cluster(c):
    key, _ = new_key(c, "quota-streams")
    set_limits(c, "quota-streams", max_streams=4)
    api = Client(c.stack.url, key)
    rid = api.run(api.thread(), "watched slow:600x100")
    held = []
    for pod in PODS:
        for _ in range(2):
            w = TimedWatcher(api, f"/pod/{pod}/v1/runs/{rid}/events")
            w.start()
            assert w.connected.wait(10), (w.status, w.error)
            held.append(w)

    # Every worker learns the others' streams within one sync (quota.h): poll until a
    # fifth stream is refused by each pod (one that got in meanwhile is closed again).
    def refused(pod):
        w = TimedWatcher(api, f"/pod/{pod}/v1/runs/{rid}/events")
        w.start()
        if w.connected.wait(2):
            w.close()
            w.wait(5)
            return False
        w.wait(5)
        return w.status == 429 and w.error_body

    for pod in PODS:
        body = wait_until(lambda: refused(pod), 10, f"{pod} to refuse a fifth stream")
        e = json.loads(body)["error"]
        assert e["code"] == "quota_exceeded" and e["limit"] == "max_streams", e
    # A slot freed is a slot to take.
    held.pop().close()
    deadline = time.monotonic() + 10
    while True:
        w = TimedWatcher(api, f"/pod/pod-1/v1/runs/{rid}/events")
        w.start()
        if w.connected.wait(2):
            held.append(w)
            break
        w.wait(5)
        assert w.status == 429 and time.monotonic() < deadline, (w.status, "no slot after a close")
    for w in held:
        w.close()
    assert api.post(f"/v1/runs/{rid}/cancel").status == 200


def test_requests_per_s_quota_across_the_cluster(c):
    key, _ = new_key(c, "quota-rps")
    limit, secs = 20, 4
    set_limits(c, "quota-rps", requests_per_s=limit)
    ok, refused = [0], [0]
    lock = threading.Lock()
    stop = time.monotonic() + secs

    def flood(pod):
        cl = Client(c.stack.url, key)
        while time.monotonic() < stop:
            r = cl.get(f"/pod/{pod}/v1/threads")
            with lock:
                if r.status == 200:
                    ok[0] += 1
                else:
                    assert_quota(r, "requests_per_s")
                    refused[0] += 1

    ths = [threading.Thread(target=flood, args=(p,)) for p in PODS for _ in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(secs + 30)
    print(f"FIGURE requests_per_s={limit} over {secs} s from 4 clients on 2 pods: {ok[0]} admitted "
          f"({ok[0] / secs:.1f}/s), {refused[0]} refused", flush=True)
    # Cluster-wide: the sum over workers, not 4 workers x the quota. The slack is
    # what workers admit before they see each other's counts (quota.h): at most one
    # 100 ms share each per sync, measured at 20-40 % over for a quota this small.
    assert refused[0] > ok[0], (ok, refused)
    assert limit * (secs - 1) <= ok[0] <= limit * secs * 1.5, (ok, refused)


def p50(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def run_start_ms(api):
    """POST a run with Accept: text/event-stream; ms until its first delta."""
    tid = api.thread()
    w = TimedWatcher(api, f"/v1/threads/{tid}/runs", method="POST", body={"input": "b slow:1x0"})
    t0 = time.monotonic()
    w.start()
    w.wait(30)
    assert w.final_status() == "completed", w.kinds()
    first = next(e[0] for e in w.events if e[2] == "delta")
    return (first - t0) * 1000


def b_exact_runs(api, n):
    """n runs of tenant B with two watchers each: each sees chunks 1..10 once, done."""
    ws = []
    for i in range(n):
        rid = api.run(api.thread(), f"b exact {i} slow:10x20")
        for pod in PODS:
            w = TimedWatcher(api, f"/pod/{pod}/v1/runs/{rid}/events")
            w.start()
            ws.append(w)
    for w in ws:
        w.wait(60)
        assert w.final_status() == "completed", w.kinds()
        assert "reset" not in w.kinds() and w.kinds().count("done") == 1, w.kinds()
        assert_text_once(w.all_text(), 10)


def assert_text_once(text, n):
    parts = text.split()
    got = [int(parts[i + 1][6:]) for i in range(0, len(parts) - 1, 2)]
    assert got == list(range(1, n + 1)), got


LIMIT_NAMES = ("max_active_runs", "max_streams", "requests_per_s")


def flood(url, key, thread_ids, rps, stop, counts):
    """Tenant A's flood, in its own process (its threads do not take the test's
    GIL): runs on every thread, streams on its runs and plain requests, together
    five times its requests_per_s (a 2-core test machine has no room for more
    without slowing everyone by CPU alone); counts[i] = 429s seen per LIMIT_NAMES[i]."""
    a = Client(url, key)
    runs = []
    lock = threading.Lock()
    slot = [time.monotonic()]

    def pace():
        with lock:
            slot[0] = max(slot[0] + 1.0 / (5 * rps), time.monotonic() - 0.1)
            t = slot[0]
        stop.wait(max(0, t - time.monotonic()))

    def note(status, body):
        if status != 429:
            return
        e = json.loads(body)["error"]
        assert e["code"] == "quota_exceeded", e
        with counts.get_lock():
            counts[LIMIT_NAMES.index(e["limit"])] += 1

    def flood_runs(tid):
        while not stop.is_set():
            pace()
            r = a.post(f"/v1/threads/{tid}/runs", {"input": "a slow:600x50"})
            if r.status == 202:
                with lock:
                    runs.append(r.json["run_id"])
            else:
                assert r.status in (409, 429), r
                note(r.status, r.body)

    def flood_streams():
        held = []
        while not stop.is_set():
            with lock:
                rid = runs[-1] if runs else None
            if rid:
                pace()
                w = TimedWatcher(a, f"/v1/runs/{rid}/events")
                w.start()
                if w.connected.wait(2):
                    held.append(w)
                else:
                    w.wait(5)
                    note(w.status, w.error_body)
            held = [h for h in held if not h.done.is_set()]
            stop.wait(0 if rid else 0.01)
        for h in held:
            h.close()

    def flood_requests():
        while not stop.is_set():
            pace()
            r = a.get("/v1/threads")
            note(r.status, r.body)

    ths = [threading.Thread(target=flood_runs, args=(t,)) for t in thread_ids]
    ths += [threading.Thread(target=flood_streams) for _ in range(4)]
    ths += [threading.Thread(target=flood_requests) for _ in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    for rid in runs:
        a.post(f"/v1/runs/{rid}/cancel")


def flood_round(c, a_url_key, b, a_threads, quotas):
    """One round: B's run start p50 idle, then while A floods at its quotas (B's
    watchers exact and A within max_active_runs meanwhile)."""
    import multiprocessing as mp
    url, key_a = a_url_key
    idle = [run_start_ms(b) for _ in range(21)]
    ctx = mp.get_context("fork")
    stop, counts = ctx.Event(), ctx.Array("i", 3)
    proc = ctx.Process(target=flood, args=(url, key_a, a_threads, quotas["requests_per_s"], stop, counts))
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while not all(counts[:]):
            assert time.monotonic() < deadline, f"A did not hit each quota in 30 s: {counts[:]}"
            assert proc.is_alive(), "the flood failed"
            time.sleep(0.05)
        busy = [run_start_ms(b) for _ in range(21)]
        b_exact_runs(b, 4)
        active = int(c.stack.psql("SELECT count(*) FROM runs r JOIN tenants t ON t.id = r.tenant_id"
                                  " WHERE t.name = 'flood-a' AND r.status IN ('queued', 'running')"))
        assert active <= quotas["max_active_runs"], active
        assert proc.is_alive(), "the flood failed"
    finally:
        stop.set()
        proc.join(60)
    assert proc.exitcode == 0, proc.exitcode
    seen = dict(zip(LIMIT_NAMES, counts[:]))
    print(f"FIGURE tenant B run start (POST to first delta) p50: idle {p50(idle):.1f} ms, while A floods "
          f"at its quotas {p50(busy):.1f} ms ({p50(busy) / p50(idle):.2f}x); A's 429s: {seen}", flush=True)
    return idle, busy


def test_flood_by_one_tenant_leaves_another_unslowed(c):
    """Within 2x of idle. Timings on a shared 2-core machine are noisy, and noise
    only ever slows the busy half down: up to three rounds, each with its own
    baseline; one within the bound passes, a real slowdown fails all three."""
    key_a, _ = new_key(c, "flood-a")
    key_b, _ = new_key(c, "flood-b")
    quotas = {"max_active_runs": 4, "max_streams": 4, "requests_per_s": 100}
    set_limits(c, "flood-a", **quotas)
    a, b = Client(c.stack.url, key_a), Client(c.stack.url, key_b)
    a_threads = [a.thread() for _ in range(12)]
    rounds = []
    for _ in range(3):
        idle, busy = flood_round(c, (c.stack.url, key_a), b, a_threads, quotas)
        rounds.append((p50(idle), p50(busy)))
        if p50(busy) <= 2 * p50(idle):
            return
        # Let A's last runs end before the next baseline.
        wait_until(lambda: c.stack.psql("SELECT count(*) FROM runs r JOIN tenants t ON t.id = r.tenant_id"
                                        " WHERE t.name = 'flood-a' AND r.status IN ('queued', 'running')")
                   == "0", 60, "A's runs to end")
    raise AssertionError(f"B's run start p50 over 2x idle in every round (idle ms, busy ms): {rounds}")


# ---------------------------------------------------------------- the store bounded

def test_stream_has_a_size_limit(c):
    nc = Nats(c.stack.env["NATS_URL"])
    try:
        info = nc.request("$JS.API.STREAM.INFO.TETHER_EVENTS", {})
    finally:
        nc.close()
    assert "error" not in info, info
    assert info["config"]["max_bytes"] == STREAM_MAX_MB << 20, info["config"]
    assert info["config"]["discard"] == "old", info["config"]


def test_finished_run_purged_from_the_stream_after_grace(c):
    key, _ = new_key(c, "purge")
    api = Client(c.stack.url, key)
    rid = api.run(api.thread(), "purged later slow:5x10")
    live = TimedWatcher(api, f"/v1/runs/{rid}/events")
    live.start()
    live.wait(30)
    assert live.final_status() == "completed", live.kinds()
    ended = time.monotonic()
    assert len(run_messages(c.stack.env["NATS_URL"], rid)) == 7  # start, 5 deltas, done
    # Gone from JetStream once the grace (2 s here) has passed, and marked so.
    wait_until(lambda: run_messages(c.stack.env["NATS_URL"], rid) == [], 15, "the run's subject purged")
    assert time.monotonic() - ended >= 2 - 0.1, "purged before the grace"
    assert c.stack.psql(f"SELECT purged_at IS NOT NULL FROM runs WHERE id = '{rid}'") == "t"
    # The run replays from PostgreSQL: the same text, one done.
    w = TimedWatcher(api, f"/v1/runs/{rid}/events")
    w.start()
    w.wait(30)
    assert w.final_status() == "completed" and w.kinds().count("done") == 1, w.kinds()
    assert w.all_text() == live.all_text() == api.run_state(rid)["output"], (w.all_text(), live.all_text())
    # A run still going is not touched.
    rid2 = api.run(api.thread(), "still going slow:40x100")
    wait_until(lambda: len(run_messages(c.stack.env["NATS_URL"], rid2)) >= 3, 10, "events of the live run")
    n = len(run_messages(c.stack.env["NATS_URL"], rid2))
    wait_until(lambda: len(run_messages(c.stack.env["NATS_URL"], rid2)) > n + 10, 10, "more events")
    assert api.post(f"/v1/runs/{rid2}/cancel").status == 200


# ---------------------------------------------------------------- the history cap

def converse(api, tid, inputs):
    for text in inputs:
        s = api.wait_terminal(api.run(tid, text))
        assert s["status"] == "completed", s


def sent_history(api, tid, text):
    """Run `text` (with the mock's history directive) and return what the model was
    sent: the thread's messages before the run that the count says (the cap keeps
    the newest), as (role, content), the input last."""
    rid = api.run(tid, text + " history slow:1x0")
    s = api.wait_terminal(rid)
    assert s["status"] == "completed", s
    m = re.match(r"history=(\d+) roles=(\S+) ", s["output"])
    assert m, s["output"]
    msgs = api.get(f"/v1/threads/{tid}").json["messages"]
    assert msgs[-2]["run_id"] == rid and msgs[-2]["role"] == "user", msgs[-2:]
    earlier = [(x["role"], x["content"]) for x in msgs[:-2]]
    n = int(m.group(1)) - 1
    sent = earlier[len(earlier) - n:] + [("user", msgs[-2]["content"])]
    assert ",".join(r for r, _ in sent) == m.group(2), (m.group(2), [r for r, _ in sent])
    return sent, earlier


def nbytes(msgs):
    return sum(len(c.encode()) for _, c in msgs)


def test_history_capped_by_bytes_oldest_turns_first(c):
    key, _ = new_key(c, "history-bytes")
    api = Client(c.stack.url, key)
    tid = api.thread()
    converse(api, tid, [f"turn {i} " + "x" * 30000 + " slow:1x0" for i in range(4)])
    sent, earlier = sent_history(api, tid, "now")
    # Whole turns, newest first, within the byte cap (input included): the two newest.
    assert [r for r, _ in sent] == ["user", "assistant"] * 2 + ["user"], [r for r, _ in sent]
    assert sent[0][1].startswith("turn 2 "), sent[0][1][:10]
    assert nbytes(sent) <= HISTORY_MAX_BYTES
    assert nbytes(earlier[-6:]) + nbytes(sent[-1:]) > HISTORY_MAX_BYTES  # one more would not fit
    # A newest earlier turn that alone passes the cap is left out whole, never cut.
    tid = api.thread()
    converse(api, tid, ["big " + "y" * 60000 + " slow:1x0"])
    sent, _ = sent_history(api, tid, "z" * 10000)
    assert [r for r, _ in sent] == ["user"] and len(sent[0][1]) > 10000, sent


def test_history_capped_by_turns(c):
    key, _ = new_key(c, "history-turns")
    api = Client(c.stack.url, key)
    tid = api.thread()
    converse(api, tid, [f"short {i} slow:1x0" for i in range(5)])
    sent, earlier = sent_history(api, tid, "now")
    assert len(earlier) == 10
    assert [r for r, _ in sent] == ["user", "assistant"] * HISTORY_MAX_TURNS + ["user"], sent
    assert sent[:-1] == earlier[-2 * HISTORY_MAX_TURNS:]
    assert sent[0][1].startswith("short 2 "), sent[0]


def test_history_cap_keeps_a_tool_continuations_turn(c):
    """A continuation sends its own turn (the input, the call, an output past the
    byte cap) whatever the caps; the turns before it are capped as usual."""
    key, _ = new_key(c, "history-tools")
    api = Client(c.stack.url, key)
    tid = api.thread()
    converse(api, tid, [f"before {i} slow:1x0" for i in range(HISTORY_MAX_TURNS + 1)])
    rid = api.run(tid, "tool:lookup history")
    s = wait_until(lambda: (lambda s: s if s["status"] != "running" else None)(api.run_state(rid)), 30,
                   "the run to ask for its tool")
    assert s["status"] == "requires_action", s
    call = s["required_action"]["tool_calls"][0]["id"]
    big = "o" * (HISTORY_MAX_BYTES + 1000)
    r = api.post(f"/v1/runs/{rid}/tool_outputs", {"outputs": [{"tool_call_id": call, "output": big}]})
    assert r.status == 202, r
    s = api.wait_terminal(r.json["run_id"])
    assert s["status"] == "completed", s
    # The earlier turns are left out (the byte cap is spent), the loop in progress is sent.
    assert s["output"] == f"history=3 roles=user,assistant,tool tool={call}:{big} ", s["output"][:80]
    # The next run: the loop's turn (past the byte cap) is left out whole; the input alone.
    sent, _ = sent_history(api, tid, "next")
    assert [r for r, _ in sent] == ["user"], [r for r, _ in sent]


def test_input_over_the_history_cap_refused(c):
    key, _ = new_key(c, "history-input")
    api = Client(c.stack.url, key)
    tid = api.thread()
    r = api.post(f"/v1/threads/{tid}/runs", {"input": "w" * (HISTORY_MAX_BYTES + 1)})
    assert_error(r, 400, "invalid_field")
    assert r.json["error"].get("field") == "input", r.json
    assert "history_max_bytes" in r.json["error"]["message"], r.json
    assert api.get(f"/v1/threads/{tid}").json["messages"] == []
    # At the cap exactly: accepted (the input alone is sent).
    s = api.wait_terminal(api.run(tid, "w" * (HISTORY_MAX_BYTES - 9) + " slow:1x0"))
    assert s["status"] == "completed", s


# ---------------------------------------------------------------- nothing internal open

# One namespace per checkout (as tests/integration/test_faults.py does).
NS = "tether-tn-%05d" % (zlib.crc32(os.path.abspath(__file__).encode()) % 100000)


def sh(cmd):
    return subprocess.run(cmd, shell=True, text=True, capture_output=True)


class OutsideNginx:
    """The stack's own nginx config, run by a second nginx inside a network namespace
    on 192.0.2.1 (TEST-NET-1, not internal); clients in the namespace call it from
    192.0.2.2."""

    def __init__(self, c):
        self.c = c
        self.conf_dir = os.path.join(c.stack.dir, "nginx")
        self.port = c.stack.url.rsplit(":", 1)[1]
        self.base = f"http://192.0.2.1:{self.port}"

    def __enter__(self):
        sh(f"ip netns pids {NS} | xargs -r kill -9")
        sh(f"ip netns del {NS}")
        for cmd in (f"ip netns add {NS}", f"ip netns exec {NS} ip link set lo up",
                    f"ip netns exec {NS} ip addr add 192.0.2.1/32 dev lo",
                    f"ip netns exec {NS} ip addr add 192.0.2.2/32 dev lo"):
            p = sh(cmd)
            assert p.returncode == 0, (cmd, p.stderr)
        with open(os.path.join(self.conf_dir, "nginx.conf")) as f:
            conf = f.read()
        conf = conf.replace(f"listen 127.0.0.1:{self.port};", f"listen 192.0.2.1:{self.port};")
        conf = re.sub(r"pid [^;]+;", f"pid {self.conf_dir}/tn-nginx.pid;", conf)
        conf = re.sub(r"access_log [^;]+;", "access_log off;", conf)
        assert f"listen 192.0.2.1:{self.port};" in conf
        with open(os.path.join(self.conf_dir, "tn-nginx.conf"), "w") as f:
            f.write(conf)
        p = sh(f"ip netns exec {NS} nginx -c {self.conf_dir}/tn-nginx.conf -p {self.conf_dir}")
        assert p.returncode == 0, p.stderr
        wait_until(lambda: self.curl("/healthz").stdout == "200", 10, "the namespace's nginx")
        return self

    def __exit__(self, *exc):
        sh(f"ip netns exec {NS} nginx -c {self.conf_dir}/tn-nginx.conf -p {self.conf_dir} -s stop")
        sh(f"ip netns pids {NS} | xargs -r kill -9")
        sh(f"ip netns del {NS}")

    def curl(self, path):
        """(status in stdout, body in stderr)"""
        return sh(f"ip netns exec {NS} curl -s -m 5 --interface 192.0.2.2 -o /dev/stderr "
                  f"-w '%{{http_code}}' '{self.base}{path}'")

    def python(self, code, *args, timeout=120):
        return subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", code, *args],
                              text=True, capture_output=True, timeout=timeout)


def test_metrics_only_for_internal_addresses(c):
    with OutsideNginx(c) as out:
        p = out.curl("/metrics")
        assert p.stdout == "403", (p.stdout, p.stderr)
        body = json.loads(p.stderr)
        assert body["error"]["code"] == "unauthorized" and "internal" in body["error"]["message"], body
    # From loopback it answers.
    r = Client(c.stack.url).get("/pod/pod-1/metrics")
    assert r.status == 200 and "tether_runs_active" in r.body.decode(), r


# A flood from one outside address: N requests with an unknown key, from 8 threads,
# bound to 192.0.2.2; prints the count per status and one 429 answer.
FLOOD = r"""
import http.client, json, sys, threading, collections
host, port, key, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
counts, lock, sample = collections.Counter(), threading.Lock(), {}
def worker(k):
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=("192.0.2.2", 0))
    for _ in range(k):
        conn.request("GET", "/v1/threads", headers={"Authorization": "Bearer " + key})
        r = conn.getresponse()
        body = r.read()
        with lock:
            counts[r.status] += 1
            if r.status == 429 and not sample:
                sample.update(body=body.decode(), ctype=r.getheader("Content-Type"),
                              retry=r.getheader("Retry-After"))
ts = [threading.Thread(target=worker, args=(n // 8,)) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps({"counts": {str(k): v for k, v in counts.items()}, "sample": sample}))
"""


def auth_counters(c):
    body = Client(c.stack.url).get("/pod/pod-1/metrics").body.decode()
    return tuple(int(re.search(rf"^{name} (\d+)$", body, re.M).group(1))
                 for name in ("tether_auth_unknown_total", "tether_auth_lookups_total"))


def test_bad_key_flood_limited_by_nginx_and_the_negative_cache(c):
    """Unknown keys from outside: nginx answers 429 (JSON) past the per-address
    burst, and what reaches the pods costs one PostgreSQL lookup per worker per
    TETHER_AUTH_NEGATIVE_MS (1 s), not one per request (tether_auth_* counters)."""
    bad = "tk_" + "0" * 40      # well-formed, unknown
    # A baseline with the earlier tests' lookups in it: workers report their counters
    # with the heartbeat (2 s) and /metrics keeps them 1 s, so wait for a reading
    # that held for longer than both.
    last = [auth_counters(c), time.monotonic()]

    def settled():
        now = auth_counters(c)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return now if time.monotonic() - last[1] >= 3.5 else None
    unknown0, lookups0 = wait_until(settled, 30, "the auth counters to settle", interval=0.25)
    with OutsideNginx(c) as out:
        t0 = time.monotonic()
        p = out.python(FLOOD, "192.0.2.1", out.port, bad, "1200")
        took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    counts = {int(k): v for k, v in res["counts"].items()}
    assert set(counts) <= {401, 429}, counts
    assert counts.get(429, 0) >= 300 and counts.get(401, 0) >= 150, counts
    sample = res["sample"]
    assert sample["ctype"].startswith("application/json") and sample["retry"] == "1", sample
    assert json.loads(sample["body"])["error"]["code"] == "too_many_requests", sample
    # The pods counted every 401 (workers report with their heartbeat; /metrics
    # keeps a second) and looked the key up at most once per worker per second.
    unknown, lookups = wait_until(lambda: (lambda u: u if u[0] - unknown0 >= counts[401] else None)(
        auth_counters(c)), 15, "the 401s counted in /metrics")
    workers = len(PODS) * 2
    print(f"FIGURE bad-key flood: {sum(counts.values())} requests in {took:.1f}s from one outside "
          f"address: {counts.get(429, 0)} refused by nginx (429), {counts[401]} by the pods (401) "
          f"with {lookups - lookups0} PostgreSQL lookups", flush=True)
    assert lookups - lookups0 <= workers * (int(took) + 2) + 4, (lookups - lookups0, took)
    # Internal addresses are not limited: the same flood from loopback is all 401.
    api = Client(c.stack.url, bad)
    assert all(api.get("/v1/threads").status == 401 for _ in range(300))


def test_metrics_cached_briefly(c):
    key, _ = new_key(c, "metrics-cache")
    api = Client(c.stack.url, key)

    def completed(body):
        m = re.search(r'^tether_runs\{status="completed"\} (\d+)$', body, re.M)
        return int(m.group(1))

    # A run finished after a scrape shows up within the cache's second (plus one
    # statement): never later, whichever worker of the pod answers.
    before = completed(Client(c.stack.url).get("/pod/pod-1/metrics").body.decode())
    rid = api.run(api.thread(), "counted slow:1x0")
    api.wait_terminal(rid)
    t0 = time.monotonic()
    seen = wait_until(lambda: (lambda n: n if n > before else None)(
        completed(Client(c.stack.url).get("/pod/pod-1/metrics").body.decode())), 5, "the run counted")
    assert seen >= before + 1
    assert time.monotonic() - t0 <= 2.5, "the cache kept the figures longer than its second"


def test_admin_token_refused_at_start(c):
    tetherd = os.path.join(BIN, "tetherd")
    for token, why in (("short-token", "shorter than 32 characters"),
                       ("change-me-admin", "shorter than 32 characters")):
        p = subprocess.run([tetherd], env=dict(os.environ, TETHER_ADMIN_TOKEN=token,
                                               TETHER_LISTEN="127.0.0.1:1"),
                           text=True, capture_output=True, timeout=30)
        assert p.returncode != 0, p
        assert why in p.stderr and token not in p.stderr, p.stderr
    with open(os.path.join(ROOT, "docker/tether.env.example")) as f:
        example = re.search(r"^TETHER_ADMIN_TOKEN=(.*)$", f.read(), re.M).group(1)
    assert example == "change-me-admin", example  # app/config.c ADMIN_TOKEN_EXAMPLE


# ---------------------------------------------------------------- secrets out of argv

def test_no_secret_in_any_command_line(c):
    """Every process on the machine (a superset of those the stack started: pods and
    their workers, NATS, nginx, PostgreSQL, the cron loop and its curl): no command
    line holds the admin token or the NATS password; the stack's files that hold
    them are mode 0600, its socket directory 0700. (The local stack's PostgreSQL
    trusts loopback: it has no password to leak; compose's goes by PGPASSWORD.)"""
    nats_pw = re.match(r"nats://tether:([0-9a-f]{32})@", c.stack.env["NATS_URL"]).group(1)
    secrets = {"admin token": c.stack.admin, "NATS password": nats_pw}
    # The cron's curl runs every 2 s: look until one of its runs was seen.
    state = {}
    with open(os.path.join(c.stack.dir, "state.env")) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            state[k] = v.strip('"')
    seen = set()

    def scan():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            line = " ".join(argv)
            for what, secret in secrets.items():
                assert secret not in line, f"the {what} is in the command line of {pid}: {argv[:3]}"
            if "curl" in argv[0] and "/v1/admin/recover" in line:
                seen.add("cron curl")
            if "tetherd" in argv[0]:
                seen.add("tetherd")
            if "nats-server" in argv[0]:
                seen.add("nats-server")
        return {"cron curl", "tetherd", "nats-server"} <= seen
    wait_until(scan, 15, "a scan that saw the cron's curl, the pods and NATS", interval=0.01)
    # The pods really use the secrets: NATS refuses a client without the password.
    host, port = c.stack.env["NATS_URL"].rsplit("@", 1)[1].rsplit(":", 1)
    try:
        Nats(f"nats://{host}:{port}", timeout=3)
        raise AssertionError("NATS accepted a client without credentials")
    except AssertionError as e:
        assert "closed" in str(e) or "Authorization" in str(e), e
    # The files that hold secrets, and the sockets' directory.
    for path in ("state.env", "pods/pod.env", "nats/nats.conf"):
        mode = os.stat(os.path.join(c.stack.dir, path)).st_mode & 0o777
        assert mode == 0o600, (path, oct(mode))
    socks = state["SOCKS"]
    assert os.stat(socks).st_mode & 0o777 == 0o700 and not os.path.islink(socks), socks
    # Logs show the NATS URL masked, when they show it at all.
    for name in os.listdir(os.path.join(c.stack.dir, "logs")):
        assert nats_pw not in c.stack.log(name[:-4]) if name.endswith(".log") else True, name


ORDER = ["test_key_ids_list_and_revoke_contract", "test_tetherctl_key_list_and_revoke",
         "test_revoke_refused_on_every_worker_within_1s", "test_revoke_ends_open_streams_within_1s",
         "test_limits_route_contract", "test_output_bytes_quota_fails_the_run",
         "test_streams_quota_across_the_cluster", "test_requests_per_s_quota_across_the_cluster",
         "test_flood_by_one_tenant_leaves_another_unslowed", "test_stream_has_a_size_limit",
         "test_finished_run_purged_from_the_stream_after_grace",
         "test_history_capped_by_bytes_oldest_turns_first", "test_history_capped_by_turns",
         "test_history_cap_keeps_a_tool_continuations_turn", "test_input_over_the_history_cap_refused",
         "test_metrics_only_for_internal_addresses",
         "test_bad_key_flood_limited_by_nginx_and_the_negative_cache", "test_metrics_cached_briefly",
         "test_admin_token_refused_at_start", "test_no_secret_in_any_command_line"]

if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
