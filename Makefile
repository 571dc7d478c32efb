# stripe_idem: PGXS build.
#
#   make && make install        build and install into the pg_config found on PATH
#   make installcheck           pg_regress + isolation against a running server (with the
#                               library preloaded), then the TAP tests in their own nodes
#   make prove_installcheck     the TAP tests (test/t/*.pl) alone, against the installed build;
#                               PROVE_TESTS=test/t/202_timeouts.pl picks files
#   make dist                   stripe_idem-<version>.zip for PGXN, from git's HEAD
#   make demo                   throwaway cluster, the checkout flow and the sweeper
#   make demo PGMAJOR=17        the same on PostgreSQL 17 (or 18), in a Debian chroot
#   make test                   every suite on PostgreSQL 15, 17 and 18, ends "N passed, N failed"
#   make model                  the Spin model of the protocol (test/model; also in make test),
#                               its TAP read by prove: ends "All tests successful." or "Result: FAIL"
#   make bench-managed          the C extension and the managed edition (tle/) side by side
#
# Everything the build reads is found through $(srcdir), so the tree also
# builds out of tree (VPATH), the way Debian's pg_buildext builds each major:
#   mkdir build-15 && make -C build-15 -f $PWD/Makefile PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
# ($(srcdir) is set by PGXS: ".", or the directory of this Makefile, or VPATH.)

MODULE_big = stripe_idem
OBJS = $(patsubst $(srcdir)/%.c,%.o,$(sort $(wildcard $(srcdir)/src/*.c)))

EXTENSION = stripe_idem
# Relative to $(srcdir): PGXS installs $(addprefix $(srcdir)/, $(DATA)).
DATA = $(patsubst $(srcdir)/%,%,$(sort $(wildcard $(srcdir)/sql/stripe_idem--*.sql)))
PGFILEDESC = "stripe_idem - Stripe idempotency keys for PostgreSQL"

REGRESS = $(shell cat $(srcdir)/test/regress_schedule)
REGRESS_OPTS = --inputdir=$(srcdir)
ISOLATION = $(shell cat $(srcdir)/test/isolation_schedule)
ISOLATION_OPTS = --inputdir=$(srcdir)/test

# prove_installcheck runs from $(srcdir); the nodes live in ./tmp_check.
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK += -luuid

# The top of the source tree, before PGXS sets srcdir (and where it is not set).
top_srcdir_si := $(patsubst %/,%,$(dir $(firstword $(MAKEFILE_LIST))))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(PGXS),)
# Without the server headers nothing below can be built; the two commands
# install them (or print the apt line) themselves.
all install installcheck prove_installcheck:
	@bash $(top_srcdir_si)/test/lib/ensure_deps.sh --check
else
include $(PGXS)
# PGXS has the recipe (installcheck runs it after pg_regress and isolation)
# but no target of that name. The TAP files share modules in test/lib
# (PROVE_FLAGS is set here: Makefile.global empties it).
PROVE_FLAGS += -I test/lib
.PHONY: prove_installcheck
prove_installcheck:
	$(prove_installcheck)
# Out of tree the objects land in ./src, which nothing else creates.
$(OBJS): | $(CURDIR)/src
$(CURDIR)/src:
	$(MKDIR_P) $@
endif

# PGXN: the release zip, one top folder stripe_idem-<version>/, from git's
# HEAD (only what is committed). The version is META.json's, which the
# packages suite holds to default_version in stripe_idem.control.
SI_VERSION = $(shell sed -n 's/^   "version": "\(.*\)",$$/\1/p' $(top_srcdir_si)/META.json)
.PHONY: dist
dist:
	git -C $(top_srcdir_si) archive --format zip --prefix=stripe_idem-$(SI_VERSION)/ \
		-o $(CURDIR)/stripe_idem-$(SI_VERSION).zip HEAD
	@echo "wrote stripe_idem-$(SI_VERSION).zip"

.PHONY: demo test bench bench-smoke bench-managed test-asan test-memcheck model
demo:
	@PGMAJOR="$(PGMAJOR)" bash $(top_srcdir_si)/test/demo.sh
test:
	@bash $(top_srcdir_si)/test/run_tests.sh
bench:
	@bash $(top_srcdir_si)/bench/run.sh
model:
	@prove -v --exec bash $(top_srcdir_si)/test/model/run.sh
bench-smoke:
	@bash $(top_srcdir_si)/bench/run.sh --smoke
bench-managed:
	@bash $(top_srcdir_si)/bench/managed.sh
# Memory checking (also part of make test): regress, isolation and a fuzz
# run under valgrind memcheck; test/suites/80-memcheck.sh says why not ASAN.
test-asan test-memcheck:
	@bash $(top_srcdir_si)/test/run_tests.sh --asan
