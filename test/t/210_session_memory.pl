# A long-lived application connection calls the API millions of times; its
# backend's memory must not grow with the number of calls. After a warm-up
# (plans prepared, caches filled), two more rounds of 40,000 calls of every
# function must leave the backend's memory contexts the same size, give or
# take one allocation block.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StripeIdemNode;
use Test::More;

my $node = StripeIdemNode::started('memory');
$node->safe_psql('postgres', 'CREATE EXTENSION stripe_idem');

my $round = q{
SELECT count(*) FROM generate_series(1, 10000) g,
	LATERAL begin_stripe_idempotency('mem', 'op' || (g % 500), '{"a": 1}', '1 second', '2 seconds') b \g /dev/null
SELECT count(*) FROM generate_series(1, 10000) g,
	LATERAL check_stripe_idempotency('mem', 'op' || (g % 500)) c \g /dev/null
SELECT count(*) FROM generate_series(1, 10000) g,
	LATERAL record_stripe_idempotency('mem', 'op' || (g % 500),
		(SELECT stripe_idempotency_key FROM stripe_idempotency_keys
		 WHERE operation_type = 'mem' AND operation_id = 'op' || (g % 500)), 'cs', '{"r": 1}') r
	WHERE g % 7 = 0 \g /dev/null
SELECT count(*) FROM generate_series(1, 10000) g,
	LATERAL release_stripe_idempotency('mem', 'op' || (g % 500), 'nokey') r \g /dev/null
SELECT count(*) FROM generate_series(1, 1000) g, LATERAL new_stripe_idempotency_key('mem', 'k' || g) k \g /dev/null
SELECT count(*) FROM generate_series(1, 200) g, LATERAL cleanup_expired_idempotency_keys(3) c \g /dev/null
};

my $out = $node->safe_psql('postgres', qq{
\\set QUIET on
$round
$round
SELECT sum(total_bytes) AS m1 FROM pg_backend_memory_contexts \\gset
$round
$round
SELECT sum(total_bytes) AS m2 FROM pg_backend_memory_contexts \\gset
$round
$round
SELECT sum(total_bytes) AS m3 FROM pg_backend_memory_contexts \\gset
\\echo :m1 :m2 :m3
});
my ($m1, $m2, $m3) = split ' ', $out;
note "backend memory after warm-up: $m1 bytes, then $m2, then $m3";
cmp_ok($m2 - $m1, '<=', 65536, 'memory does not grow with the number of calls (second round)');
cmp_ok($m3 - $m1, '<=', 65536, 'memory does not grow with the number of calls (third round)');

$node->stop;
done_testing();
