"""Distributed suite: past one machine. A real stack of 3 pods (2 workers each), each
pod in its own network namespace, a 3-node NATS cluster with the stream at 3
replicas, and PostgreSQL with a synchronous streaming standby (issue 14).

    python3 tests/cluster/test_distributed.py [name-filter]

The acceptance criterion is API.md's exactly-once invariant: after its last reset,
every watcher's text equals the run's output, which holds chunks 1..n of one call
exactly once. Lines starting with FIGURE are the measured figures (docs/OPERATIONS.md).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from natsjs import largest_gap_s, run_messages  # noqa: E402
from tether import (Client, Watcher, assert_one_attempt_text, run_tests,  # noqa: E402
                    stack_ctx, stack_teardown, wait_until)

PODS = ("pod-1", "pod-2", "pod-3")
# The liveness connection's TCP settings (app/config.c; set on both ends): the server
# drops a silent worker's backend, and with it the lock, within about
# TETHER_DB_TCP_USER_TIMEOUT_MS (default 5 s). Then the cron sweep (every 2 s, its
# curl possibly first trying the cut pod: nginx's 2 s connect timeout) or a watcher's
# stall probe (backing off up to 5 s while the owner was alive) claims the run.
USER_TIMEOUT_S = int(os.environ.get("TETHER_DB_TCP_USER_TIMEOUT_MS", "5000")) / 1000
PARTITION_BOUND_S = USER_TIMEOUT_S + 2 + 2 + 1  # + sweep period + connect timeout + margin
# The order matters: the PostgreSQL failover leaves no standby behind.
ORDER = ["test_nats_leader_then_follower_killed_mid_run", "test_partitioned_owner_taken_over_and_fenced",
         "test_postgres_failover_takes_nothing_from_live_workers"]


def setup():
    return stack_ctx("test-distributed", "distributed", pods=3, workers=2,
                     up_args=("--nats", "3", "--pg-standby", "--netns"),
                     env={"TETHER_DRAIN_S": "2", "TETHER_MAX_ATTEMPTS": "3", "TETHER_PG_GRACE_S": "15",
                          # Pings every 2 s; nginx gives up on an event stream silent for 6 s
                          # (a partitioned pod's), so its watchers reconnect elsewhere.
                          "TETHER_HEARTBEAT_S": "2", "TETHER_STACK_EVENT_READ_TIMEOUT": "6s"})


teardown = stack_teardown


def figure(name, value, unit):
    print(f"FIGURE {name}={value:.2f}{unit}", flush=True)


def pod_watch(c, pod, run_id):
    """A watcher through one pod (None: the load balancer); after a drop it reconnects
    like a browser would, through the load-balanced URL."""
    w = Watcher(Client(c.stack.url, c.key), f"/v1/runs/{run_id}/events" if pod is None
                else f"/pod/{pod}/v1/runs/{run_id}/events", reconnect=True,
                reconnect_path=f"/v1/runs/{run_id}/events")
    w.start()
    return w


def start_runs(c, n, text):
    rids = []
    for i in range(n):
        tid = c.api.thread()
        rids.append(c.api.run(tid, f"{text} #{i}"))
    for rid in rids:
        wait_until(lambda: c.api.run_state(rid)["owner"], 10, "an owner")
    return rids


def watch_everywhere(c, rids):
    return {rid: [pod_watch(c, p, rid) for p in PODS] + [pod_watch(c, None, rid)] for rid in rids}


def deltas_everywhere(ws, n, what):
    wait_until(lambda: all(w.kinds().count("delta") >= n for l in ws.values() for w in l), 60, what)


def assert_exact(c, ws, n_chunks, attempts=None):
    """Every run completed; every watcher ends with done and holds exactly the output."""
    states = {}
    for rid, l in ws.items():
        s = c.api.wait_terminal(rid, 120)
        assert s["status"] == "completed", s
        if attempts is not None:
            assert s["attempt"] == attempts, s
        assert_one_attempt_text(s["output"], n_chunks)
        for w in l:
            w.wait(120)
            assert w.final_status() == "completed", (w.path, w.kinds())
            assert w.text_after_last_reset() == s["output"], (w.path, w.events)
        states[rid] = s
    return states


def ensure_all_up(c):
    for pod, st in c.stack.pods_state().items():
        if st[0] != "up":
            c.stack.start(pod)


def nats(c, *args):
    return c.stack._run("nats", *args).stdout.strip()


def new_leader(c, old):
    return wait_until(lambda: (lambda l: l if l and l != old else None)(nats(c, "leader")), 30,
                      f"a stream leader other than {old}", interval=0.1)


def test_nats_leader_then_follower_killed_mid_run(c):
    ensure_all_up(c)
    rids = start_runs(c, 3, "nats faults slow:60x150")
    ws = watch_everywhere(c, rids)
    deltas_everywhere(ws, 3, "3 deltas at every watcher")
    leader = nats(c, "leader")
    assert leader in ("nats-1", "nats-2", "nats-3"), leader
    t0 = time.monotonic()
    nats(c, "kill", leader[-1])
    second = new_leader(c, leader)
    figure("nats_leader_reelected_after", time.monotonic() - t0, "s")
    # The runs go on with two nodes: every watcher gets more text.
    seen = {id(w): w.kinds().count("delta") for l in ws.values() for w in l}
    # A watcher whose ordered consumer lived on the killed node waits until nats.c
    # re-creates it (missed idle heartbeats): measured 20-60 s; bounded here at 150 s.
    wait_until(lambda: all(w.kinds().count("delta") > seen[id(w)] + 2 for l in ws.values() for w in l), 150,
               "progress at every watcher with the leader down")
    figure("nats_leader_kill_every_watcher_progressed_after", time.monotonic() - t0, "s")
    follower = next(n for n in ("nats-1", "nats-2", "nats-3") if n not in (leader, second))
    nats(c, "kill", follower[-1])  # one node left: no quorum until a restart
    t2 = time.monotonic()
    nats(c, "start", leader[-1])
    nats(c, "start", follower[-1])
    wait_until(lambda: nats(c, "leader"), 30, "a stream leader after the restarts", interval=0.1)
    # (A node may report a leader before the quorum is really back; the publish gap
    # below, from the stream's own timestamps, is the figure that counts.)
    figure("nats_leader_reported_after_restarts", time.monotonic() - t2, "s")
    states = assert_exact(c, ws, 60)
    gaps = []
    for rid, s in states.items():
        # Nothing lost or doubled, no run failed, and no takeover was needed.
        assert s["attempt"] == 1 and s["takeovers"] == 0, s
        msgs = run_messages(c.stack.env["NATS_URL"], rid)
        deltas = [m for m in msgs if m[1].get("Tether-Event") == "delta"]
        assert [int(m[1]["Tether-Seq"]) for m in deltas] == list(range(1, len(deltas) + 1)), \
            [m[1] for m in msgs]
        assert "".join(json.loads(m[2])["text"] for m in deltas) == s["output"]
        assert [m[1].get("Tether-Event") for m in msgs].count("done") == 1
        gaps.append(largest_gap_s(msgs))
    # How long the owners could not publish (elections; the quorum loss), as the
    # stream's own timestamps show; the rest of a watcher's wait is delivery.
    figure("nats_faults_longest_publish_gap", max(gaps), "s")


def test_partitioned_owner_taken_over_and_fenced(c):
    ensure_all_up(c)
    rids = start_runs(c, 1, "partition slow:80x150")
    rid = rids[0]
    o = c.api.run_state(rid)["owner"]
    pod = o["pod"]
    ws = watch_everywhere(c, rids)
    deltas_everywhere(ws, 3, "3 deltas at every watcher")
    # The owner's liveness lock (class 1952805748, app/store_workers.c; key = worker id).
    lock = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1952805748"
            f" AND objid = {int(o['worker'])} AND granted")
    assert c.stack.psql(lock) == "1"
    c.stack._run("partition", pod)
    t0 = time.monotonic()
    try:
        wait_until(lambda: c.stack.psql(lock) == "0", PARTITION_BOUND_S + 20, "the server to drop the lock",
                   interval=0.1)
        figure("partition_lock_released_after", time.monotonic() - t0, "s")
        s = wait_until(lambda: (lambda s: s if s["attempt"] == 2 else None)(c.api.run_state(rid)),
                       PARTITION_BOUND_S + 20, "a survivor to take the run over", interval=0.1)
        took = time.monotonic() - t0
        figure("partition_takeover_after", took, "s")
        assert s["owner"]["pod"] != pod, s
        assert took < PARTITION_BOUND_S, f"taken over {took:.1f}s after the partition"
        # The text goes on at watchers that are not behind the partition.
        n = len(ws[rid][-1].events)
        wait_until(lambda: len(ws[rid][-1].events) > n + 2, 30, "the new attempt streaming")
    finally:
        c.stack._run("heal", pod)
    # On heal the old owner learns that it lost the run: its workers exit as declared
    # dead and the master starts fresh ones.
    wait_until(lambda: "declared dead" in c.stack.log(pod), 30, "the partitioned pod to notice")
    states = assert_exact(c, ws, 80, attempts=2)
    # Fenced: the stream holds no message of attempt 1 after the reset of attempt 2.
    msgs = run_messages(c.stack.env["NATS_URL"], rid)
    ev = [(m[1].get("Tether-Event"), int(m[1].get("Tether-Attempt", 0))) for m in msgs]
    reset = ev.index(("reset", 2))
    late = [e for e in ev[reset:] if e[1] != 2]
    assert late == [], f"messages of attempt 1 stored after the reset: {late}"
    new = [m for m in msgs[reset:] if m[1].get("Tether-Event") == "delta"]
    assert "".join(json.loads(m[2])["text"] for m in new) == states[rid]["output"]
    fenced = c.stack.log(pod).count("fenced")
    print(f"FIGURE partition_zombie_fenced_log_lines={fenced:.0f}", flush=True)
    wait_until(lambda: c.admin.get(f"/pod/{pod}/readyz").status == 200, 30, f"{pod} ready again")


def test_postgres_failover_takes_nothing_from_live_workers(c):
    ensure_all_up(c)
    rids = start_runs(c, 3, "pg failover slow:60x150")
    ws = watch_everywhere(c, rids)
    deltas_everywhere(ws, 3, "3 deltas at every watcher")
    workers = c.stack.psql("SELECT count(*) FROM workers")
    assert workers == str(len(PODS) * 2), workers
    dead_before = "".join(c.stack.log(p) for p in PODS).count("declared dead")
    c.stack.pg("failover")
    t0 = time.monotonic()
    # Sweep hard while the workers move to the promoted standby and re-take their
    # locks: the grace (TETHER_PG_GRACE_S) must keep every live worker alive.
    first_ok = None
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        r = c.admin.post("/v1/admin/recover", timeout=30)
        if r.status == 200:
            first_ok = first_ok or time.monotonic()
            assert r.json["dead_workers"] == [] and not set(rids) & set(r.json["claimed_runs"]), r.json
    assert first_ok, "no sweep answered within 8 s of the failover"
    figure("pg_failover_first_sweep_after", first_ok - t0, "s")
    states = assert_exact(c, ws, 60, attempts=1)
    for s in states.values():
        assert s["takeovers"] == 0, s
    assert c.stack.psql("SELECT pg_is_in_recovery()") == "f"
    n = c.stack.psql("SELECT count(*) FROM workers")
    assert n == str(len(PODS) * 2), n
    log = "".join(c.stack.log(p) for p in PODS)
    assert "liveness lock re-taken" in log
    # No worker learned that it had been declared dead (the partition test's pod did
    # earlier, so count).
    assert "".join(c.stack.log(p) for p in PODS).count("declared dead") == dead_before


if __name__ == "__main__":
    run_tests(globals(), setup, teardown, per_test_timeout=240)
