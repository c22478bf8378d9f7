-- 0009: tool calls (API.md "v1 additions: tools").
-- A run whose reply asks for tools ends `requires_action` with its calls in
-- tool_calls; the thread stays busy until POST /v1/runs/{id}/tool_outputs makes the
-- continuation run (continues = the run, tool_outputs = what the caller answered),
-- or the run is cancelled. A requires_action run has no generator: recovery, which
-- looks at running runs only, never resumes it.

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('queued', 'running', 'requires_action', 'completed', 'failed', 'cancelled'));
ALTER TABLE runs
    ADD COLUMN tool_calls    jsonb,                  -- [{"id","name","arguments"}…] of the final attempt
    ADD COLUMN continues     uuid REFERENCES runs (id) ON DELETE SET NULL,
    ADD COLUMN tool_outputs  jsonb;                  -- [{"tool_call_id","output"}…] answered
-- One continuation per run, whoever asks first (concurrent identical outputs get it too).
CREATE UNIQUE INDEX runs_continues ON runs (continues) WHERE continues IS NOT NULL;

-- One active run per thread: requires_action holds the thread too.
DROP INDEX runs_one_active_per_thread;
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE status IN ('queued', 'running', 'requires_action');

ALTER TABLE messages DROP CONSTRAINT messages_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_role_check
    CHECK (role IN ('system', 'user', 'assistant', 'tool'));
ALTER TABLE messages
    ADD COLUMN tool_calls    jsonb,                  -- assistant: the calls it made
    ADD COLUMN tool_call_id  text;                   -- tool: the call this output answers
