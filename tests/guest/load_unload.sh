#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Loading rmm creates its procfs files; unloading removes them; neither
# leaves an error in the kernel log.
. "$(dirname "$0")/ktap.sh"

ktap_plan 5

dmesg -c >/dev/null
ktap_check "insmod rmm.ko" insmod "$RMM_KO"
ktap_check "/proc/rmm_slabinfo exists after load" test -e /proc/rmm_slabinfo
ktap_check "rmmod rmm" rmmod rmm
ktap_check "/proc/rmm_slabinfo gone after unload" test ! -e /proc/rmm_slabinfo

no_errors() {
	# Our own error lines start "rmm: error"; the kernel's own reports are
	# caught by vm-run for every test.
	! dmesg | grep -iE 'rmm.*(error|fail|leak|corrupt)'
}
ktap_check "no error in dmesg" no_errors

ktap_finished
