#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# An unprivileged user cannot read the 0400 files or write the control file.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 8

ktap_check "load" rmm_load demo=0
modes_ok() {
	[ "$(stat -c %a /proc/rmm_slabinfo)" = 400 ] && [ "$(stat -c %a /proc/rmm_stats)" = 400 ] &&
		[ "$(stat -c %a /proc/rmm_ctl)" = 200 ] && [ "$(stat -c %a /proc/rmm_buddyinfo)" = 444 ]
}
ktap_check "modes: slabinfo and stats 0400, ctl 0200, buddyinfo 0444" modes_ok

if [ "$(as_nobody id -u 2>/dev/null)" != 65534 ]; then
	for what in "slabinfo unreadable" "stats unreadable" "ctl unwritable" "buddyinfo readable" "root"; do
		ktap_skip "unprivileged check: $what" "cannot drop privileges here (kernel without MULTIUSER: use --kernel debug)"
	done
	ktap_check "unload" rmm_unload
	ktap_finished
fi
ktap_expect_fail "nobody cannot read rmm_slabinfo" as_nobody cat /proc/rmm_slabinfo
ktap_expect_fail "nobody cannot read rmm_stats" as_nobody cat /proc/rmm_stats
nobody_cannot_write() {
	! as_nobody 'echo create evil 8 > /proc/rmm_ctl' 2>/dev/null && ! grep -q "^evil " /proc/rmm_slabinfo
}
ktap_check "nobody cannot write rmm_ctl" nobody_cannot_write
ktap_check "nobody can read rmm_buddyinfo, like /proc/buddyinfo" sh -c '. ./rmm_lib.sh; as_nobody cat /proc/rmm_buddyinfo | grep -q "^Node 0, zone      rmm"'
ktap_check "root can do all of it" sh -c 'cat /proc/rmm_slabinfo /proc/rmm_stats >/dev/null && echo "create ok1 8" > /proc/rmm_ctl'
ktap_check "unload" rmm_unload
ktap_finished
