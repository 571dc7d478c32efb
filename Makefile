# stripe_idem: PGXS build.
#
#   make && make install        build and install into the pg_config found on PATH
#   make installcheck           pg_regress + isolation against a running server
#   make demo                   throwaway cluster, the checkout flow and the sweeper
#   make demo PGMAJOR=17        the same on PostgreSQL 17 (or 18), in a Debian chroot
#   make test                   every suite on PostgreSQL 15, 17 and 18, ends "N passed, N failed"
#   make model                  the Spin model of the protocol (test/model; also in make test)
#   make bench-managed          the C extension and the managed edition (tle/) side by side

MODULE_big = stripe_idem
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

EXTENSION = stripe_idem
DATA = $(sort $(wildcard sql/stripe_idem--*.sql))
PGFILEDESC = "stripe_idem - Stripe idempotency keys for PostgreSQL"

REGRESS = $(shell cat test/regress_schedule)
REGRESS_OPTS = --inputdir=.
ISOLATION = $(shell cat test/isolation_schedule)
ISOLATION_OPTS = --inputdir=test

PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK += -luuid

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(PGXS),)
# Without the server headers nothing below can be built; the two commands
# install them (or print the apt line) themselves.
all install installcheck:
	@bash test/lib/ensure_deps.sh --check
else
include $(PGXS)
endif

.PHONY: demo test bench bench-smoke bench-managed test-asan test-memcheck model
demo:
	@PGMAJOR="$(PGMAJOR)" bash test/demo.sh
test:
	@bash test/run_tests.sh
bench:
	@bash bench/run.sh
model:
	@bash test/model/run.sh
bench-smoke:
	@bash bench/run.sh --smoke
bench-managed:
	@bash bench/managed.sh
# Memory checking (also part of make test): regress, isolation and a fuzz
# run under valgrind memcheck; test/suites/80-memcheck.sh says why not ASAN.
test-asan test-memcheck:
	@bash test/run_tests.sh --asan
