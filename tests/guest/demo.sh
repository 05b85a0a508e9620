#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The demo behind `make run`: load rmm, show what it did and what it holds,
# unload it and show that it is gone.

show() {
	echo
	echo "\$ $*"
	"$@"
}

dmesg -c >/dev/null
show insmod "$RMM_KO"
show sh -c 'dmesg | grep " rmm: "'
show cat /proc/rmm_slabinfo
[ -e /proc/rmm_buddyinfo ] && show cat /proc/rmm_buddyinfo
show rmmod rmm
show sh -c 'dmesg | grep " rmm: " | tail -n 3'
show sh -c 'ls /proc | grep rmm || echo "(no rmm files left in /proc)"'
