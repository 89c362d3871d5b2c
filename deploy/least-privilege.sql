-- A least-privilege PostgreSQL role for the sync-all job. Run as the database owner (the role
-- that ran `sync-all migrate`) after migrating:
--   psql "$OWNER_DATABASE_URL" -v role=sync_all -v password="'...'" -f deploy/least-privilege.sql
-- The job then connects as :role. It can read and write the data tables and record runs; it
-- cannot change the schema. DELETE is only needed by `sync-all users remove --purge-data`
-- (the delete trigger on fitbit_users runs with the caller's rights, hence the intraday tables).
CREATE ROLE :role LOGIN PASSWORD :password;
GRANT CONNECT ON DATABASE :"DBNAME" TO :role;
GRANT USAGE ON SCHEMA public TO :role;
GRANT SELECT ON public.schema_version TO :role;
GRANT SELECT, INSERT, UPDATE ON fitbit_users, daily_summaries, intraday_heart_rate,
      intraday_steps, intraday_calories, sync_runs TO :role;
GRANT DELETE ON fitbit_users, daily_summaries, intraday_heart_rate, intraday_steps,
      intraday_calories TO :role;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO :role;
