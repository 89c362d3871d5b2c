-- 0002_claim_run: run bookkeeping, not part of the contract.
--
-- Each claim records the transaction id that made it (pg_current_xact_id(), which only grows), so
-- a run gives each participant one turn with a single comparison per row: a run notes a
-- transaction id when it starts and claims only participants whose last claim (by any run) is
-- older. Before this, every claim sent the ids the run had already had, an array that grew with
-- the study (~400 MB of parameters per run of 10,000 participants). Needs no privilege beyond
-- UPDATE on fitbit_users.
ALTER TABLE fitbit_users ADD COLUMN claim_xid bigint;

-- The lease holder of each run ("host:pid:start"), so a later run on the same host can tell that a
-- run still marked 'running' has no process any more (SIGKILL, or its database went away before it
-- could record its end) and mark it aborted.
ALTER TABLE sync_runs ADD COLUMN holder text;
