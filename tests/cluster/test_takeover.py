"""Cluster suite: takeover. A real stack of 3 pods (2 workers each), real
PostgreSQL, NATS and nginx. The acceptance criterion is API.md's exactly-once
invariant: after its last reset, every watcher's text equals the run's output.

    python3 tests/cluster/test_takeover.py [name-filter]
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import (Client, Watcher, assert_one_attempt_text, chunks, run_tests,  # noqa: E402
                    stack_ctx, stack_teardown, wait_until, watch)

PODS = ("pod-1", "pod-2", "pod-3")


def setup():
    return stack_ctx("test-cluster", "cluster", pods=3, workers=2,
                     env={"TETHER_DRAIN_S": "2", "TETHER_MAX_ATTEMPTS": "3", "TETHER_PG_GRACE_S": "15"})


teardown = stack_teardown


def pod_watch(c, pod, run_id, **kw):
    """A watcher attached through one pod; after a drop it reconnects like a browser
    would, through the load-balanced URL."""
    w = Watcher(Client(c.stack.url, c.key), f"/v1/runs/{run_id}/events" if pod is None
                else f"/pod/{pod}/v1/runs/{run_id}/events", reconnect=True,
                reconnect_path=f"/v1/runs/{run_id}/events", **kw)
    w.start()
    return w


def owner(c, run_id):
    o = c.api.run_state(run_id)["owner"]
    return o["pod"], o["pid"], o["worker"]


def start_run(c, text):
    tid = c.api.thread()
    rid = c.api.run(tid, text)
    wait_until(lambda: (c.api.run_state_or_none(rid) or {}).get("owner"), 10, "an owner")
    return tid, rid


def sigkill_and_reap(pid):
    """SIGKILL a worker and wait until its master has reaped it. (A zombie thread-group
    leader is not enough: its other threads may still be exiting, and one of them can
    still take a connection from the shared socket, which then resets.)"""
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10, f"worker {pid} to be reaped")


def ensure_all_up(c):
    for pod, (state, _) in c.stack.pods_state().items():
        if state != "up":
            c.stack.start(pod)


def assert_invariant(c, rid, watchers, n_chunks, attempts=2):
    """Every watcher ends with done and, after its last reset, holds exactly the output."""
    s = c.api.wait_terminal(rid, 90)
    assert s["status"] == "completed", s
    assert s["attempt"] == attempts, s
    stamp = assert_one_attempt_text(s["output"], n_chunks)
    for w in watchers:
        w.wait(90)
        assert w.final_status() == "completed", (w.path, w.kinds())
        assert w.text_after_last_reset() == s["output"], (w.path, w.events)
    return stamp


def test_sigkill_owner_pod_watchers_everywhere(c):
    ensure_all_up(c)
    _, rid = start_run(c, "takeover slow:20x300")
    pod, _, _ = owner(c, rid)
    ws = [pod_watch(c, p, rid) for p in PODS] + [pod_watch(c, None, rid)]
    wait_until(lambda: all(w.kinds().count("delta") >= 3 for w in ws), 30, "3 deltas at every watcher")
    c.stack.kill(pod)
    stamp = assert_invariant(c, rid, ws, 20)
    for w in ws:
        k = w.kinds()
        assert k.count("reset") == 1, (w.path, k)
        i = k.index("reset")
        assert w.events[i][1] == "2:0" and w.data(i) == {"attempt": 2, "reason": "owner_lost"}, w.events[i]
        after = "".join(json.loads(e[3])["text"] for e in w.events[i + 1:] if e[2] == "delta")
        assert chunks(after)[0] == (stamp, 1), after[:80]
        before = [json.loads(e[3])["text"] for e in w.events[:i] if e[2] == "delta"]
        assert before and all(t.split()[0] != "t" + stamp for t in before), "old attempt used the new stamp"
    # A watcher attached after the takeover: no reset, chunk-1 exactly once.
    late = pod_watch(c, None, rid).wait(30)
    assert "reset" not in late.kinds(), late.kinds()
    assert late.kinds()[0] == "start" and late.events[0][1] == "2:0", late.events[0]
    assert late.all_text() == c.api.run_state(rid)["output"]
    assert late.all_text().count(" chunk-1 ") == 1
    log = "".join(c.stack.log(p) for p in PODS)
    assert f"run={rid} attempt=2 msg=\"takeover via=" in log, "takeover not logged"
    c.stack.start(pod)


def test_sigkill_single_worker(c):
    ensure_all_up(c)
    _, rid = start_run(c, "worker death slow:20x300")
    pod, pid, _ = owner(c, rid)
    others = [p for p in PODS if p != pod]
    ws = [pod_watch(c, p, rid) for p in others] + [pod_watch(c, pod, rid)]
    wait_until(lambda: all(w.kinds().count("delta") >= 3 for w in ws), 30, "3 deltas")
    os.kill(pid, signal.SIGKILL)
    assert_invariant(c, rid, ws, 20)
    s = c.api.run_state(rid)
    assert s["owner"]["pid"] != pid, s
    wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 20, "the master to replace the worker")


def test_sigkill_owner_while_tool_call_arguments_stream(c):
    """The mock streams a call's arguments in two fragments MS apart after its text;
    the owner dies between them. Every watcher sees the call once, after the
    reset, and the run waits for its output with the new attempt's call."""
    ensure_all_up(c)
    ms = 1500
    _, rid = start_run(c, f"tool:get_weather slow:3x{ms}")
    pod, pid, _ = owner(c, rid)
    ws = [pod_watch(c, p, rid) for p in PODS]
    wait_until(lambda: all(w.kinds().count("delta") >= 3 for w in ws), 30, "3 deltas")
    t3 = time.monotonic()
    # The first fragment is due one interval after the third chunk, the second two.
    wait_until(lambda: time.monotonic() >= t3 + ms * 1.3 / 1000, 10, "the arguments to be under way")
    assert all(w.kinds().count("tool_call") == 0 for w in ws), [w.kinds() for w in ws]
    sigkill_and_reap(pid)
    s = wait_until(lambda: (lambda s: s if s and s["status"] not in ("queued", "running") else None)(
        c.api.run_state_or_none(rid)), 90, "the run to end")
    assert s["status"] == "requires_action" and s["attempt"] == 2, s
    call = {"id": f"call_{rid[:8]}_0", "name": "get_weather", "arguments": {"n": 1}}
    assert s["required_action"] == {"tool_calls": [call]}, s
    assert_one_attempt_text(s["output"], 3)
    for w in ws:
        w.wait(90)
        assert w.final_status() == "requires_action", (w.path, w.kinds())
        last = max(i for i, k in enumerate(w.kinds()) if k in ("start", "reset"))
        after = w.kinds()[last:]
        assert after == ["reset", "delta", "delta", "delta", "tool_call", "done"] or \
            after == ["start", "delta", "delta", "delta", "tool_call", "done"], (w.path, w.kinds())
        assert w.kinds().count("tool_call") == 1 and w.data(w.kinds().index("tool_call")) == call, w.events
        assert w.text_after_last_reset() == s["output"], (w.path, w.events)
    # The loop goes on from any pod.
    r = c.api.post(f"/v1/runs/{rid}/tool_outputs", {"outputs": [{"tool_call_id": call["id"], "output": "ok"}]})
    assert r.status == 202, r
    s2 = c.api.wait_terminal(r.json["run_id"], 30)
    # The answer, then the text the user's slow: asks for.
    prefix = f"tool={call['id']}:ok "
    assert s2["status"] == "completed" and s2["output"].startswith(prefix), s2
    assert_one_attempt_text(s2["output"][len(prefix):], 3)
    wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 20, "the master to replace the worker")


def test_unwatched_orphan_recovered_by_cron(c):
    ensure_all_up(c)
    _, rid = start_run(c, "orphan slow:15x200")
    pod, _, _ = owner(c, rid)
    wait_until(lambda: c.stack.psql(f"SELECT 1 FROM runs WHERE id='{rid}'"
                                    " AND started_at < now() - interval '0.5 s'") == "1", 10, "the run to be under way")
    c.stack.kill(pod)
    t0 = time.monotonic()
    s = wait_until(lambda: (lambda s: s if s and s["attempt"] == 2 else None)(c.api.run_state_or_none(rid)), 30,
                   "the cron sweep to claim the orphan")
    took = time.monotonic() - t0
    assert took < 2 + 3, f"claimed after {took:.1f}s, cron period is 2s"
    s = c.api.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 2, s
    assert_one_attempt_text(s["output"], 15)
    assert "via=sweep" in "".join(c.stack.log(p) for p in PODS)
    # A watcher attaching now sees only the new attempt.
    w = pod_watch(c, None, rid).wait(30)
    assert "reset" not in w.kinds() and w.all_text() == s["output"]
    c.stack.start(pod)


def test_sigterm_owner_drain_shorter_than_run(c):
    ensure_all_up(c)
    _, rid = start_run(c, "drain slow:20x300")
    pod, _, _ = owner(c, rid)
    ws = [pod_watch(c, p, rid) for p in PODS]
    wait_until(lambda: all(w.kinds().count("delta") >= 2 for w in ws), 30, "2 deltas")
    c.stack.kill(pod, "TERM")  # drain_s=2 in this stack: the run outlives it
    assert_invariant(c, rid, ws, 20)
    log = c.stack.log(pod)
    assert "drain deadline: aborting 1 runs" in log, log[-3000:]
    c.stack.start(pod)


def test_sigterm_owner_drain_lets_short_run_finish(c):
    ensure_all_up(c)
    _, rid = start_run(c, "short drain slow:6x150")
    pod, _, _ = owner(c, rid)
    w = pod_watch(c, None, rid)
    wait_until(lambda: w.kinds().count("delta") >= 1, 30, "a delta")
    c.stack.kill(pod, "TERM")
    s = c.api.wait_terminal(rid, 30)
    assert s["status"] == "completed" and s["attempt"] == 1 and s["takeovers"] == 0, s
    w.wait(30)
    assert w.text_after_last_reset() == s["output"] and "reset" not in w.kinds()
    c.stack.start(pod)


def test_race_many_recovers_one_orphan(c):
    ensure_all_up(c)
    for trial in range(20):
        _, rid = start_run(c, f"race {trial} slow:6x100")
        pod, pid, _ = owner(c, rid)
        ws = [pod_watch(c, p, rid) for p in PODS if p != pod]
        wait_until(lambda: all(w.kinds().count("delta") >= 1 for w in ws), 30, "a delta")
        sigkill_and_reap(pid)
        results = []

        def sweep():
            r = c.admin.post("/v1/admin/recover")
            results.append(r)

        ths = [threading.Thread(target=sweep) for _ in range(8)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        assert all(r.status == 200 for r in results), results
        claims = sum(r.json["claimed_runs"].count(rid) for r in results)
        assert claims <= 1, f"trial {trial}: {claims} sweeps claimed the run"
        s = assert_invariant(c, rid, ws, 6)
        st = c.api.run_state(rid)
        assert st["attempt"] == 2 and st["takeovers"] == 1, (trial, st)
        wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 20, "the worker to be replaced")


def test_postgres_restart_takes_nothing_from_live_workers(c):
    ensure_all_up(c)
    _, rid = start_run(c, "pg restart slow:30x300")
    w = pod_watch(c, None, rid)
    wait_until(lambda: w.kinds().count("delta") >= 2, 30, "2 deltas")
    c.stack.pg("stop")
    c.stack.pg("start")
    # Sweep hard right after the restart, while workers re-take their locks.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        r = c.admin.post("/v1/admin/recover", timeout=30)
        if r.status == 200:
            assert r.json["dead_workers"] == [] and rid not in r.json["claimed_runs"], r.json
    s = c.api.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 1 and s["takeovers"] == 0, s
    w.wait(30)
    assert "reset" not in w.kinds() and w.all_text() == s["output"]
    assert_one_attempt_text(s["output"], 30)
    # Every worker is still registered with its lock re-taken.
    n = c.stack.psql("SELECT count(*) FROM workers")
    assert n == str(len(PODS) * 2), n
    log = "".join(c.stack.log(p) for p in PODS)
    assert "liveness lock re-taken" in log


def test_worker_dead_across_postgres_restart_is_taken_over_after_grace(c):
    """Grace after a PostgreSQL restart is bounded: a worker that died while the
    server was down is declared dead once the grace period (15 s here, counted from
    the first time a prober saw the restarted server) has passed."""
    ensure_all_up(c)
    _, rid = start_run(c, "dies in the dark slow:200x100")
    w = pod_watch(c, None, rid)
    wait_until(lambda: w.kinds().count("delta") >= 2, 30, "2 deltas")
    pod, pid, _ = owner(c, rid)
    c.stack.pg("stop")
    sigkill_and_reap(pid)
    c.stack.pg("start")
    t0 = time.monotonic()
    s = wait_until(lambda: (lambda s: s if s and s["attempt"] == 2 else None)(c.api.run_state_or_none(rid)), 60,
                   "the takeover after the grace period", interval=0.2)
    took = time.monotonic() - t0
    assert 12 < took < 15 + 2 + 5, f"taken over {took:.1f}s after the restart"
    c.api.post(f"/v1/runs/{rid}/cancel")
    w.wait(30)
    wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 30, "the worker to be replaced")


def test_zombie_owner_is_fenced(c):
    ensure_all_up(c)
    _, rid = start_run(c, "zombie slow:25x200")
    pod, pid, worker = owner(c, rid)
    ws = [pod_watch(c, p, rid) for p in PODS if p != pod]
    wait_until(lambda: all(w.kinds().count("delta") >= 3 for w in ws), 30, "3 deltas")
    # Freeze it just after a heartbeat: once it thaws, its generator (due within one
    # 200 ms interval) publishes long before its next heartbeat (TETHER_WORKER_HEARTBEAT_MS,
    # 2 s) learns that it was declared dead, so the publish is what stops it: the fence.
    hb = f"SELECT heartbeat_at FROM workers WHERE id = {worker}"
    first = c.stack.psql(hb)
    wait_until(lambda: c.stack.psql(hb) != first, 10, "a heartbeat of the owner")
    os.kill(pid, signal.SIGSTOP)
    try:
        c.stack.psql(f"SELECT pg_terminate_backend(backend_pid) FROM workers WHERE id = {worker}")
        wait_until(lambda: (c.api.run_state_or_none(rid) or {}).get("attempt") == 2, 30, "a survivor to take over")
    finally:
        os.kill(pid, signal.SIGCONT)
    stamp = assert_invariant(c, rid, ws, 25)
    for w in ws:
        i = w.kinds().index("reset")
        after = [json.loads(e[3])["text"] for e in w.events[i + 1:] if e[2] == "delta"]
        assert all(t.startswith("t" + stamp + " ") for t in after), "zombie text after the reset"
    # The zombie stopped: its publish was fenced, and it left as a declared-dead worker.
    log = c.stack.log(pod)
    wait_until(lambda: "fenced" in c.stack.log(pod) and f"pid={pid} " in c.stack.log(pod), 30, "the zombie to stop")
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
               open(f"/proc/{pid}/stat").read().split()[2] == "Z", 30, "the zombie worker to exit")
    assert "declared dead" in c.stack.log(pod), log[-2000:]


def test_cancelled_run_is_never_resumed(c):
    ensure_all_up(c)
    _, rid = start_run(c, "cancel then die slow:30x200")
    pod, pid, _ = owner(c, rid)
    r = c.api.post(f"/v1/runs/{rid}/cancel")
    assert r.json["status"] == "cancelled"
    sigkill_and_reap(pid)
    for _ in range(3):
        r = c.admin.post("/v1/admin/recover")
        assert r.status == 200 and rid not in r.json["claimed_runs"], r.json
    s = c.api.run_state(rid)
    assert s["status"] == "cancelled" and s["attempt"] == 1 and s["takeovers"] == 0, s
    w = pod_watch(c, None, rid).wait(30)
    assert w.final_status() == "cancelled"
    wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 20, "the worker to be replaced")


def test_sigkills_from_outside_do_not_count_toward_max_attempts(c):
    """max_attempts counts crashes only (docs/DESIGN.md "Poison runs"): the owner
    worker SIGKILLed from outside three times (max_attempts is 3) is taken over
    each time, and the run completes."""
    ensure_all_up(c)
    _, rid = start_run(c, "unlucky slow:40x100")
    w = pod_watch(c, None, rid)
    for attempt in (1, 2, 3):
        s = wait_until(lambda: (lambda s: s if s and s["attempt"] == attempt and s["owner"] else None)(
            c.api.run_state_or_none(rid)), 30, f"attempt {attempt}")
        sigkill_and_reap(s["owner"]["pid"])
    s = c.api.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 4 and s["takeovers"] == 3, s
    assert_one_attempt_text(s["output"], 40)
    assert c.stack.psql(f"SELECT crashes FROM runs WHERE id = '{rid}'") == "0"
    w.wait(30)
    assert w.final_status() == "completed" and w.text_after_last_reset() == s["output"], w.kinds()
    for pod in PODS:
        wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 20, "workers replaced")


def test_rolling_pod_sigkill_completes_a_healthy_run(c):
    """Whole pods SIGKILLed in turn, twice around the 3 pods, each time the pod that
    owns the run (the worst case: before, the third death failed the run with
    too_many_attempts). The run completes and every watcher is exact."""
    ensure_all_up(c)
    n = 120
    _, rid = start_run(c, f"rolling slow:{n}x100")
    ws = [pod_watch(c, p, rid) for p in PODS] + [pod_watch(c, None, rid)]
    wait_until(lambda: all(w.kinds().count("delta") >= 2 for w in ws), 30, "2 deltas at every watcher")
    killed = []
    for k in range(6):
        s = wait_until(lambda: c.api.run_state_or_none(rid), 30, "the run's state")
        assert s["status"] == "running" and s["attempt"] == k + 1, s
        pod = s["owner"]["pod"]
        c.stack.kill(pod)
        killed.append(pod)
        wait_until(lambda: (lambda s: s if s and s["attempt"] == k + 2 and s["owner"] else None)(
            c.api.run_state_or_none(rid)), 30, f"takeover {k + 1} (after {pod} died)")
        c.stack.start(pod)
    assert len(set(killed)) >= 2, killed
    s = c.api.wait_terminal(rid, 90)
    assert s["status"] == "completed" and s["attempt"] == 7 and s["takeovers"] == 6, s
    assert_one_attempt_text(s["output"], n)
    assert c.stack.psql(f"SELECT crashes FROM runs WHERE id = '{rid}'") == "0"
    for w in ws:
        w.wait(90)
        assert w.final_status() == "completed", (w.path, w.kinds())
        assert w.text_after_last_reset() == s["output"], (w.path, w.kinds())


def test_poison_run_fails_too_many_attempts_others_unaffected(c):
    """crash:3 aborts the generating worker at chunk 3 of every attempt: after
    max_attempts (3) crashes the run fails too_many_attempts. Runs that shared a
    worker with it are taken over, never charged, and complete."""
    ensure_all_up(c)
    others = [start_run(c, f"bystander {i} slow:40x100")[1] for i in range(4)]
    ows = [pod_watch(c, None, r) for r in others]
    _, rid = start_run(c, "poison crash:3 slow:10x100")
    w = pod_watch(c, None, rid)
    s = wait_until(lambda: (lambda s: s if s and s["status"] != "running" else None)(c.api.run_state_or_none(rid)), 90,
                   "the poison run to end")
    assert s["status"] == "failed" and s["error"]["code"] == "too_many_attempts", s
    assert s["error"]["message"] == "the run crashed the worker generating it 3 times", s
    assert s["attempt"] >= 3, s
    assert c.stack.psql(f"SELECT crashes FROM runs WHERE id = '{rid}'") == "3"
    w.wait(30)
    assert w.final_status() == "failed", w.kinds()
    assert w.data(-1)["error"]["code"] == "too_many_attempts"
    log = "".join(c.stack.log(p) for p in PODS)
    assert log.count(f"crashed generating run {rid}") >= 3, "the masters did not record the crashes"
    for r, ow in zip(others, ows):
        s = c.api.wait_terminal(r, 90)
        assert s["status"] == "completed", s
        assert_one_attempt_text(s["output"], 40)
        assert c.stack.psql(f"SELECT crashes FROM runs WHERE id = '{r}'") == "0"
        ow.wait(60)
        assert ow.final_status() == "completed" and ow.text_after_last_reset() == s["output"], ow.kinds()
    for pod in PODS:
        wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 20, "workers replaced")


COUNTERS = ("tether_chunks_published_total", "tether_takeover_seconds_count", "tether_watchers_opened_total",
            "tether_generations_started_total", "tether_run_attempts_total", "tether_run_takeovers_total")
_last_counters = {}


def metrics(c, pod=None):
    r = Client(c.stack.url).get("/metrics" if pod is None else f"/pod/{pod}/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4"), r
    out = {}
    for line in r.body.decode().split("\n"):
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    # Answers read one after another, from whichever worker of whichever pod, never
    # show a counter going backwards (Prometheus would read a counter reset).
    for k in COUNTERS:
        assert out[k] >= _last_counters.get(k, 0), (k, _last_counters[k], out[k], pod)
        _last_counters[k] = out[k]
    return out


def test_metrics_cluster_wide(c):
    ensure_all_up(c)
    # Runs of earlier tests (a failed one may leave its run going) must not count here.
    wait_until(lambda: metrics(c)["tether_runs_active"] == 0, 120, "no run active")
    # The same answer from every worker (cluster figures, read back to back while idle).
    wait_until(lambda: len({json.dumps({k: v for k, v in metrics(c, p).items() if "watchers{" not in k},
                                       sort_keys=True) for p in PODS for _ in range(2)}) == 1, 30,
               "every pod and worker to report the same figures")
    m0 = metrics(c)
    assert m0["tether_workers"] == 6 and m0["tether_pods"] == 3, m0
    _, rid = start_run(c, "metrics slow:20x200")
    # /metrics is cached for a second per worker.
    m1 = wait_until(lambda: (lambda m: m if m['tether_runs{status="running"}'] != m0['tether_runs{status="running"}']
                             else None)(metrics(c)), 5, "the run in /metrics")
    assert m1['tether_runs{status="running"}'] == m0['tether_runs{status="running"}'] + 1, (m0, m1)
    assert m1["tether_runs_active"] == m0["tether_runs_active"] + 1
    w = pod_watch(c, None, rid)
    wait_until(lambda: w.kinds().count("delta") >= 3, 30, "3 deltas")
    pod, pid, _ = owner(c, rid)
    sigkill_and_reap(pid)
    assert_invariant(c, rid, [w], 20)
    m2 = wait_until(lambda: (lambda m: m if m["tether_takeover_seconds_count"] >= m0["tether_takeover_seconds_count"] + 1
                                       and m["tether_chunks_published_total"] >= m0["tether_chunks_published_total"] + 20
                                       else None)(metrics(c)), 30, "the heartbeat to carry the counters")
    assert m2['tether_runs{status="completed"}'] == m0['tether_runs{status="completed"}'] + 1, (m0, m2)
    assert m2["tether_runs_active"] == m0["tether_runs_active"]
    assert m2["tether_run_takeovers_total"] == m0["tether_run_takeovers_total"] + 1
    assert m2["tether_run_attempts_total"] == m0["tether_run_attempts_total"] + 2
    assert m2['tether_takeover_seconds_bucket{le="+Inf"}'] == m2["tether_takeover_seconds_count"]
    assert m2["tether_watchers_opened_total"] >= m0["tether_watchers_opened_total"] + 1
    # Counters of a dead worker are retired, not lost: totals never go backwards.
    wait_until(lambda: len(c.stack.worker_pids(pod)) == 2, 20, "the worker to be replaced")
    wait_until(lambda: metrics(c)["tether_workers"] == 6, 30, "6 live workers")
    for _ in range(20):  # every worker of every pod, in nginx's turn
        m3 = metrics(c)
        for k in COUNTERS:
            assert m3[k] >= m2[k], (k, m2[k], m3[k])


if __name__ == "__main__":
    run_tests(globals(), setup, teardown, per_test_timeout=300)
