# The PostgreSQL majors stripe_idem supports and where make test finds each.
# Sourced by test/run_tests.sh and test/demo.sh.
#
# 15 is this machine's (Debian 12, bookworm). Debian's archive has 17 in
# trixie and 18 in sid and no 16 anywhere: 16 builds from the same source
# (the version differences are in src/compat.h) but no package is
# reachable here to test it.

SI_HOST_MAJOR=15
SI_SUPPORTED_MAJORS="15 16 17 18"
SI_TESTED_MAJORS="15 17 18"

si_chroot_suite() {
	case "$1" in
		17) echo trixie ;;
		18) echo sid ;;
		*) echo "" ;;
	esac
}

si_chroot_name() {
	local suite
	suite=$(si_chroot_suite "$1")
	[ -n "$suite" ] && echo "$suite-pg$1"
}

# What a chroot needs to build the extension and run the every-major suites
# (pgbouncer for the pooler suites, pg_cron for the managed edition's sweep
# job; the host's Node.js is copied in).
si_chroot_packages() {
	echo "postgresql-$1 postgresql-server-dev-$1 libipc-run-perl make gcc uuid-dev ca-certificates pgbouncer postgresql-$1-cron"
}

# What a new machine of this kind ships (Debian 12): the fresh-machine check
# runs make demo there, and the packages check installs the PostgreSQL 15
# package there, where no server development files are.
SI_FRESH_PACKAGES="postgresql-15 postgresql-client-15 postgresql-contrib libpq-dev uuid-dev gcc make git perl cppcheck valgrind ca-certificates"
