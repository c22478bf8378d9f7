-- 0004: poison runs (docs/DESIGN.md "Poison runs"). max_attempts counts crashes,
-- not takeovers: an attempt is charged only when the worker generating it died of a
-- crash signal on the run's own generator thread while its master survived (the
-- master keeps the record; the worker it starts next writes the charge). Deaths of
-- a whole pod, drains and kills from outside take the run over without a charge.
ALTER TABLE runs
    ADD COLUMN crashes integer NOT NULL DEFAULT 0 CHECK (crashes >= 0),
    ADD COLUMN crashed_attempt integer NOT NULL DEFAULT 0;  -- the last attempt charged (once each)
