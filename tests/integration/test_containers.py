"""Containers suite: docker/compose.yml run for real, in containers (podman behind
Debian's docker-compose; scripts/compose-local prepares everything from Debian
packages: the runtime, a debootstrapped debian:bookworm-slim, the stand-ins for the
official images and docker/Dockerfile built unchanged).

1. The image is built and the compose comes up: every service healthy (or done).
2. A reply streams through nginx's published port (127.0.0.1 only).
3. `podman kill` of the container that owns a streaming run, watchers attached
   through nginx: every watcher exact, the run completed in another pod container.
4. `docker-compose stop` of the owner's container: tetherd (behind tini) drains
   and exits 0 within stop_grace_period; the run completes elsewhere.
5. The cron container's sweep claims an unwatched orphan of a killed container.
6. `down` and `up` again keep the data (pgdata, natsdata volumes).
7. `down -v` leaves no container, volume or network of the project, nothing on
   the port.

Prints the measured times (image build, compose up to healthy, kill -> reset).

    python3 tests/integration/test_containers.py [name-filter]
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import (ROOT, Client, Watcher, assert_one_attempt_text, run_tests,  # noqa: E402
                    wait_until)

SCRIPT = os.path.join(ROOT, "scripts", "compose-local")
STATE = os.path.join(ROOT, "var", "compose-local")
PODS = ("pod-1", "pod-2", "pod-3")
GRACE_S = 25  # docker/compose.yml stop_grace_period


def sh(cmd, timeout=120, env=None, check=True):
    p = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, env=env)
    assert not check or p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


class Ctx:
    def __init__(self):
        self.env = None
        self.url = None
        self.times = {}
        self.key = None
        self.reloads = 0  # pod containers that came back with a new address
        self.dns_repairs = []  # lost DNS entries put back with podman network reload

    def load_env(self):
        with open(os.path.join(STATE, "env")) as f:
            pairs = [l.split("=", 1) for l in f.read().split("\n") if l]
        self.env = dict(os.environ, **{k: v for k, v in pairs})
        self.url = f"http://127.0.0.1:{self.env['TETHER_HTTP_PORT']}"
        self.project = self.env["COMPOSE_PROJECT_NAME"]

    def compose(self, *args, timeout=120, check=True):
        return sh(["docker-compose", *args], timeout=timeout, env=self.env, check=check)

    def podman(self, *args, timeout=60, check=True):
        return sh(["podman", *args], timeout=timeout, check=check)

    def cid(self, service):
        out = self.compose("ps", "-q", service).stdout.split()
        assert len(out) == 1, (service, out)
        return out[0]

    def inspect(self, service):
        return json.loads(self.podman("inspect", self.cid(service)).stdout)[0]["State"]

    def health(self, service):
        st = self.inspect(service)
        h = st.get("Health") or st.get("Healthcheck") or {}
        return st["Status"], h.get("Status")

    def log(self, service):
        p = self.podman("logs", self.cid(service))
        return p.stdout + p.stderr

    def pods_log(self):
        return "".join(self.log(p) for p in PODS)

    def wait_healthy(self, service, timeout=60):
        wait_until(lambda: self.health(service) == ("running", "healthy"), timeout, f"{service} healthy", 0.2)

    def new_key(self, tenant):
        p = self.compose("exec", "-T", "pod-1", "sh", "-c", f"TETHER_URL=http://nginx tetherctl key {tenant}")
        return json.loads(p.stdout)["key"]


def start_run(user, text):
    """POST a run; a 503 (API.md: retryable, Retry-After: 1) is retried for 30 s: a
    loaded machine can make a pod's PostgreSQL check time out."""
    def once():
        r = user.post(f"/v1/threads/{tid}/runs", {"input": text})
        if r.status == 503:
            return None
        assert r.status == 202, r
        return r.json["run_id"]
    tid = user.thread()
    return wait_until(once, 30, f"POST /v1/threads/{tid}/runs accepted", 1.0)


def owner(api, rid, attempt=1):
    s = wait_until(lambda: (lambda s: s if s["status"] == "running" and s["owner"] and s["attempt"] == attempt
                            else None)(api.run_state(rid)), 20, f"run {rid} running, attempt {attempt}")
    return s["owner"]["pod"]


def ensure_all_up(c):
    """Every pod container running, healthy and reachable through nginx. podman kill
    and compose stop are manual stops (no restart), so start it; podman gives the
    container a new address, so reload nginx as docs/OPERATIONS.md says for a
    replaced container (only once every pod is up: nginx must resolve them all)."""
    for pod in PODS:
        if c.health(pod)[0] != "running":
            c.compose("start", pod)
    for pod in PODS:
        c.wait_healthy(pod)
    ips = {p: c.inspect_ip(p) for p in PODS}
    # The service names must resolve (aardvark-dns) before nginx reloads. podman's
    # cleanup of a killed container can run after the container was started again
    # and remove its new DNS entry (a race in podman 4.3 / netavark 1.4 on a loaded
    # machine): `podman network reload` puts it back.
    def dns():
        out = c.podman("exec", c.cid("nginx"), "getent", "hosts", *PODS, check=False).stdout.split("\n")
        return {l.split()[1].split(".")[0]: l.split()[0] for l in out if l.strip()}
    try:
        wait_until(lambda: dns() == ips, 5, "the pods' names to resolve in the nginx container", 0.5)
    except AssertionError:
        lost = [p for p in PODS if dns().get(p) != ips[p]]
        c.dns_repairs.append(lost)
        for p in lost:
            c.podman("network", "reload", c.cid(p))
        wait_until(lambda: dns() == ips, 10, f"{lost} to resolve after podman network reload", 0.5)
    if ips != c.nginx_ips:
        c.compose("exec", "-T", "nginx", "nginx", "-s", "reload")
        c.nginx_ips = ips
        c.reloads += 1
    api = Client(c.url)
    seen = set()
    wait_until(lambda: (seen.add(api.get("/healthz").json["pod"]), seen == set(PODS))[1], 30,
               "/healthz answered by every pod container")


def restore(c, pod):
    assert c.health(pod)[0] == "exited", c.health(pod)
    ensure_all_up(c)


def _inspect_ip(self, service):
    """The service's address on nginx's network (pods are on two: backend, frontend)."""
    nets = json.loads(self.podman("inspect", self.cid(service)).stdout)[0]["NetworkSettings"]["Networks"]
    (net,) = [v for k, v in nets.items() if k.endswith("_frontend")] or nets.values()
    return net["IPAddress"]


Ctx.inspect_ip = _inspect_ip


# ---------- 1. build and up ----------

def test_up_healthy(c):
    t0 = time.monotonic()
    p = sh([SCRIPT, "images"], timeout=900)
    c.times["images: base, stand-ins and the tether image"] = time.monotonic() - t0
    for what, secs in re.findall(r"^compose-local: (.*?) (?:made|built) in ([\d.]+)s$", p.stderr, re.M):
        c.times[what] = float(secs)
    blog = open(os.path.join(STATE, "build-tether.log")).read()
    assert re.search(r"COMMIT tether:0\.1\.0$", blog, re.M), blog[-2000:]
    t0 = time.monotonic()
    p = sh([SCRIPT, "up"], timeout=600)
    c.times["compose up to healthy"] = time.monotonic() - t0
    m = re.search(r"image tether:0\.1\.0 built in ([\d.]+)s", p.stderr)
    assert m, p.stderr
    c.times["tether image build (in up, cached layers)"] = float(m.group(1))
    c.load_env()
    assert f"API         {c.url}" in p.stdout, p.stdout
    for n in ("postgres", "nats", *PODS):
        assert c.health(n) == ("running", "healthy"), (n, c.health(n))
    for n in ("nginx", "cron"):
        assert c.health(n)[0] == "running", (n, c.health(n))
    st = c.inspect("migrate")
    assert st["Status"] == "exited" and st["ExitCode"] == 0, st
    assert c.log("migrate").strip() == f"migrations applied: {len(os.listdir(os.path.join(ROOT, 'sql')))}"
    # The image runs as uid 10001, with tini as PID 1 and tetherd below it.
    p = c.podman("exec", c.cid("pod-1"), "sh", "-c", "id -u; cat /proc/1/comm; ps -o comm= --ppid 1 2>/dev/null "
                 "|| cat /proc/[0-9]*/comm")
    lines = p.stdout.split()
    assert lines[0] == "10001" and lines[1] == "tini" and "tetherd" in lines[2:], lines
    for n in PODS:
        log = c.log(n)
        assert f"pod {n} listening on 0.0.0.0:9000 with 2 workers" in log, log
        wait_until(lambda: c.log(n).count("worker ready") == 2, 20, f"both workers of {n} ready")
    c.nginx_ips = {n: c.inspect_ip(n) for n in PODS}  # what nginx resolved when it started
    # The published port is bound to loopback only.
    ports = c.podman("port", c.cid("nginx")).stdout.split()
    assert ports == ["80/tcp", "->", f"127.0.0.1:{c.env['TETHER_HTTP_PORT']}"], ports


def test_hardened(c):
    """The locked-down compose, as the runtime applies it: nginx's network holds
    neither PostgreSQL nor NATS; tether's containers have no capabilities and a
    read-only root; NATS's monitoring port is on its loopback only."""
    p = c.podman("exec", c.cid("nginx"), "getent", "hosts", "postgres", "nats", check=False)
    assert p.returncode != 0 and p.stdout.strip() == "", p.stdout
    p = c.podman("exec", c.cid("nginx"), "getent", "hosts", *PODS, check=False)
    assert len(p.stdout.split("\n")) >= 3, p.stdout
    for n in ("pod-1", "cron"):
        p = c.podman("exec", c.cid(n), "sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/1/status; "
                     "touch /usr/x 2>&1 || echo read-only; touch /tmp/x && echo tmp-ok", check=False)
        out = p.stdout
        assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out, (n, out)
        assert "read-only" in out and "tmp-ok" in out, (n, out)
    nats_ip = json.loads(c.podman("inspect", c.cid("nats")).stdout)[0]["NetworkSettings"]["Networks"]
    (net,) = nats_ip.values()
    p = c.podman("exec", c.cid("pod-1"), "sh", "-c",
                 f"curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{net['IPAddress']}:8222/healthz || true",
                 check=False)
    assert p.stdout.strip() in ("", "000"), p.stdout


# ---------- 2. a reply through nginx ----------

def test_stream_through_published_port(c):
    api = Client(c.url)
    seen = set()
    wait_until(lambda: (seen.add(api.get("/healthz").json["pod"]), seen == set(PODS))[1], 30,
               "/healthz answered by every pod container")
    r = api.get("/readyz")
    assert r.status == 200 and r.json["postgres"] == "ok" and r.json["nats"] == "ok", r
    c.key = c.new_key("containers")
    user = Client(c.url, c.key)
    tid = user.thread()
    r = user.req("POST", f"/v1/threads/{tid}/runs", body={"input": "slow:5x20"},
                 headers={"Accept": "text/event-stream"})
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream"), r
    body = r.body.decode()
    assert re.findall(r"^event: (\w+)$", body, re.M) == ["start"] + ["delta"] * 5 + ["done"], body
    texts = [json.loads(d)["text"] for d in re.findall(r"^event: delta\ndata: (.*)$", body, re.M)]
    rid = re.search(r'"run_id":"([^"]+)"', body).group(1)
    s = user.run_state(rid)
    assert s["status"] == "completed" and "".join(texts) == s["output"], (s, texts)
    assert_one_attempt_text(s["output"], 5)
    r = api.get("/metrics")
    m = dict(l.rsplit(" ", 1) for l in r.body.decode().split("\n") if l and not l.startswith("#"))
    assert m["tether_pods"] == "3" and m["tether_workers"] == "6", m
    r = api.get("/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    # The cron container's sweep reaches nginx by its service name.
    # (A "no answer" while nginx itself was still starting is not a failure; the
    # loop's latest word must be a 200.)
    def latest():
        words = [ln for ln in c.log("cron").splitlines()
                 if re.match(r"^\d{3} \d+\.\d+s$", ln) or "recover: no answer" in ln]
        return words and re.match(r"^200 ", words[-1])
    wait_until(latest, 15, "the cron loop's latest answer to be a 200")


# ---------- 3. podman kill of the owner's container ----------

def test_kill_owner_container_watchers_exact(c):
    ensure_all_up(c)
    user = Client(c.url, c.key)
    rid = start_run(user, "takeover slow:30x400")  # 12 s: podman's CLI is slow on a loaded machine
    pod = owner(user, rid)
    cid = c.cid(pod)
    ws = [Watcher(Client(c.url, c.key), f"/v1/runs/{rid}/events", reconnect=True, name=f"w{i}") for i in range(6)]
    for w in ws:
        w.start()
    wait_until(lambda: all(w.kinds().count("delta") >= 3 for w in ws), 30, "3 deltas at every watcher")
    t_kill = time.monotonic()
    c.podman("kill", "--signal", "KILL", cid)
    c.times["podman kill (the command)"] = time.monotonic() - t_kill
    assert [w.kinds().count("done") for w in ws] == [0] * len(ws), "the run ended before the kill"
    s = user.wait_terminal(rid, 90)
    assert s["status"] == "completed" and s["attempt"] == 2, s
    assert s["owner"]["pod"] != pod, (pod, s)
    stamp = assert_one_attempt_text(s["output"], 30)
    resets = []
    for w in ws:
        w.wait(90)
        k = w.kinds()
        assert w.final_status() == "completed", (w.name, k)
        assert k.count("reset") == 1, (w.name, k)
        i = k.index("reset")
        assert w.events[i][1] == "2:0" and w.data(i) == {"attempt": 2, "reason": "owner_lost"}, w.events[i]
        assert w.text_after_last_reset() == s["output"], (w.name, w.events)
        assert f"t{stamp} chunk-1 " in w.text_after_last_reset()
        resets.append(w.events[i][0] - t_kill)
    c.times["podman kill -> reset at the last watcher"] = max(resets)
    c.times["podman kill -> reset at the first watcher"] = min(resets)
    assert f"run={rid} attempt=2 msg=\"takeover via=" in "".join(c.log(p) for p in PODS if p != pod)
    restore(c, pod)


# ---------- 4. docker-compose stop drains ----------

def test_compose_stop_drains_within_grace(c):
    ensure_all_up(c)
    user = Client(c.url, c.key)
    rid = start_run(user, "slow:200x100")  # 20 s: longer than the 10 s drain
    pod = owner(user, rid)
    w = Watcher(Client(c.url, c.key), f"/v1/runs/{rid}/events", reconnect=True)
    w.start()
    wait_until(lambda: w.kinds().count("delta") >= 2, 30, "2 deltas")
    t0 = time.monotonic()
    c.compose("stop", "-t", str(GRACE_S), pod, timeout=GRACE_S + 30)
    took = time.monotonic() - t0
    c.times["docker-compose stop of the owner (drain)"] = took
    st = c.inspect(pod)
    # Exit 0: tini forwarded SIGTERM, tetherd drained and exited; 137 would be SIGKILL.
    assert st["Status"] == "exited" and st["ExitCode"] == 0, st
    assert 9 < took < GRACE_S, took
    log = c.log(pod)
    assert "drain deadline: aborting 1 runs; survivors take them over" in log, log[-3000:]
    s = user.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 2 and s["owner"]["pod"] != pod, s
    w.wait(60)
    assert w.final_status() == "completed" and w.text_after_last_reset() == s["output"], w.kinds()
    restore(c, pod)


# ---------- 5. the cron container ----------

def test_cron_container_claims_unwatched_orphan(c):
    ensure_all_up(c)
    user = Client(c.url, c.key)
    rid = start_run(user, "orphan slow:15x400")
    pod = owner(user, rid)
    cid = c.cid(pod)
    every = 2  # TETHER_RECOVER_EVERY_S of the env file
    with open(c.env["TETHER_ENV_FILE"]) as f:
        assert f"TETHER_RECOVER_EVERY_S={every}\n" in f.read()
    c.podman("kill", "--signal", "KILL", cid)
    t0 = time.monotonic()
    assert user.run_state(rid)["status"] == "running", "the run ended before the kill"
    wait_until(lambda: user.run_state(rid)["attempt"] == 2, 30, "the cron sweep to claim the orphan")
    took = time.monotonic() - t0
    c.times["podman kill -> orphan claimed by the cron"] = took
    assert took < every + 3, f"claimed after {took:.1f}s, cron period is {every}s"
    s = user.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 2, s
    assert_one_attempt_text(s["output"], 15)
    assert f"run={rid} attempt=2 msg=\"takeover via=sweep" in c.pods_log()
    w = Watcher(Client(c.url, c.key), f"/v1/runs/{rid}/events")
    w.start()
    w.wait(30)
    assert "reset" not in w.kinds() and w.all_text() == s["output"], w.kinds()
    restore(c, pod)


# ---------- 6. volumes ----------

def test_down_and_up_keeps_the_volumes(c):
    """`down` without -v, then `up`: the thread and key (pgdata) and the run's events
    (natsdata) are still there; postgres is not initialised again, migrate applies 0."""
    ensure_all_up(c)
    user = Client(c.url, c.key)
    tid = user.thread("kept")
    rid = user.run(tid, "slow:3x10")
    s = user.wait_terminal(rid, 30)
    assert s["status"] == "completed", s
    pg_vol = [v for v in c.podman("volume", "ls", "--format", "{{.Name}}").stdout.split() if v.endswith("_pgdata")]
    assert pg_vol == [c.project + "_pgdata"], pg_vol
    c.compose("down", timeout=180)
    assert c.compose("ps", "-q").stdout == ""
    t0 = time.monotonic()
    sh([SCRIPT, "up"], timeout=600)
    c.times["compose up again (images cached, volumes kept)"] = time.monotonic() - t0
    c.nginx_ips = {n: c.inspect_ip(n) for n in PODS}
    assert "initialised" not in c.log("postgres")
    assert c.log("migrate").strip() == "migrations applied: 0"
    r = user.get(f"/v1/threads/{tid}")
    assert r.status == 200 and r.json["title"] == "kept", r
    w = Watcher(user, f"/v1/runs/{rid}/events")
    w.start()
    w.wait(30)
    assert w.kinds() == ["start", "delta", "delta", "delta", "done"], w.kinds()
    assert w.all_text() == s["output"] and w.final_status() == "completed"


# ---------- 7. down -v ----------

def test_down_leaves_nothing(c):
    project = c.project
    sh([SCRIPT, "down"], timeout=180)
    label = f"label=com.docker.compose.project={project}"
    assert sh(["podman", "ps", "-a", "-q", "--filter", label]).stdout == ""
    assert sh(["podman", "volume", "ls", "-q", "--filter", label]).stdout == ""
    nets = sh(["podman", "network", "ls", "--format", "{{.Name}}"]).stdout.split()
    for n in ("default", "frontend", "backend"):
        assert f"{project}_{n}" not in nets, nets
    # No process of the project is left (podman keeps exec sessions' conmon for 300 s).
    def project_procs():
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if any(a.startswith(project + "_") for a in argv):
                out.append((pid, " ".join(argv)[:200]))
        return out
    wait_until(lambda: not project_procs(), 10, f"no process of {project} left")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(c.env["TETHER_HTTP_PORT"]))) != 0, "the port still answers"
    c.env = None


ORDER = ["test_up_healthy", "test_hardened", "test_stream_through_published_port", "test_kill_owner_container_watchers_exact",
         "test_compose_stop_drains_within_grace", "test_cron_container_claims_unwatched_orphan",
         "test_down_and_up_keeps_the_volumes", "test_down_leaves_nothing"]


def setup():
    assert os.geteuid() == 0, "the containers suite runs as root (podman, debootstrap)"
    for tool in ("python3", "curl", "apt-get"):
        assert shutil.which(tool), f"missing {tool}"
    # A project left over by an interrupted run.
    if os.path.exists(os.path.join(STATE, "env")):
        sh([SCRIPT, "down"], timeout=180, check=False)
    return Ctx()


def teardown(c):
    if c.env is not None and not os.environ.get("TETHER_KEEP_CONTAINERS"):
        sh([SCRIPT, "down"], timeout=180, check=False)
    print("TIMES " + "; ".join(f"{k}: {v:.1f}s" for k, v in c.times.items()), flush=True)
    print(f"pod containers restarted with a new address (nginx reloaded): {c.reloads}; "
          f"DNS entries lost by podman and put back: {c.dns_repairs}", flush=True)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown, per_test_timeout=900)
