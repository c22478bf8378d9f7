"""tether benchmarks. Ratios against baselines measured in the same run; medians
and percentiles, never one absolute time. See docs/BENCHMARKS.md.

    python3 bench/bench.py takeover [--trials N]
"""
import argparse
import json
import os
import threading
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from tether import ROOT, Client, Stack, Watcher, wait_until  # noqa: E402

OUT = os.path.join(ROOT, "var", "bench")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    f, c = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def summary(xs):
    return {"n": len(xs), "p50": pct(xs, 50), "p95": pct(xs, 95), "p99": pct(xs, 99), "max": max(xs) if xs else None}


def save(name, data):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(data, f, indent=2)


def table(rows, header):
    w = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(x).ljust(w[i]) for i, x in enumerate(r)) + " |"
    out = [line(header), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows]
    return "\n".join(out)


def machine():
    try:
        model = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:
        model = "?"
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": os.uname().release}


# ---------------------------------------------------------------- takeover

def bench_takeover(args):
    every = 2
    st = Stack("bench-takeover", pods=3, workers=2, env={"TETHER_RECOVER_EVERY_S": str(every),
                                                         "TETHER_NGINX_ACCESS_LOG": "0"},
               up_args=STACK_UP_ARGS)
    st.down()
    st.up()
    try:
        api = Client(st.url, st.new_key("bench"))
        reset_ms, delta_ms, sweep_ms = [], [], []
        for trial in range(args.trials):
            # (a)+(b): a watcher attached on another pod; kill the owner worker.
            tid = api.thread()
            rid = api.run(tid, f"bench {trial} slow:400x50")
            own = wait_until(lambda: api.run_state(rid)["owner"], 10, "owner")
            other = next(p for p in ("pod-1", "pod-2", "pod-3") if p != own["pod"])
            w = Watcher(Client(st.url, api.key), f"/pod/{other}/v1/runs/{rid}/events")
            w.start()
            wait_until(lambda: w.kinds().count("delta") >= 3, 20, "3 deltas")
            t0 = time.monotonic()
            os.kill(own["pid"], signal.SIGKILL)
            wait_until(lambda: "reset" in w.kinds(), 20, "reset")
            i = w.kinds().index("reset")
            wait_until(lambda: len(w.events) > i + 1, 20, "first delta of the new attempt")
            reset_ms.append((w.events[i][0] - t0) * 1000)
            delta_ms.append((w.events[i + 1][0] - t0) * 1000)
            api.post(f"/v1/runs/{rid}/cancel")
            w.close()
            # (c): an unwatched run, recovered by the cron sweep alone.
            tid = api.thread()
            rid = api.run(tid, f"bench unwatched {trial} slow:400x50")
            own = wait_until(lambda: api.run_state(rid)["owner"], 10, "owner")
            wait_until(lambda: st.psql(f"SELECT 1 FROM runs WHERE id='{rid}' AND started_at < now() - interval '0.2 s'") == "1",
                       10, "under way")
            t0 = time.monotonic()
            os.kill(own["pid"], signal.SIGKILL)
            wait_until(lambda: api.run_state(rid)["attempt"] == 2, 30, "the sweep's claim", interval=0.01)
            sweep_ms.append((time.monotonic() - t0) * 1000)
            api.post(f"/v1/runs/{rid}/cancel")
            for pod in ("pod-1", "pod-2", "pod-3"):
                wait_until(lambda: len(st.worker_pids(pod)) == 2, 20, "workers replaced")
            print(f"trial {trial + 1}/{args.trials}: reset {reset_ms[-1]:.0f} ms, first delta "
                  f"{delta_ms[-1]:.0f} ms, sweep {sweep_ms[-1]:.0f} ms", flush=True)
    finally:
        st.down()
    res = {"machine": machine(), "trials": args.trials, "cron_period_s": every, "model_interval_ms": 50,
           "kill_to_reset_ms": summary(reset_ms), "kill_to_first_delta_ms": summary(delta_ms),
           "kill_to_sweep_claim_ms": summary(sweep_ms),
           "raw": {"reset": reset_ms, "delta": delta_ms, "sweep": sweep_ms}}
    save("takeover", res)
    rows = []
    for name, key, target in (("(a) kill -> reset at an attached watcher", "kill_to_reset_ms", "p50 <= 300, max <= 1000"),
                              ("(b) kill -> first delta of the new attempt", "kill_to_first_delta_ms", "-"),
                              ("(c) kill -> claim by the cron sweep (unwatched)", "kill_to_sweep_claim_ms",
                               f"<= {every * 1000 + 500}")):
        s = res[key]
        rows.append((name, f"{s['p50']:.0f}", f"{s['p95']:.0f}", f"{s['max']:.0f}", target))
    print()
    print(table(rows, ("takeover (ms, %d trials)" % args.trials, "p50", "p95", "max", "target")))
    return res


# ---------------------------------------------------------------- load generator helpers

PEERS = os.path.join(ROOT, "bench", "peers.sh")


def proc_groups(st):
    """pid lists per component of a stack: tetherd workers, nats, nginx, postgres."""
    import subprocess as sp
    groups = {"tetherd": [], "nats": [], "nginx": [], "postgres": []}
    for pod, (state, master) in st.pods_state().items():
        if state == "up":
            groups["tetherd"] += [int(master)] + st.worker_pids(pod)
    for name, key in (("nats-server", "nats"), ("nginx", "nginx"), ("postgres", "postgres")):
        p = sp.run(["pgrep", "-f", name], text=True, capture_output=True)
        groups[key] = [int(x) for x in p.stdout.split()]
    return groups


def cpu_ticks(pids):
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            t += int(v[11]) + int(v[12])
        except (OSError, IndexError):
            pass
    return t


def ctx_switches(pids):
    """Context switches (voluntary + involuntary) of every thread of the processes."""
    t = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            t += int(line.split()[1])
        except OSError:
            pass
    return t


def rss_kb(pids, field="VmRSS:", path="status"):
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/{path}") as f:
                for line in f:
                    if line.startswith(field):
                        t += int(line.split()[1])
        except OSError:
            pass
    return t


def pss_kb(pids):
    """Proportional set size: shared pages (PostgreSQL's buffers, libraries) counted
    once across the processes that share them, not once per process."""
    return rss_kb(pids, "Pss:", "smaps_rollup")


def loadgen(st, key, target, R, W, N, ms, procs=1, timeout=600):
    import subprocess as sp
    groups = proc_groups(st)
    hz = os.sysconf("SC_CLK_TCK")
    before = {k: cpu_ticks(v) for k, v in groups.items()}
    sw_before = {k: ctx_switches(v) for k, v in groups.items()}
    t0 = time.monotonic()
    p = sp.run([PEERS, "loadgen", "--target", target, "-R", str(R), "-W", str(W), "-N", str(N), "--ms", str(ms),
                "--procs", str(procs), "--base", st.url, "--key", key], text=True, capture_output=True, timeout=timeout)
    wall = time.monotonic() - t0
    if p.returncode != 0 or not p.stdout.strip():
        raise AssertionError(f"loadgen failed: {p.stderr[-2000:]}")
    res = json.loads(p.stdout.strip().split("\n")[-1])
    res["cpu_s"] = {k: (cpu_ticks(v) - before[k]) / hz for k, v in groups.items()}
    res["switches_per_chunk"] = {k: (ctx_switches(v) - sw_before[k]) / max(1, res["delivered"])
                                 for k, v in groups.items()}
    res["cpu_s_total"] = sum(res["cpu_s"].values())
    res["cpu_s_per_1000_chunks"] = res["cpu_s_total"] / max(1, res["delivered"]) * 1000
    res["wall_s_outer"] = wall
    return res


# scripts/bench --nats 3: every stack runs a 3-node NATS cluster, stream at 3 replicas.
STACK_UP_ARGS = ()


def bench_stack(name, pods=2, workers=2, env=None):
    e = {"TETHER_BENCH_ROUTES": "1", "TETHER_NGINX_ACCESS_LOG": "0", "TETHER_LOG_LEVEL": "warn"}
    e.update(env or {})
    st = Stack(name, pods=pods, workers=workers, env=e, up_args=STACK_UP_ARGS)
    st.down()
    st.up()
    return st


def ms_(us):
    return f"{us / 1000:.2f}" if us is not None else "-"


# ---------------------------------------------------------------- relay

def bench_relay(args):
    R, W, N, MS = args.runs, 1, args.chunks, args.ms
    st = bench_stack("bench-relay")
    try:
        key = st.new_key("bench")
        loadgen(st, key, "tether", 4, 2, 50, 5)  # warm-up, discarded
        loadgen(st, key, "tether-baseline", 4, 1, 50, 5)
        reps = {"tether": [], "tether-baseline": []}
        for rep in range(args.reps):
            for target in ("tether-baseline", "tether"):
                r = loadgen(st, key, target, R, W, N, MS)
                reps[target].append(r)
                print(f"rep {rep + 1} {target}: p50 {ms_(r['p50_us'])} ms, p99 {ms_(r['p99_us'])} ms, "
                      f"connected p99 {ms_(r['conn_p99_us'])} ms, {r['chunks_per_s']}/s, lost {r['lost']}, "
                      f"dup {r['dup']}, cpu {r['cpu_s_per_1000_chunks']:.3f} s/1000", flush=True)
    finally:
        st.down()
    med = lambda xs: statistics.median(xs)
    out = {"machine": machine(), "config": {"R": R, "W": W, "N": N, "ms": MS, "reps": args.reps}}
    for t, rs in reps.items():
        out[t] = {k: med([r[k] for r in rs]) for k in ("p50_us", "p99_us", "max_us", "conn_p99_us", "chunks_per_s",
                                                       "cpu_s_per_1000_chunks")}
        out[t]["lost"] = sum(r["lost"] for r in rs)
        out[t]["dup"] = sum(r["dup"] for r in rs)
        out[t]["cpu_by_component"] = {k: med([r["cpu_s"][k] for r in rs]) for k in rs[0]["cpu_s"]}
        out[t]["switches_per_chunk"] = {k: med([r["switches_per_chunk"][k] for r in rs])
                                        for k in rs[0]["switches_per_chunk"]}
        out[t]["reps"] = rs
    b, t = out["tether-baseline"], out["tether"]
    out["ratio"] = {k: t[k] / b[k] if b[k] else None for k in ("p50_us", "p99_us", "conn_p99_us",
                                                               "cpu_s_per_1000_chunks")}
    save("relay", out)
    rows = [(name, ms_(x["p50_us"]), ms_(x["p99_us"]), ms_(x["conn_p99_us"]), ms_(x["max_us"]),
             f"{x['chunks_per_s']:.0f}", f"{x['cpu_s_per_1000_chunks']:.3f}", f"{x['lost']}/{x['dup']}")
            for name, x in (("baseline (no JetStream)", b), ("tether", t))]
    rows.append(("ratio tether/baseline", f"{out['ratio']['p50_us']:.2f}", f"{out['ratio']['p99_us']:.2f}",
                 f"{out['ratio']['conn_p99_us']:.2f}", "", "", f"{out['ratio']['cpu_s_per_1000_chunks']:.2f}", ""))
    print()
    print(table(rows, (f"relay {R}x{W}, {N} chunks, {MS} ms (median of {args.reps})", "p50 ms", "p99 ms",
                       "connected p99 ms", "max ms", "delivered/s", "CPU s/1000 chunks", "lost/dup")))
    print()
    print(table([(name, *(f"{x['cpu_by_component'][k]:.2f}" for k in ("tetherd", "nats", "nginx")),
                  *(f"{x['switches_per_chunk'][k]:.2f}" for k in ("tetherd", "nats", "nginx")))
                 for name, x in (("baseline (no JetStream)", b), ("tether", t))],
                ("per component (median)", "tetherd CPU s", "nats-server CPU s", "nginx CPU s",
                 "tetherd switches/chunk", "nats-server switches/chunk", "nginx switches/chunk")))
    return out


# ---------------------------------------------------------------- fanout

class RssSampler(threading.Thread):
    def __init__(self, pids, interval=0.1, measure=None):
        super().__init__(daemon=True)
        self.pids, self.interval, self.peak, self.stop = pids, interval, 0, threading.Event()
        self.measure = measure or rss_kb

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.measure(self.pids))
            time.sleep(self.interval)


# Default settings: open streams live in the stream loop (16 384 per worker).
FANOUT_ENV = {}


def bench_fanout(args):
    st = bench_stack("bench-fanout", env=FANOUT_ENV)
    rows, out = [], {"machine": machine(), "results": []}
    try:
        key = st.new_key("bench")
        loadgen(st, key, "tether", 2, 10, 50, 5)  # warm-up
        for W in args.watchers:
            workers = [p for pod in ("pod-1", "pod-2") for p in st.worker_pids(pod)]
            idle = rss_kb(workers)
            sampler = RssSampler(workers)
            sampler.start()
            r = loadgen(st, key, "tether", 1, W, args.chunks, args.ms, procs=2 if W >= 500 else 1)
            sampler.stop.set()
            sampler.join()
            per = (sampler.peak - idle) / W
            res = {"W": W, "p50_us": r["p50_us"], "p99_us": r["p99_us"], "conn_p99_us": r["conn_p99_us"],
                   "chunks_per_s": r["chunks_per_s"], "lost": r["lost"], "dup": r["dup"],
                   "workers_rss_idle_kb": idle, "workers_rss_peak_kb": sampler.peak, "kb_per_watcher": per,
                   "cpu_s_per_1000_chunks": r["cpu_s_per_1000_chunks"], "offered_per_s": W * 1000 / args.ms}
            out["results"].append(res)
            rows.append((W, ms_(r["p50_us"]), ms_(r["p99_us"]), ms_(r["conn_p99_us"]),
                         f"{r['chunks_per_s']:.0f} / {W * 1000 / args.ms:.0f}", f"{r['lost']}/{r['dup']}",
                         f"{idle / 1024:.1f}", f"{sampler.peak / 1024:.1f}", f"{per:.1f}"))
            print(f"W={W}: p99 {ms_(r['p99_us'])} ms, {r['chunks_per_s']}/s, {per:.1f} KiB/watcher", flush=True)
    finally:
        st.down()
    save("fanout", out)
    print()
    print(table(rows, ("watchers (1 run)", "p50 ms", "p99 ms", "connected p99 ms", "delivered/s / offered",
                       "lost/dup", "workers RSS idle MiB", "peak MiB", "KiB per watcher")))
    return out


# ---------------------------------------------------------------- memory per active run

def bench_memory(args):
    st = bench_stack("bench-memory", env={"TETHER_MAX_RUNS": "1000", "TETHER_TENANT_MAX_ACTIVE_RUNS": "100000"})
    try:
        api = Client(st.url, st.new_key("bench"))
        workers = [p for pod in ("pod-1", "pod-2") for p in st.worker_pids(pod)]
        idle = rss_kb(workers)
        rids = [api.run(api.thread(), "hold slow:1x600000") for _ in range(args.hold)]
        # Every generator has published its start: each run is fully set up.
        for rid in rids:
            w = Watcher(Client(st.url, api.key), f"/v1/runs/{rid}/events")
            w.start()
            wait_until(lambda: w.kinds() == ["start"], 30, "the run's start")
            w.close()
        busy = rss_kb(workers)
        for rid in rids:
            api.post(f"/v1/runs/{rid}/cancel")
    finally:
        st.down()
    out = {"machine": machine(), "runs": args.hold, "workers_rss_idle_kb": idle, "workers_rss_busy_kb": busy,
           "kb_per_active_run": (busy - idle) / args.hold}
    save("memory", out)
    print(table([(args.hold, f"{idle / 1024:.1f}", f"{busy / 1024:.1f}", f"{out['kb_per_active_run']:.1f}")],
                ("active runs (no watchers)", "workers RSS idle MiB", "with the runs MiB", "KiB per active run")))
    return out


# ---------------------------------------------------------------- streams

def bench_streams(args):
    """Open event streams held by ONE worker (1 pod x 1 worker, default settings):
    N idle streams of one quiet run, opened through nginx from one selector loop.
    Reports refusals, the worker's RSS and descriptors, RSS per stream, then ends
    the run and counts the streams that got its `done`."""
    import selectors
    import socket
    n = args.streams
    st = bench_stack("bench-streams", pods=1, workers=1)
    socks = {}
    try:
        api = Client(st.url, st.new_key("bench"))
        rid = api.run(api.thread(), "slow:1x600000")
        worker = st.worker_pids("pod-1")
        base_rss = rss_kb(worker)
        sel = selectors.DefaultSelector()
        req = (f"GET /v1/runs/{rid}/events HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {api.key}\r\n"
               f"Accept: text/event-stream\r\n\r\n").encode()
        t0 = time.monotonic()
        for i in range(n):
            s = socket.create_connection((api.host, api.port), timeout=30)
            s.sendall(req)
            s.setblocking(False)
            socks[s] = b""
            sel.register(s, selectors.EVENT_READ)
            if i % 500 == 499:       # read what came, so nothing backs up meanwhile
                for key, _ in sel.select(0):
                    socks[key.fileobj] += key.fileobj.recv(65536)
        started = lambda: sum(1 for b in socks.values() if b"event: start" in b)  # noqa: E731
        deadline = time.monotonic() + 120
        while started() + sum(1 for b in socks.values() if b and not b.startswith(b"HTTP/1.1 200")) < n \
                and time.monotonic() < deadline:
            for key, _ in sel.select(1):
                socks[key.fileobj] += key.fileobj.recv(65536)
        open_s = time.monotonic() - t0
        refused = sum(1 for b in socks.values() if b and not b.startswith(b"HTTP/1.1 200"))
        ok = started()
        rss = rss_kb(worker)
        fds = len(os.listdir(f"/proc/{worker[0]}/fd"))
        threads = len(os.listdir(f"/proc/{worker[0]}/task"))
        api.post(f"/v1/runs/{rid}/cancel")
        deadline = time.monotonic() + 120
        done = lambda: sum(1 for b in socks.values() if b"event: done" in b)  # noqa: E731
        while done() < ok and time.monotonic() < deadline:
            for key, _ in sel.select(1):
                socks[key.fileobj] += key.fileobj.recv(65536)
        ended = done()
    finally:
        for s in socks:
            s.close()
        st.down()
    out = {"machine": machine(), "streams": n, "opened": ok, "refused": refused, "open_s": open_s,
           "worker_rss_idle_kb": base_rss, "worker_rss_kb": rss, "kb_per_stream": (rss - base_rss) / max(1, ok),
           "worker_fds": fds, "worker_threads": threads, "got_done": ended}
    save("streams", out)
    print(table([(n, ok, refused, f"{open_s:.1f}", f"{base_rss / 1024:.1f}", f"{rss / 1024:.1f}",
                  f"{out['kb_per_stream']:.1f}", fds, threads, ended)],
                ("streams asked", "open", "refused", "open s", "worker RSS idle MiB", "with streams MiB",
                 "KiB per stream", "worker fds", "worker threads", "got done")))
    return out


# ---------------------------------------------------------------- start

def bench_start(args):
    st = bench_stack("bench-start")
    try:
        api = Client(st.url, st.new_key("bench"))
        floor, post, first = [], [], []
        for i in range(args.samples + 10):
            t0 = time.monotonic()
            assert Client(st.url).get("/healthz").status == 200
            t1 = time.monotonic()
            tid = api.thread()
            t2 = time.monotonic()
            r = api.post(f"/v1/threads/{tid}/runs", {"input": "start slow:2x0"})
            t3 = time.monotonic()
            assert r.status == 202, r
            w = Watcher(Client(st.url, api.key), f"/v1/runs/{r.json['run_id']}/events")
            w.start()
            w.wait(30)
            d = next(e[0] for e in w.events if e[2] == "delta")
            if i >= 10:  # warm-up
                floor.append((t1 - t0) * 1000)
                post.append((t3 - t2) * 1000)
                first.append((d - t2) * 1000)
    finally:
        st.down()
    out = {"machine": machine(), "samples": args.samples, "healthz_ms": summary(floor),
           "post_to_202_ms": summary(post), "post_to_first_delta_ms": summary(first)}
    save("start", out)
    rows = [(n, f"{out[k]['p50']:.2f}", f"{out[k]['p99']:.2f}", f"{out[k]['p50'] / out['healthz_ms']['p50']:.1f}")
            for n, k in (("GET /healthz (floor)", "healthz_ms"), ("POST run -> 202", "post_to_202_ms"),
                         ("POST run -> first delta at a watcher", "post_to_first_delta_ms"))]
    print(table(rows, (f"start ({args.samples} sequential samples)", "p50 ms", "p99 ms", "p50 / floor")))
    return out


# ---------------------------------------------------------------- runs

def bench_runs(args):
    st = bench_stack("bench-runs", env={"TETHER_MAX_RUNS": "1000", "TETHER_TENANT_MAX_ACTIVE_RUNS": "100000"})
    rows, out = [], {"machine": machine(), "chunks": 100, "ms": 50, "results": []}
    try:
        key = st.new_key("bench")
        base = None
        for R in args.levels:
            r = loadgen(st, key, "tether", R, 1, 100, 50)
            p99 = r["conn_p99_us"]
            base = base or p99
            res = {"R": R, "conn_p99_us": p99, "p50_us": r["p50_us"], "chunks_per_s": r["chunks_per_s"],
                   "offered_per_s": R * 20, "lost": r["lost"], "ratio_to_first": p99 / base}
            out["results"].append(res)
            rows.append((R, R * 20, f"{r['chunks_per_s']:.0f}", ms_(r["p50_us"]), ms_(p99), f"{p99 / base:.2f}"))
            print(f"R={R}: connected p99 {ms_(p99)} ms ({p99 / base:.2f}x)", flush=True)
            if p99 > 2 * base:
                break
    finally:
        st.down()
    ok = [x["R"] for x in out["results"] if x["ratio_to_first"] <= 2]
    out["sustained_runs"] = max(ok) if ok else None
    save("runs", out)
    print(table(rows, ("concurrent runs (1 watcher, 20 chunks/s each)", "offered/s", "delivered/s", "p50 ms",
                       "connected p99 ms", "p99 / first level")))
    return out


# ---------------------------------------------------------------- peers

PEER_CONFIGS = {"a": (100, 1, 200, 10), "b": (100, 2, 200, 5), "c1000": (1, 1000, 200, 10)}


def bench_peers(args):
    import subprocess as sp
    results = {}
    st = bench_stack("bench-peers", env=FANOUT_ENV)
    try:
        key = st.new_key("bench")
        loadgen(st, key, "tether", 4, 2, 50, 5)
        for cfg in args.configs:
            R, W, N, MS = PEER_CONFIGS[cfg]
            groups = proc_groups(st)
            sampler = RssSampler([p for v in groups.values() for p in v], measure=pss_kb)
            sampler.start()
            r = loadgen(st, key, "tether", R, W, N, MS, procs=2 if W >= 500 else 1)
            sampler.stop.set()
            sampler.join()
            r["rss_peak_mb_all"] = sampler.peak / 1024
            results[("tether", cfg)] = r
            print(f"tether {cfg}: p50 {ms_(r['p50_us'])} connected p99 {ms_(r['conn_p99_us'])} "
                  f"{r['chunks_per_s']}/s", flush=True)
    finally:
        st.down()
    for peer in args.peer_names:
        for cfg in args.configs:
            env = dict(os.environ, PROCS="2" if cfg == "c1000" else "1")
            p = sp.run([PEERS, "run", peer, cfg, "1"], text=True, capture_output=True, env=env, timeout=600)
            line = [l for l in p.stdout.split("\n") if l.startswith("{")]
            if p.returncode != 0 or not line:
                print(f"{peer} {cfg}: failed: {p.stderr[-500:]}")
                continue
            r = json.loads(line[-1])
            r["rss_peak_mb_all"] = sum(v.get("peak_rss_mb", 0) for v in r.get("servers", {}).values())
            results[(peer, cfg)] = r
            print(f"{peer} {cfg}: p50 {ms_(r['p50_us'])} connected p99 {ms_(r['conn_p99_us'])} "
                  f"{r['chunks_per_s']}/s", flush=True)
    rows = []
    for cfg in args.configs:
        R, W, N, MS = PEER_CONFIGS[cfg]
        for who in ["tether"] + args.peer_names:
            r = results.get((who, cfg))
            if not r:
                continue
            rows.append((f"{cfg} ({R}x{W}, {MS} ms)", who, ms_(r["p50_us"]), ms_(r["p99_us"]), ms_(r["conn_p99_us"]),
                         f"{r['chunks_per_s']:.0f} / {R * W * 1000 // MS}", f"{r['lost']}/{r['dup']}",
                         f"{r['rss_peak_mb_all']:.0f}"))
    save("peers", {"machine": machine(), "results": {f"{k[0]}/{k[1]}": v for k, v in results.items()}})
    print()
    print(table(rows, ("config", "system", "p50 ms", "p99 ms", "connected p99 ms", "delivered/s / offered",
                       "lost/dup", "peak memory MB (all its processes)")))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name", nargs="+")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--ms", type=int, default=10)
    ap.add_argument("--watchers", type=lambda v: [int(x) for x in v.split(",")], default=[10, 100, 500, 1000])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--hold", type=int, default=200)
    ap.add_argument("--levels", type=lambda v: [int(x) for x in v.split(",")], default=[25, 50, 100, 200, 400, 800])
    ap.add_argument("--configs", type=lambda v: v.split(","), default=["a", "b", "c1000"])
    ap.add_argument("--peer-names", type=lambda v: v.split(","), default=["resumable", "durable"])
    ap.add_argument("--nats", type=int, choices=(1, 3), default=1,
                    help="NATS nodes of the stacks (3: a cluster, the stream at 3 replicas)")
    args = ap.parse_args()
    global STACK_UP_ARGS
    STACK_UP_ARGS = ("--nats", str(args.nats))
    benches = {"takeover": bench_takeover, "relay": bench_relay, "fanout": bench_fanout, "start": bench_start,
               "memory": bench_memory, "runs": bench_runs, "peers": bench_peers, "streams": bench_streams}
    for n in args.name:
        if n == "all":
            t0 = time.monotonic()
            for name in ("start", "relay", "fanout", "memory", "streams", "runs", "takeover", "peers"):
                benches[name](args)
            print(f"bench all: {time.monotonic() - t0:.0f} s")
        elif n in benches:
            benches[n](args)
        else:
            sys.exit(f"bench: unknown benchmark {n} (one of: {', '.join(benches)}, all)")


if __name__ == "__main__":
    main()
