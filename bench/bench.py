"""tether benchmarks. Ratios against baselines measured in the same run; medians
and percentiles, never one absolute time. See docs/BENCHMARKS.md.

    python3 bench/bench.py takeover [--trials N]
"""
import argparse
import json
import os
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
                                                         "TETHER_NGINX_ACCESS_LOG": "0"})
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name", nargs="+")
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    for n in args.name:
        if n == "takeover":
            bench_takeover(args)
        else:
            sys.exit(f"bench: unknown benchmark {n}")


if __name__ == "__main__":
    main()
