"""The README's first command as a newcomer runs it: root clones tether under a
home directory of mode 0700 (as /root is) and runs scripts/demo. PostgreSQL runs
as `postgres`, which cannot enter that directory: the stack must still start, and
the demo must stream its reply. Then the demo is run once more against a port
that is taken, and must stop with the stack's own message instead of going on.

    python3 tests/integration/test_newcomer.py
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import ROOT, run_tests  # noqa: E402


class Ctx:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="tether-newcomer-")
        self.home = os.path.join(self.tmp, "root")
        os.mkdir(self.home, 0o700)
        self.clone = os.path.join(self.home, "tether")
        p = subprocess.run(["git", "clone", "-q", ROOT, self.clone], text=True, capture_output=True)
        assert p.returncode == 0, p.stderr
        # The suites' builds are reused: the clone builds its own from scratch only
        # when asked to (the demo runs scripts/build, which does).


def setup():
    assert os.geteuid() == 0, "the newcomer of the README is root"
    return Ctx()


def teardown(c):
    subprocess.run([os.path.join(c.clone, "scripts", "stack"), "down", "--purge"],
                   capture_output=True, timeout=120)
    shutil.rmtree(c.tmp, ignore_errors=True)


def demo(c, env=None, timeout=900):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([os.path.join(c.clone, "scripts", "demo")], cwd=c.clone, text=True,
                          capture_output=True, timeout=timeout, env=e)


def test_first_command_from_a_0700_home(c):
    assert oct(os.stat(c.home).st_mode & 0o777) == "0o700"
    p = demo(c)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "Permission denied" not in out, out[-4000:]
    assert "tether is up:" in p.stdout, out[-4000:]
    # The mock's reply, streamed back: 12 chunks.
    assert p.stdout.count("chunk-") >= 12, p.stdout[-2000:]
    # The PostgreSQL log is readable where `scripts/stack logs pg` looks.
    s = subprocess.run([os.path.join(c.clone, "scripts", "stack"), "logs", "pg"], text=True,
                       capture_output=True, timeout=30)
    assert s.returncode == 0 and "database system is ready" in s.stdout, s.stdout[-2000:] + s.stderr


def readme_try_it():
    """The shell block of the README's "Try it" section, as a user would paste it."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Try it"):]
    return section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh"))]


def test_readme_try_it_kills_the_owner_and_the_reply_goes_on(c):
    """The README's "Try it" block, pasted into a shell in the clone (after the
    demo's stack is up): it must kill the pod that generates the reply, and the
    watcher must see a reset and then the whole reply once, ending completed."""
    import json
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_try_it()], cwd=c.clone, text=True,
                       capture_output=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    events = [ln.split(" ", 2) for ln in p.stdout.splitlines() if ln.count(" ") >= 2 and ":" in ln.split(" ")[0]]
    kinds = [e[1] for e in events]
    assert "reset" in kinds, f"the kill did not hit the owner: {kinds}"
    assert kinds[-1] == "done" and json.loads(events[-1][2])["status"] == "completed", events[-3:]
    last = int(events[-1][0].split(":")[0])
    ids = [e[0] for e in events if e[0].startswith(f"{last}:")]
    assert ids == [f"{last}:{i}" for i in range(len(ids))], ids    # the last attempt whole, once
    text = "".join(json.loads(e[2])["text"] for e in events if e[1] == "delta" and e[0].startswith(f"{last}:"))
    # The mock's reply to "slow:30x150": chunk-1 .. chunk-30, each once, in order.
    got = [w for w in text.split() if w.startswith("chunk-")]
    assert got == [f"chunk-{i}" for i in range(1, 31)], got


def test_demo_stops_with_the_stacks_message(c):
    subprocess.run([os.path.join(c.clone, "scripts", "stack"), "down", "--purge"], capture_output=True,
                   timeout=120)
    # nginx cannot bind a port that is taken: the stack fails, and so must the demo.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        p = demo(c, env={"TETHER_NGINX_PORT": str(port)})
    finally:
        s.close()
    assert p.returncode != 0, p.stdout[-2000:]
    assert "stack:" in p.stderr and "demo: the local cluster did not start" in p.stderr, p.stderr[-2000:]
    assert "tether is up:" not in p.stdout and "tetherctl" not in p.stderr, p.stdout[-2000:] + p.stderr[-2000:]


if __name__ == "__main__":
    run_tests(globals(), setup, teardown, per_test_timeout=900)
