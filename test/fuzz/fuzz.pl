#!/usr/bin/perl
# Bad-input fuzz of every SQL entry point of stripe_idem.
#
#   fuzz.pl --schema S [--seed N] [--calls N] [--workdir DIR] [--psql PATH] [--managed]
#
# Connects with the usual PG* environment variables to a database where the
# extension is installed in schema S, and makes --calls calls (default
# 10000) drawn from a deterministic seed: NULLs, empty strings, values of
# 64/65, 128/129, 255/256 and 10,000 characters, multi-byte UTF-8, control
# characters, quotes and SQL-injection strings, zero, negative, tiny and
# huge intervals, malformed and deeply nested jsonb, batch sizes of 0, -1
# and 2^31-1, mixed with valid calls on a small set of operations so that
# every state of the API is reached.
#
# For every call the script knows, from the API contract, which arguments
# are invalid, and checks:
#   - a call with an invalid argument fails with the SQLSTATE the contract
#     gives for it (22004 for a NULL where a value is required, 22023 for a
#     value breaking a rule), or, when a literal cannot even be parsed into
#     its type, with that type's input error before the function runs;
#   - a call with valid arguments succeeds, except record, which may fail
#     with 23505 when the key belongs to another operation or the
#     operation is in progress under another key;
#   - what a successful call returns agrees with the row it left behind
#     (state, key, result, attempts), and calls that must not write (check,
#     new key, stats, begin answering completed/in_progress/mismatch, record
#     answering recorded = false, release answering false, cleanup deleting
#     nothing) leave the table exactly as it was, down to ctid and xmin;
#   - a failed call leaves the table exactly as it was;
#   - the server stays up: one session runs every call, and the postmaster
#     start time does not change.
#
# The server must have stripe_idem preloaded (the stats and sweeper
# functions are called too), and stripe_idem.databases must not list the
# fuzzed database: a pass started by stripe_idem_wake_sweeper() would
# delete expired rows between two calls and the table checks would blame
# the call.
#
# --managed fuzzes the managed edition (tle/stripe_idem_tle.sql) instead:
# it has no stats or sweeper functions (stripe_idem_summary is called in
# their place), and its settings are checked where they are used, not when
# they are set, so only valid values are set (docs/MANAGED.md).
#
# It prints how many calls it made and how they ended, per function and per
# SQLSTATE, and exits 0 only if nothing was violated.
use strict;
use warnings;
use Getopt::Long;
use IPC::Run;

my $seed = 20260601;
my $ncalls = 10000;
my $schema;
my $workdir = '.';
my $psql = 'psql';
my $timeout = 900;
my $managed = 0;
GetOptions(
	'managed' => \$managed,
	'seed=i' => \$seed,
	'calls=i' => \$ncalls,
	'schema=s' => \$schema,
	'workdir=s' => \$workdir,
	'psql=s' => \$psql,
	'timeout=i' => \$timeout) or die "usage: $0 --schema S [--seed N] [--calls N] [--workdir DIR]\n";
die "--schema is required\n" unless defined $schema;
die "schema name must be a plain identifier\n" unless $schema =~ /^[a-z_][a-z0-9_]*$/;

srand($seed);

sub pick { return $_[ int(rand(scalar @_)) ]; }
sub chance { return rand() < $_[0]; }

my $TABLE = "$schema.stripe_idempotency_keys";

#
# Values. Every value is a Perl byte string (UTF-8 for non-ASCII) or undef
# for NULL; sql_text() turns it into a literal.
#
my @ascii_printable = map { chr } 0x21 .. 0x7e;

sub rand_printable
{
	my ($n) = @_;
	return join '', map { pick(@ascii_printable) } 1 .. $n;
}

sub rand_type_chars
{
	my ($n) = @_;
	my @c = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '_', '.', ':', '-');
	return join '', map { pick(@c) } 1 .. $n;
}

my $e_acute = "\xc3\xa9";				# é, two bytes
my $nihongo = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e";	# 日本語
my $emoji = "\xf0\x9f\x92\xb3";			# 💳, four bytes

# Strings that break a rule for at least one text argument, or are odd but
# valid for some: each argument's own check decides.
my @weird_text = (
	undef, '', ' ', 'a b', "a\tb", "a\nb", "\x01", "x\x7f", "\x1b[31mred",
	"caf$e_acute", $nihongo, $emoji, "op-$emoji",
	"O'Brien", "'", "''", '"', '\\', "a\\'b", "%s%s%n%x", '$1', ':name',
	"'; DROP TABLE stripe_idempotency_keys; --",
	"x'OR'1'='1", "1;DELETE/**/FROM/**/stripe_idempotency_keys",
	"\$\$;SELECT/**/pg_sleep(10);\$\$", "../../etc/passwd", "<script>alert(1)</script>",
	'NULL', 'null', 'checkout:create', 'op-1',
	rand_type_chars(64), rand_type_chars(65),
	rand_printable(128), rand_printable(129),
	rand_printable(255), rand_printable(256),
	rand_printable(10000),
	($e_acute x 255), ($e_acute x 256), ('a' x 10000),
);

my @valid_types = ('checkout:create', 'refund.create', 'a', 'T_1-2.3:4', rand_type_chars(64));
my @valid_ids = (
	(map { "op-$_" } 1 .. 24),
	rand_printable(128), "x';DROP/**/TABLE/**/t;--", '%s%n', 'O\'Brien', '\\N',
);

# [literal text, microseconds, parse error sqlstate or undef]
my @intervals = (
	['0', 0], ['-1 second', -1e6], ['0.999999 seconds', 999999],
	['1 second', 1e6], ['2 seconds', 2e6], ['90 seconds', 90e6], ['1 hour', 3600e6],
	['1 day', 86400e6], ['1 mon', 30 * 86400e6], ['1 year', 360 * 86400e6],
	['12 mons', 360 * 86400e6], ['13 mons', 390 * 86400e6],
	['365 days', 365 * 86400e6], ['365 days 00:00:00.000001', 365 * 86400e6 + 1],
	['366 days', 366 * 86400e6],
	['1 day -86399 seconds', 1e6], ['1 mon -29 days -86399 seconds', 1e6],
	['-1 mon 30 days 1 second', 1e6], ['-1 day', -86400e6],
	['178000000 years', 9e30], ['-178000000 years', -9e30],
	['2147483647 days', 2147483647 * 86400e6], ['-2147483648 days', -9e30],
	['2562047788:00:54.775807', 9.2e18],
	['178000000 years 2147483647 days 2562047788:00:54.775807', 9e30],
	['-178000000 years -2147483648 days -2562047788:00:54.775807', -9e30],
	['forever', undef, '22007'], ['1 fortnight', undef, '22007'], ['-2562047788:00:54.775808', undef, '22007'],
	['999999999999 years', undef, '22015'],
);

# [literal text, parse error sqlstate or undef]
my @jsonbs = (
	['{}'], ['[]'], ['null'], ['0'], ['"x"'], ['true'], ['-1.5e300'],
	['{"amount": 1000, "currency": "usd", "items": [1, 2, 3]}'],
	['{"items": [1, 2, 3], "currency": "usd", "amount": 1000}'],
	['{"amount": 1000,   "currency":"usd","items":[1,2,3]}'],
	['{"amount": 2000, "currency": "usd"}'],
	['{"a": 1, "a": 2}'],
	["{\"name\": \"$nihongo $emoji caf$e_acute\"}"],
	['{"s": "\\ud83d\\ude00 \\u00e9 \\n\\t\\""}'],
	['{"k": "\'; DROP TABLE stripe_idempotency_keys; --"}'],
	['{"big": "' . ('x' x 100000) . '"}'],
	['[' x 10000 . ']' x 10000],
	['{"a":' x 2000 . '1' . '}' x 2000],
	['{', '22P02'], ['{"a":}', '22P02'], ['[1,2', '22P02'], ['NaN', '22P02'],
	['{"a":1}}', '22P02'], ['', '22P02'], ["'", '22P02'],
	['"\\u0000"', '22P05'],
	['[' x 100000 . ']' x 100000, '54001'],
);

# [literal text, parse error sqlstate or undef, value]
my @batches = (
	['NULL', undef, undef], ['0', undef, 0], ['-1', undef, -1], ['1', undef, 1],
	['2', undef, 2], ['100', undef, 100], ['2147483647', undef, 2147483647],
	['-2147483648', undef, -2147483648],
	["'2147483648'", '22003', undef], ["'1.5'", '22P02', undef], ["''", '22P02', undef],
);

my @attempts = ('NULL', '0', '-1', '1', '2', '3', '2147483647', '-2147483648');

#
# Literals.
#
sub sql_text
{
	my ($v) = @_;
	return 'NULL' unless defined $v;
	if ($v =~ /[\x00-\x1f\x7f\\]/)
	{
		(my $e = $v) =~ s/([\x00-\x1f\x7f\\'])/sprintf('\\x%02x', ord $1)/ge;
		return "E'$e'";
	}
	(my $q = $v) =~ s/'/''/g;
	return "'$q'";
}

sub sql_interval
{
	my ($iv) = @_;
	return 'NULL' unless defined $iv;
	return "'$iv->[0]'::interval";
}

sub sql_jsonb
{
	my ($j) = @_;
	return 'NULL' unless defined $j;
	(my $q = $j->[0]) =~ s/'/''/g;
	return "'$q'::jsonb";
}

#
# The contract's argument rules.
#
sub nchars
{
	my ($v) = @_;
	my $copy = $v;
	utf8::decode($copy);
	return length $copy;
}

sub type_ok { return $_[0] =~ /\A[A-Za-z0-9_.:-]{1,64}\z/; }
sub id_ok { return $_[0] =~ /\A[\x21-\x7e]{1,128}\z/; }
sub key_ok { return $_[0] =~ /\A[\x21-\x7e]{1,255}\z/; }
sub resource_ok { my $n = nchars($_[0]); return $n >= 1 && $n <= 255; }

my $MAX_USECS = 365 * 86400e6;
my %guc = (ttl => 86400e6, lease => 90e6);	# the settings' current values
my $KEY_WINDOW = 86400e6;	# stripe_idem.key_window, not changed by the run

# Adds the SQLSTATE a required text argument earns to %$bad.
sub req_text
{
	my ($bad, $v, $ok) = @_;
	if (!defined $v) { $bad->{'22004'} = 1; }
	elsif (!$ok->($v)) { $bad->{'22023'} = 1; }
}

# The ttl in microseconds the call ends up with, or undef if invalid.
sub ttl_usecs
{
	my ($bad, $iv) = @_;
	my $u = defined $iv ? $iv->[1] : $guc{ttl};
	if ($u < 1e6 || $u > $MAX_USECS) { $bad->{'22023'} = 1; return undef; }
	return $u;
}

#
# Calls. Each returns a hash: sql, fn, bad (set of SQLSTATEs the contract
# allows for its invalid arguments), parse (set of type-input SQLSTATEs if a
# literal cannot be parsed), op ([type, id] when both are valid), and what
# the checker needs.
#
sub pick_type { return chance(0.8) ? pick(@valid_types) : pick(@weird_text, @valid_types); }
sub pick_id { return chance(0.8) ? pick(@valid_ids) : pick(@weird_text, @valid_ids); }

sub maybe_interval
{
	my ($p_null) = @_;
	return undef if chance($p_null);
	return pick(@intervals);
}

sub maybe_jsonb
{
	my ($p_null) = @_;
	return undef if chance($p_null);
	# mostly a small set, so that fingerprints match and mismatch
	return chance(0.7) ? pick(@jsonbs[7 .. 10]) : pick(@jsonbs);
}

sub note_parse
{
	my ($c, $code) = @_;
	$c->{parse}{$code} = 1 if defined $code;
}

sub optional_args
{
	# Trailing arguments after the first $nreq that have a default (NULL)
	# are sometimes left out, sometimes passed as an explicit NULL.
	my ($nreq, @args) = @_;
	while (@args > $nreq && $args[-1] eq 'NULL' && chance(0.5)) { pop @args; }
	return join(', ', @args);
}

sub gen_new_key
{
	my %c = (fn => 'new_key', bad => {});
	my ($t, $i) = (pick_type(), pick_id());
	req_text($c{bad}, $t, \&type_ok);
	req_text($c{bad}, $i, \&id_ok);
	$c{type} = $t;
	$c{id} = $i;
	$c{sql} = "SELECT '\@R', k FROM $schema.new_stripe_idempotency_key("
	  . sql_text($t) . ', ' . sql_text($i) . ') AS k';
	return \%c;
}

sub gen_begin
{
	my %c = (fn => 'begin', bad => {});
	my ($t, $i) = (pick_type(), pick_id());
	my $params = maybe_jsonb(0.3);
	my $lease = maybe_interval(0.6);
	my $ttl = maybe_interval(0.6);
	my $window = maybe_interval(0.85);
	# Short leases and ttls so that takeovers and expiry happen during the run.
	$lease = pick(@intervals[3, 4]) if !defined $lease && chance(0.3);
	$ttl = pick(@intervals[3, 4, 5]) if !defined $ttl && chance(0.2);

	req_text($c{bad}, $t, \&type_ok);
	req_text($c{bad}, $i, \&id_ok);
	note_parse(\%c, $params->[1]) if $params;
	note_lease_ttl_window(\%c, $lease, $ttl, $window);
	@c{qw(type id)} = ($t, $i);
	$c{sql} = "SELECT '\@R', state, stripe_idempotency_key,"
	  . " pg_catalog.md5(stripe_resource_id), pg_catalog.md5(response::text),"
	  . " retry_after OPERATOR(pg_catalog.>) '0'::interval, attempts"
	  . " FROM $schema.begin_stripe_idempotency("
	  . optional_args(2, sql_text($t), sql_text($i), sql_jsonb($params),
		sql_interval($lease), sql_interval($ttl), sql_interval($window)) . ')';
	return \%c;
}

# lease, ttl and key window: each 1 second to 365 days, and the lease at
# most the ttl and at most the key window.
sub note_lease_ttl_window
{
	my ($c, $lease, $ttl, $window) = @_;
	note_parse($c, $lease->[2]) if $lease;
	note_parse($c, $ttl->[2]) if $ttl;
	note_parse($c, $window->[2]) if $window;
	return if $c->{parse};
	my $ttl_u = ttl_usecs($c->{bad}, $ttl);
	my $window_u = $window ? $window->[1] : $KEY_WINDOW;
	if ($window_u < 1e6 || $window_u > $MAX_USECS) { $c->{bad}{'22023'} = 1; return; }
	return unless defined $ttl_u;
	my $lease_u = $lease ? $lease->[1] : $guc{lease};
	$c->{bad}{'22023'} = 1
	  if $lease_u < 1e6 || $lease_u > $ttl_u || $lease_u > $window_u;
}

# restart: only an unresolved operation under the key given starts over
# (55000 for anything else).
sub gen_restart
{
	my %c = (fn => 'restart', bad => {});
	my ($t, $i) = (pick_type(), pick_id());
	my $key = pick_key($t, $i);
	my $lease = maybe_interval(0.7);
	my $ttl = maybe_interval(0.7);
	req_text($c{bad}, $t, \&type_ok);
	req_text($c{bad}, $i, \&id_ok);
	if (!$key->[2]) { req_text($c{bad}, $key->[1], \&key_ok); }
	note_lease_ttl_window(\%c, $lease, $ttl, undef);
	@c{qw(type id)} = ($t, $i);
	$c{sql} = "SELECT '\@R', state, stripe_idempotency_key, attempts"
	  . " FROM $schema.restart_stripe_idempotency("
	  . optional_args(3, sql_text($t), sql_text($i), $key->[0],
		sql_interval($lease), sql_interval($ttl)) . ')';
	return \%c;
}

sub gen_check
{
	my %c = (fn => 'check', bad => {});
	my ($t, $i) = (pick_type(), pick_id());
	req_text($c{bad}, $t, \&type_ok);
	req_text($c{bad}, $i, \&id_ok);
	@c{qw(type id)} = ($t, $i);
	$c{sql} = "SELECT '\@R', found, status, stripe_idempotency_key,"
	  . " pg_catalog.md5(stripe_resource_id), pg_catalog.md5(response::text)"
	  . " FROM $schema.check_stripe_idempotency(" . sql_text($t) . ', ' . sql_text($i) . ')';
	return \%c;
}

# A key argument for record and release: [sql expression, value or undef
# when only the server knows it, known-valid flag].
sub pick_key
{
	my ($t, $i) = @_;
	my $r = rand();
	if ($r < 0.45 && defined $t && defined $i)
	{
		# the operation's own key, whatever it is now
		return ["COALESCE((SELECT stripe_idempotency_key FROM $TABLE"
			  . " WHERE operation_type OPERATOR(pg_catalog.=) " . sql_text($t)
			  . " AND operation_id OPERATOR(pg_catalog.=) " . sql_text($i) . "), 'no-key')", undef, 1];
	}
	if ($r < 0.55)
	{
		# somebody else's key, if there is one
		return ["COALESCE((SELECT stripe_idempotency_key FROM $TABLE"
			  . " ORDER BY pg_catalog.md5(stripe_idempotency_key) LIMIT 1 OFFSET "
			  . int(rand(5)) . "), 'other-key')", undef, 1];
	}
	if ($r < 0.75)
	{
		my $k = 'k-' . int(rand(40));
		return [sql_text($k), $k, 1];
	}
	my $k = pick(@weird_text);
	return [sql_text($k), $k, 0];
}

sub gen_record
{
	my %c = (fn => 'record', bad => {});
	my ($t, $i) = (pick_type(), pick_id());
	my $key = pick_key($t, $i);
	my $res = chance(0.25) ? undef
	  : chance(0.6) ? 'cs_test_' . int(rand(1000))
	  : pick(@weird_text);
	my $response = maybe_jsonb(0.35);
	my $ttl = maybe_interval(0.6);
	$ttl = pick(@intervals[3, 4, 5]) if !defined $ttl && chance(0.2);

	req_text($c{bad}, $t, \&type_ok);
	req_text($c{bad}, $i, \&id_ok);
	if (!$key->[2]) { req_text($c{bad}, $key->[1], \&key_ok); }
	$c{bad}{'22004'} = 1 if !defined $res && !defined $response;
	$c{bad}{'22023'} = 1 if defined $res && !resource_ok($res);
	note_parse(\%c, $response->[1]) if $response;
	note_parse(\%c, $ttl->[2]) if $ttl;
	ttl_usecs($c{bad}, $ttl) unless $c{parse};
	@c{qw(type id)} = ($t, $i);
	$c{sql} = "SELECT '\@R', recorded, pg_catalog.md5(stripe_resource_id),"
	  . " pg_catalog.md5(response::text), pg_catalog.md5((" . sql_text($res) . ')::text),'
	  . ' pg_catalog.md5((' . sql_jsonb($response) . ')::text)'
	  . " FROM $schema.record_stripe_idempotency("
	  . optional_args(4, sql_text($t), sql_text($i), $key->[0], sql_text($res),
		sql_jsonb($response), sql_interval($ttl)) . ')';
	return \%c;
}

sub gen_release
{
	my %c = (fn => 'release', bad => {});
	my ($t, $i) = (pick_type(), pick_id());
	my $key = pick_key($t, $i);
	req_text($c{bad}, $t, \&type_ok);
	req_text($c{bad}, $i, \&id_ok);
	if (!$key->[2]) { req_text($c{bad}, $key->[1], \&key_ok); }
	@c{qw(type id)} = ($t, $i);
	$c{sql} = "SELECT '\@R', r FROM $schema.release_stripe_idempotency("
	  . optional_args(3, sql_text($t), sql_text($i), $key->[0], pick(@attempts)) . ') AS r';
	return \%c;
}

sub gen_cleanup
{
	my %c = (fn => 'cleanup', bad => {});
	my $b = pick(@batches);
	note_parse(\%c, $b->[1]);
	if (!$c{parse})
	{
		if (!defined $b->[2]) { $c{bad}{'22004'} = 1; }
		elsif ($b->[2] < 1) { $c{bad}{'22023'} = 1; }
	}
	my $arg = "($b->[0])::integer";
	if ($b->[0] eq 'NULL' && chance(0.3))
	{
		$arg = '';				# left out: the default, 10000
		$c{bad} = {};
	}
	$c{sql} = "SELECT '\@R', n FROM $schema.cleanup_expired_idempotency_keys($arg) AS n";
	return \%c;
}

sub gen_stats
{
	my %c = (fn => 'stats', bad => {});
	$c{sql} = "SELECT '\@R', acquired OPERATOR(pg_catalog.>=) 0 FROM $schema.stripe_idem_stats";
	return \%c;
}

# The functions without arguments: they must simply work, and leave the
# keys alone (the sweeper is pointed at another database, see above).
sub gen_stats_reset
{
	my %c = (fn => 'stats_reset', bad => {});
	$c{sql} = "SELECT '\@R', true FROM (SELECT $schema.stripe_idem_stats_reset()) r";
	return \%c;
}

sub gen_sweeper_view
{
	my %c = (fn => 'sweeper_view', bad => {});
	$c{sql} = "SELECT '\@R', pg_catalog.count(*) OPERATOR(pg_catalog.>=) 0 FROM $schema.stripe_idem_sweeper";
	return \%c;
}

sub gen_wake
{
	my %c = (fn => 'wake_sweeper', bad => {});
	$c{sql} = "SELECT '\@R', $schema.stripe_idem_wake_sweeper() IS NOT NULL";
	return \%c;
}

# Not counted as calls: the settings the defaults come from.
sub gen_set
{
	my %c = (fn => 'set', bad => {});
	my $which = pick('ttl', 'lease');
	my @values = (['1s', 1e6], ['2s', 2e6], ['90s', 90e6], ['1d', 86400e6],
		['2d', 2 * 86400e6], ['365d', $MAX_USECS]);
	push @values, ['0', 0], ['366d', 366 * 86400e6], ['-5s', -5e6] unless $managed;
	my ($lit, $usecs) = @{ pick(@values) };
	my $ok = $usecs >= 1e6 && $usecs <= $MAX_USECS;
	$c{bad}{'22023'} = 1 unless $ok;
	$guc{$which} = $usecs if $ok;
	$c{sql} = "SET stripe_idem.default_$which = '$lit'";
	return \%c;
}

sub gen_summary
{
	my %c = (fn => 'summary', bad => {});
	$c{sql} = "SELECT '\@R', in_progress OPERATOR(pg_catalog.>=) 0 FROM $schema.stripe_idem_summary";
	return \%c;
}

my @generators = $managed
  ? ([\&gen_begin, 34], [\&gen_record, 26], [\&gen_check, 10], [\&gen_release, 12],
	 [\&gen_cleanup, 6], [\&gen_new_key, 10], [\&gen_summary, 2], [\&gen_restart, 8])
  : ([\&gen_begin, 34], [\&gen_record, 26], [\&gen_check, 10], [\&gen_release, 12],
	 [\&gen_cleanup, 6], [\&gen_new_key, 10], [\&gen_stats, 2], [\&gen_restart, 8],
	 [\&gen_stats_reset, 0.5], [\&gen_sweeper_view, 0.5], [\&gen_wake, 0.5]);
my $weight_total = 0;
$weight_total += $_->[1] for @generators;

sub gen_call
{
	my $r = rand($weight_total);
	for my $g (@generators)
	{
		return $g->[0]->() if ($r -= $g->[1]) < 0;
	}
	return $generators[0][0]->();
}

#
# The script: each call, its SQLSTATE, then the table's fingerprint (every
# row with ctid and xmin) and the call's own row.
#
my $state_sql =
	"SELECT '\@H', (SELECT pg_catalog.count(*) FROM $TABLE),"
  . " (SELECT pg_catalog.md5(COALESCE(pg_catalog.string_agg((k.ctid, k.xmin, k.*)::text, '|'"
  . " ORDER BY k.operation_type, k.operation_id), '')) FROM $TABLE k)";
my $row_sql =
	"SELECT '\@W', status, stripe_idempotency_key, pg_catalog.md5(stripe_resource_id),"
  . " pg_catalog.md5(response::text), attempts,"
  . " (locked_until IS NULL OR locked_until OPERATOR(pg_catalog.<=) updated_at),"	# no lease given, or released
  . " expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp()"
  . " FROM $TABLE WHERE operation_type OPERATOR(pg_catalog.=) %s AND operation_id OPERATOR(pg_catalog.=) %s";

my @calls;
# The run's leases and ttls last a second or two; without a settle time of
# zero no restart could ever get through (stripe_idem.settle_time, 10 min).
my $script = "\\set ON_ERROR_STOP 0\n\\pset fieldsep_zero on\n\\set VERBOSITY terse\n"
  . "SET stripe_idem.settle_time = 0;\n$state_sql;\n";
my $ncounted = 0;
while ($ncounted < $ncalls)
{
	my $c = chance(0.01) ? gen_set() : gen_call();
	my $n = scalar @calls;
	push @calls, $c;
	$ncounted++ unless $c->{fn} eq 'set';
	$c->{op} = [ $c->{type}, $c->{id} ]
	  if defined $c->{type} && defined $c->{id} && type_ok($c->{type}) && id_ok($c->{id});
	$script .= "\\echo '\@C $n'\n\\warn '\@C $n'\n$c->{sql};\n\\echo '\@S' :SQLSTATE\n$state_sql;\n";
	$script .= sprintf("$row_sql;\n", sql_text($c->{op}[0]), sql_text($c->{op}[1])) if $c->{op};
}
$script .= "SELECT '\@T', pg_catalog.pg_postmaster_start_time();\n\\echo '\@END'\n";

open my $fh, '>', "$workdir/fuzz.sql" or die "$workdir/fuzz.sql: $!";
print $fh $script;
close $fh;

my $start_sql = 'SELECT pg_catalog.pg_postmaster_start_time()';
my ($started, $err0) = ('', '');
IPC::Run::run([ $psql, '-XAtq', '-c', $start_sql ], '>', \$started, '2>', \$err0,
	IPC::Run::timeout(60)) or die "psql failed: $err0";
chomp $started;

my ($out, $err) = ('', '');
my $t0 = time;
IPC::Run::run([ $psql, '-XAtq', '-f', "$workdir/fuzz.sql" ], '>', "$workdir/fuzz.out",
	'2>', "$workdir/fuzz.err", IPC::Run::timeout($timeout));
my $elapsed = time - $t0;

#
# Check.
#
my @violations;
sub violation
{
	my ($n, $msg) = @_;
	my $c = defined $n ? $calls[$n] : undef;
	my $sql = $c ? $c->{sql} : '';
	$sql = substr($sql, 0, 300) . '...' if length $sql > 300;
	push @violations, (defined $n ? "call $n ($c->{fn}): " : '') . $msg . ($c ? "\n    $sql" : '');
}

open my $in, '<', "$workdir/fuzz.out" or die "$workdir/fuzz.out: $!";
my %per_call;				# n => { R => [rows], S => sqlstate, H => [...], W => [...] }
my ($cur, $baseline, $end, $last_start);
my $prev_h;
my $first_h;
while (my $line = <$in>)
{
	chomp $line;
	my @f = split /\0/, $line, -1;
	if ($f[0] =~ /^\@C (\d+)$/) { $cur = $1; $per_call{$cur} = { R => [] }; next; }
	if ($f[0] =~ /^\@S (\S+)$/) { $per_call{$cur}{S} = $1 if defined $cur; next; }
	if ($f[0] eq '@H')
	{
		if (defined $cur) { $per_call{$cur}{H} = [ @f[1, 2] ]; }
		else { $first_h = [ @f[1, 2] ]; }
		next;
	}
	if ($f[0] eq '@W') { $per_call{$cur}{W} = [ @f[1 .. $#f] ] if defined $cur; next; }
	if ($f[0] eq '@R') { push @{ $per_call{$cur}{R} }, [ @f[1 .. $#f] ] if defined $cur; next; }
	if ($f[0] eq '@T') { $last_start = $f[1]; next; }
	if ($f[0] eq '@END') { $end = 1; next; }
}
close $in;

violation(undef, "the script did not run to the end (server crashed, or psql timed out after ${elapsed}s)")
  unless $end;
violation(undef, "the server restarted during the run (postmaster start time $started, then "
	  . ($last_start // 'unknown') . ')')
  if $end && $last_start ne $started;

my %count;					# fn => outcome => n
my %outcomes;				# outcome => n
my %states;					# "begin acquired" etc. => n
my $prev = $first_h;
my $uuid = qr/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;
my $made = 0;
for my $n (0 .. $#calls)
{
	my $c = $calls[$n];
	my $r = $per_call{$n};
	last unless $r && defined $r->{S} && $r->{H};
	$made++;
	my $code = $r->{S};
	my $outcome = $code eq '00000' ? 'ok' : $code;
	$count{ $c->{fn} }{$outcome}++;
	$outcomes{$outcome}++ unless $c->{fn} eq 'set';
	my ($h_before, $h_after) = ($prev, $r->{H});
	$prev = $h_after;
	my $unchanged = $h_before->[1] eq $h_after->[1];

	# Which SQLSTATEs may this call end with?
	my %allowed;
	if ($c->{parse}) { %allowed = %{ $c->{parse} }; }
	elsif (%{ $c->{bad} }) { %allowed = %{ $c->{bad} }; }
	else
	{
		%allowed = ('00000' => 1);
		$allowed{'23505'} = 1 if $c->{fn} eq 'record';
		$allowed{'55000'} = 1 if $c->{fn} eq 'restart';
	}
	if (!$allowed{$code})
	{
		violation($n, "ended with SQLSTATE $code, expected one of " . join(', ', sort keys %allowed));
		next;
	}
	if ($code ne '00000')
	{
		violation($n, "failed with $code but changed the table") unless $unchanged;
		next;
	}
	next if $c->{fn} eq 'set';

	my @rows = @{ $r->{R} };
	if (@rows != 1)
	{
		violation($n, 'returned ' . scalar(@rows) . ' rows, expected exactly one');
		next;
	}
	my @v = @{ $rows[0] };
	my $w = $r->{W};			# the operation's row after the call, if any
	my ($t, $i) = @{ $c->{op} // [] };

	if ($c->{fn} eq 'new_key')
	{
		violation($n, "key \"$v[0]\" is not \"type:id:uuid v4\"")
		  unless $v[0] =~ /\A\Q$t:$i:\E$uuid\z/;
		violation($n, 'changed the table') unless $unchanged;
	}
	elsif ($c->{fn} eq 'begin')
	{
		my ($state, $key, $res_md5, $resp_md5, $retry_pos, $attempts) = @v;
		$states{"begin $state"}++;
		if ($state eq 'acquired')
		{
			violation($n, "acquired key \"$key\" is not \"type:id:uuid v4\"")
			  unless $key =~ /\A\Q$t:$i:\E$uuid\z/;
			violation($n, 'acquired, but the row is not in_progress under that key with that attempt count')
			  unless $w && $w->[0] eq 'in_progress' && $w->[1] eq $key && $w->[4] eq $attempts && $w->[5] eq 'f';
			violation($n, 'acquired without changing the table') if $unchanged;
		}
		elsif ($state eq 'completed')
		{
			violation($n, 'completed, but returned other values than the row holds')
			  unless $w && $w->[0] eq 'completed' && $w->[1] eq $key
			  && $w->[2] eq $res_md5 && $w->[3] eq $resp_md5;
			violation($n, 'completed without a stripe_resource_id or response')
			  if $res_md5 eq '' && $resp_md5 eq '';
			violation($n, 'answered completed but changed the table') unless $unchanged;
		}
		elsif ($state eq 'in_progress')
		{
			violation($n, 'in_progress carries a key or result')
			  unless $key eq '' && $res_md5 eq '' && $resp_md5 eq '';
			violation($n, 'in_progress without a positive retry_after') unless $retry_pos eq 't';
			violation($n, 'in_progress, but the row is not') unless $w && $w->[0] eq 'in_progress';
			violation($n, 'answered in_progress but changed the table') unless $unchanged;
		}
		elsif ($state eq 'mismatch')
		{
			violation($n, 'mismatch carries a key or result')
			  unless $key eq '' && $res_md5 eq '' && $resp_md5 eq '';
			violation($n, 'answered mismatch but changed the table') unless $unchanged;
		}
		elsif ($state eq 'unresolved')
		{
			violation($n, 'unresolved, but not with the stored key and attempts, or with a result')
			  unless $w && $w->[0] eq 'in_progress' && $w->[1] eq $key && $w->[4] eq $attempts
			  && $res_md5 eq '' && $resp_md5 eq '';
			violation($n, 'answered unresolved but changed the table') unless $unchanged;
		}
		else { violation($n, "unknown state \"$state\""); }
	}
	elsif ($c->{fn} eq 'restart')
	{
		my ($state, $key, $attempts) = @v;
		$states{"restart $state"}++;
		violation($n, "restart answered \"$state\", not acquired") unless $state eq 'acquired';
		violation($n, "restarted key \"$key\" is not \"type:id:uuid v4\"")
		  unless $key =~ /\A\Q$t:$i:\E$uuid\z/;
		violation($n, 'restarted, but the row is not in_progress under the new key, attempt 1, with a lease')
		  unless $w && $w->[0] eq 'in_progress' && $w->[1] eq $key && $w->[4] eq '1' && $w->[5] eq 'f';
		violation($n, 'restarted without changing the table') if $unchanged;
	}
	elsif ($c->{fn} eq 'check')
	{
		my ($found, $status, $key, $res_md5, $resp_md5) = @v;
		$states{"check found=$found"}++;
		if ($found eq 't')
		{
			$states{"check unresolved"}++ if $status eq 'unresolved';
			violation($n, 'found, but returned other values than the row holds')
			  unless $w && ($w->[0] eq $status || ($status eq 'unresolved' && $w->[0] eq 'in_progress'))
			  && $w->[1] eq $key
			  && $w->[2] eq $res_md5 && $w->[3] eq $resp_md5;
		}
		else
		{
			# (a row may expire between the call and the look at it, but
			# not come back to life)
			violation($n, 'not found, but a live row exists') if $w && $w->[6] eq 'f';
		}
		violation($n, 'changed the table') unless $unchanged;
	}
	elsif ($c->{fn} eq 'record')
	{
		my ($recorded, $res_md5, $resp_md5, $arg_res_md5, $arg_resp_md5) = @v;
		$states{"record recorded=$recorded"}++;
		violation($n, 'the row is not completed with the returned result afterwards')
		  unless $w && $w->[0] eq 'completed' && $w->[2] eq $res_md5 && $w->[3] eq $resp_md5
		  && $w->[5] eq 't';
		if ($recorded eq 't')
		{
			violation($n, 'recorded, but the stored result is not the one passed')
			  unless $res_md5 eq $arg_res_md5 && $resp_md5 eq $arg_resp_md5;
			violation($n, 'recorded without changing the table') if $unchanged;
		}
		else
		{
			violation($n, 'answered recorded = false but changed the table') unless $unchanged;
		}
	}
	elsif ($c->{fn} eq 'release')
	{
		$states{"release $v[0]"}++;
		if ($v[0] eq 't')
		{
			violation($n, 'released, but the row still holds a lease or is not in_progress')
			  unless $w && $w->[0] eq 'in_progress' && $w->[5] eq 't';
		}
		else
		{
			violation($n, 'answered false but changed the table') unless $unchanged;
		}
	}
	elsif ($c->{fn} eq 'cleanup')
	{
		my $deleted = $v[0];
		$states{ 'cleanup deleted ' . ($deleted > 0 ? 'some' : 'none') }++;
		violation($n, "deleted $deleted rows, but the row count went from $h_before->[0] to $h_after->[0]")
		  unless $h_before->[0] - $h_after->[0] == $deleted;
		violation($n, 'deleted nothing but changed the table') if $deleted == 0 && !$unchanged;
	}
	elsif ($c->{fn} =~ /^(stats|stats_reset|sweeper_view|wake_sweeper|summary)$/)
	{
		violation($n, "returned \"$v[0]\"") unless $v[0] eq 't';
		violation($n, 'changed the table') unless $unchanged;
	}
}
violation(undef, "only $made of " . scalar(@calls) . ' calls ran') if $made < @calls;

#
# Report.
#
my $total = 0;
$total += $_ for values %outcomes;
print "fuzz: seed $seed, $total calls in ${elapsed}s, "
  . join(', ', map { "$_ $outcomes{$_}" } sort keys %outcomes) . "\n";
for my $fn (sort keys %count)
{
	my $sum = 0;
	$sum += $_ for values %{ $count{$fn} };
	print "fuzz: $fn: $sum (" . join(', ', map { "$_ $count{$fn}{$_}" } sort keys %{ $count{$fn} }) . ")\n";
}
print "fuzz: results: " . join(', ', map { "$_ $states{$_}" } sort keys %states) . "\n";
print "fuzz: " . scalar(@violations) . " violations\n";
my $shown = 0;
for my $v (@violations)
{
	last if ++$shown > 25;
	print "VIOLATION: $v\n";
}
exit(@violations ? 1 : 0);
