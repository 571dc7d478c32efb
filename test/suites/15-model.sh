#!/usr/bin/env bash
# The Spin model of the protocol (test/model/model.pml): one check per
# line of test/model/run.sh (the real model per property and setting,
# liveness, the reachability probes, each broken variant caught). Needs
# spin and gcc, not PostgreSQL; runs on the host only. Without spin every
# check counts as failed, never as passed.
set -uo pipefail
cd "$SUITE_DIR"

# pan and its trails go to the scratch directory, not into the tree copy.
bash "$SRC/test/model/run.sh" --work "$SUITE_DIR/model" 2>&1 | tee model.log
pass=$(grep -c '^ok - ' model.log)
fail=$(grep -c '^not ok - ' model.log)
# A run that died before its summary line counts as one more failure.
grep -qE '^MODEL_RESULT [0-9]+ [0-9]+$' model.log || fail=$((fail + 1))
echo "SUITE_RESULT $pass $fail"
