#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# CPU hotplug: a CPU's per-CPU arrays are only touched by that CPU (or, by
# IPI, on it), and an offline CPU answers no IPI. rmm's hotplug teardown
# must hand back what a CPU held as it goes down, and shrink, destroy and
# unload must stay right with a CPU offline or coming back:
# - objects cached on CPU 1 go back to their slabs when CPU 1 goes offline,
#   and the cache can then be destroyed;
# - page blocks of orders 0 to 3 freed on CPU 1 stay on its per-CPU page
#   lists and go back to the buddy lists when CPU 1 goes offline, so that
#   shrink can give every chunk back with CPU 1 offline (shrink drains only
#   the online CPUs' lists);
# - CPU 1 toggled off and on 10 times while a task allocates and frees
#   objects and page blocks on it: no error, nothing lost, everything
#   destroyed, every chunk given back, unloaded cleanly.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ONLINE=/sys/devices/system/cpu/cpu1/online

ktap_plan 18

# cpu_cached CACHE CPU: objects in that CPU's array of the cache.
cpu_cached() {
	cache_part_stat "$1" "cpu=$2" cached
}

# on_cpu1 LINE...: writes the control lines from a task bound to CPU 1.
on_cpu1() {
	lines=$(printf '%s\n' "$@")
	taskset -c 1 sh -c "echo '$lines' >/proc/rmm_ctl"
}

if [ ! -w "$ONLINE" ]; then
	for i in $(seq 18); do ktap_skip "cpu hotplug $i" "no CPU 1 that can go offline"; done
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
# Blocks of every per-CPU order, allocated and freed on CPU 1: 84 pages,
# fewer than any list's high mark, so they all stay on CPU 1's lists.
ktap_check "page blocks freed on CPU 1 stay on its lists" sh -c '
	. ./rmm_lib.sh
	lines=$(printf "%s\n" "page-alloc 0 20" "page-alloc 1 10" "page-alloc 2 5" "page-alloc 3 3" \
		"page-free 0 all" "page-free 1 all" "page-free 2 all" "page-free 3 all")
	taskset -c 1 sh -c "echo \"$lines\" >/proc/rmm_ctl" || exit 1
	[ "$(buddy_stat pages_pcp)" -ge 84 ]'
# With two nodes, objects of CPU 0's node freed on CPU 1 wait in CPU 1's
# alien array (fewer than its 32 slots: none goes home yet); the teardown
# must send them home too.
nodes=$(find /sys/devices/system/node -maxdepth 1 -name 'node[0-9]*' 2>/dev/null | wc -l)
alien=0
if [ "$nodes" = 2 ]; then
	remote0=$(cache_part_stat hp node=0 remote_frees)
	taskset -c 0 sh -c 'echo "alloc hp 20" >/proc/rmm_ctl' &&
		taskset -c 1 sh -c 'echo "free hp 20" >/proc/rmm_ctl'
	alien=$(cache_part_stat hp cpu=1 alien)
	ktap_check "20 objects of node 0 freed on CPU 1 wait in its alien array" [ "${alien:-0}" = 20 ]
else
	ktap_skip "objects of node 0 wait in CPU 1's alien array" "one node"
fi
before=$(cpu_cached hp 1)
ktap_print "CPU 1 caches ${before:-?} objects of hp"
ktap_check "CPU 1 caches at least 60 objects" [ "${before:-0}" -ge 60 ]
ktap_check "CPU 1 goes offline" sh -c "echo 0 >$ONLINE"
line=$(dmesg | grep 'rmm: cpu 1 offline:' | tail -n 1)
ktap_print "$line"
ktap_check "the teardown handed the objects back, the alien ones included" \
	sh -c "echo '$line' | grep -qE 'offline: [0-9]+ objects' && [ \$(echo '$line' | sed 's/.*offline: \([0-9]*\) objects.*/\1/') -ge $((before + alien)) ]"
if [ "$nodes" = 2 ]; then
	ktap_check "the alien objects went home to node 0 (remote_frees)" \
		sh -c "[ \"$(cache_part_stat hp cpu=1 alien)\" = 0 ] && [ \"$(cache_part_stat hp node=0 remote_frees)\" = $((remote0 + 20)) ]"
else
	ktap_skip "the alien objects went home to node 0" "one node"
fi
ktap_check "... and at least the 84 pages of the per-CPU page lists" \
	sh -c "[ \$(echo '$line' | sed 's/.* and \([0-9]*\) pages.*/\1/') -ge 84 ]"
ktap_check "CPU 1's array of hp is empty" [ "$(cpu_cached hp 1)" = 0 ]
ktap_check "hp destroys with CPU 1 offline" ctl_ok "destroy hp"
every_chunk_back() {
	ctl_ok "shrink kmalloc-8" || return 1
	[ "$(buddy_stat chunks)" = 0 ] && [ "$(buddy_stat pages_pcp)" = 0 ] ||
		{ echo "after shrink: chunks $(buddy_stat chunks), pages_pcp $(buddy_stat pages_pcp)"; return 1; }
}
ktap_check "shrink gives every chunk back with CPU 1 offline" every_chunk_back
ktap_check "CPU 1 comes back" sh -c "echo 1 >$ONLINE"

# A task allocating and freeing on CPU 1 (migrated while it is offline)
# while CPU 1 goes off and on.
ctl_ok "create hp2 200 ctor" >/dev/null
(
	end=$(($(date +%s) + 8))
	while [ "$(date +%s)" -lt "$end" ]; do
		lines=$(printf '%s\n' "alloc hp2 150" "free hp2 all" "alloc kmalloc-512 40" "free kmalloc-512 all" \
			"page-alloc 1 30" "page-alloc 3 9" "page-free 1 all" "page-free 3 all")
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
no_page_lost() {
	ctl_ok "shrink kmalloc-512" || return 1
	[ "$(buddy_stat invalid_frees)" = 0 ] && [ "$(buddy_stat chunks)" = 0 ] ||
		{ echo "invalid_frees $(buddy_stat invalid_frees), chunks $(buddy_stat chunks) after shrink"; return 1; }
}
ktap_check "no invalid page free, every chunk given back" no_page_lost
ktap_check "unload" rmm_unload
ktap_finished
