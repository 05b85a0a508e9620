#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The transcript of README's "Memory nodes": runs in the two-node VM,
#   scripts/vm-run --kernel perf --quiet scripts/nodes-demo.sh
run() {
	echo
	echo "# $1"
	eval "$1"
}
runq() {
	echo "# $1"
	eval "$1"
}
dmesg -c >/dev/null
run 'cat /proc/buddyinfo'
echo
runq 'insmod $RMM_KO demo=0'
runq 'taskset -c 0 sh -c "echo page-alloc 0 8 > /proc/rmm_ctl"          # from CPU 0 (node 0)'
runq 'taskset -c 1 sh -c "echo page-alloc 3 2 > /proc/rmm_ctl"          # from CPU 1 (node 1)'
runq 'taskset -c 0 sh -c "echo page-alloc 2 4 node=1 > /proc/rmm_ctl"   # from CPU 0, for node 1'
runq 'taskset -c 0 sh -c "echo alloc kmalloc-64 100 node=1 > /proc/rmm_ctl"'
run 'cat /proc/rmm_buddyinfo'
run "grep '^node=' /proc/rmm_stats"
run "grep '^cache=kmalloc-64 node=' /proc/rmm_stats"
echo
runq 'taskset -c 1 sh -c "echo page-free 0 all > /proc/rmm_ctl"         # node 0 pages, freed on CPU 1'
runq 'taskset -c 0 sh -c "echo free kmalloc-64 40 > /proc/rmm_ctl"      # node 1 objects, freed on CPU 0'
run "grep '^node=0' /proc/rmm_stats"
run "grep '^cache=kmalloc-64 node=' /proc/rmm_stats"
echo
runq 'echo "page-alloc 0 1 node=5" > /proc/rmm_ctl'
runq "dmesg | grep 'rmm_ctl: page-alloc'"
run "grep -E '^Node|^  pages free|^        (min|managed)|cpu:|count:' /proc/rmm_zoneinfo"
echo
runq 'rmmod rmm'
runq "dmesg | grep 'rmm: unloaded'"
