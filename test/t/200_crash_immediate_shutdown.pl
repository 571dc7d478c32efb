# Immediate shutdown under load. Eight clients run begin -> record, each
# keeping a ledger of every call whose answer came back (the answer only
# arrives after the commit, so a ledger line is an acknowledged write). The
# server is stopped with -m immediate mid-run (no checkpoint, no clean
# shutdown: WAL replay must bring everything back), restarted, and:
#   - every acknowledged acquire is present with the same key;
#   - every acknowledged record is present, completed, with the same key
#     and result;
#   - no operation has two keys, no key belongs to two operations;
#   - every completed row has a resource id or a response;
#   - every in_progress row is taken over by the next begin with the same
#     key once its lease has ended (and not before).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $nclients = 8;
my $ops_per_client = 4000;		# far more than the run lasts
my $lease = 8;					# seconds

my $node = StripeIdemNode::started('crash', conf => q{
max_connections = 40
});
$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');

# One psql script per client: new operations of its own, and now and then
# one of 20 operations every client races for. One operation in ten is
# begun but never recorded (the client "died" during the Stripe call), so
# that in_progress rows are left for the takeover check.
sub client_script
{
	my ($c) = @_;
	my $s = "\\set ON_ERROR_STOP 1\n";
	for my $j (1 .. $ops_per_client)
	{
		my $op = ($j % 7 == 0) ? 'shared-' . (($j * 13 + $c) % 20) : "c$c-$j";
		my $params = ($op =~ /^shared/) ? '{"shared": true}' : qq({"client": $c, "n": $j});
		$s .= "SELECT state AS st, (state = 'acquired') AS acq,"
		  . " COALESCE(stripe_idempotency_key, '-') AS k, attempts AS a"
		  . " FROM begin_stripe_idempotency('crash:test', '$op', '$params',"
		  . " lease => '$lease seconds') \\gset\n"
		  . "\\echo B $op :st :k :a\n";
		next if $j % 10 == 3;
		$s .= "\\if :acq\n"
		  . "SELECT recorded AS rec, COALESCE(stripe_resource_id, '-') AS rid"
		  . " FROM record_stripe_idempotency('crash:test', '$op', :'k', 'cs_$c\_$j',"
		  . " '{\"id\": \"cs_$c\_$j\"}') \\gset\n"
		  . "\\echo R $op :k :rec :rid\n"
		  . "\\endif\n";
	}
	return $s;
}

my @clients;
for my $c (1 .. $nclients)
{
	my %cl = (in => client_script($c), out => '', err => '');
	$cl{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
		'<', \$cl{in}, '>', \$cl{out}, '2>', \$cl{err},
		IPC::Run::timeout(180));
	push @clients, \%cl;
}

# Let them run until a good number of operations are recorded, then pull
# the plug. (A count, not a time: the clients' own 180 s timeout bounds a
# hang.)
while (1)
{
	$_->{h}->pump_nb for @clients;
	my $recorded = 0;
	$recorded += () = $_->{out} =~ /^R /mg for @clients;
	last if $recorded >= 400;
	die "the clients stopped before 400 records" unless grep { $_->{h}->pumpable } @clients;
	usleep(50_000);
}
$node->stop('immediate');

for my $cl (@clients)
{
	eval { $cl->{h}->finish; };
	$cl->{h}->kill_kill if $@;
}

# The ledger: what each client was told.
my (%acq_key, %rec, %seen_key, %key_op, @bad_lines);
my ($n_acq, $n_rec, $n_lines) = (0, 0, 0);
my @early_errors;
for my $c (0 .. $#clients)
{
	my $cl = $clients[$c];
	# A line without its newline is the end of a client whose output was
	# cut off where it stopped (psql's stdout into a pipe goes out in
	# blocks): it is no answer, and is left out of the ledger.
	my @lines = split /\n/, $cl->{out};
	pop @lines if $cl->{out} ne '' && $cl->{out} !~ /\n\z/;
	for my $line (@lines)
	{
		$n_lines++;
		if ($line =~ /^B (\S+) (\S+) (\S+) (\d+)$/)
		{
			my ($op, $state, $key, $attempts) = ($1, $2, $3, $4);
			if ($state eq 'acquired') { $acq_key{$op}{$key} = 1; $n_acq++; }
			if ($key ne '-') { $seen_key{$op}{$key} = 1; $key_op{$key}{$op} = 1; }
			push @bad_lines, "client $c: $line" if ($state eq 'in_progress' || $state eq 'mismatch') && $key ne '-';
			push @bad_lines, "client $c: $line" if $state !~ /^(acquired|completed|in_progress)$/;
		}
		elsif ($line =~ /^R (\S+) (\S+) (t|f) (\S+)$/)
		{
			my ($op, $key, $recorded, $rid) = ($1, $2, $3, $4);
			$rec{$op}{$key} = $rid;
			$seen_key{$op}{$key} = 1;
			$key_op{$key}{$op} = 1;
			$n_rec++;
			push @bad_lines, "client $c: $line" if $recorded ne 't';
		}
		else { push @bad_lines, "client $c: $line"; }
	}
	# Before the shutdown no call may fail; after it, only the lost
	# connection is expected.
	for my $e (split /\n/, $cl->{err})
	{
		next if $e =~ /terminating connection|server closed the connection|connection to server was lost|no connection to the server|This probably means|before or while processing|^\s*$/;
		push @early_errors, "client $c: $e";
	}
}
note "ledger: $n_lines acknowledged calls, $n_acq acquires, $n_rec records";
ok($n_acq >= 200 && $n_rec >= 100, "clients were acknowledged many writes before the shutdown ($n_acq acquires, $n_rec records)");
is_deeply(\@early_errors, [], 'no call failed except by the shutdown');
is_deeply(\@bad_lines, [], 'every answer had a valid shape (in_progress carries no key; a record by the lease holder succeeds)');

$node->start;

my %row;
for my $line (split /\n/, $node->safe_psql('postgres', q{
		SELECT operation_id, stripe_idempotency_key, status,
			COALESCE(stripe_resource_id, '-'), response IS NOT NULL, attempts,
			locked_until > statement_timestamp()
		FROM stripe_idempotency_keys}))
{
	my ($op, $key, $status, $rid, $has_resp, $attempts, $live) = split /\|/, $line;
	$row{$op} = { key => $key, status => $status, rid => $rid, resp => $has_resp,
		attempts => $attempts, live => $live };
}

my @missing;
for my $op (sort keys %acq_key)
{
	for my $key (keys %{ $acq_key{$op} })
	{
		push @missing, "$op acquired as $key, row has " . ($row{$op} ? $row{$op}{key} : 'nothing')
		  unless $row{$op} && $row{$op}{key} eq $key;
	}
}
is_deeply(\@missing, [], 'every acknowledged acquire is present with the same key');

my @lost;
for my $op (sort keys %rec)
{
	for my $key (keys %{ $rec{$op} })
	{
		my $r = $row{$op};
		push @lost, "$op recorded $key/$rec{$op}{$key}, row has "
		  . ($r ? "$r->{status} $r->{key}/$r->{rid}" : 'nothing')
		  unless $r && $r->{status} eq 'completed' && $r->{key} eq $key && $r->{rid} eq $rec{$op}{$key};
	}
}
is_deeply(\@lost, [], 'every acknowledged record is present, completed, with the same key and result');

my @two_keys = grep { keys %{ $seen_key{$_} } > 1 } sort keys %seen_key;
is_deeply(\@two_keys, [], 'no operation was ever told two keys');
my @shared_keys = grep { keys %{ $key_op{$_} } > 1 } sort keys %key_op;
is_deeply(\@shared_keys, [], 'no key was ever told for two operations');
is($node->safe_psql('postgres', q{
		SELECT count(*) = count(DISTINCT stripe_idempotency_key)
		FROM stripe_idempotency_keys}), 't', 'no key belongs to two operations in the table');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM stripe_idempotency_keys
		WHERE status = 'completed' AND stripe_resource_id IS NULL AND response IS NULL}),
	'0', 'every completed row has a resource id or a response');
ok(!$node->log_contains('PANIC'), 'crash recovery was clean');

# in_progress rows: a live lease still holds them; once it has run out the
# next begin takes the operation over under the key it already had. Each
# step is one statement, so begin and the look at the lease share one
# "now" (statement_timestamp).
my @in_progress = grep { $row{$_}{status} eq 'in_progress' } sort keys %row;
ok(@in_progress >= 5, scalar(@in_progress) . ' operations were left in_progress');

is($node->safe_psql('postgres', q{
	WITH held AS MATERIALIZED (
		SELECT operation_type, operation_id FROM stripe_idempotency_keys
		WHERE status = 'in_progress' AND locked_until > statement_timestamp())
	SELECT (count(*) > 0) || ' ' || COALESCE(string_agg(h.operation_id || ': ' || b.state, ', ')
		FILTER (WHERE b.state <> 'in_progress' OR b.stripe_idempotency_key IS NOT NULL), 'none')
	FROM held h, LATERAL begin_stripe_idempotency(h.operation_type, h.operation_id) b}),
	'true none', 'while its lease is live, an in_progress operation answers in_progress without its key');

ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM stripe_idempotency_keys
		WHERE locked_until > statement_timestamp()}),
	'every lease has run out');

is($node->safe_psql('postgres', q{
	WITH ip AS MATERIALIZED (
		SELECT operation_type, operation_id, stripe_idempotency_key, attempts
		FROM stripe_idempotency_keys WHERE status = 'in_progress')
	SELECT count(*) || ' taken over, wrong: ' || COALESCE(string_agg(i.operation_id, ', ')
		FILTER (WHERE b.state <> 'acquired'
			OR b.stripe_idempotency_key IS DISTINCT FROM i.stripe_idempotency_key
			OR b.attempts <> i.attempts + 1), 'none')
	FROM ip i, LATERAL begin_stripe_idempotency(i.operation_type, i.operation_id) b}),
	scalar(@in_progress) . ' taken over, wrong: none',
	'every in_progress operation is taken over by the next begin, same key, attempts + 1');

# The API still works end to end after the crash.
is($node->safe_psql('postgres', q{
	SELECT state FROM begin_stripe_idempotency('crash:test', 'after-restart')}),
	'acquired', 'a new operation is acquired after the restart');

$node->stop;
done_testing();
