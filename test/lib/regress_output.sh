# Reading pg_regress and pg_isolation_regress output, whichever major wrote it.
#   15:   "test keys  ... ok  12 ms"   /  "... FAILED"
#   16+:  "ok 1  - keys  12 ms"  (" + " inside a parallel group) / "not ok 2 - ..."
# Source it; regress_passed FILE and regress_failed FILE print counts.

regress_passed() {
	grep -cE '^ok [0-9]+ +[-+] |^(test| +)?[ A-Za-z0-9_-]*\.\.\. ok' "$1"
}

regress_failed() {
	grep -cE '^not ok [0-9]+ |\.\.\. FAILED' "$1"
}
