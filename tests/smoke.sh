#!/bin/sh
# tests/smoke.sh - a curl-only smoke test for any tether deployment.
#   TETHER_URL=https://tether.example TETHER_KEY=tk_... tests/smoke.sh
# Creates a thread, starts a mock run, streams it, checks the output against
# GET /v1/runs/{id} and the error shape of a bad request. Exit 0 when all is well.
set -eu
: "${TETHER_URL:?set TETHER_URL}" "${TETHER_KEY:?set TETHER_KEY}"
AUTH="Authorization: Bearer $TETHER_KEY"
JSON="Content-Type: application/json"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
field() { sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" | head -n 1; }

code=$(curl -sS -m 10 -o "$tmp/t" -w '%{http_code}' -H "$AUTH" -H "$JSON" -d '{"title":"smoke"}' "$TETHER_URL/v1/threads")
[ "$code" = 201 ] || fail "POST /v1/threads answered $code: $(cat "$tmp/t")"
thread=$(field id <"$tmp/t")
[ -n "$thread" ] || fail "no thread id in $(cat "$tmp/t")"

code=$(curl -sS -m 10 -o "$tmp/r" -w '%{http_code}' -H "$AUTH" -H "$JSON" -d '{"input":"smoke test slow:6x40","model":"mock"}' "$TETHER_URL/v1/threads/$thread/runs")
[ "$code" = 202 ] || fail "POST runs answered $code: $(cat "$tmp/r")"
run=$(field run_id <"$tmp/r")
[ -n "$run" ] || fail "no run_id in $(cat "$tmp/r")"

# Stream until done (curl ends when the server closes after done).
curl -sS -N -m 60 -H "$AUTH" -H "Accept: text/event-stream" "$TETHER_URL/v1/runs/$run/events" >"$tmp/events" \
  || fail "the event stream failed"
grep -q '^event: start$' "$tmp/events" || fail "no start event"
grep -q '^event: done$' "$tmp/events" || fail "no done event: $(tail -n 5 "$tmp/events")"
grep -q '^data: {"status":"completed"}$' "$tmp/events" || fail "the run did not complete"
ndelta=$(grep -c '^event: delta$' "$tmp/events")
[ "$ndelta" = 6 ] || fail "expected 6 deltas, got $ndelta"
streamed=$(grep '^data: {"text":' "$tmp/events" | sed 's/^data: {"text":"\(.*\)"}$/\1/' | tr -d '\n')

curl -sS -m 10 -o "$tmp/g" -H "$AUTH" "$TETHER_URL/v1/runs/$run"
status=$(field status <"$tmp/g")
[ "$status" = completed ] || fail "run status is $status"
output=$(sed -n 's/.*"output" *: *"\([^"]*\)".*/\1/p' "$tmp/g")
[ "$output" = "$streamed" ] || fail "output differs from the streamed text: '$output' vs '$streamed'"

# The error shape: a malformed body is 400 invalid_json with a message.
code=$(curl -sS -m 10 -o "$tmp/e" -w '%{http_code}' -H "$AUTH" -H "$JSON" -d '{"input":' "$TETHER_URL/v1/threads/$thread/runs")
[ "$code" = 400 ] || fail "malformed JSON answered $code"
grep -q '"error" *: *{ *"code" *: *"invalid_json" *, *"message" *: *"' "$tmp/e" || fail "bad error shape: $(cat "$tmp/e")"
code=$(curl -sS -m 10 -o "$tmp/u" -w '%{http_code}' "$TETHER_URL/v1/threads")
[ "$code" = 401 ] || fail "a request without a key answered $code"
grep -q '"code" *: *"unauthorized"' "$tmp/u" || fail "bad 401 body: $(cat "$tmp/u")"
echo "smoke: ok (thread $thread, run $run, $ndelta deltas)"
