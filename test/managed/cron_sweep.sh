#!/usr/bin/env bash
# The managed edition swept by pg_cron (run by test/suites/15-managed.sh
# when pg_cron is installed): the install schedules job
# "stripe_idem_sweep", and the job deletes what the C sweeper deletes and
# keeps what it keeps. pg_cron's smallest schedule before 1.5 is a
# minute, so this waits for a run (at most two and a half minutes).
#   cron_sweep.sh DIR     writes TAP (test/lib/tap.sh); the suite takes it
#                         in with tap_from
set -uo pipefail
source "$SRC/test/lib/tap.sh"
source "$SRC/test/lib/cluster.sh"
if ! cluster_start "$1" "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'postgres'" \
	"cron.use_background_workers = on" "max_worker_processes = 20"; then
	not_ok "a cluster with pg_cron preloaded"
	done_testing
fi
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION pg_cron" >/dev/null
if ! q -f "$SRC/tle/stripe_idem_tle.sql" >install.log 2>&1; then
	cat install.log
	not_ok "psql -f tle/stripe_idem_tle.sql with pg_cron installed"
	done_testing
fi
if grep -q 'pg_cron job [0-9]* "stripe_idem_sweep" sweeps expired keys every minute' install.log; then
	ok "the install says it scheduled the sweep"
else
	cat install.log
	not_ok "the install says it scheduled the sweep"
fi
job=$(q -c "SELECT schedule || ' ' || command || ' ' || database FROM cron.job WHERE jobname = 'stripe_idem_sweep'")
if [ "$job" = "* * * * * CALL public.stripe_idem_sweep(1000, 100) postgres" ]; then
	ok "job stripe_idem_sweep: every minute, batches of 1000"
else
	q -c 'SELECT * FROM cron.job'
	not_ok "job stripe_idem_sweep: every minute, batches of 1000 (it is: ${job:-none})"
fi

# What the sweep must delete (gone_*) and keep (kept_*): the rule of the C
# sweeper (src/cleanup.c).
q >/dev/null <<'SQL'
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
	stripe_resource_id, locked_until, created_at, expires_at)
SELECT 'cron:test', 'gone_completed_' || g, 'cron:test:gone_completed_' || g, 'completed', 'ch', NULL,
	now() - interval '2 days', now() - g * interval '1 second'
FROM generate_series(1, 2500) g;
INSERT INTO stripe_idempotency_keys (operation_type, operation_id, stripe_idempotency_key, status,
	stripe_resource_id, locked_until, created_at, expires_at) VALUES
	('cron:test', 'kept_live', 'cron:test:kept_live', 'completed', 'ch', NULL, now(), now() + interval '1 day'),
	('cron:test', 'kept_unresolved', 'cron:test:kept_unresolved', 'in_progress', NULL, NULL,
	 now() - interval '2 days', now() - interval '1 day'),
	('cron:test', 'gone_unresolved_past_retention', 'cron:test:gone_unresolved', 'in_progress', NULL, NULL,
	 now() - interval '32 days', now() - interval '31 days'),
	('cron:test', 'kept_leased', 'cron:test:kept_leased', 'in_progress', NULL, now() + interval '1 hour',
	 now(), now() + interval '1 hour');
SQL

deadline=$((SECONDS + 150))
while [ $SECONDS -lt $deadline ]; do
	n=$(q -c "SELECT count(*) FROM stripe_idempotency_keys WHERE operation_id LIKE 'gone%'")
	[ "$n" = 0 ] && break
	sleep 3
done
if [ "$n" = 0 ]; then
	ok "the job deleted the 2501 expired rows (in batches of 1000)"
else
	not_ok "the job deleted the 2501 expired rows (in batches of 1000): $n left after 150 s"
fi
kept=$(q -c "SELECT string_agg(operation_id, ',' ORDER BY operation_id) FROM stripe_idempotency_keys")
if [ "$kept" = "kept_leased,kept_live,kept_unresolved" ]; then
	ok "kept: the live row, the leased row, the unresolved row inside the retention"
else
	not_ok "kept: the live row, the leased row, the unresolved row inside the retention (kept: $kept)"
fi
runs=$(q -c "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	WHERE j.jobname = 'stripe_idem_sweep' AND d.status = 'succeeded'")
if [ "${runs:-0}" -ge 1 ] 2>/dev/null; then
	ok "job_run_details: a succeeded run"
else
	q -c 'SELECT status, return_message FROM cron.job_run_details'
	not_ok "job_run_details: a succeeded run"
fi

done_testing
