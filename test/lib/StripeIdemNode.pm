# The node every TAP test starts from: a new PostgreSQL::Test::Cluster with
# stripe_idem preloaded and the sweeper's timer off, plus the test's own
# settings, started.
#
#   my $node = StripeIdemNode::started('name', conf => q{
#       stripe_idem.databases = 'postgres'
#       stripe_idem.sweep_interval = 1
#   }, init => { allows_streaming => 1 });
#
# conf lines are appended after the defaults, so a test's own setting wins
# (in postgresql.conf the last one does); init's options go to ->init.
# plain => 1 leaves the defaults out: a server without the library, for the
# runs against the managed edition (tle/, test/suites/15-managed.sh).
package StripeIdemNode;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;

our $DEFAULTS = q{
shared_preload_libraries = 'stripe_idem'
stripe_idem.sweep_interval = 0
};

sub started
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	$node->append_conf('postgresql.conf', ($opts{plain} ? '' : $DEFAULTS) . ($opts{conf} // ''));
	$node->start;
	return $node;
}

1;
