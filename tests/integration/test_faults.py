"""Faults and limits: broken dependencies, hung providers, bounds, secrets in logs,
admin routes from outside. Real stacks (PostgreSQL, NATS, nginx) on loopback; the
non-internal client runs in a network namespace this test creates.

    python3 tests/integration/test_faults.py [name-filter]
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
from tether import (Client, Stack, Watcher, assert_one_attempt_text, run_tests,  # noqa: E402
                    stack_ctx, stack_teardown, wait_until, watch)

SENTINEL_KEY = "sk-SENTINEL-provider-key-0d1e2a"


# One namespace per checkout, so two test runs on one machine do not collide.
NS = "tether-ns-%05d" % (zlib.crc32(os.path.abspath(__file__).encode()) % 100000)


def sh(cmd):
    return subprocess.run(cmd, shell=True, text=True, capture_output=True)


def netns_down():
    sh(f"ip netns pids {NS} | xargs -r kill -9")
    sh(f"ip netns del {NS}")


def netns_up():
    """A network namespace whose loopback holds 192.0.2.1 (a web server) and 192.0.2.2
    (a client): TEST-NET-1 addresses, not internal ones. The traffic never leaves it."""
    netns_down()
    for cmd in (f"ip netns add {NS}", f"ip netns exec {NS} ip link set lo up",
                f"ip netns exec {NS} ip addr add 192.0.2.1/32 dev lo",
                f"ip netns exec {NS} ip addr add 192.0.2.2/32 dev lo"):
        p = sh(cmd)
        assert p.returncode == 0, (cmd, p.stderr)


def setup():
    netns_up()
    return stack_ctx("test-faults", "faults", env={
        "TETHER_STATEMENT_TIMEOUT_MS": "2000",
        "TETHER_LOG_LEVEL": "debug",
        "TETHER_MAX_RUNS": "4",
        "TETHER_PROVIDER_URL": "http://127.0.0.1:9/v1",
        "TETHER_PROVIDER_KEY": SENTINEL_KEY,
        "TETHER_PROVIDER_MODELS": "sentinel-model",  # allowed besides mock (the default)
        "TETHER_PROVIDER_RETRIES": "1",
        "TETHER_PROVIDER_CONNECT_MS": "300",
    })


def teardown(c):
    try:
        stack_teardown(c)
    finally:
        netns_down()


def assert_error(r, status, code):
    assert r.status == status and r.json and r.json["error"]["code"] == code, f"expected {status} {code}: {r}"


def all_logs(c):
    return "".join(c.stack.log(n) for n in ("pod-1", "pod-2", "nginx-error", "nginx-access", "cron"))


def test_nats_restart_mid_run(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "nats restart slow:30x150")
    ws = [Watcher(Client(c.stack.url, c.key), f"/pod/{p}/v1/runs/{rid}/events", reconnect=True,
                  reconnect_path=f"/v1/runs/{rid}/events") for p in ("pod-1", "pod-2")]
    for w in ws:
        w.start()
    wait_until(lambda: all(w.kinds().count("delta") >= 4 for w in ws), 30, "4 deltas")
    c.stack.nats("stop")
    try:
        for pod in ("pod-1", "pod-2"):
            r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(
                Client(c.stack.url).get(f"/pod/{pod}/readyz")), 20, "readyz to name nats")
            assert r.json["nats"] == "unavailable" and r.json["postgres"] == "ok", r.json
        t0 = time.monotonic()
        r = c.api.post(f"/v1/threads/{c.api.thread()}/runs", {"input": "while nats is down"})
        assert_error(r, 503, "unavailable")
        assert "NATS" in r.json["error"]["message"] and time.monotonic() - t0 < 3, r
        s = c.api.run_state(rid)  # from PostgreSQL
        assert s["status"] == "running" and s["attempt"] == 1, s
    finally:
        c.stack.nats("start")
    s = c.api.wait_terminal(rid, 90)
    assert s["status"] == "completed" and s["attempt"] == 1 and s["takeovers"] == 0, s
    assert_one_attempt_text(s["output"], 30)
    for w in ws:
        w.wait(60)
        assert w.final_status() == "completed", w.kinds()
        ids = w.ids()
        assert len(ids) == len(set(ids)), f"an event arrived twice: {ids}"
        assert ids == [f"1:{i}" for i in range(32)], ids
        assert w.all_text() == s["output"]
    # (nats.c reconnects and the ordered consumer resumes by itself: watchers see no
    # drop at all; with a drop they would resume by Last-Event-ID, same result.)


def test_live_tail_slow_consumer_drops_are_refilled(c):
    """NATS drops live-tail copies when a worker's subscription queues more than
    TETHER_LIVE_PENDING_MSGS (2 here) while a 3000-chunk run streams as fast as it
    can: the hub sees each gap in the next copy's previous sequence and fetches it
    from the stream, so every watcher still gets every event exactly once."""
    st = Stack("faults-slowconsumer", pods=1, workers=1, env={"TETHER_LIVE_PENDING_MSGS": "2"})
    st.up()
    try:
        cl = Client(st.url, st.new_key("slowconsumer"))
        rid = cl.run(cl.thread(), "slow:3000x0")
        ws = [watch(cl, rid) for _ in range(3)]
        s = cl.wait_terminal(rid, 120)
        assert s["status"] == "completed", s
        for w in ws:
            w.wait(60)
            assert w.error is None, w.error
            assert w.final_status() == "completed", w.kinds()[-3:]
            assert w.ids() == [f"1:{i}" for i in range(3002)], w.ids()[:5]
            assert w.all_text() == s["output"]
        log = st.log("pod-1")
        assert "Slow Consumer" in log, "no copy was dropped: the test did not test the gap path"
    finally:
        st.down()


def test_delta_over_max_payload_is_split(c):
    """A provider chunk whose event exceeds the server's max_payload (here 64 KiB; a
    provider line can be 1 MiB, and control bytes escape to six) goes out as several
    deltas under the limit, and the run completes with its exact output. (Before:
    the publish error was ignored and the generator resent until max_run_s.)"""
    from tether import Stack
    st = Stack("test-faults-payload", pods=1, workers=1, env={
        "TETHER_NATS_MAX_PAYLOAD": "65536", "TETHER_MAX_OUTPUT": "131072"})
    st.down()
    st.up()
    try:
        with open(os.path.join(st.dir, "nats", "nats.conf")) as f:
            assert "max_payload: 65536" in f.read().split("\n"), "the NATS server is not limited"
        api = Client(st.url, st.new_key("payload"))
        rid = api.run(api.thread(), "big:102400 slow:2x0", model="mock")
        w = watch(api, rid, reconnect=True)  # as any client (API.md): a drop resumes
        s = api.wait_terminal(rid, 30)
        assert s["status"] == "completed", s
        out = s["output"]
        big = "".join("b" if i % 32 == 31 else chr(i % 32 + 1) for i in range(102399)) + " "
        assert out[:102400] == big, repr(out[:64])
        assert_one_attempt_text(out[102400:], 2)
        w.wait(30)
        assert w.final_status() == "completed", w.kinds()
        assert w.all_text() == out
        deltas = [e for e in w.events if e[2] == "delta"]
        assert len(deltas) > 2 + 6, f"the big chunk was not split: {len(deltas)} deltas"
        assert max(len(e[3].encode()) for e in deltas) < 65536 - 512, "a delta over the limit"
        assert w.ids() == [f"1:{i}" for i in range(len(w.events))], w.ids()
    finally:
        st.down()


def fault_stack(name, faults, pods=1, workers=2, env=None):
    """A stack whose pods honour TETHER_FAULTS (app/fault.h): the ASan build of
    scripts/test is configured with --enable-fault-injection."""
    from tether import Stack
    e = {"TETHER_FAULTS": faults}
    e.update(env or {})
    st = Stack(name, pods=pods, workers=workers, env=e)
    st.down()
    return st


def test_failed_fork_does_not_lose_a_worker_slot(c):
    """The master's first three forks fail (fault injection): each slot is retried
    with a growing delay and the pod ends with all its workers. (Before, a failed
    fork left the slot's pid at -1 for good: the pod never got that worker.)"""
    st = fault_stack("test-faults-fork", "fork:3")
    try:
        st.up()
        wait_until(lambda: len(st.worker_pids("pod-1")) == 2, 30, "pod-1's 2 workers")
        log = st.log("pod-1")
        assert log.count("fault injection: fork fails") == 3, \
            "no injected fork failure: is this the fault-injection build (scripts/build asan)?"
        assert log.count("could not fork a worker: Resource temporarily unavailable; trying again") == 3, \
            log[-3000:]
        assert Client(st.url).get("/pod/pod-1/readyz").status == 200
    finally:
        st.down()


def test_claimed_run_whose_generator_cannot_start_is_handed_back(c):
    """A worker claims an orphan and cannot start its generator thread (fault
    injection: each worker's first takeover spawn fails). It hands the run back,
    fenced, and the sweep resumes it elsewhere; the run completes exactly. (Before,
    it stayed 'running' under a live owner with no generator until max_run_s.)"""
    st = fault_stack("test-faults-spawn", "spawn_takeover:1", pods=2, workers=1,
                     env={"TETHER_RECOVER_EVERY_S": "1"})
    try:
        st.up()
        api = Client(st.url, st.new_key("spawn"))
        rid = api.run(api.thread(), "handed back slow:30x100", model="mock")
        s = wait_until(lambda: (lambda s: s if s["owner"] else None)(api.run_state(rid)), 10, "an owner")
        other = "pod-2" if s["owner"]["pod"] == "pod-1" else "pod-1"
        w = Watcher(Client(st.url, api.key), f"/pod/{other}/v1/runs/{rid}/events", reconnect=True,
                    reconnect_path=f"/v1/runs/{rid}/events")
        w.start()
        wait_until(lambda: w.kinds().count("delta") >= 3, 30, "3 deltas")
        pid = s["owner"]["pid"]
        os.kill(pid, 9)
        s = api.wait_terminal(rid, 60)
        assert s["status"] == "completed", s
        assert_one_attempt_text(s["output"], 30)
        log = st.log("pod-1") + st.log("pod-2")
        assert "fault injection: spawn_takeover fails" in log, \
            "no injected spawn failure: is this the fault-injection build (scripts/build asan)?"
        assert f'run={rid}' in log and "handed the run back for another worker to resume" in log, log[-3000:]
        w.wait(30)
        assert w.final_status() == "completed" and w.text_after_last_reset() == s["output"], w.kinds()
    finally:
        st.down()


def test_documented_maximum_settings_stay_under_1024_descriptors(c):
    """libfcgi select()s on connections it accepts and closes: a descriptor at or past
    1024 overflows its fd_set. At the maxima tetherd --help documents, with a provider
    configured and a process limit far above 1024, the master runs at a soft
    RLIMIT_NOFILE of 1024 and fits max_runs under it; a worker raises its soft limit
    only for the stream loop, whose streams live above 1024, so every descriptor
    libfcgi can see stays below it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard > 4096, \
        f"this test needs a hard RLIMIT_NOFILE above 4096 to start pods with (hard {hard})"
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    from tether import Stack
    st = Stack("test-faults-fds", pods=1, workers=1, env={
        "TETHER_THREADS": "900", "TETHER_MAX_WATCHERS": "896", "TETHER_MAX_RUNS": "4096",
        "TETHER_DB_POOL": "64", "TETHER_PROVIDER_URL": "http://127.0.0.1:9/v1"})
    try:
        st.down()
        st.up()
        master = int(st.pods_state()["pod-1"][1])
        workers = wait_until(lambda: st.worker_pids("pod-1"), 20, "pod-1's worker")

        def soft_limit(pid):
            with open(f"/proc/{pid}/limits") as f:
                return [l for l in f if l.startswith("Max open files")][0].split()[3]
        assert soft_limit(master) == "1024", soft_limit(master)
        for pid in workers:
            assert soft_limit(pid) == str(896 + 1280), soft_limit(pid)
        assert "max_runs 4096 would need" in st.log("pod-1") and "using max_runs 9" in st.log("pod-1"), \
            st.log("pod-1")[-2000:]
        api = Client(st.url, st.new_key("fds"))
        rid = api.run(api.thread(), "under the cap slow:40x100", model="mock")
        # Streams: many open at once; each one in the loop is above 1024, everything
        # else below.
        ws = [watch(api, rid) for _ in range(50)]
        wait_until(lambda: all("delta" in w.kinds() for w in ws), 30, "every stream to stream")

        def fds():
            return [int(x) for x in os.listdir(f"/proc/{workers[0]}/fd")]
        wait_until(lambda: sum(1 for f in fds() if f >= 1024) == 50, 10, "50 streams in the loop")
        assert max(f for f in fds() if f < 1024) < 1024 - 1, fds()
        s = api.wait_terminal(rid, 30)
        assert s["status"] == "completed", s
        for w in ws:
            w.wait(30)
            assert w.final_status() == "completed"
            assert w.all_text() == s["output"]
        wait_until(lambda: not any(f >= 1024 for f in fds()), 10, "the loop's streams closed")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        st.down()


def test_nats_back_without_its_store(c):
    """NATS restarts with an empty store (a new volume): readiness recreates the
    stream, new runs stream, and a run that was streaming ends failed, clearly,
    instead of staying 'running' with nobody publishing."""
    rid = c.api.run(c.api.thread(), "store lost slow:40x100")
    w = watch(c.api, rid, reconnect=True)
    wait_until(lambda: w.kinds().count("delta") >= 3, 30, "3 deltas")
    c.stack.nats("stop")
    import shutil
    shutil.rmtree(os.path.join(c.stack.dir, "nats", "js"))
    c.stack.nats("start")
    for pod in ("pod-1", "pod-2"):
        wait_until(lambda: Client(c.stack.url).get(f"/pod/{pod}/readyz").status == 200, 30,
                   f"{pod} ready with the stream recreated")
    s = c.api.wait_terminal(rid, 60)
    assert s["status"] == "failed" and s["error"]["code"] == "unavailable", s
    assert "stream was lost" in s["error"]["message"], s
    w.wait(30)
    assert w.final_status() == "failed", w.kinds()
    rid2 = c.api.run(c.api.thread(), "after the reset slow:5x20")
    w2 = watch(c.api, rid2).wait(30)
    s2 = c.api.run_state(rid2)
    assert s2["status"] == "completed" and w2.all_text() == s2["output"], (s2, w2.kinds())


def test_postgres_outage_mid_run_completion_lands(c):
    tid = c.api.thread()
    rid = c.api.run(tid, "pg outage slow:12x150")
    w = watch(c.api, rid, reconnect=True)
    wait_until(lambda: w.kinds().count("delta") >= 2, 30, "2 deltas")
    c.stack.pg("stop")
    try:
        t0 = time.monotonic()
        r = c.api.get(f"/v1/runs/{rid}", timeout=30)
        assert_error(r, 503, "unavailable")
        assert time.monotonic() - t0 < 8, time.monotonic() - t0
        # The generator keeps streaming from NATS; it finishes while PostgreSQL is down
        # and retries its terminal write until it lands.
        wait_until(lambda: w.kinds().count("delta") >= 12, 30, "all deltas during the outage")
        wait_until(lambda: "could not write the completed state" in c.stack.log("pod-1") + c.stack.log("pod-2"),
                   30, "the owner to retry its terminal write")
    finally:
        c.stack.pg("start")
    s = c.api.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 1 and s["takeovers"] == 0, s
    w.wait(30)
    assert w.all_text() == s["output"] and "reset" not in w.kinds(), w.kinds()


def test_slow_postgres_gives_503_not_hangs(c):
    holder = subprocess.Popen(["psql", "-X", "-q", c.stack.env["DATABASE_URL"], "-c",
                               "BEGIN; LOCK TABLE runs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(7); COMMIT;"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: c.stack.psql("SELECT count(*) FROM pg_locks l JOIN pg_class k ON k.oid = l.relation"
                                        " WHERE k.relname = 'runs' AND l.mode = 'AccessExclusiveLock'") == "1",
                   10, "the lock to be held")
        tid = c.api.thread()
        results, health = [], []

        def one():
            t0 = time.monotonic()
            r = c.api.post(f"/v1/threads/{tid}/runs", {"input": "blocked"}, timeout=30)
            results.append((r, time.monotonic() - t0))

        ths = [threading.Thread(target=one) for _ in range(30)]
        for t in ths:
            t.start()
        while any(t.is_alive() for t in ths):
            t0 = time.monotonic()
            r = Client(c.stack.url).get("/healthz", timeout=5)
            health.append((r.status, time.monotonic() - t0))
            time.sleep(0.05)
        for t in ths:
            t.join()
        # unavailable (statement/lock timeout), or at_capacity once the blocked requests
        # hold every run slot of their worker: both a fast 503, neither a hang.
        assert all(r.status == 503 and r.json["error"]["code"] in ("unavailable", "at_capacity")
                   for r, _ in results), [r for r, _ in results]
        assert any(r.json["error"]["code"] == "unavailable" for r, _ in results)
        assert max(d for _, d in results) < 6, sorted(d for _, d in results)[-3:]
        assert all(s == 200 for s, _ in health) and max(d for _, d in health) < 1.0, health
    finally:
        holder.wait(20)
    # Afterwards all is well again.
    rid = c.api.run(c.api.thread(), "after the lock slow:2x10")
    assert c.api.wait_terminal(rid)["status"] == "completed"


def test_hung_provider_runs_cannot_starve_requests(c):
    started, refused = [], []
    for i in range(20):
        r = c.api.post(f"/v1/threads/{c.api.thread()}/runs", {"input": f"hang {i} slow:1x600000"})
        if r.status == 202:
            started.append(r.json["run_id"])
        else:
            assert_error(r, 503, "at_capacity")
            assert r.headers.get("retry-after") == "1", r.headers
            refused.append(r)
    # 2 pods x 2 workers x max_runs 4 = 16 slots; the workers of a pod take turns.
    assert 12 <= len(started) <= 16 and len(started) + len(refused) == 20, (len(started), len(refused))
    for _ in range(20):
        assert Client(c.stack.url).get("/healthz", timeout=2).status == 200
        assert c.api.get("/v1/threads?limit=5", timeout=2).status == 200
    w = watch(c.api, started[0])
    wait_until(lambda: w.kinds() == ["start"], 10, "the hung run's start")
    for rid in started:
        assert c.api.post(f"/v1/runs/{rid}/cancel").json["status"] == "cancelled"
    w.wait(20)
    assert w.final_status() == "cancelled"
    # Cancels stop the hung generators at once, which frees their slots.
    rid = wait_until(lambda: (lambda r: r.json["run_id"] if r.status == 202 else None)(
        c.api.post(f"/v1/threads/{c.api.thread()}/runs", {"input": "after slow:1x10"})), 20, "a free slot")
    assert c.api.wait_terminal(rid)["status"] == "completed"


def test_provider_key_and_admin_token_never_logged(c):
    # A run against the (unreachable) configured provider uses the key and fails.
    rid = c.api.run(c.api.thread(), "to the provider", model="sentinel-model")
    s = c.api.wait_terminal(rid, 60)
    assert s["status"] == "failed" and s["error"]["code"] == "provider_error", s
    created = c.admin.post("/v1/admin/tenants/logcheck/keys").json["key"]
    Client(c.stack.url, created).get("/v1/threads")
    logs = all_logs(c)
    assert SENTINEL_KEY not in logs
    assert c.stack.admin not in logs
    assert created not in logs and c.key not in logs
    assert "prefix " + created[:7] in logs  # what is logged instead


def test_client_bytes_are_escaped_in_logs(c):
    r = c.api.get("/v1/%1b[31mred%0a%22quoted")
    assert r.status == 404
    log = c.stack.log("pod-1") + c.stack.log("pod-2")
    assert "\x1b[31m" not in log
    lines = [l for l in log.split("\n") if "red" in l and "no route" in l]
    assert lines and all("\\x1b[31mred\\x0a\\x22quoted" in l or "\\x5cx1b" in l for l in lines), lines[-1:]
    for l in log.split("\n"):
        assert re.fullmatch(r'ts=\S+ level=\w+ pod=\S+ worker=\d+ pid=\d+( run=\S+ attempt=\d+)? msg=".*"', l) \
            or l == "", l


def test_admin_routes_refused_from_non_internal_address(c):
    """The stack's own nginx config (same includes, same allow/deny), run by a second
    nginx inside the namespace on 192.0.2.1; a client at 192.0.2.2 calls it. The pods
    are reached over their unix sockets, which cross network namespaces."""
    conf_dir = os.path.join(c.stack.dir, "nginx")
    with open(os.path.join(conf_dir, "nginx.conf")) as f:
        conf = f.read()
    port = c.stack.url.rsplit(":", 1)[1]
    conf = conf.replace(f"listen 127.0.0.1:{port};", f"listen 192.0.2.1:{port};")
    conf = re.sub(r"pid [^;]+;", f"pid {conf_dir}/ns-nginx.pid;", conf)
    conf = re.sub(r"access_log [^;]+;", "access_log off;", conf)
    assert f"listen 192.0.2.1:{port};" in conf
    with open(os.path.join(conf_dir, "ns-nginx.conf"), "w") as f:
        f.write(conf)
    p = sh(f"ip netns exec {NS} nginx -c {conf_dir}/ns-nginx.conf -p {conf_dir}")
    assert p.returncode == 0, p.stderr
    try:
        base = f"http://192.0.2.1:{port}"
        curl = lambda path, method="GET", key=None: sh(
            f"ip netns exec {NS} curl -s -m 5 --interface 192.0.2.2 -X {method} -o /dev/stderr "
            "-w '%{http_code}' " + (f"-H 'Authorization: Bearer {key}' " if key else "") + f"'{base}{path}'")
        wait_until(lambda: curl("/healthz").stdout == "200", 10, "the namespace's nginx")
        for path in ("/v1/admin/recover", "/v1/admin/tenants/outsider/keys"):
            p = curl(path, "POST", c.stack.admin)
            assert p.stdout == "403", (path, p.stdout, p.stderr)
            body = json.loads(p.stderr)
            assert body["error"]["code"] == "unauthorized", body
        # The public API is reachable from there; the admin routes from loopback.
        assert curl("/v1/threads", key=c.key).stdout == "200"
        assert c.admin.post("/v1/admin/recover").status == 200
    finally:
        sh(f"ip netns exec {NS} nginx -c {conf_dir}/ns-nginx.conf -p {conf_dir} -s stop")


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
