#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# CPU hotplug: a CPU's per-CPU arrays are only touched by that CPU (or, by
# IPI, on it), and an offline CPU answers no IPI. rmm's hotplug teardown
# must hand back what a CPU held as it goes down, and shrink, destroy and
# unload must stay right with a CPU offline or coming back:
# - objects cached on CPU 1 go back to their slabs when CPU 1 goes offline,
#   and the cache can then be destroyed;
# - CPU 1 toggled off and on 10 times while a task allocates and frees on
#   it: no error, nothing lost, everything destroyed and unloaded cleanly.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ONLINE=/sys/devices/system/cpu/cpu1/online

ktap_plan 12

# cpu_cached CACHE CPU: objects in that CPU's array of the cache.
cpu_cached() {
	awk -v c="cache=$1" -v cpu="cpu=$2" '
		$1 == c && $2 == cpu {
			for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "cached") { print kv[2]; exit } }
		}' /proc/rmm_stats
}

# on_cpu1 LINE...: writes the control lines from a task bound to CPU 1.
on_cpu1() {
	lines=$(printf '%s\n' "$@")
	taskset -c 1 sh -c "echo '$lines' >/proc/rmm_ctl"
}

if [ ! -w "$ONLINE" ]; then
	for i in $(seq 12); do ktap_skip "cpu hotplug $i" "no CPU 1 that can go offline"; done
	ktap_finished
fi

dmesg -c >/dev/null
ktap_check "load" rmm_load demo=0
ktap_check "objects freed on CPU 1 stay in its array" sh -c '
	. ./rmm_lib.sh
	ctl_ok "create hp 64" || exit 1
	lines=$(printf "%s\n" "alloc hp 100" "free hp all")
	taskset -c 1 sh -c "echo \"$lines\" >/proc/rmm_ctl" || exit 1
	exit 0'
before=$(cpu_cached hp 1)
ktap_print "CPU 1 caches ${before:-?} objects of hp"
ktap_check "CPU 1 caches at least 60 objects" [ "${before:-0}" -ge 60 ]
ktap_check "CPU 1 goes offline" sh -c "echo 0 >$ONLINE"
line=$(dmesg | grep 'rmm: cpu 1 offline:' | tail -n 1)
ktap_print "$line"
ktap_check "the teardown handed the objects back" \
	sh -c "echo '$line' | grep -qE 'offline: [0-9]+ objects' && [ \$(echo '$line' | sed 's/.*offline: \([0-9]*\) objects.*/\1/') -ge $before ]"
ktap_check "CPU 1's array of hp is empty" [ "$(cpu_cached hp 1)" = 0 ]
ktap_check "hp destroys with CPU 1 offline" ctl_ok "destroy hp"
ktap_check "CPU 1 comes back" sh -c "echo 1 >$ONLINE"

# A task allocating and freeing on CPU 1 (migrated while it is offline)
# while CPU 1 goes off and on.
ctl_ok "create hp2 200 ctor" >/dev/null
(
	end=$(($(date +%s) + 8))
	while [ "$(date +%s)" -lt "$end" ]; do
		lines=$(printf '%s\n' "alloc hp2 150" "free hp2 all" "alloc kmalloc-512 40" "free kmalloc-512 all")
		taskset -c 1 sh -c "echo '$lines' >/proc/rmm_ctl" 2>/dev/null ||
			echo "$lines" >/proc/rmm_ctl || { echo "write failed" >/tmp/hotplug_err; exit 1; }
	done
) &
worker=$!
toggles=0
for i in $(seq 10); do
	echo 0 >$ONLINE && toggles=$((toggles + 1))
	sleep 0.3
	echo 1 >$ONLINE
	sleep 0.3
done
wait $worker
ktap_print "$toggles offline/online cycles while allocating"
ktap_check "10 cycles, no failed write" sh -c "[ $toggles = 10 ] && [ ! -e /tmp/hotplug_err ]"
ktap_check "no errors or corruptions counted" sh -c '
	. ./rmm_lib.sh
	[ "$(cache_stat hp2 errors)" = 0 ] && [ "$(cache_stat hp2 corruptions)" = 0 ] &&
		[ "$(cache_stat kmalloc-512 errors)" = 0 ]'
ktap_check "hp2 destroys (nothing held, nothing stranded)" ctl_ok "shrink hp2" "destroy hp2"
ktap_check "unload" rmm_unload
ktap_finished
