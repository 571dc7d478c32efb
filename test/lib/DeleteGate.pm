# A gate on the extension's table, for tests that need a long run of
# deletes (a cleanup call, a sweeper pass) to stop at a row they choose
# rather than wherever the machine's speed has taken it: deleting that row
# waits for a lock the test holds, and the test acts once pg_stat_activity
# shows the wait.
package DeleteGate;

use strict;
use warnings;

# The wait for an advisory lock, which hold_advisory() takes (the lock is
# per database: the holder must be in the database of the deletes).
our $ADVISORY_WAIT = 'PERFORM pg_catalog.pg_advisory_xact_lock_shared(4242)';

# install($node, $db, $operation_id, $wait): deleting the row of
# $operation_id runs the PL/pgSQL statement $wait first.
sub install
{
	my ($node, $db, $operation_id, $wait) = @_;
	$node->safe_psql($db, qq{
		CREATE FUNCTION public.stripe_idem_test_gate() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
			IF OLD.operation_id = '$operation_id' THEN
				$wait;
			END IF;
			RETURN OLD;
		END \$\$;
		CREATE TRIGGER stripe_idem_test_gate BEFORE DELETE ON stripe_idempotency_keys
			FOR EACH ROW EXECUTE FUNCTION public.stripe_idem_test_gate();
	});
	return;
}

sub remove
{
	my ($node, $db) = @_;
	$node->safe_psql($db, q{
		DROP TRIGGER stripe_idem_test_gate ON stripe_idempotency_keys;
		DROP FUNCTION public.stripe_idem_test_gate();
	});
	return;
}

# A session of $db holding the advisory lock $ADVISORY_WAIT waits for;
# quit() it to open the gate.
sub hold_advisory
{
	my ($node, $db) = @_;
	my $holder = $node->background_psql($db);
	$holder->query_safe('SELECT pg_advisory_lock(4242)');
	return $holder;
}

1;
