-- 0002_claim_run: each claim records the transaction id that made it (pg_current_xact_id(),
-- which only grows), so a run gives each participant one turn with a single comparison per row:
-- a run notes a transaction id when it starts and claims only participants whose last claim (by
-- any run) is older. Before this, every claim sent the ids the run had already had, an array that
-- grew with the study (~400 MB of parameters per run of 10,000 participants). Needs no privilege
-- beyond UPDATE on fitbit_users. Run bookkeeping, not part of the contract.
ALTER TABLE fitbit_users ADD COLUMN claim_xid bigint;
