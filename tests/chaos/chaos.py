"""Chaos soak: steady traffic (runs with 0-3 watchers on random pods, some watchers
dropping and resuming, some runs cancelled) while pods are SIGKILLed and SIGTERMed and
restarted, single workers are killed, NATS restarts once and PostgreSQL restarts once.
At the end every run must be terminal and every watcher must satisfy the exactly-once
invariant of API.md. Prints the counts and writes var/chaos/summary.json.

    python3 tests/chaos/chaos.py [--duration SECONDS] [--rate RUNS_PER_S] [--seed N]
"""
import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import ROOT, Client, Stack, Watcher, chunks, wait_until  # noqa: E402

PODS = ("pod-1", "pod-2", "pod-3")


class Run:
    def __init__(self, rid, n, cancel_at):
        self.id = rid
        self.n = n
        self.cancel_at = cancel_at
        self.watchers = []
        self.cancelled = False


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def start_run(api, i, rng, stop):
    """POST with an Idempotency-Key, retried through outages: exactly one run."""
    n = rng.randint(5, 30)
    ms = rng.choice((50, 100, 150, 200))
    body = {"input": f"chaos {i} slow:{n}x{ms}"}
    key = str(uuid.uuid4())
    tid = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if tid is None:
                r = api.post("/v1/threads", {"title": f"chaos {i}"}, timeout=15)
                if r.status != 201:
                    raise IOError(r)
                tid = r.json["id"]
            r = api.post(f"/v1/threads/{tid}/runs", body, headers={"Idempotency-Key": key}, timeout=15)
            if r.status in (200, 202):
                return r.json["run_id"], n
            if r.status < 500 and r.status != 429:
                raise AssertionError(f"run creation refused: {r}")
        except (IOError, OSError):
            pass
        time.sleep(0.3)
    return None, n


def traffic(st, api, rng, runs, lock, stop, rate):
    i = 0
    while not stop.is_set():
        t0 = time.monotonic()
        rid, n = start_run(api, i, rng, stop)
        if rid:
            run = Run(rid, n, rng.random() < 0.1 and time.monotonic() + rng.uniform(0.2, 2.0))
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                pod = rng.choice(PODS)
                w = Watcher(Client(st.url, api.key), f"/pod/{pod}/v1/runs/{rid}/events", reconnect=True,
                            reconnect_path=f"/v1/runs/{rid}/events", max_reconnects=400)
                w.drop_after = rng.choice((None, None, rng.randint(1, 10)))
                w.start()
                run.watchers.append(w)
            with lock:
                runs.append(run)
        i += 1
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t0)))


def nudger(api, runs, lock, stop):
    """Cancels some runs and makes some watchers drop mid-stream (they resume)."""
    while not stop.is_set():
        with lock:
            live = list(runs[-200:])
        now = time.monotonic()
        for run in live:
            if run.cancel_at and not run.cancelled and now >= run.cancel_at:
                try:
                    r = api.post(f"/v1/runs/{run.id}/cancel", timeout=10)
                    run.cancelled = r.status == 200
                except OSError:
                    pass
            for w in run.watchers:
                if w.drop_after and w.kinds().count("delta") >= w.drop_after:
                    w.drop_after = None
                    w.drop()
        time.sleep(0.1)


def outage(st, what, name, rng, events):
    if what == "pg" and st.up_args:
        # --distributed: the PostgreSQL fault is a failover to the standby (once).
        log("fault: PostgreSQL failover")
        st.pg("failover")
        events.append("postgres failover")
        return
    log(f"fault: {name} restart")
    getattr(st, what)("stop")
    time.sleep(rng.uniform(1, 3))  # the outage itself: its length is the point, not a wait
    getattr(st, what)("start")
    events.append("nats restart" if what == "nats" else "postgres restart")


def faults(st, rng, stop, duration, events):
    t_start = time.monotonic()
    nats_at = t_start + duration / 3
    pg_at = t_start + 2 * duration / 3
    did_nats = did_pg = False
    while not stop.is_set():
        time.sleep(rng.uniform(min(8, duration / 8), min(20, duration / 4)))
        if stop.is_set():
            break
        now = time.monotonic()
        try:
            if not did_nats and now >= nats_at:
                did_nats = True
                outage(st, "nats", "NATS", rng, events)
                continue
            if not did_pg and now >= pg_at:
                did_pg = True
                outage(st, "pg", "PostgreSQL", rng, events)
                continue
            pod = rng.choice(PODS)
            kind = rng.choice(("KILL", "KILL", "TERM", "worker") +
                              (("nats-node", "partition") if st.up_args else ()))
            if kind == "nats-node":
                leader = st._run("nats", "leader").stdout.strip()
                node = leader[-1] if rng.random() < 0.5 else rng.choice("123")
                log(f"fault: SIGKILL NATS node nats-{node} (the stream leader is {leader})")
                st._run("nats", "kill", node)
                events.append("kill nats-" + ("leader" if leader[-1] == node else "follower"))
                time.sleep(rng.uniform(1, 4))
                st._run("nats", "start", node)
                continue
            if kind == "partition":
                log(f"fault: partition {pod}")
                st._run("partition", pod)
                events.append(f"partition {pod}")
                try:
                    time.sleep(rng.uniform(3, 10))
                finally:
                    st._run("heal", pod)
                continue
            if kind == "worker":
                pids = st.worker_pids(pod)
                if pids:
                    log(f"fault: SIGKILL one worker of {pod}")
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    events.append(f"kill worker {pod}")
                continue
            log(f"fault: {kind} {pod}")
            st.kill(pod, kind)
            events.append(f"{kind} {pod}")
            time.sleep(rng.uniform(1, 4))
            st.start(pod)
        except Exception as e:  # keep injecting; the checks at the end decide
            log(f"fault injection trouble: {e}")
    if not did_nats:
        outage(st, "nats", "NATS", rng, events)
    if not did_pg:
        outage(st, "pg", "PostgreSQL", rng, events)


def check(api, runs):
    out = {"runs": len(runs), "completed": 0, "cancelled": 0, "failed": {}, "watchers": 0,
           "watchers_with_reset": 0, "violations": [], "takeovers": 0}
    for run in runs:
        s = wait_until(lambda: (lambda r: r.json if r.status == 200 and r.json["status"] in
                                ("completed", "failed", "cancelled") else None)(api.get(f"/v1/runs/{run.id}")),
                       180, f"run {run.id} to end")
        out["takeovers"] += s["takeovers"]
        if s["status"] == "completed":
            out["completed"] += 1
            cs = chunks(s["output"])
            if [c[1] for c in cs] != list(range(1, run.n + 1)) or len({c[0] for c in cs}) != 1:
                out["violations"].append(f"{run.id}: output is not chunks 1..{run.n} of one attempt")
        elif s["status"] == "cancelled":
            out["cancelled"] += 1
        else:
            code = s["error"]["code"]
            out["failed"][code] = out["failed"].get(code, 0) + 1
        for w in run.watchers:
            out["watchers"] += 1
            if not w.done.wait(120):
                out["violations"].append(f"{run.id}: a watcher never got done ({w.kinds()[-5:]})")
                w.close()
                continue
            if w.error:
                out["violations"].append(f"{run.id}: watcher error {w.error[-300:]}")
                continue
            if w.final_status() != s["status"]:
                out["violations"].append(f"{run.id}: watcher ended {w.final_status()} but run is {s['status']}")
            if "reset" in w.kinds():
                out["watchers_with_reset"] += 1
            ids = w.ids()
            if len(ids) != len(set(ids)):
                out["violations"].append(f"{run.id}: a watcher got an event twice")
            if s["status"] == "completed" and w.text_after_last_reset() != s["output"]:
                out["violations"].append(f"{run.id}: watcher text after its last reset != output")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=600)
    ap.add_argument("--rate", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--distributed", action="store_true",
                    help="3-node NATS, a PostgreSQL standby, pods in network namespaces; adds NATS node "
                         "kills and pod partitions, and the PostgreSQL fault is a failover")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    log(f"chaos: {args.duration}s at {args.rate} runs/s, seed {args.seed}")
    env = {"TETHER_DRAIN_S": "3", "TETHER_NGINX_ACCESS_LOG": "0", "TETHER_MAX_ATTEMPTS": "5"}
    up_args = ()
    if args.distributed:
        up_args = ("--nats", "3", "--pg-standby", "--netns")
        # nginx ends a partitioned pod's silent streams, so their watchers reconnect.
        env.update({"TETHER_HEARTBEAT_S": "2", "TETHER_STACK_EVENT_READ_TIMEOUT": "6s"})
    st = Stack("chaos", pods=3, workers=2, env=env, up_args=up_args)
    st.down()
    st.up()
    api = Client(st.url, st.new_key("chaos"))
    runs, lock, stop, events = [], threading.Lock(), threading.Event(), []
    ths = [threading.Thread(target=traffic, args=(st, api, rng, runs, lock, stop, args.rate), daemon=True),
           threading.Thread(target=nudger, args=(api, runs, lock, stop), daemon=True),
           threading.Thread(target=faults, args=(st, random.Random(args.seed + 1), stop, args.duration, events),
                            daemon=True)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    try:
        while time.monotonic() - t0 < args.duration:
            time.sleep(5)
            with lock:
                log(f"{len(runs)} runs started, {len(events)} faults so far")
        stop.set()
        for t in ths:
            t.join(120)
        for pod, (state, _) in st.pods_state().items():
            if state != "up":
                st.start(pod)
        if args.distributed:
            for pod in PODS:
                st._run("heal", pod, check=False)
            for node in "123":
                st._run("nats", "start", node, check=False)
        log("traffic stopped; waiting for every run to end and checking the invariant")
        res = check(api, runs)
    finally:
        if not args.keep:
            st.down()
    res.update({"duration_s": args.duration, "rate": args.rate, "seed": args.seed, "faults": events,
                "violation_count": len(res["violations"])})
    os.makedirs(os.path.join(ROOT, "var", "chaos"), exist_ok=True)
    with open(os.path.join(ROOT, "var", "chaos", "summary.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps({k: v for k, v in res.items() if k != "violations"}, indent=2))
    for v in res["violations"][:20]:
        print("VIOLATION", v)
    ok = not res["violations"] and "nats restart" in events and \
        ("postgres failover" if args.distributed else "postgres restart") in events
    print("chaos: " + ("ok, invariant violations = 0" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
