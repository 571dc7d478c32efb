# The README's SQL runs as written. Every ```sql block of README.md, in
# order, goes into one psql script run against a fresh database of a
# server configured as the README says (the library preloaded). A block
# whose first line starts with "-- as app" runs as the application role the
# README creates (psql's \connect keeps the \gset variables), every other
# block as the postgres superuser. No error may occur, and the states the
# README shows must be the ones psql printed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $readme = "$ENV{SRC}/README.md";
$readme = '../README.md' unless $ENV{SRC} && -f $readme;
open(my $fh, '<', $readme) or die "cannot read $readme: $!";
my @lines = <$fh>;
close $fh;

my (@blocks, $cur);
for my $l (@lines)
{
	if (!defined $cur && $l =~ /^```sql\s*$/) { $cur = ''; next; }
	if (defined $cur && $l =~ /^```\s*$/) { push @blocks, $cur; undef $cur; next; }
	$cur .= $l if defined $cur;
}
ok(@blocks >= 5, 'README.md has ' . scalar(@blocks) . ' sql blocks');
# Every fenced block marked sql is one of these; nothing is left open.
ok(!defined $cur, 'every sql block is closed');

my $node = PostgreSQL::Test::Cluster->new('readme');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'stripe_idem'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');

my $script = '';
my $role = '';
for my $b (@blocks)
{
	my $want = $b =~ /\A-- as app\b/ ? 'app' : 'postgres';
	$script .= "\\connect - $want\n" if $want ne $role;
	$role = $want;
	$script .= $b . "\n";
}
my ($stdout, $stderr);
my $ret = $node->psql('shop', $script,
	stdout => \$stdout, stderr => \$stderr,
	extra_params => [ '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-a' ]);
is($ret, 0, 'the README blocks run without error');
is($stderr, '', 'and print nothing on stderr') or diag($stderr);
note($stdout);

# The states the README documents, as psql printed them (unaligned: a|b).
like($stdout, qr/^acquired checkout:create:chk_8f2c:[0-9a-f-]{36}$/m,
	'begin acquired a key of the documented form');
like($stdout, qr/^t\|cs_test_a1B2\|\{"id": "cs_test_a1B2"/m, 'record recorded it');
like($stdout, qr/^completed\|cs_test_a1B2$/m, 'the retry is completed');
like($stdout, qr/^in_progress\|t\|t$/m, 'a second caller is in_progress without a key');
like($stdout, qr/^mismatch$/m, 'other parameters are a mismatch');
like($stdout, qr/^unresolved\|t\|1$/m, 'an old key is unresolved, same key, attempts 1');
like($stdout, qr/^acquired\|t$/m, 'restart hands out a new key');
like($stdout, qr/^t\|completed$/m, 'check reports completed');
like($stdout, qr/^checkout:create\|1\|\d+\|\d+\|0\|0\|/m,
	'the overview counts the completed operation, nothing unresolved or expired');

# What the README's setup left behind: the application role holds EXECUTE
# and nothing on the table, and its search_path finds the functions.
is($node->safe_psql('shop', q{SELECT has_table_privilege('app', 'payments.stripe_idempotency_keys',
	'SELECT, INSERT, UPDATE, DELETE')}), 'f', 'app has no privilege on the table');
is($node->safe_psql('shop', q{SELECT has_schema_privilege('app', 'payments', 'CREATE')}),
	'f', 'app cannot create in the extension schema');
is($node->safe_psql('shop', 'SELECT count(*) FROM payments.stripe_idempotency_keys'),
	'3', 'three operations were written');

$node->stop;
done_testing();
