# SPDX-License-Identifier: GPL-2.0
#
# KTAP output for rmm's guest tests, in the manner of kselftest.
# Source it, call ktap_plan N, report each case, end with ktap_finished.
#
#   ktap_plan 3
#   ktap_check "module loads" insmod "$RMM_KO"
#   ktap_result "slabinfo exists" [ -e /proc/rmm_slabinfo ]
#   ktap_skip "kmemleak" "kernel has no kmemleak"
#   ktap_finished            # exits 0 all passed, 1 any failed, 4 all skipped

KTAP_PLANNED=0
KTAP_NUM=0
KTAP_PASS=0
KTAP_FAIL=0
KTAP_SKIP=0

ktap_plan() {
	KTAP_PLANNED=$1
	echo "TAP version 13"
	echo "1..$1"
}

ktap_print() {
	echo "# $*"
}

ktap_pass() {
	KTAP_NUM=$((KTAP_NUM + 1))
	KTAP_PASS=$((KTAP_PASS + 1))
	echo "ok $KTAP_NUM $1"
}

ktap_fail() {
	KTAP_NUM=$((KTAP_NUM + 1))
	KTAP_FAIL=$((KTAP_FAIL + 1))
	echo "not ok $KTAP_NUM $1"
}

ktap_skip() {
	KTAP_NUM=$((KTAP_NUM + 1))
	KTAP_SKIP=$((KTAP_SKIP + 1))
	echo "ok $KTAP_NUM $1 # SKIP $2"
}

# ktap_result NAME CMD...: passes when CMD succeeds; CMD's output is shown as
# diagnostics when it fails.
ktap_result() {
	name=$1
	shift
	if out=$("$@" 2>&1); then
		ktap_pass "$name"
	else
		[ -n "$out" ] && echo "$out" | sed 's/^/# /'
		ktap_fail "$name"
	fi
}

ktap_check() {
	ktap_result "$@"
}

# ktap_expect_fail NAME CMD...: passes when CMD fails.
ktap_expect_fail() {
	name=$1
	shift
	if "$@" >/dev/null 2>&1; then
		ktap_fail "$name (unexpectedly succeeded)"
	else
		ktap_pass "$name"
	fi
}

ktap_finished() {
	if [ "$KTAP_NUM" -ne "$KTAP_PLANNED" ]; then
		echo "# planned $KTAP_PLANNED tests but ran $KTAP_NUM"
		KTAP_FAIL=$((KTAP_FAIL + 1))
	fi
	echo "# Totals: pass:$KTAP_PASS fail:$KTAP_FAIL xfail:0 xpass:0 skip:$KTAP_SKIP error:0"
	if [ "$KTAP_FAIL" -gt 0 ]; then
		exit 1
	elif [ "$KTAP_SKIP" -gt 0 ] && [ "$KTAP_PASS" -eq 0 ]; then
		exit 4
	fi
	exit 0
}
