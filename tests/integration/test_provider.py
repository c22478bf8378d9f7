"""Provider suite: the OpenAI-compatible provider against a fake upstream
(tests/fakes/fake_openai.py), through nginx, with real PostgreSQL and NATS.

    python3 tests/integration/test_provider.py [name-filter]

Each test registers its own script on the fake (a unique name, named in the run's
input as `fake:<name>`) and asserts what the fake received and what tether made of
what the fake sent. TETHER_BIN_DIR picks the build (default build/).
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tether import ROOT, Client, Stack, Watcher, run_tests, wait_until, watch  # noqa: E402

FAKE = os.path.join(ROOT, "tests", "fakes", "fake_openai.py")
KEY = "sk-test-" + uuid.uuid4().hex     # must never appear in a log
SYSTEM = "You are a terse test assistant."
IDLE_MS = 3000
FIRST_TOKEN_MS = 5000
RETRIES = 3


class Fake:
    """The fake upstream: a child process, driven over HTTP."""

    def __init__(self):
        os.makedirs(os.path.join(ROOT, "var"), exist_ok=True)
        self.log = os.path.join(ROOT, "var", "test-provider.fake.jsonl")
        self.proc = subprocess.Popen([sys.executable, FAKE, "0", "--log", self.log],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()   # "listening 127.0.0.1:<port>" once bound
        assert line.startswith("listening "), f"fake upstream did not start: {line!r}"
        self.base = "http://" + line.split()[1]
        wait_until(lambda: self._get("/_health")["ok"], 10, "the fake upstream to answer")

    def _get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())

    def _post(self, path, obj):
        req = urllib.request.Request(self.base + path, data=json.dumps(obj).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def script(self, prefix, responses):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self._post("/_scripts", {"name": name, "responses": responses})
        return name

    def requests(self, script):
        return self._get(f"/_requests?script={script}")

    def all_requests(self):
        return self._get("/_requests")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Ctx:
    pass


def setup():
    c = Ctx()
    c.fake = Fake()
    c.stack = Stack("test-provider", pods=2, workers=2, env={
        "TETHER_PROVIDER_URL": c.fake.base + "/v1",
        "TETHER_PROVIDER_KEY": KEY,
        "TETHER_PROVIDER_MODEL": "fake-default",
        "TETHER_PROVIDER_MODELS": "fake-default,alias=fake-upstream-alias",
        "TETHER_SYSTEM_PROMPT": SYSTEM,
        "TETHER_PROVIDER_CONNECT_MS": "2000",
        "TETHER_PROVIDER_FIRST_TOKEN_MS": str(FIRST_TOKEN_MS),
        "TETHER_PROVIDER_IDLE_MS": str(IDLE_MS),
        "TETHER_PROVIDER_RETRIES": str(RETRIES),
        "TETHER_HEARTBEAT_S": "1",
    })
    c.stack.down()
    try:
        c.stack.up()
        c.key = c.stack.new_key("prov")
        c.api = Client(c.stack.url, c.key)
    except Exception:
        c.fake.stop()
        raise
    return c


def teardown(c):
    c.fake.stop()
    if not os.environ.get("TETHER_KEEP_STACK"):
        c.stack.down()


# ---- helpers ----

def start(c, text, thread=None, **kw):
    """A run on a new thread (or the given one) and a watcher from its start."""
    t = thread or c.api.thread()
    run_id = c.api.run(t, text, **kw)
    return t, run_id, watch(c.api, run_id)


def words(msgs):
    return sum(len(m["content"].split()) for m in msgs)


def finished(c, run_id, timeout=90):
    return c.api.wait_terminal(run_id, timeout=timeout)


GENERIC = {"provider_error": "the model provider failed; the server's log has the details",
           "timeout": "the model provider did not answer in time"}


def failure_detail(c, r):
    """The run failed with the generic message tenants see; the detail (upstream
    status and body, curl's error) is in the log of the pod that ran it."""
    code = r["error"]["code"]
    assert r["error"]["message"] == GENERIC[code], r["error"]
    pat = re.compile(r'run=%s attempt=\d+ msg="provider call failed \(%s\): (.*)"$' % (r["id"], code),
                     re.M)

    def find():
        for pod in ("pod-1", "pod-2"):
            m = pat.search(c.stack.log(pod))
            if m:
                return re.sub(r"\\x([0-9a-f]{2})", lambda h: chr(int(h.group(1), 16)), m.group(1))
        return None
    return wait_until(find, 10, "the failure's detail in a pod's log")


def check_stream(w, status, text):
    """The watcher saw start, deltas, done{status}, and exactly this text."""
    kinds = w.kinds()
    assert kinds[0] == "start" and kinds[-1] == "done", kinds
    assert set(kinds[1:-1]) <= {"delta"}, kinds
    assert w.final_status() == status, w.events[-1]
    assert w.all_text() == text, (w.all_text(), text)


# ---- tests ----

def test_normal_streaming(c):
    s = c.fake.script("normal", [{"n": 6, "interval_ms": 40}])
    text = f"fake:{s} tell me a story"
    t, run_id, w = start(c, text)
    w.wait(90)
    r = finished(c, run_id)
    reqs = c.fake.requests(s)
    assert len(reqs) == 1, reqs
    q = reqs[0]
    sent = "".join(q["sent"])
    assert len(q["sent"]) == 6 and q["outcome"] == "completed", q
    assert r["status"] == "completed" and r["output"] == sent, (r, sent)
    assert r["model"] == "fake-default", r
    check_stream(w, "completed", sent)
    body = q["body"]
    assert q["path"] == "/v1/chat/completions", q
    assert q["authorization"] == "Bearer " + KEY, q["authorization"]
    assert body["model"] == "fake-default" and body["stream"] is True, body
    assert body["stream_options"] == {"include_usage": True}, body
    assert body["messages"] == [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": text}], body["messages"]
    assert set(body) == {"model", "messages", "stream", "stream_options"}, body
    n = words(body["messages"])
    assert r["usage"] == {"prompt_tokens": n, "completion_tokens": 6, "total_tokens": n + 6}, r


def test_awkward_framing(c):
    """CRLF line ends, keep-alive comments, every event split across three writes."""
    s = c.fake.script("framing", [{"n": 5, "interval_ms": 20, "crlf": True, "split": True,
                                   "keepalive": True}])
    t, run_id, w = start(c, f"fake:{s} hi")
    w.wait(90)
    r = finished(c, run_id)
    (q,) = c.fake.requests(s)
    sent = "".join(q["sent"])
    assert len(q["sent"]) == 5 and r["status"] == "completed" and r["output"] == sent, (r, q)
    check_stream(w, "completed", sent)


def test_model_mapping_and_params(c):
    s = c.fake.script("params", [{"n": 2}])
    params = {"temperature": 0.25, "top_p": 0.5, "max_tokens": 64, "stop": ["\n\n", "END"]}
    t, run_id, w = start(c, f"fake:{s} mapped", model="alias", params=params)
    w.wait(90)
    r = finished(c, run_id)
    (q,) = c.fake.requests(s)
    assert r["status"] == "completed" and r["model"] == "alias", r
    assert q["model"] == "fake-upstream-alias", q["model"]
    for k, v in params.items():
        assert q["body"][k] == v, (k, q["body"])
    # Refused at creation, before any upstream call: 400 invalid_field.
    before = len(c.fake.all_requests())
    t2 = c.api.thread()
    for body, field in [({"model": "not-configured"}, "model"),
                        ({"model": "fake-upstream-alias"}, "model"),
                        ({"params": {"frequency_penalty": 1}}, "params.frequency_penalty"),
                        ({"params": {"temperature": 3}}, "params.temperature"),
                        ({"params": {"top_p": "high"}}, "params.top_p"),
                        ({"params": {"max_tokens": 0}}, "params.max_tokens"),
                        ({"params": {"stop": [1]}}, "params.stop")]:
        resp = c.api.post(f"/v1/threads/{t2}/runs", dict(body, input=f"fake:{s} no"))
        assert resp.status == 400, (body, resp)
        err = resp.json["error"]
        assert err["code"] == "invalid_field" and err["field"] == field, (body, err)
    assert len(c.fake.all_requests()) == before
    # mock stays available next to the provider
    mr = c.api.run(t2, "slow:2x10", model="mock")
    m = finished(c, mr)
    assert m["status"] == "completed" and m["model"] == "mock", m
    assert m["output"].split()[1::2] == ["chunk-1", "chunk-2"], m["output"]
    assert len(c.fake.all_requests()) == before


def test_multi_turn_history(c):
    s = c.fake.script("history", [{"n": 3}, {"n": 2}, {"n": 2}])
    t = c.api.thread()
    q1, q2, q3 = f"fake:{s} first question", f"fake:{s} second question", f"fake:{s} third"
    r1 = finished(c, c.api.run(t, q1))
    r2 = finished(c, c.api.run(t, q2))
    r3 = finished(c, c.api.run(t, q3))
    reqs = c.fake.requests(s)
    assert [r["status"] for r in (r1, r2, r3)] == ["completed"] * 3
    assert len(reqs) == 3, reqs
    assert r1["output"] == "".join(reqs[0]["sent"]) and r2["output"] == "".join(reqs[1]["sent"])
    sysm = {"role": "system", "content": SYSTEM}
    assert reqs[1]["body"]["messages"] == [
        sysm, {"role": "user", "content": q1}, {"role": "assistant", "content": r1["output"]},
        {"role": "user", "content": q2}], reqs[1]["body"]["messages"]
    assert reqs[2]["body"]["messages"] == [
        sysm, {"role": "user", "content": q1}, {"role": "assistant", "content": r1["output"]},
        {"role": "user", "content": q2}, {"role": "assistant", "content": r2["output"]},
        {"role": "user", "content": q3}], reqs[2]["body"]["messages"]


def test_retry_then_success(c):
    s = c.fake.script("retry", [{"status": 503, "retry_after": "1"}, {"status": 429},
                                {"drop_after": 0}, {"n": 4, "interval_ms": 20}])
    t, run_id, w = start(c, f"fake:{s} please retry")
    w.wait(90)
    r = finished(c, run_id)
    reqs = c.fake.requests(s)
    assert [q["status"] for q in reqs] == [503, 429, 200, 200], reqs
    assert [q["outcome"] for q in reqs] == ["error_status", "error_status", "dropped", "completed"]
    sent = "".join(reqs[3]["sent"])
    assert r["status"] == "completed" and r["output"] == sent, (r, sent)
    assert r["attempt"] == 1, r
    check_stream(w, "completed", sent)     # retries before the first token are invisible
    # Retry-After: 1 was honoured.
    assert reqs[1]["t_start"] - reqs[0]["t_start"] >= 0.95, reqs


def test_first_token_timeout_retried(c):
    s = c.fake.script("ttft", [{"first_delay_ms": 60000}, {"n": 2}])
    t0 = time.monotonic()
    t, run_id, w = start(c, f"fake:{s} slow start")
    w.wait(90)
    r = finished(c, run_id)
    reqs = c.fake.requests(s)
    assert len(reqs) == 2, reqs
    assert r["status"] == "completed" and r["output"] == "".join(reqs[1]["sent"]), r
    # the stalled first try was abandoned and its connection closed
    wait_until(lambda: c.fake.requests(s)[0]["disconnected"], 10, "the fake to see the close")
    assert time.monotonic() - t0 >= FIRST_TOKEN_MS / 1000.0
    check_stream(w, "completed", "".join(reqs[1]["sent"]))


def test_client_errors_not_retried(c):
    for status, body, needle in [
            (401, {"error": {"message": "Incorrect API key provided: sk-****",
                             "type": "invalid_request_error", "code": "invalid_api_key"}},
             "invalid_request_error/invalid_api_key: Incorrect API key provided"),
            (404, {"error": {"message": "The model `x` does not exist",
                             "type": "invalid_request_error", "code": "model_not_found"}},
             "The model `x` does not exist"),
            (400, "<html>\x01bad\trequest</html>", "<html>\\x01bad\\x09request</html>")]:
        s = c.fake.script(f"e{status}", [{"status": status, "body": body}, {"n": 2}])
        t, run_id, w = start(c, f"fake:{s} x")
        w.wait(90)
        r = finished(c, run_id)
        assert r["status"] == "failed", r
        assert r["error"]["code"] == "provider_error", r["error"]
        msg = failure_detail(c, r)
        assert msg.startswith(f"upstream returned HTTP {status}: "), msg
        assert needle in msg, (needle, msg)
        assert "retr" not in msg, msg
        assert len(c.fake.requests(s)) == 1
        assert w.kinds() == ["start", "done"], w.kinds()
        assert w.data(1)["error"] == r["error"], w.events


def test_retries_exhausted(c):
    s = c.fake.script("exhaust", [{"status": 502, "body": {"error": {"message": "bad gateway"}}}])
    t, run_id, w = start(c, f"fake:{s} x")
    w.wait(90)
    r = finished(c, run_id)
    assert r["status"] == "failed" and r["error"]["code"] == "provider_error", r
    assert failure_detail(c, r) == \
        f"upstream returned HTTP 502: bad gateway (after {RETRIES} retries)", r["error"]
    assert len(c.fake.requests(s)) == RETRIES + 1


def test_midstream_failure(c):
    s = c.fake.script("midfail", [{"n": 6, "fail_after": 2, "fail_status": 503,
                                   "interval_ms": 50}])
    t, run_id, w = start(c, f"fake:{s} x")
    w.wait(90)
    r = finished(c, run_id)
    reqs = c.fake.requests(s)
    assert len(reqs) == 1 and reqs[0]["outcome"] == "failed_in_stream", reqs
    sent = "".join(reqs[0]["sent"])
    assert len(reqs[0]["sent"]) == 2
    assert r["status"] == "failed" and r["error"]["code"] == "provider_error", r
    assert failure_detail(c, r) == ("upstream error in the stream: server_error/503: fake "
                                     "failure after 2 chunks (after 2 chunks)"), r["error"]
    check_stream(w, "failed", sent)
    assert w.data(-1)["error"] == r["error"]


def test_midstream_drop(c):
    s = c.fake.script("drop", [{"n": 6, "drop_after": 3, "interval_ms": 50}])
    t, run_id, w = start(c, f"fake:{s} x")
    w.wait(90)
    r = finished(c, run_id)
    reqs = c.fake.requests(s)
    assert len(reqs) == 1 and reqs[0]["outcome"] == "dropped", reqs
    assert r["status"] == "failed" and r["error"]["code"] == "provider_error", r
    assert failure_detail(c, r) == ("the provider connection failed mid-stream: transfer "
                                     "closed with outstanding read data remaining (after 3 "
                                     "chunks)"), r["error"]
    check_stream(w, "failed", "".join(reqs[0]["sent"]))


def test_stall_times_out(c):
    s = c.fake.script("stall", [{"n": 6, "stall_after": 2, "interval_ms": 50}])
    t, run_id, w = start(c, f"fake:{s} x")
    w.wait(90)
    r = finished(c, run_id)
    assert r["status"] == "failed" and r["error"]["code"] == "timeout", r
    assert failure_detail(c, r) == \
        f"the provider sent nothing for {IDLE_MS} ms (provider_idle_ms) (after 2 chunks)", r
    reqs = wait_until(lambda: (lambda q: q if q[0]["disconnected"] else None)(c.fake.requests(s)),
                      10, "the fake to see the stalled connection closed")
    assert len(reqs) == 1 and len(reqs[0]["sent"]) == 2, reqs
    check_stream(w, "failed", "".join(reqs[0]["sent"]))


def test_cancel_closes_upstream(c):
    s = c.fake.script("cancel", [{"n": 300, "interval_ms": 100}])
    t, run_id, w = start(c, f"fake:{s} long answer")
    wait_until(lambda: w.kinds().count("delta") >= 2, 30, "two deltas")
    t0 = time.monotonic()
    resp = c.api.post(f"/v1/runs/{run_id}/cancel")
    assert resp.status == 200 and resp.json["status"] == "cancelled", resp
    q = wait_until(lambda: (lambda r: r[0] if r[0]["disconnected"] else None)(c.fake.requests(s)),
                   10, "the fake to see the client go away")
    assert q["outcome"] == "client_disconnected", q
    assert time.monotonic() - t0 < 5, "the upstream connection was not closed promptly"
    w.wait(30)
    assert w.final_status() == "cancelled", w.events[-1]
    r = finished(c, run_id)
    assert r["status"] == "cancelled", r
    n = len(q["sent"])
    assert 2 <= n < 300, n
    # nothing more was sent, and no new call was made
    reqs = c.fake.requests(s)
    assert len(reqs) == 1 and len(reqs[0]["sent"]) == n, reqs


def test_takeover_calls_upstream_again(c):
    s = c.fake.script("takeover", [{"n": 80, "interval_ms": 100}, {"n": 5, "interval_ms": 30}])
    t = c.api.thread()
    run_id = c.api.run(t, f"fake:{s} survive this")
    owner = wait_until(lambda: (c.api.run_state(run_id).get("owner") or {}).get("pod"), 20,
                       "the run's owner")
    other = "pod-2" if owner == "pod-1" else "pod-1"
    # A watcher on the survivor, streaming before the owner dies.
    w = Watcher(c.api, f"/pod/{other}/v1/runs/{run_id}/events", reconnect=True)
    w.start()
    wait_until(lambda: w.kinds().count("delta") >= 3, 30, "deltas before the kill")
    first = c.fake.requests(s)
    assert len(first) == 1, first
    c.stack.kill(owner)
    try:
        w.wait(90, "the run to finish after the takeover")
        r = finished(c, run_id)
        reqs = c.fake.requests(s)
        assert len(reqs) == 2, reqs
        assert reqs[0]["disconnected"] is True, reqs[0]     # the dead owner's call went away
        assert reqs[1]["outcome"] == "completed", reqs[1]
        assert reqs[1]["body"] == reqs[0]["body"], (reqs[0]["body"], reqs[1]["body"])
        second = "".join(reqs[1]["sent"])
        assert r["status"] == "completed" and r["attempt"] == 2, r
        assert r["output"] == second, (r["output"], second)
        kinds = w.kinds()
        assert w.drops == 0, w.drops
        k = kinds.index("reset")
        assert kinds[0] == "start" and set(kinds[1:k]) == {"delta"}, kinds
        assert kinds[k + 1:] == ["delta"] * (len(kinds) - k - 2) + ["done"], kinds
        assert w.data(k) == {"attempt": 2, "reason": "owner_lost"}, w.data(k)
        assert w.final_status() == "completed", kinds
        assert w.text_after_last_reset() == second, (w.text_after_last_reset(), second)
        # the abandoned attempt streamed only what the fake sent in the first call
        first_text = "".join(e for e in reqs[0]["sent"])
        assert first_text.startswith("".join(w.data(i)["text"] for i in range(1, k)))
        # a watcher attaching afterwards gets the new attempt only
        late = watch(c.api, run_id).wait(30)
        assert late.final_status() == "completed" and late.all_text() == second, late.events
    finally:
        c.stack.start(owner)


def test_key_never_logged(c):
    logs = os.path.join(c.stack.dir, "logs")
    for name in os.listdir(logs):
        with open(os.path.join(logs, name), errors="replace") as f:
            assert KEY not in f.read(), f"the provider key appears in {name}"
    # but it was sent upstream
    assert all(q["authorization"] == "Bearer " + KEY for q in c.fake.all_requests())


def test_tool_loop_upstream(c):
    """Tools go upstream; two calls stream back interleaved, their arguments split
    in pieces (inside escapes too); the outputs go back as tool messages after the
    assistant's tool_calls, and the continuation answers."""
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}},
             {"type": "function", "function": {"name": "get_time"}}]
    args_a = {"city": "Paris \"15e\" \u00e9t\u00e9", "units": ["C", 1]}
    s = c.fake.script("tools", [
        {"texts": ["Let me check. "], "tool_calls": [
            {"id": "call_a", "name": "get_weather", "arguments": args_a},
            {"id": "call_b", "name": "get_time", "arguments": "{}"}], "split_args": 5, "interleave": True},
        {"texts": ["Sunny ", "at noon."]}])
    text = f"fake:{s} weather and time?"
    t, run_id, w = start(c, text, tools=tools, tool_choice="auto")
    w.wait(90)
    assert w.kinds() == ["start", "delta", "tool_call", "tool_call", "done"], w.kinds()
    assert w.data(2) == {"id": "call_a", "name": "get_weather", "arguments": args_a}, w.data(2)
    assert w.data(3) == {"id": "call_b", "name": "get_time", "arguments": {}}, w.data(3)
    assert w.final_status() == "requires_action"
    r = c.api.run_state(run_id)
    assert r["status"] == "requires_action" and r["output"] == "Let me check. ", r
    assert r["required_action"]["tool_calls"] == [w.data(2), w.data(3)], r
    (q1,) = c.fake.requests(s)
    assert q1["body"]["tools"] == tools and q1["body"]["tool_choice"] == "auto", q1["body"]
    # Two openings, call_a in 5 pieces, call_b ("{}") in 2, interleaved.
    assert len(q1["tool_fragments"]) == 2 + 5 + 2, q1["tool_fragments"]
    assert [f["index"] for f in q1["tool_fragments"]][:6] == [0, 1, 0, 1, 0, 1], q1["tool_fragments"]
    resp = c.api.post(f"/v1/runs/{run_id}/tool_outputs", {"outputs": [
        {"tool_call_id": "call_b", "output": "12:00"}, {"tool_call_id": "call_a", "output": "sunny"}]})
    assert resp.status == 202, resp
    cont = resp.json["run_id"]
    w2 = watch(c.api, cont).wait(90)
    r2 = finished(c, cont)
    assert r2["status"] == "completed" and r2["output"] == "Sunny at noon.", r2
    check_stream(w2, "completed", "Sunny at noon.")
    q2 = c.fake.requests(s)[1]
    assert q2["body"]["tools"] == tools and q2["body"]["tool_choice"] == "auto", q2["body"]
    msgs = q2["body"]["messages"]
    assert msgs[:2] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}], msgs
    a = msgs[2]
    assert a["role"] == "assistant" and a["content"] == "Let me check. ", a
    assert [(tc["id"], tc["type"], tc["function"]["name"], json.loads(tc["function"]["arguments"]))
            for tc in a["tool_calls"]] == [("call_a", "function", "get_weather", args_a),
                                           ("call_b", "function", "get_time", {})], a
    assert all(isinstance(tc["function"]["arguments"], str) for tc in a["tool_calls"]), a
    assert msgs[3:] == [{"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
                        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"}], msgs


def test_tool_call_with_bad_arguments_fails_the_run(c):
    s = c.fake.script("badargs", [{"tool_calls": [{"id": "call_x", "name": "get_weather",
                                                   "arguments": "{\"city\": \"Par"}], "split_args": 2}])
    t, run_id, w = start(c, f"fake:{s} x", tools=[{"type": "function", "function": {"name": "get_weather"}}])
    w.wait(90)
    r = finished(c, run_id)
    assert r["status"] == "failed" and r["error"]["code"] == "provider_error", r
    assert w.kinds().count("tool_call") == 0 and w.final_status() == "failed", w.kinds()
    # The thread is free: nothing waits for outputs.
    assert c.api.post(f"/v1/threads/{t}/runs", {"input": "again", "model": "mock"}).status == 202


ORDER = ["test_normal_streaming", "test_awkward_framing", "test_model_mapping_and_params",
         "test_multi_turn_history", "test_retry_then_success", "test_first_token_timeout_retried",
         "test_client_errors_not_retried", "test_retries_exhausted", "test_midstream_failure",
         "test_midstream_drop", "test_stall_times_out", "test_cancel_closes_upstream",
         "test_takeover_calls_upstream_again", "test_key_never_logged", "test_tool_loop_upstream",
         "test_tool_call_with_bad_arguments_fails_the_run"]

if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
