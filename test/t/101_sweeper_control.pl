# Steering the background sweeper while it runs: the interval follows a
# reload (0 pauses, a wake still sweeps), the launcher comes back after
# pg_terminate_backend, DROP DATABASE of a listed database is never held
# up (not even during a long pass), too few worker slots and an unusable
# sweep_role are each logged once, and a sweep_role with the right grants
# sweeps.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;
use DeleteGate;
use Time::HiRes qw(time sleep);

my $node = StripeIdemNode::started('sweeper_control', conf => q{
stripe_idem.databases = 'postgres'
stripe_idem.sweep_interval = 1
});
$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');

my $tag = 0;

# Write n expired rows into db; returns their operation_type.
sub add_expired
{
	my ($db, $n) = @_;
	my $type = 'batch' . ++$tag;
	$node->safe_psql($db, qq{
		INSERT INTO stripe_idempotency_keys (operation_type, operation_id,
			stripe_idempotency_key, status, stripe_resource_id, expires_at)
		SELECT '$type', 'op' || g, '$type:' || g, 'completed', 'ch_x',
			now() - interval '1 hour'
		FROM generate_series(1, $n) g});
	return $type;
}

sub left
{
	my ($db, $type) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) FROM stripe_idempotency_keys WHERE operation_type = '$type'");
}

sub wait_swept
{
	my ($db, $type, $what) = @_;
	ok($node->poll_query_until($db,
			"SELECT count(*) = 0 FROM stripe_idempotency_keys WHERE operation_type = '$type'"),
		$what);
}

sub launcher_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'stripe_idem launcher'});
}

sub set_conf
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET stripe_idem.$name = $value; SELECT pg_reload_conf()");
}

# Wait for n more rounds of the launcher (each schedules the next pass),
# for "logged once over several passes" to mean several passes on any
# machine.
sub wait_rounds
{
	my ($n) = @_;
	for (1 .. $n)
	{
		my $next = $node->safe_psql('postgres', 'SELECT max(next_pass_at) FROM stripe_idem_sweeper');
		$node->poll_query_until('postgres',
			"SELECT max(next_pass_at) > '$next' FROM stripe_idem_sweeper")
		  or return 0;
	}
	return 1;
}

sub passes
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT passes FROM stripe_idem_sweeper WHERE database = '$db'");
}

my $pid = launcher_pid();
like($pid, qr/^\d+$/, 'the launcher runs');
wait_swept('postgres', add_expired('postgres', 10), 'sweeping at 1 s');

# A longer interval: the next pass moves an hour out, without a restart.
set_conf('sweep_interval', "'1h'");
ok($node->poll_query_until('postgres',
		q{SELECT next_pass_at > now() + interval '50 min' FROM stripe_idem_sweeper}),
	'after a reload the next pass is an hour away');
my $passes = passes('postgres');
my $type = add_expired('postgres', 10);
# A window for a wrong pass to show; nothing can be waited for here, and the
# assertions hold however slow the machine is.
sleep 3;
is(left('postgres', $type), '10', 'interval 1h: rows written since are not swept yet');

# Back to 1 s: the waiting launcher notices at once.
my $t0 = time;
set_conf('sweep_interval', '1');
wait_swept('postgres', $type, 'interval back to 1 s: swept without a restart');
note sprintf('swept %.2f s after the reload', time - $t0);

# 0 pauses sweeping; a wake request still runs one pass.
set_conf('sweep_interval', '0');
ok($node->poll_query_until('postgres',
		q{SELECT next_pass_at IS NULL FROM stripe_idem_sweeper}),
	'interval 0: no next pass');
$passes = passes('postgres');
$type = add_expired('postgres', 10);
sleep 3;
is(left('postgres', $type), '10', 'interval 0: nothing swept');
is(passes('postgres'), $passes, 'interval 0: no pass ran');
is($node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()'), 't', 'wake');
wait_swept('postgres', $type, 'a wake request sweeps while paused');
ok($node->poll_query_until('postgres', qq{SELECT passes = $passes + 1 AND next_pass_at IS NULL
	FROM stripe_idem_sweeper}), 'one pass, and still paused after it');
is(launcher_pid(), $pid, 'all of that without restarting the launcher');

# pg_terminate_backend: the launcher comes back and sweeping continues.
set_conf('sweep_interval', '1');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$t0 = time;
ok($node->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM pg_stat_activity
		   WHERE backend_type = 'stripe_idem launcher' AND pid <> $pid}),
	'a terminated launcher is started again');
note sprintf('launcher back after %.1f s', time - $t0);
wait_swept('postgres', add_expired('postgres', 10), 'and sweeps again');
$pid = launcher_pid();

# DROP DATABASE of a listed database, first between passes...
set_conf('databases', q{'postgres, dropme'});
$node->safe_psql('postgres', 'CREATE DATABASE dropme');
$node->safe_psql('dropme', 'CREATE EXTENSION stripe_idem');
wait_swept('dropme', add_expired('dropme', 10), 'a database added by reload is swept');
# (A sweeper still connected would make DROP DATABASE fail after five
# seconds with "is being accessed by other users".)
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE dropme');
is($rc . $err, '0', 'DROP DATABASE of a listed database succeeds between passes');

# ...then in the middle of a long pass: the sweeper gives way.
set_conf('sweep_batch_size', '100');
$node->safe_psql('postgres', 'CREATE DATABASE dropme');
$node->safe_psql('dropme', 'CREATE EXTENSION stripe_idem');
set_conf('sweep_interval', '0');
ok($node->poll_query_until('postgres',
		q{SELECT bool_and(next_pass_at IS NULL) FROM stripe_idem_sweeper}), 'paused');
add_expired('dropme', 100000);
# The pass is held at a point this test chooses, whatever the machine's
# speed: deleting row op50000 waits for a lock on a shared catalog that a
# session in another database holds (a session in dropme itself would stand
# in DROP DATABASE's way).
DeleteGate::install($node, 'dropme', 'op50000', 'PERFORM 1 FROM pg_catalog.pg_shdescription LIMIT 1');
my $gate = $node->background_psql('postgres');
$gate->query_safe('BEGIN; LOCK TABLE pg_catalog.pg_shdescription IN ACCESS EXCLUSIVE MODE');
$node->safe_psql('postgres', 'SELECT stripe_idem_wake_sweeper()');
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		WHERE backend_type = 'stripe_idem sweeper' AND datname = 'dropme'
		  AND wait_event_type = 'Lock' AND wait_event = 'relation'
		  AND query LIKE 'stripe_idem sweeper: deleting expired keys, % deleted so far'}),
	'a pass over 100000 rows is under way (held at op50000), and says so in pg_stat_activity');
# DROP DATABASE waits for the batch that holds the database's lock; only
# then is the gate opened, with half the pass still to go.
my $dropper = $node->background_psql('postgres', on_error_stop => 0);
my $dropper_pid = $dropper->query_safe('SELECT pg_backend_pid()');
$dropper->query_until(qr/started/, "\\echo started\nDROP DATABASE dropme;\n");
ok($node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Lock' AND wait_event = 'object' FROM pg_stat_activity WHERE pid = $dropper_pid"),
	'DROP DATABASE waits for the batch in progress');
$gate->query_safe('COMMIT');
$gate->quit;
$dropper->query('SELECT 1');
is($dropper->{stderr}, '', 'DROP DATABASE during a long pass succeeds');
$dropper->quit;
ok($node->log_contains(qr/stripe_idem sweeper cut its pass in database "dropme" short/),
	'the sweeper logged that it gave way');
my $offset = -s $node->logfile;
set_conf('sweep_batch_size', '10000');
set_conf('sweep_interval', '1');
$node->wait_for_log(qr/stripe_idem sweeper: database "dropme" does not exist/, $offset);
wait_swept('postgres', add_expired('postgres', 10), 'postgres is still swept');
$passes = passes('postgres');
ok($node->poll_query_until('postgres',
		"SELECT passes >= $passes + 3 FROM stripe_idem_sweeper WHERE database = 'postgres'"),
	'more passes');
my @gone = slurp_file($node->logfile, $offset) =~ /database "dropme" does not exist/g;
is(scalar @gone, 1, 'the dropped database is logged once over several passes');
is(launcher_pid(), $pid, 'the launcher never restarted');
set_conf('databases', q{'postgres'});

# Too few background worker slots: logged once with a hint, retried.
# (The logical replication launcher and ours take both slots.)
$node->safe_psql('postgres', 'ALTER SYSTEM SET max_worker_processes = 2');
$node->restart;
$type = add_expired('postgres', 10);
ok($node->poll_query_until('postgres', q{
		SELECT last_error = 'no free background worker slot' FROM stripe_idem_sweeper}),
	'no worker slot: the view says so');
ok(wait_rounds(3), 'three more rounds of the launcher');
my @noslot = slurp_file($node->logfile) =~
  /could not start a worker for database "postgres": no free background worker slot\n.*\n.*HINT:  Raise max_worker_processes \(now 2\)/g;
is(scalar @noslot, 1, 'logged once, with a hint, over several passes');
is(left('postgres', $type), '10', 'nothing swept meanwhile');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET max_worker_processes');
$node->restart;
wait_swept('postgres', $type, 'with enough slots the rows go');

# sweep_role: without privileges the error is logged once; after GRANT
# the next pass sweeps. A missing role is logged once too.
$node->safe_psql('postgres', q{
	CREATE ROLE sweeper LOGIN;
	ALTER SYSTEM SET stripe_idem.sweep_role = 'sweeper';
});
$node->restart;
$type = add_expired('postgres', 10);
ok($node->poll_query_until('postgres', q{
		SELECT last_error = 'permission denied for table stripe_idempotency_keys'
		FROM stripe_idem_sweeper}),
	'sweep_role without grants: the view shows the error');
ok(wait_rounds(3), 'three more rounds of the launcher');
my @denied = slurp_file($node->logfile) =~ /ERROR:  permission denied for table stripe_idempotency_keys/g;
is(scalar @denied, 1, 'the same error in every pass is logged once');
$node->safe_psql('postgres',
	'GRANT SELECT, UPDATE, DELETE ON stripe_idempotency_keys TO sweeper');
wait_swept('postgres', $type, 'after GRANT the sweep_role sweeps');
ok($node->poll_query_until('postgres', 'SELECT last_error IS NULL FROM stripe_idem_sweeper'),
	'and last_error is cleared');

$node->safe_psql('postgres', q{ALTER SYSTEM SET stripe_idem.sweep_role = 'nobody'});
$node->restart;
ok($node->poll_query_until('postgres', q{
		SELECT last_error = 'role "nobody" named by stripe_idem.sweep_role does not exist'
		FROM stripe_idem_sweeper}),
	'a missing sweep_role: the view says so');
ok(wait_rounds(3), 'three more rounds of the launcher');
my @nobody = slurp_file($node->logfile) =~ /role "nobody" named by stripe_idem.sweep_role does not exist\n/g;
is(scalar @nobody, 1, 'and it is logged once');

$node->stop('fast');
done_testing();
