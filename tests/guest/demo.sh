#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The demo behind `make run`: load rmm (which runs the slab experiment),
# show what it logged and what it holds, then an object from kmalloc, a
# block of pages and a vmalloc area side by side, and the zone's
# watermarks; unload it and show it gone.

run() {
	echo
	echo "# $1"
	eval "$1"
}

# Everything on CPU 0, so on node 0, for the same output every run (the
# shell would otherwise land on either node's CPU); README's "Memory
# nodes" shows the other node.
taskset -p -c 0 $$ >/dev/null 2>&1 || true
dmesg -c >/dev/null
run 'insmod $RMM_KO'
run "dmesg | grep 'rmm: '"
run 'cat /proc/rmm_slabinfo'
run "grep '^cache=rmm_student ' /proc/rmm_stats"
run 'cat /proc/rmm_buddyinfo'
run 'echo 1 > /proc/sys/kernel/kptr_restrict   # root may see kernel addresses in %pK views'
run "echo 'alloc kmalloc-64 1
page-alloc 6 1
vmalloc demo 256K' > /proc/rmm_ctl"
run "grep -E '^(kmalloc-64 |# name)' /proc/rmm_slabinfo"
run 'cat /proc/rmm_vmallocinfo'
run "grep ' vmap$' /proc/vmallocinfo"
run "grep '^vmalloc demo ' /proc/rmm_frames | head -n 20"
run "grep '^block 6 0 ' /proc/rmm_frames | head -n 4"
run "head -n 18 /proc/rmm_zoneinfo"
run "grep '^zone ' /proc/rmm_stats"
run 'rmmod rmm'
run "dmesg | grep -E 'rmm: (rmm_ctl|unloaded)'"
run "grep rmm_student /proc/rmm_slabinfo 2>&1; ls /proc | grep rmm || echo '(nothing of rmm left in /proc)'"
