#!/usr/bin/env bash
# The Spin model of the protocol (test/model/model.pml): every check of
# test/model/run.sh (the real model per property and setting, liveness, the
# reachability probes, each broken variant caught), taken in from the TAP
# it writes. Needs spin and gcc, not PostgreSQL; runs on the host only.
# Without spin or gcc run.sh fails one check, never passes.
set -uo pipefail
source "$SRC/test/lib/tap.sh"
cd "$SUITE_DIR"

# pan and its trails go to the scratch directory, not into the tree copy.
tap_from model bash "$SRC/test/model/run.sh" --work "$SUITE_DIR/model"
done_testing
