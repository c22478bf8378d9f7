"""Compose suite: docker/compose.yml, docker/Dockerfile and nginx/tether.conf, checked
without a Docker engine (there is none on these machines).

1. `docker-compose config` (Debian's docker-compose 1.29, no daemon) validates
   docker/compose.yml with docker/tether.env.example; its normalised output must have
   exactly the expected structure: services, one image tag, commands, environment,
   healthchecks, depends_on conditions, ports, volumes.
2. docker/Dockerfile: two debian:bookworm stages, a non-root USER, EXPOSE, HEALTHCHECK,
   and every apt package name exists in Debian (apt-cache show). Its build stage's
   COPY and RUN lines are then executed on this checkout in a temporary directory
   (DESTDIR=/out moved there), the runtime stage's COPY --from sources must exist, and
   every shared library the binaries load must come from a runtime package or one of
   its dependencies.
3. nginx/tether.conf passes `nginx -t`. nginx resolves upstream names at start, so a
   copy is tested with `pod-N:9000` -> `127.0.0.1:<port>` (and the pid file, the web
   root and `listen 80` moved); the original fails only on resolving pod-1.
4. The services' commands run for real on loopback, as compose would run them:
   postgres (user tether, POSTGRES_PASSWORD, scram-sha-256, as the postgres image
   initialises it), nats-server with docker/nats.conf, `tetherctl migrate`, three
   `tetherd` with each pod's environment from the config output, their HEALTHCHECK
   command, nginx with tether.conf, the cron loop and the demo fake model. Container
   names and ports are replaced by 127.0.0.1 ports: see Topology.sub.

    python3 tests/integration/test_compose.py [name-filter]
"""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import ROOT, Client, run_tests, wait_until  # noqa: E402

DOCKER = os.path.join(ROOT, "docker")
COMPOSE = os.path.join(DOCKER, "compose.yml")
ENV_EXAMPLE = os.path.join(DOCKER, "tether.env.example")
NATS_ENV_EXAMPLE = os.path.join(DOCKER, "nats.env.example")
PGBIN = os.environ.get("TETHER_PG_BIN", "/usr/lib/postgresql/15/bin")
PODS = ("pod-1", "pod-2", "pod-3")
IMAGE = "tether:0.1.0"
POD_HEALTH = ("SCRIPT_NAME=/healthz DOCUMENT_URI=/healthz REQUEST_METHOD=GET "
              "cgi-fcgi -bind -connect 127.0.0.1:9000 | grep -q '\"status\":\"ok\"'")
CRON_LOOP = ("while :; do curl -s -m 10 -X POST -H @<(printf 'Authorization: Bearer %s\\n' "
             "\"$$TETHER_ADMIN_TOKEN\") "
             "http://nginx/v1/admin/recover -o /dev/null -w '%{http_code} %{time_total}s\\n' "
             "|| echo 'recover: no answer'; sleep $${TETHER_RECOVER_EVERY_S:-2}; done")
RUNTIME_PKGS = ["libfcgi0ldbl", "libpq5", "libnats3.4", "libjson-c5", "libcurl4", "libuv1",
                "libfcgi-bin", "curl", "ca-certificates", "tini"]
BUILD_PKGS = ["build-essential", "autoconf", "automake", "libtool", "pkg-config",
              "libfcgi-dev", "libpq-dev", "libnats-dev", "libjson-c-dev", "libcurl4-openssl-dev", "libuv1-dev",
              "libcunit1-dev"]


# The compose file's variables: the tests set the ones they need (a shell after
# `export $(scripts/compose-local env)` has them all).
COMPOSE_VARS = ("TETHER_IMAGE", "TETHER_ENV_FILE", "TETHER_NATS_ENV_FILE", "TETHER_HTTP_BIND", "TETHER_HTTP_PORT", "TETHER_POSTGRES_IMAGE",
                "TETHER_NATS_IMAGE", "TETHER_NGINX_IMAGE", "TETHER_PYTHON_IMAGE", "COMPOSE_FILE",
                "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "DOCKER_HOST")


def compose_env(**kw):
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARS}
    env["TETHER_NATS_ENV_FILE"] = "nats.env.example"
    env.update(kw)
    return env


def sh(cmd, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def read(path):
    with open(path) as f:
        return f.read()


def env_file(path):
    out = {}
    for line in read(path).split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


# ---------- the Dockerfile ----------

def dockerfile_stages():
    """[{"from": str, "ins": [(INSTR, args)]}]: continuations joined, comments dropped."""
    logical, cur = [], ""
    for raw in read(os.path.join(DOCKER, "Dockerfile")).split("\n"):
        s = raw.strip()
        if s.startswith("#") or (not s and not cur):
            continue
        if s.endswith("\\"):
            cur += s[:-1].strip() + " "
            continue
        logical.append(cur + s)
        cur = ""
    stages = []
    for line in logical:
        instr, _, args = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append({"from": args.strip(), "ins": []})
        else:
            stages[-1]["ins"].append((instr.upper(), args.strip()))
    return stages


def ins(stage, name):
    return [a for i, a in stage["ins"] if i == name]


def apt_packages(stage):
    pkgs = []
    for run in ins(stage, "RUN"):
        for part in run.split("&&"):
            words = part.split()
            if words[:2] == ["apt-get", "install"]:
                pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


# ---------- context shared by the tests ----------

class Ctx:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="tether-compose-")
        os.chmod(self.tmp, 0o755)  # nginx workers (nobody) read the web root in here
        self._config = None
        self._rootfs = None
        self.topo = None

    def config(self):
        if self._config is None:
            p = sh(["docker-compose", "-f", COMPOSE, "config"],
                   env=compose_env(TETHER_ENV_FILE="tether.env.example"))
            assert p.returncode == 0, f"docker-compose config failed:\n{p.stderr}"
            self._config = yaml.safe_load(p.stdout)
        return self._config

    def rootfs(self):
        """Run the Dockerfile's build stage on this checkout; return the runtime tree."""
        if self._rootfs is None:
            self._rootfs = build_image(self.tmp)
        return self._rootfs


def build_image(tmp):
    build, runtime = dockerfile_stages()
    workdir = ins(build, "WORKDIR")[0]
    assert workdir == "/src", workdir
    src, out, rootfs = os.path.join(tmp, "src"), os.path.join(tmp, "out"), os.path.join(tmp, "rootfs")
    os.makedirs(src)
    for args in ins(build, "COPY"):
        *paths, dest = args.split()
        for p in paths:
            s, d = os.path.join(ROOT, p), os.path.join(src, dest)
            assert os.path.exists(s), f"COPY {p}: not in the checkout"
            if os.path.isdir(s):
                shutil.copytree(s, d, dirs_exist_ok=True)
            else:
                os.makedirs(d, exist_ok=True)
                shutil.copy2(s, d)
    runs = [r for r in ins(build, "RUN") if "apt-get" not in r]
    assert len(runs) == 1, runs
    assert "DESTDIR=/out" in runs[0], runs[0]
    cmd = runs[0].replace("DESTDIR=/out", f"DESTDIR={out}")
    p = sh(["bash", "-ec", cmd], cwd=src, timeout=600)
    assert p.returncode == 0, f"the build stage failed ({cmd}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    for args in ins(runtime, "COPY"):
        words = args.split()
        assert words[0] == "--from=build", args
        *paths, dest = words[1:]
        for p in paths:
            s = out + p[len("/out"):]
            assert p.startswith("/out/") and os.path.exists(s), f"COPY --from=build {p}: not built"
            d = os.path.join(rootfs, dest.lstrip("/"))
            if os.path.isdir(s):
                shutil.copytree(s, d, dirs_exist_ok=True)
            else:
                os.makedirs(d, exist_ok=True)
                shutil.copy2(s, d)
    return rootfs


# ---------- 1. docker-compose config ----------

def test_compose_config_valid(c):
    p = sh(["docker-compose", "-f", COMPOSE, "config", "--quiet"],
           env=compose_env(TETHER_ENV_FILE="tether.env.example"))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    # Without the env file (not copied yet) compose refuses to start: say so, loudly.
    p = sh(["docker-compose", "-f", COMPOSE, "config", "--quiet"],
           env=compose_env(TETHER_ENV_FILE="no-such.env"))
    assert p.returncode != 0 and "no-such.env" in p.stderr, p.stderr
    p = sh(["docker-compose", "-f", COMPOSE, "config", "--quiet"],
           env=compose_env(TETHER_ENV_FILE="tether.env.example", TETHER_NATS_ENV_FILE="no-such-nats.env"))
    assert p.returncode != 0 and "no-such-nats.env" in p.stderr, p.stderr
    # The real env files are never committed.
    assert read(os.path.join(DOCKER, ".gitignore")).split() == ["tether.env", "nats.env"]


def test_compose_services(c):
    cfg = c.config()
    assert set(cfg["services"]) == {"postgres", "nats", "migrate", *PODS, "nginx", "cron", "fake-model"}
    assert set(cfg["volumes"]) == {"pgdata", "natsdata"}
    # Two networks: the backend has no route out; only the pods are on both.
    assert cfg["networks"]["backend"]["internal"] is True, cfg["networks"]
    assert not cfg["networks"]["frontend"].get("internal"), cfg["networks"]
    nets = {n: set(s["networks"]) for n, s in cfg["services"].items()}
    assert nets == {"postgres": {"backend"}, "nats": {"backend"}, "migrate": {"backend"},
                    "fake-model": {"backend"}, "nginx": {"frontend"}, "cron": {"frontend"},
                    **{n: {"backend", "frontend"} for n in PODS}}, nets
    # Only the demo model is behind a profile.
    assert {n for n, s in cfg["services"].items() if s.get("profiles")} == {"fake-model"}
    assert cfg["services"]["fake-model"]["profiles"] == ["demo"]


def test_compose_hardened(c):
    """no-new-privileges everywhere; no capabilities and a read-only root (a small
    /tmp) where nothing needs them: tether's containers, NATS and the demo model."""
    svcs = c.config()["services"]
    for n, s in svcs.items():
        assert s.get("security_opt") == ["no-new-privileges:true"], n
    locked = {"migrate", "cron", "nats", "fake-model", *PODS}
    for n in locked:
        assert svcs[n]["cap_drop"] == ["ALL"] and svcs[n]["read_only"] is True, n
        assert svcs[n]["tmpfs"] == ["/tmp:size=16m,mode=1777"], n
    # postgres (its entrypoint changes user) and nginx (port 80, workers as
    # another user) keep the image's capabilities.
    for n in set(svcs) - locked:
        assert "cap_drop" not in svcs[n] and "read_only" not in svcs[n], n
    # NATS: users required, monitoring on the container's loopback only.
    conf = read(os.path.join(DOCKER, "nats.conf"))
    assert "http: 127.0.0.1:8222" in conf
    assert "{ user: tether, password: $TETHER_NATS_PASSWORD }" in conf
    assert "user: ops, password: $TETHER_NATS_OPS_PASSWORD" in conf
    assert env_file(ENV_EXAMPLE)["TETHER_NATS_PASSWORD"] == env_file(NATS_ENV_EXAMPLE)["TETHER_NATS_PASSWORD"]


def test_nats_conf_takes_the_passwords_compose_local_makes(c):
    """nats-server reads $TETHER_NATS_PASSWORD as a config token: a hex password
    like 5e2d3e… is the number 5e2 and junk, and nats-server does not start (CI saw
    it: one random password in a few). compose-local makes them start with a letter
    and refuses any other kind; nats-server accepts those."""
    conf = os.path.join(DOCKER, "nats.conf")

    def check(pw):
        env = dict(os.environ, TETHER_NATS_PASSWORD=pw, TETHER_NATS_OPS_PASSWORD=pw)
        return subprocess.run(["nats-server", "-c", conf, "-t"], env=env, text=True, capture_output=True,
                              timeout=30)
    assert check("5e2d3e" + "0" * 42).returncode != 0
    for _ in range(50):
        pw = "n" + os.urandom(24).hex()
        p = check(pw)
        assert p.returncode == 0 and "is valid" in p.stdout + p.stderr, (pw, p)
    script = read(os.path.join(ROOT, "scripts", "compose-local"))
    assert script.count("np=n$(head -c 24 /dev/urandom") == 1 and "TETHER_NATS_OPS_PASSWORD=n%s" in script
    assert 'nats_passwords_ok "$natsfile"' in script

def test_compose_one_image(c):
    svcs = c.config()["services"]
    tether = ["migrate", *PODS, "cron"]
    assert {svcs[n]["image"] for n in tether} == {IMAGE}
    for n in tether:
        assert svcs[n]["build"] == {"context": ROOT, "dockerfile": "docker/Dockerfile"}, n
    assert {n for n, s in svcs.items() if "build" in s} == set(tether)
    assert svcs["postgres"]["image"] == "postgres:15-bookworm"
    assert svcs["nats"]["image"] == "nats:2.9-alpine"
    assert svcs["nginx"]["image"] == "nginx:1.26-bookworm"
    assert svcs["fake-model"]["image"] == "python:3.11-slim-bookworm"
    # Each official image's name comes from a variable (scripts/compose-local runs
    # stand-ins built from Debian packages where no registry is reachable).
    p = sh(["docker-compose", "-f", COMPOSE, "config"],
           env=compose_env(TETHER_ENV_FILE="tether.env.example", TETHER_POSTGRES_IMAGE="pg:x",
                           TETHER_NATS_IMAGE="nats:x", TETHER_NGINX_IMAGE="nginx:x", TETHER_PYTHON_IMAGE="py:x",
                           TETHER_IMAGE="tether:x"))
    svcs = yaml.safe_load(p.stdout)["services"]
    assert {n: s["image"] for n, s in svcs.items()} == {
        "postgres": "pg:x", "nats": "nats:x", "nginx": "nginx:x", "fake-model": "py:x",
        **{n: "tether:x" for n in tether}}


def test_compose_pod_environment(c):
    svcs = c.config()["services"]
    secrets = env_file(ENV_EXAMPLE)
    for n in PODS:
        env = svcs[n]["environment"]
        assert env == dict(secrets, TETHER_POD=n, TETHER_LISTEN="0.0.0.0:9000", TETHER_WORKERS="2",
                           DATABASE_URL="postgresql://tether@postgres:5432/tether",
                           NATS_URL="nats://nats:4222", TETHER_NATS_USER="tether"), (n, env)
    assert svcs["migrate"]["environment"] == dict(
        secrets, DATABASE_URL="postgresql://tether@postgres:5432/tether")
    assert svcs["cron"]["environment"] == secrets
    assert svcs["postgres"]["environment"] == dict(secrets, POSTGRES_USER="tether", POSTGRES_DB="tether")
    # nats gets its own file only: the NATS passwords, none of tether.env's secrets.
    assert svcs["nats"]["environment"] == env_file(NATS_ENV_EXAMPLE)
    for n in ("nginx", "fake-model"):
        assert "environment" not in svcs[n], n
    # Every key of the env file is a tetherd setting or named in the example's comments.
    help_text = sh([os.path.join(c.rootfs(), "usr/bin/tetherd"), "--help"]).stdout
    for k in secrets:
        assert k in help_text or k in ("POSTGRES_PASSWORD", "PGPASSWORD", "TETHER_RECOVER_EVERY_S"), k
    assert secrets["POSTGRES_PASSWORD"] == secrets["PGPASSWORD"]


def test_compose_commands_match_the_stack(c):
    svcs = c.config()["services"]
    stack = read(os.path.join(ROOT, "scripts/stack"))
    # The pod command (behind an optional 'ip netns exec NS' prefix for --netns stacks).
    assert 'exec "${pre[@]}" setsid "$BIN/tetherd" >>' in stack
    assert '"$BIN/tetherctl" migrate >/dev/null' in stack
    for n in PODS:
        assert svcs[n]["command"] == ["tetherd"], n
        assert svcs[n]["restart"] == "unless-stopped"
    assert svcs["migrate"]["command"] == ["tetherctl", "migrate"]
    assert svcs["migrate"]["restart"] == "no"
    assert svcs["cron"]["command"] == ["bash", "-c", CRON_LOOP]
    # The cron's curl is the stack's, word for word (variables aside).
    m = re.search(r"curl -s -m 10 .*?\\\n\s*(.*?)\n\s*sleep \$every", stack, re.S)
    stack_curl = m.group(0).replace("\\\n", " ").replace('\\"\\$TETHER_ADMIN_TOKEN\\"', "T").replace("'$URL", "'U")
    compose_curl = CRON_LOOP.replace('"$$TETHER_ADMIN_TOKEN"', "T").replace("http://nginx", "U")
    assert "TETHER_ADMIN_TOKEN=$ADMIN_TOKEN setsid bash -c" in stack
    assert shlex.split(stack_curl.split("sleep")[0]) == shlex.split(
        compose_curl.split("do ", 1)[1].split("; sleep")[0]), (stack_curl, compose_curl)
    assert "every=${TETHER_RECOVER_EVERY_S:-2}" in stack
    assert svcs["nats"]["command"] == ["nats-server", "-c", "/etc/nats/tether.conf"]
    assert svcs["postgres"]["command"] == [
        "postgres", "-c", "max_connections=200", "-c", "tcp_keepalives_idle=5",
        "-c", "tcp_keepalives_interval=2", "-c", "tcp_keepalives_count=3"]
    assert svcs["fake-model"]["command"] == ["python3", "/srv/fake-model.py", "8080"]
    assert "command" not in svcs["nginx"]  # the image's: nginx -g 'daemon off;'


def test_compose_healthchecks_and_depends_on(c):
    svcs = c.config()["services"]
    assert svcs["postgres"]["healthcheck"] == {
        "test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "tether", "-d", "tether"],
        "interval": "2s", "timeout": "3s", "retries": 30}
    assert svcs["nats"]["healthcheck"] == {
        "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8222/healthz?js-enabled-only=true"],
        "interval": "2s", "timeout": "3s", "retries": 30}
    for n in PODS:
        assert svcs[n]["healthcheck"] == {"test": ["CMD-SHELL", POD_HEALTH], "interval": "5s",
                                          "timeout": "3s", "retries": 3, "start_period": "20s"}, n
        assert svcs[n]["depends_on"] == {
            "postgres": {"condition": "service_healthy"}, "nats": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"}}, n
        # Longer than tetherd's drain: TETHER_DRAIN_S (10) + 10 s for the workers.
        assert svcs[n]["stop_grace_period"] == "25s"
    # The image's HEALTHCHECK would fail where no tetherd listens.
    for n in ("migrate", "cron"):
        assert svcs[n]["healthcheck"] == {"test": ["NONE"]}, n
    assert svcs["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert svcs["nginx"]["depends_on"] == {n: {"condition": "service_healthy"} for n in PODS}
    assert svcs["cron"]["depends_on"] == {"nginx": {"condition": "service_started"}}
    for n in ("nginx", "fake-model"):
        assert "healthcheck" not in svcs[n], n


def test_compose_ports_and_volumes(c):
    svcs = c.config()["services"]
    assert {n for n, s in svcs.items() if s.get("ports")} == {"nginx"}
    # All addresses by default (as before); scripts/compose-local binds 127.0.0.1.
    assert svcs["nginx"]["ports"] == ["0.0.0.0:8080:80/tcp"]
    for n, s in svcs.items():
        assert "expose" not in s and "network_mode" not in s, n
    assert svcs["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data:rw"]
    assert svcs["nats"]["volumes"] == [f"{DOCKER}/nats.conf:/etc/nats/tether.conf:ro", "natsdata:/data:rw"]
    assert svcs["nginx"]["volumes"] == [
        f"{ROOT}/nginx/tether.conf:/etc/nginx/nginx.conf:ro",
        f"{ROOT}/nginx/tether-api.inc:/etc/nginx/tether-api.inc:ro",
        f"{ROOT}/nginx/fastcgi.inc:/etc/nginx/fastcgi.inc:ro",
        f"{ROOT}/nginx/web.inc:/etc/nginx/web.inc:ro",
        f"{ROOT}/web:/usr/share/tether/web:ro"]
    assert svcs["fake-model"]["volumes"] == [
        f"{ROOT}/tests/fakes/fake_openai.py:/srv/fake_openai.py:ro",
        f"{DOCKER}/fake-model.py:/srv/fake-model.py:ro"]
    for n, s in svcs.items():
        for v in s.get("volumes", []):
            host = v.split(":")[0]
            assert not host.startswith("/") or os.path.exists(host), (n, v)
    # The port comes from TETHER_HTTP_PORT when set.
    p = sh(["docker-compose", "-f", COMPOSE, "config"],
           env=compose_env(TETHER_ENV_FILE="tether.env.example", TETHER_HTTP_PORT="9999",
                                   TETHER_HTTP_BIND="127.0.0.1"))
    assert yaml.safe_load(p.stdout)["services"]["nginx"]["ports"] == ["127.0.0.1:9999:80/tcp"]


# ---------- 2. the Dockerfile ----------

def test_dockerfile_static(c):
    build, runtime = dockerfile_stages()
    assert build["from"] == "debian:bookworm-slim AS build"
    assert runtime["from"] == "debian:bookworm-slim"
    assert ins(runtime, "USER") == ["10001:10001"]
    assert "useradd --system --uid 10001 --gid tether" in " ".join(ins(runtime, "RUN"))
    assert ins(runtime, "EXPOSE") == ["9000"]
    assert ins(runtime, "ENV") == ["TETHER_LISTEN=0.0.0.0:9000"]
    assert ins(runtime, "HEALTHCHECK") == [
        "--interval=5s --timeout=3s --start-period=20s --retries=3 CMD " + POD_HEALTH]
    assert ins(runtime, "ENTRYPOINT") == ['["/usr/bin/tini", "--"]']
    assert ins(runtime, "CMD") == ['["tetherd"]']
    assert ins(build, "RUN")[-1] == ('mkdir -p m4 && autoreconf -fi && ./configure --prefix=/usr && '
                                     'make -j"$(nproc)" && make install DESTDIR=/out')
    assert apt_packages(build) == BUILD_PKGS
    assert apt_packages(runtime) == RUNTIME_PKGS
    r = sh(["apt-cache", "show", "--no-all-versions", *BUILD_PKGS, *RUNTIME_PKGS])
    found = set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
    assert r.returncode == 0 and found == set(BUILD_PKGS + RUNTIME_PKGS), (r.stderr, found)
    # The tools the runtime commands use come from those packages.
    for tool, pkg in (("/usr/bin/cgi-fcgi", "libfcgi-bin"), ("/usr/bin/tini", "tini"),
                      ("/usr/bin/curl", "curl")):
        assert sh(["dpkg", "-S", tool]).stdout.split(":")[0] == pkg, tool


def test_dockerfile_build_stage(c):
    rootfs = c.rootfs()
    for b in ("tetherd", "tetherctl"):
        assert os.access(os.path.join(rootfs, "usr/bin", b), os.X_OK), b
    sql = sorted(os.listdir(os.path.join(ROOT, "sql")))
    assert sorted(os.listdir(os.path.join(rootfs, "usr/share/tether/sql"))) == sql
    # tetherctl migrate's default SQL directory is where the image puts them.
    with open(os.path.join(rootfs, "usr/bin/tetherctl"), "rb") as f:
        assert b"/usr/share/tether/sql\0" in f.read()


def test_dockerfile_runtime_libraries(c):
    rootfs = c.rootfs()
    closure = set(sh(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                      "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                      *RUNTIME_PKGS]).stdout.split())
    direct = set()
    for b in ("tetherd", "tetherctl"):
        path = os.path.join(rootfs, "usr/bin", b)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", sh(["readelf", "-d", path]).stdout)
        libs = dict(re.findall(r"^\s*(\S+) => (\S+)", sh(["ldd", path]).stdout, re.M))
        assert "not found" not in libs.values(), libs
        # dpkg knows a file by one of its paths (/lib or /usr/lib, the link or its target).
        paths = {name: {lib, os.path.realpath(lib)} for name, lib in libs.items()}
        owner = {f: p.split(":")[0] for p, f in re.findall(
            r"^(\S+): (\S+)$", sh(["dpkg", "-S", *set().union(*paths.values())]).stdout, re.M)}
        for name, lib in libs.items():
            pkgs = {owner[f] for f in paths[name] if f in owner}
            assert len(pkgs) == 1, (lib, pkgs)
            pkg = pkgs.pop()
            assert pkg == "libc6" or pkg in closure, f"{b} loads {lib} from {pkg}, not installed"
            if name in needed:
                direct.add(pkg)
    assert direct == {"libfcgi0ldbl", "libpq5", "libnats3.4", "libjson-c5", "libcurl4", "libuv1", "libc6"}, direct


# ---------- 3. nginx -t ----------

def nginx_copy(dest, sub):
    os.makedirs(dest, exist_ok=True)
    for f in ("tether.conf", "tether-api.inc", "fastcgi.inc", "web.inc"):
        shutil.copy(os.path.join(ROOT, "nginx", f), dest)
    shutil.copy("/etc/nginx/mime.types", dest)  # in the image: /etc/nginx/mime.types
    conf = read(os.path.join(dest, "tether.conf"))
    for a, b in sub.items():
        assert a in conf, a
        conf = conf.replace(a, b)
    with open(os.path.join(dest, "tether.conf"), "w") as f:
        f.write(conf)
    return os.path.join(dest, "tether.conf")


def test_nginx_conf_valid(c):
    d = os.path.join(c.tmp, "nginx-t")
    conf = nginx_copy(d, {"pod-1:9000": "127.0.0.1:9001", "pod-2:9000": "127.0.0.1:9002",
                          "pod-3:9000": "127.0.0.1:9003", "pid /run/nginx.pid;": f"pid {d}/nginx.pid;"})
    p = sh(["nginx", "-t", "-c", conf, "-p", d + "/"])
    assert p.returncode == 0 and "test is successful" in p.stderr, p.stderr
    # Unchanged, the only problem is that pod-1 does not resolve outside compose.
    shutil.copy(os.path.join(ROOT, "nginx/tether.conf"), conf)
    p = sh(["nginx", "-t", "-c", conf, "-p", d + "/"])
    assert p.returncode != 0 and 'host not found in upstream "pod-1:9000"' in p.stderr, p.stderr
    # The stack's limits and the compose file's pods.
    stack = read(os.path.join(ROOT, "nginx/stack.conf.in"))
    mine = read(os.path.join(ROOT, "nginx/tether.conf"))
    limits = re.findall(r"^\s*((?:client_(?!body_temp)|large_client)\S+ [^;]+;)", stack, re.M)
    assert len(limits) == 5 and all(l in mine for l in limits), limits
    assert re.findall(r"server (pod-\d):9000", mine) == list(PODS)


def test_operations_doc_is_current(c):
    """docs/OPERATIONS.md lists every setting of `tetherd --help` with its bounds,
    every metric of handlers/metrics.c, and the files and commands used here."""
    doc = read(os.path.join(ROOT, "docs/OPERATIONS.md"))
    help_text = sh([os.path.join(c.rootfs(), "usr/bin/tetherd"), "--help"]).stdout
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([A-Z_]+)`.*$", doc, re.M)}
    found = re.findall(r"^  (--\S+)\s+(TETHER_\w+)(?: or \w+)?\n\s+.*?\[(.*?)\]$", help_text, re.M)
    assert len(found) == help_text.count("\n  --"), "could not parse tetherd --help"
    for flag, env, meta in found:
        assert env in rows, f"{env} is not in the configuration table"
        cells = [x.strip() for x in rows[env].split("|")[1:-1]]
        assert cells[1] == f"`{flag}`", (env, cells)
        m = re.match(r"default (\S+), min (\S+), max (\S+)$", meta)
        if m:
            assert cells[2:5] == list(m.groups()), (env, cells, meta)
    names = re.findall(r"\b(tether_[a-z_]+)", read(os.path.join(ROOT, "handlers/metrics.c")))
    metrics = {re.sub(r"_seconds_(bucket|sum|count)$", "_seconds", n) for n in names}
    assert len(metrics) >= 14, metrics  # the parse found them (14 when this was written)
    for name in metrics:
        assert f"`{name}" in doc, f"metric {name} is not documented"
    for text in (POD_HEALTH, "docker/tether.env.example", "TETHER_STREAM_REPLICAS=3", '"tether.ev.*"', '"dest": "tether.live.>"',
                 "terminationGracePeriodSeconds", "kind: Deployment", "tetherctl migrate",
                 "### Runs stuck", "### NATS down", "### PostgreSQL failover"):
        assert text in doc, text
    readme = read(os.path.join(ROOT, "README.md"))
    assert "docs/OPERATIONS.md" in readme


# ---------- 4. the services, run as compose runs them ----------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Topology:
    """The compose services as local processes (each in its own process group)."""

    def __init__(self, c):
        self.c = c
        self.cfg = c.config()["services"]
        # tetherd refuses the example's admin token (too short, and the example's):
        # these processes get a real one, the same everywhere it is read.
        for svc in self.cfg.values():
            if "TETHER_ADMIN_TOKEN" in (svc.get("environment") or {}):
                svc["environment"]["TETHER_ADMIN_TOKEN"] = "adm_" + "5e" * 20
        self.bin = os.path.join(c.rootfs(), "usr/bin")
        self.dir = c.tmp
        self.logs = os.path.join(self.dir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.procs = {}
        self.ports = {n: free_port() for n in ("postgres", "nats", "nats-mon", "nginx", "fake-model", *PODS)}

    def sub(self, s, pod_port=None):
        """Container names and ports -> loopback ports (the only changes to compose's values)."""
        p = self.ports
        s = (s.replace("@postgres:5432/", f"@127.0.0.1:{p['postgres']}/")
             .replace("nats://nats:4222", f"nats://127.0.0.1:{p['nats']}")
             .replace("http://nginx/", f"http://127.0.0.1:{p['nginx']}/")
             .replace("$$", "$"))  # compose's escape for a literal $
        if pod_port:
            s = s.replace("0.0.0.0:9000", f"127.0.0.1:{pod_port}").replace("127.0.0.1:9000", f"127.0.0.1:{pod_port}")
        return s

    def env(self, service, pod_port=None):
        e = {k: self.sub(str(v), pod_port) for k, v in self.cfg[service].get("environment", {}).items()}
        # The image's PATH has tetherd and tetherctl in /usr/bin; here the built ones first.
        e["PATH"] = f"{self.bin}:/usr/bin:/bin:/usr/sbin:/sbin"
        return e

    def spawn(self, name, argv, env=None, user=None):
        log = open(os.path.join(self.logs, name + ".log"), "ab")
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self.procs[name]

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.get(name)
        if p and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        return p

    def log(self, name):
        try:
            return read(os.path.join(self.logs, name + ".log"))
        except FileNotFoundError:
            return ""

    def health(self, test, pod_port=None):
        kind, *cmd = test
        if kind == "CMD-SHELL":
            return sh(["sh", "-c", self.sub(cmd[0], pod_port)], timeout=10).returncode == 0
        return sh([self.sub(a, pod_port) for a in cmd], timeout=10).returncode == 0

    # -- the services --
    def start_postgres(self):
        svc = self.cfg["postgres"]
        env = svc["environment"]
        self.pgroot = tempfile.mkdtemp(prefix="tether-compose-pg-", dir="/var/tmp")
        data, pw = os.path.join(self.pgroot, "data"), os.path.join(self.pgroot, "pw")
        with open(pw, "w") as f:
            f.write(env["POSTGRES_PASSWORD"] + "\n")
        shutil.chown(self.pgroot, "postgres", "postgres")
        shutil.chown(pw, "postgres", "postgres")
        # What the postgres image's entrypoint does on an empty volume.
        p = sh(["runuser", "-u", "postgres", "--", f"{PGBIN}/initdb", "-D", data, "-U", env["POSTGRES_USER"],
                f"--pwfile={pw}", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--no-locale", "--no-sync"])
        assert p.returncode == 0, p.stderr
        argv = list(svc["command"])
        assert argv[0] == "postgres"
        self.spawn("postgres", [f"{PGBIN}/postgres", "-D", data, *argv[1:], "-c", "listen_addresses=127.0.0.1",
                                "-p", str(self.ports["postgres"]), "-c", f"unix_socket_directories={self.pgroot}"],
                   user="postgres")
        hc = svc["healthcheck"]["test"] + ["-p", str(self.ports["postgres"])]
        hc[1] = f"{PGBIN}/pg_isready"
        wait_until(lambda: self.health(hc), 30, "postgres healthy", 0.2)
        p = sh([f"{PGBIN}/psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.ports["postgres"]),
                "-U", env["POSTGRES_USER"], "-d", "postgres", "-c", f"CREATE DATABASE {env['POSTGRES_DB']}"],
               env=dict(os.environ, PGPASSWORD=env["POSTGRES_PASSWORD"]))
        assert p.returncode == 0, p.stderr

    def start_nats(self):
        svc = self.cfg["nats"]
        conf = read(os.path.join(DOCKER, "nats.conf"))
        for a, b in (("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{self.ports['nats']}"),
                     ("http: 127.0.0.1:8222", f"http: 127.0.0.1:{self.ports['nats-mon']}"),
                     ('store_dir: "/data"', f'store_dir: "{self.dir}/nats-data"')):
            assert a in conf, a
            conf = conf.replace(a, b)
        path = os.path.join(self.dir, "nats.conf")
        with open(path, "w") as f:
            f.write(conf)
        argv = [path if a == "/etc/nats/tether.conf" else a for a in svc["command"]]
        self.spawn("nats", argv, env=dict(svc["environment"], PATH=os.environ["PATH"]))
        hc = [a.replace("127.0.0.1:8222", f"127.0.0.1:{self.ports['nats-mon']}") for a in svc["healthcheck"]["test"]]
        wait_until(lambda: self.health(hc), 30, "nats healthy", 0.2)

    def migrate(self):
        env = self.env("migrate")
        env["TETHER_SQL_DIR"] = os.path.join(self.c.rootfs(), "usr/share/tether/sql")  # /usr/share/... in the image
        return sh(self.cfg["migrate"]["command"], env=env)

    def start_pod(self, name):
        port = self.ports[name]
        self.spawn(name, self.cfg[name]["command"], env=self.env(name, port))
        wait_until(lambda: self.health(self.cfg[name]["healthcheck"]["test"], port), 30, f"{name} healthy", 0.1)

    def start_nginx(self):
        d = os.path.join(self.dir, "nginx")
        web = os.path.join(self.dir, "web")
        shutil.copytree(os.path.join(ROOT, "web"), web)  # the read-only mount
        conf = nginx_copy(d, {**{f"{n}:9000": f"127.0.0.1:{self.ports[n]}" for n in PODS},
                              "pid /run/nginx.pid;": f"pid {d}/nginx.pid;",
                              "listen 80;": f"listen 127.0.0.1:{self.ports['nginx']};",
                              "root /usr/share/tether/web;": f"root {web};"})
        self.spawn("nginx", ["nginx", "-c", conf, "-p", d + "/", "-g", "daemon off;"])
        self.url = f"http://127.0.0.1:{self.ports['nginx']}"
        wait_until(lambda: Client(self.url).get("/readyz").status == 200, 20, "nginx -> a ready pod")

    def start_cron(self):
        self.spawn("cron", [self.sub(a) for a in self.cfg["cron"]["command"]], env=self.env("cron"))

    def stop(self):
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM if name == "postgres" else signal.SIGKILL)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "pgroot", None):
            shutil.rmtree(self.pgroot, ignore_errors=True)


def topology(c):
    assert c.topo is not None, "the services were not started (run test_services_start first)"
    return c.topo


def test_services_start(c):
    """postgres and nats healthy, migrate exits 0 (twice: idempotent), pods healthy."""
    t = c.topo = Topology(c)
    t.start_postgres()
    t.start_nats()
    nsql = len(os.listdir(os.path.join(ROOT, "sql")))
    p = t.migrate()
    assert p.returncode == 0 and p.stdout == f"migrations applied: {nsql}\n", (p.stdout, p.stderr)
    p = t.migrate()
    assert p.returncode == 0 and p.stdout == "migrations applied: 0\n", (p.stdout, p.stderr)
    for n in PODS:
        t.start_pod(n)
    t.start_nginx()
    t.start_cron()
    for n in PODS:
        # Healthy means one worker answers; the other may still be starting.
        log = wait_until(lambda: (lambda l: l if l.count("worker ready") == 2 else None)(t.log(n)), 20,
                         f"both workers of {n} ready")
        assert f"pod {n} listening on 127.0.0.1:{t.ports[n]} with 2 workers" in log, log


def test_services_through_nginx(c):
    t = topology(c)
    api = Client(t.url)
    seen = set()
    wait_until(lambda: (seen.add(api.get("/healthz").json["pod"]), seen == set(PODS))[1], 30,
               "/healthz answered by every pod through the upstream")
    r = api.get("/readyz")
    assert r.status == 200 and r.json["postgres"] == "ok" and r.json["nats"] == "ok", r
    admin = Client(t.url, t.cfg["cron"]["environment"]["TETHER_ADMIN_TOKEN"])
    r = admin.post("/v1/admin/tenants/compose/keys")
    assert r.status == 201, r
    user = Client(t.url, r.json["key"])
    tid = user.thread()
    # A run whose response is the event stream (the unbuffered location).
    r = user.req("POST", f"/v1/threads/{tid}/runs", body={"input": "slow:5x20"},
                 headers={"Accept": "text/event-stream"})
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream"), r
    events = re.findall(r"^event: (\w+)$", r.body.decode(), re.M)
    assert events == ["start"] + ["delta"] * 5 + ["done"], events
    r = api.get("/metrics")
    assert r.status == 200, r
    m = dict(l.rsplit(" ", 1) for l in r.body.decode().split("\n") if l and not l.startswith("#"))
    assert m["tether_pods"] == "3" and m["tether_workers"] == "6", m
    r = api.get("/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    assert "default-src 'self'" in r.headers["content-security-policy"]
    # The cron loop prints one line per sweep: the status of POST /v1/admin/recover.
    wait_until(lambda: re.search(r"^200 \d+\.\d+s$", t.log("cron"), re.M), 15, "a 200 from the cron loop")
    assert "recover: no answer" not in t.log("cron")


def owner_pod(api, rid, attempt=1):
    s = wait_until(lambda: (lambda s: s if s["status"] == "running" and s["owner"] and s["attempt"] == attempt
                            else None)(api.run_state(rid)), 20, f"run {rid} running, attempt {attempt}")
    return s["owner"]["pod"]


def test_services_pod_death_recovered_by_the_cron(c):
    """A pod container dies (SIGKILL to the whole pod): its unwatched run is resumed
    by the cron loop's sweep; nginx sends requests to the survivors meanwhile."""
    t = topology(c)
    admin = Client(t.url, t.cfg["cron"]["environment"]["TETHER_ADMIN_TOKEN"])
    user = Client(t.url, admin.post("/v1/admin/tenants/compose/keys").json["key"])
    rid = user.run(user.thread(), "slow:30x100")
    pod = owner_pod(user, rid)
    t.kill(pod).wait(10)
    for _ in range(10):
        r = Client(t.url).get("/healthz")
        assert r.status == 200 and r.json["pod"] != pod, r
    s = user.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 2 and s["owner"]["pod"] != pod, s
    assert "takeover via=sweep" in "".join(t.log(n) for n in PODS if n != pod)
    t.start_pod(pod)  # restart: unless-stopped


def test_services_stop_drains_within_grace(c):
    """docker stop: SIGTERM to the pod (tini forwards it); tetherd drains, hands its run
    over and exits before stop_grace_period, so docker never needs SIGKILL."""
    t = topology(c)
    admin = Client(t.url, t.cfg["cron"]["environment"]["TETHER_ADMIN_TOKEN"])
    user = Client(t.url, admin.post("/v1/admin/tenants/compose/keys").json["key"])
    rid = user.run(user.thread(), "slow:120x100")  # 12 s: longer than the 10 s drain
    pod = owner_pod(user, rid)
    grace = int(t.cfg[pod]["stop_grace_period"].rstrip("s"))
    t0 = time.monotonic()
    p = t.procs[pod]
    p.send_signal(signal.SIGTERM)  # tini signals its child, the master, only
    rc = p.wait(grace)
    took = time.monotonic() - t0
    assert rc == 0 and 9 < took < grace, (rc, took)
    assert "drain deadline: aborting 1 runs; survivors take them over" in t.log(pod)
    s = user.wait_terminal(rid, 60)
    assert s["status"] == "completed" and s["attempt"] == 2 and s["owner"]["pod"] != pod, s
    t.start_pod(pod)


def test_services_demo_fake_model(c):
    """--profile demo: the fake model answers other containers (all addresses)."""
    t = topology(c)
    svc = t.cfg["fake-model"]
    srv = os.path.join(t.dir, "srv")
    os.makedirs(srv, exist_ok=True)
    for v in svc["volumes"]:
        host, cont, _ = v.split(":")
        shutil.copy(host, os.path.join(srv, os.path.basename(cont)))
    argv = [a.replace("/srv/", srv + "/") for a in svc["command"]]
    argv[-1] = str(t.ports["fake-model"])
    t.spawn("fake-model", argv)
    wait_until(lambda: "listening 0.0.0.0:" in t.log("fake-model"), 10, "the fake model to listen")
    r = Client(f"http://127.0.0.1:{t.ports['fake-model']}").get("/_health")
    assert r.status == 200 and r.json == {"ok": True}, r


ORDER = ["test_compose_config_valid", "test_compose_services", "test_compose_one_image",
         "test_compose_commands_match_the_stack", "test_compose_healthchecks_and_depends_on",
         "test_compose_ports_and_volumes", "test_compose_hardened", "test_dockerfile_static", "test_nginx_conf_valid",
         "test_dockerfile_build_stage", "test_dockerfile_runtime_libraries", "test_compose_pod_environment",
         "test_operations_doc_is_current",
         "test_services_start", "test_services_through_nginx", "test_services_pod_death_recovered_by_the_cron",
         "test_services_stop_drains_within_grace", "test_services_demo_fake_model"]


def setup():
    for tool in ("docker-compose", "nginx", "nats-server", "cgi-fcgi", "wget", "apt-cache", "readelf",
                 f"{PGBIN}/initdb"):
        assert shutil.which(tool), f"missing {tool} (run scripts/deps)"
    return Ctx()


def teardown(c):
    if c.topo:
        c.topo.stop()
    if not os.environ.get("TETHER_KEEP_COMPOSE_TMP"):
        shutil.rmtree(c.tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown, per_test_timeout=600)
