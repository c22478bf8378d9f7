"""Tools suite (issue 16): tool calls with the mock model, through nginx, with real
PostgreSQL and NATS. The OpenAI-compatible side (tools sent upstream, streamed
tool-call deltas) is in test_provider.py; a takeover while a call's arguments
stream is in tests/cluster/test_takeover.py.

    python3 tests/integration/test_tools.py [name-filter]

The mock's `tool:<name>` calls <name> with {"n":1} (id "call_<first 8 of the run
id>_<i>"); a continuation answers "tool=<id>:<output> " per output (API.md).
"""
import json
import os
import re
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from natsjs import run_messages  # noqa: E402
from tether import Client, Watcher, run_tests, stack_ctx, stack_teardown, wait_until, watch  # noqa: E402


def setup():
    return stack_ctx("test-tools", "tools", env={"TETHER_PURGE_GRACE_S": "2", "TETHER_HEARTBEAT_S": "1"})


teardown = stack_teardown


def assert_error(r, status, code, field=None):
    assert r.status == status, f"expected {status} {code}, got {r}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert r.json["error"]["code"] == code, r.body
    assert isinstance(r.json["error"]["message"], str) and r.json["error"]["message"], r.json
    if field is not None:
        assert r.json["error"].get("field") == field, (field, r.json)


def call_id(run_id, i=0):
    return f"call_{run_id[:8]}_{i}"


def waiting(c, text, tools=None, **kw):
    """A run that ends asking for tools; returns (thread, run id, its watcher)."""
    t = c.api.thread()
    rid = c.api.run(t, text, **({"tools": tools} if tools else {}), **kw)
    w = watch(c.api, rid).wait(30)
    assert w.final_status() == "requires_action", w.kinds()
    return t, rid, w


def outputs(c, rid, outs, key=None):
    h = {"Idempotency-Key": key} if key else None
    return c.api.post(f"/v1/runs/{rid}/tool_outputs",
                      {"outputs": [{"tool_call_id": i, "output": o} for i, o in outs]}, headers=h)


def tool_events(w):
    return [w.data(i) for i, k in enumerate(w.kinds()) if k == "tool_call"]


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}}]


def test_tool_loop(c):
    t, rid, w = waiting(c, "what is the weather? tool:get_weather", tools=WEATHER)
    cid = call_id(rid)
    # start, one tool_call with the complete arguments as an object, done.
    assert w.kinds() == ["start", "tool_call", "done"], w.kinds()
    assert w.data(1) == {"id": cid, "name": "get_weather", "arguments": {"n": 1}}, w.data(1)
    assert w.ids() == [f"1:{i}" for i in range(3)], w.ids()
    assert w.data(2) == {"status": "requires_action"}, w.data(2)
    s = c.api.run_state(rid)
    assert s["status"] == "requires_action", s
    assert s["required_action"] == {"tool_calls": [{"id": cid, "name": "get_weather",
                                                    "arguments": {"n": 1}}]}, s
    # The thread is busy until the outputs arrive.
    r = c.api.post(f"/v1/threads/{t}/runs", {"input": "another"})
    assert_error(r, 409, "thread_busy")
    assert r.json["error"]["active_run_id"] == rid, r.json
    th = c.api.get(f"/v1/threads/{t}").json
    assert th["status"] == "running" and th["active_run_id"] == rid, th
    # The outputs start the continuation, answered like run creation.
    r = outputs(c, rid, [(cid, "sunny, 21 C")])
    assert r.status == 202, r
    cont = r.json["run_id"]
    assert r.json["continues"] == rid and r.json["thread_id"] == t and r.json["status"] == "running", r.json
    assert r.json["events_url"] == f"/v1/runs/{cont}/events", r.json
    w2 = watch(c.api, cont).wait(30)
    assert w2.final_status() == "completed", w2.kinds()
    assert w2.all_text() == f"tool={cid}:sunny, 21 C ", w2.all_text()
    s2 = c.api.run_state(cont)
    assert s2["status"] == "completed" and s2["continues"] == rid and s2["output"] == w2.all_text(), s2
    s = c.api.run_state(rid)
    assert s["status"] == "completed" and s["required_action"] is None and s["continued_by"] == cont, s
    assert s["tool_calls"] == [{"id": cid, "name": "get_weather", "arguments": {"n": 1}}], s
    # The thread's messages tell the whole loop, in order.
    msgs = c.api.get(f"/v1/threads/{t}").json["messages"]
    assert [(m["role"], m["content"], m.get("tool_calls"), m.get("tool_call_id"), m["run_id"]) for m in msgs] == [
        ("user", "what is the weather? tool:get_weather", None, None, rid),
        ("assistant", "", [{"id": cid, "name": "get_weather", "arguments": {"n": 1}}], None, rid),
        ("tool", "sunny, 21 C", None, cid, cont),
        ("assistant", f"tool={cid}:sunny, 21 C ", None, None, cont)], msgs
    # The same outputs again: the same continuation; other outputs: 409.
    r = outputs(c, rid, [(cid, "sunny, 21 C")])
    assert r.status == 200 and r.json["run_id"] == cont and r.json["continues"] == rid, r
    assert_error(outputs(c, rid, [(cid, "rain")]), 409, "conflict")
    # The thread is free again.
    assert c.api.post(f"/v1/threads/{t}/runs", {"input": "thanks slow:1x0"}).status == 202


def test_history_sent_to_the_model(c):
    """What a continuation is given: the user's input, the assistant's call, the
    tool's output, in order (the mock's history directive describes it)."""
    t, rid, _ = waiting(c, "tool:lookup history")
    r = outputs(c, rid, [(call_id(rid), "42")])
    assert r.status == 202, r
    w = watch(c.api, r.json["run_id"]).wait(30)
    assert w.all_text() == f"history=3 roles=user,assistant,tool tool={call_id(rid)}:42 ", w.all_text()
    # A next run on the thread sees the whole loop as history.
    rid3 = c.api.run(t, "next history slow:1x0")
    w3 = watch(c.api, rid3).wait(30)
    assert w3.all_text().startswith("history=5 roles=user,assistant,tool,assistant,user "), w3.all_text()


def test_two_calls_outputs_in_any_order(c):
    t, rid, w = waiting(c, "tool:alpha tool:beta slow:2x10")
    a, b = call_id(rid, 0), call_id(rid, 1)
    # The text first, then both calls, in order.
    assert w.kinds() == ["start", "delta", "delta", "tool_call", "tool_call", "done"], w.kinds()
    assert [e["name"] for e in tool_events(w)] == ["alpha", "beta"]
    assert [e["id"] for e in tool_events(w)] == [a, b]
    s = c.api.run_state(rid)
    assert s["output"] == w.all_text() and len(s["required_action"]["tool_calls"]) == 2, s
    r = outputs(c, rid, [(b, "B"), (a, "A")])
    assert r.status == 202, r
    w2 = watch(c.api, r.json["run_id"]).wait(30)
    # Stored and sent in the calls' order, whatever order they were given in.
    assert w2.all_text().startswith(f"tool={a}:A tool={b}:B "), w2.all_text()
    msgs = c.api.get(f"/v1/threads/{t}").json["messages"]
    assert [(m["role"], m.get("tool_call_id")) for m in msgs][2:4] == [("tool", a), ("tool", b)], msgs
    # The same outputs in the other order are the same outputs.
    r2 = outputs(c, rid, [(a, "A"), (b, "B")])
    assert r2.status == 200 and r2.json["run_id"] == r.json["run_id"], r2


def test_tool_outputs_refused(c):
    _, rid, _ = waiting(c, "tool:alpha tool:beta")
    a, b = call_id(rid, 0), call_id(rid, 1)
    url = f"/v1/runs/{rid}/tool_outputs"
    assert_error(outputs(c, rid, [(a, "A")]), 400, "invalid_field", "outputs")        # b missing
    assert_error(outputs(c, rid, [(a, "A"), (b, "B"), ("call_x", "C")]), 400, "invalid_field",
                 "outputs[2].tool_call_id")                                           # unknown id
    assert_error(outputs(c, rid, [(a, "A"), (a, "B")]), 400, "invalid_field", "outputs[1].tool_call_id")
    assert_error(c.api.post(url, {}), 400, "invalid_field", "outputs")
    assert_error(c.api.post(url, {"outputs": []}), 400, "invalid_field", "outputs")
    assert_error(c.api.post(url, {"outputs": "x"}), 400, "invalid_field", "outputs")
    assert_error(c.api.post(url, {"outputs": [{"tool_call_id": a, "output": 3}, {"tool_call_id": b,
                                               "output": "B"}]}), 400, "invalid_field", "outputs[0].output")
    assert_error(c.api.post(url, {"outputs": [{"tool_call_id": a, "output": "A", "x": 1}]}), 400,
                 "invalid_field", "outputs[0].x")
    assert_error(c.api.post(url, {"outputs": [], "extra": 1}), 400, "invalid_field", "extra")
    assert_error(c.api.post(url, raw="{not json", headers={"Content-Type": "application/json"}), 400,
                 "invalid_json")
    assert_error(outputs(c, rid, [(a, "x" * (256 * 1024 + 1)), (b, "B")]), 400, "invalid_field",
                 "outputs[0].output")
    # Nothing was made by the refusals: the run still waits.
    assert c.api.run_state(rid)["status"] == "requires_action"
    # Not waiting: a run that asked for no tool, a run that does not exist, another tenant's.
    rid2 = c.api.run(c.api.thread(), "plain slow:1x0")
    c.api.wait_terminal(rid2)
    assert_error(outputs(c, rid2, [("call_1", "x")]), 409, "conflict")
    assert_error(outputs(c, str(uuid.uuid4()), [("call_1", "x")]), 404, "not_found")
    assert_error(c.api.post("/v1/runs/nope/tool_outputs", {"outputs": []}), 400, "invalid_id")
    other = Client(c.stack.url, c.stack.new_key("tools-other"))
    assert_error(other.post(url, {"outputs": [{"tool_call_id": a, "output": "A"},
                                              {"tool_call_id": b, "output": "B"}]}), 404, "not_found")


def test_idempotency_key(c):
    _, rid, _ = waiting(c, "tool:alpha")
    a = call_id(rid)
    key = "outs-" + uuid.uuid4().hex
    r1 = outputs(c, rid, [(a, "A")], key=key)
    assert r1.status == 202, r1
    r2 = outputs(c, rid, [(a, "A")], key=key)
    assert r2.status == 200 and r2.json["run_id"] == r1.json["run_id"], r2
    assert_error(outputs(c, rid, [(a, "other")], key=key), 422, "idempotency_conflict")
    # A key already used for a run creation is another request.
    t = c.api.thread()
    key2 = "outs-" + uuid.uuid4().hex
    assert c.api.post(f"/v1/threads/{t}/runs", {"input": "tool:beta"}, headers={"Idempotency-Key": key2}).status == 202
    assert_error(c.api.post(f"/v1/runs/{rid}/tool_outputs", {"outputs": [{"tool_call_id": a, "output": "A"}]},
                            headers={"Idempotency-Key": key2}), 422, "idempotency_conflict")
    assert_error(c.api.post(f"/v1/runs/{rid}/tool_outputs", {"outputs": [{"tool_call_id": a, "output": "A"}]},
                            headers={"Idempotency-Key": "bad key"}), 400, "bad_request")


def test_concurrent_outputs_make_one_continuation(c):
    import threading
    _, rid, _ = waiting(c, "tool:alpha")
    a = call_id(rid)
    res = []

    def go(o):
        res.append(outputs(c, rid, [(a, o)]))
    ts = [threading.Thread(target=go, args=("same" if i % 2 else f"other-{i}",)) for i in range(8)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(30)
    made = {r.json["run_id"] for r in res if r.status in (200, 202)}
    assert len(made) == 1, res
    assert sum(1 for r in res if r.status == 202) == 1, res
    assert all(r.status in (200, 202, 409) for r in res), res
    n = c.stack.psql(f"SELECT count(*) FROM runs WHERE continues = '{rid}'")
    assert n == "1", n


def test_cancel_while_waiting(c):
    t, rid, _ = waiting(c, "tool:alpha")
    r = c.api.post(f"/v1/runs/{rid}/cancel")
    assert r.status == 200 and r.json == {"id": rid, "status": "cancelled"}, r
    assert c.api.run_state(rid)["status"] == "cancelled"
    assert_error(outputs(c, rid, [(call_id(rid), "late")]), 409, "conflict")
    # The thread is free; the unanswered call is not sent upstream again.
    rid2 = c.api.run(t, "again history slow:1x0")
    w = watch(c.api, rid2).wait(30)
    assert w.all_text().startswith("history=2 roles=user,user "), w.all_text()
    # Cancelled runs are not resumed by the sweep either.
    assert c.admin.post("/v1/admin/recover").status == 200
    assert c.api.run_state(rid)["status"] == "cancelled"


def test_waiting_run_is_never_recovered(c):
    _, rid, _ = waiting(c, "tool:alpha")
    attempt = c.api.run_state(rid)["attempt"]
    for _ in range(3):
        r = c.admin.post("/v1/admin/recover")
        assert r.status == 200, r
    s = c.api.run_state(rid)
    assert s["status"] == "requires_action" and s["attempt"] == attempt, s


def test_late_watcher_and_resume(c):
    _, rid, w = waiting(c, "tool:alpha slow:2x10")
    # A late watcher sees the same events, each once.
    late = watch(c.api, rid).wait(30)
    assert late.kinds() == w.kinds() == ["start", "delta", "delta", "tool_call", "done"], late.kinds()
    assert late.events[3][3] == w.events[3][3]
    # Resumed at the tool call: only done; at the last delta: the call then done.
    r = watch(c.api, rid, last_event_id="1:3").wait(30)
    assert r.kinds() == ["done"] and r.ids() == ["1:4"], r.kinds()
    r = watch(c.api, rid, last_event_id="1:2").wait(30)
    assert r.kinds() == ["tool_call", "done"] and r.ids() == ["1:3", "1:4"], r.kinds()


def test_replayed_from_postgres_after_purge(c):
    """The stream of a finished run is purged after the grace (2 s here): a watcher
    then gets the run from PostgreSQL, the tool call included, once."""
    _, rid, w = waiting(c, "tool:alpha slow:2x10")
    r = outputs(c, rid, [(call_id(rid), "A")])   # completed now: purged after the grace
    assert r.status == 202, r
    watch(c.api, r.json["run_id"]).wait(30)
    nats = c.stack.env["NATS_URL"]
    wait_until(lambda: run_messages(nats, rid) == [], 20, "the run's events purged")
    late = watch(c.api, rid).wait(30)
    assert late.kinds() == ["start", "delta", "tool_call", "done"], late.kinds()
    assert late.all_text() == w.all_text(), (late.all_text(), w.all_text())
    assert late.data(2) == w.data(3) and late.data(3) == {"status": "requires_action"}, late.events
    # Resumed after the text: the stream no longer shows what the client holds, so
    # the attempt starts over (reset), the call included, once.
    r = watch(c.api, rid, last_event_id="1:1").wait(30)
    assert r.kinds() == ["reset", "delta", "tool_call", "done"], r.kinds()


def test_tools_validated_at_creation(c):
    t = c.api.thread()

    def create(**body):
        return c.api.post(f"/v1/threads/{t}/runs", dict({"input": "x"}, **body))

    fn = {"type": "function", "function": {"name": "ok"}}
    assert_error(create(tools="x"), 400, "invalid_field", "tools")
    assert_error(create(tools=[fn] * 65), 400, "invalid_field", "tools")
    assert_error(create(tools=[{"type": "other", "function": {"name": "a"}}]), 400, "invalid_field",
                 "tools[0].type")
    assert_error(create(tools=[{"type": "function"}]), 400, "invalid_field", "tools[0].function")
    assert_error(create(tools=[{"type": "function", "function": {"name": "bad name"}}]), 400,
                 "invalid_field", "tools[0].function.name")
    assert_error(create(tools=[{"type": "function", "function": {"name": "a" * 65}}]), 400,
                 "invalid_field", "tools[0].function.name")
    assert_error(create(tools=[fn, fn]), 400, "invalid_field", "tools[1].function.name")
    assert_error(create(tools=[{"type": "function", "function": {"name": "a", "parameters": []}}]), 400,
                 "invalid_field", "tools[0].function.parameters")
    assert_error(create(tools=[{"type": "function", "function": {"name": "a", "description": 3}}]), 400,
                 "invalid_field", "tools[0].function.description")
    assert_error(create(tools=[{"type": "function", "function": {"name": "a", "x": 1}}]), 400,
                 "invalid_field", "tools[0].function.x")
    assert_error(create(tools=[{"type": "function", "function": {"name": "a"}, "x": 1}]), 400,
                 "invalid_field", "tools[0].x")
    assert_error(create(tool_choice="sometimes"), 400, "invalid_field", "tool_choice")
    assert_error(create(tool_choice="required"), 400, "invalid_field", "tool_choice")
    assert_error(create(tools=[fn], tool_choice={"type": "function", "function": {"name": "other"}}), 400,
                 "invalid_field", "tool_choice.function.name")
    assert_error(create(tools=[fn], tool_choice={"type": "function"}), 400, "invalid_field", "tool_choice")
    # What is accepted: every form of tool_choice.
    for choice in ("auto", "none", "required", {"type": "function", "function": {"name": "ok"}}):
        r = create(tools=[fn], tool_choice=choice, input="fine slow:1x0")
        assert r.status == 202, (choice, r)
        c.api.wait_terminal(r.json["run_id"])


def test_ai_sdk_stream_has_the_tool_input(c):
    _, rid, _ = waiting(c, "tool:get_weather slow:1x10")
    r = c.api.get(f"/v1/runs/{rid}/events?format=ai-sdk", headers={"Accept": "text/event-stream"})
    assert r.status == 200 and r.headers["x-vercel-ai-ui-message-stream"] == "v1", r
    chunks = [json.loads(line[6:]) for line in r.body.decode().split("\n")
              if line.startswith("data: ") and line != "data: [DONE]"]
    calls = [ch for ch in chunks if ch["type"] == "tool-input-available"]
    assert calls == [{"type": "tool-input-available", "toolCallId": call_id(rid), "toolName": "get_weather",
                      "input": {"n": 1}, "providerMetadata": {"tether": {"attempt": 1}}}], chunks
    assert [ch["type"] for ch in chunks][-2:] == ["finish-step", "finish"], chunks
    assert r.body.decode().rstrip().endswith("data: [DONE]")


def test_stream_on_tool_outputs(c):
    """Accept: text/event-stream is not offered on tool_outputs: the answer is JSON
    and the continuation's events are at its events_url."""
    _, rid, _ = waiting(c, "tool:alpha")
    r = c.api.post(f"/v1/runs/{rid}/tool_outputs", {"outputs": [{"tool_call_id": call_id(rid), "output": "x"}]},
                   headers={"Accept": "text/event-stream"})
    assert r.status == 202 and re.match(r"^/v1/runs/[0-9a-f-]{36}/events$", r.json["events_url"]), r


def test_metrics_count_waiting_runs(c):
    def waiting_runs():
        r = Client(c.stack.url).get("/metrics")
        assert r.status == 200, r
        m = re.search(r'^tether_runs\{status="requires_action"\} (\d+)$', r.body.decode(), re.M)
        assert m, r.body[:2000]
        return int(m.group(1))
    n0 = wait_until(lambda: (lambda n: n if n == int(c.stack.psql(
        "SELECT count(*) FROM runs WHERE status = 'requires_action'")) else None)(waiting_runs()), 5,
        "/metrics to agree with the table")
    _, rid, _ = waiting(c, "tool:alpha")
    wait_until(lambda: waiting_runs() == n0 + 1, 5, "the waiting run in /metrics")
    assert c.api.post(f"/v1/runs/{rid}/cancel").status == 200
    wait_until(lambda: waiting_runs() == n0, 5, "the cancelled run out of it")


ORDER = ["test_tool_loop", "test_history_sent_to_the_model", "test_two_calls_outputs_in_any_order",
         "test_tool_outputs_refused", "test_idempotency_key", "test_concurrent_outputs_make_one_continuation",
         "test_cancel_while_waiting", "test_waiting_run_is_never_recovered", "test_late_watcher_and_resume",
         "test_replayed_from_postgres_after_purge", "test_tools_validated_at_creation",
         "test_ai_sdk_stream_has_the_tool_input", "test_stream_on_tool_outputs",
         "test_metrics_count_waiting_runs"]

if __name__ == "__main__":
    run_tests(globals(), setup, teardown, per_test_timeout=120)
