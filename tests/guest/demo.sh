#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The demo behind `make run`: load rmm (which runs the slab experiment),
# show what it logged and what it holds, unload it and show it gone.

run() {
	echo
	echo "# $1"
	eval "$1"
}

dmesg -c >/dev/null
run 'insmod $RMM_KO'
run "dmesg | grep 'rmm: '"
run 'cat /proc/rmm_slabinfo'
run "grep '^cache=rmm_student ' /proc/rmm_stats"
run 'cat /proc/rmm_buddyinfo'
run 'rmmod rmm'
run "dmesg | grep 'rmm: unloaded'"
run "grep rmm_student /proc/rmm_slabinfo 2>&1; ls /proc | grep rmm || echo '(nothing of rmm left in /proc)'"
