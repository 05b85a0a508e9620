#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# 50 cycles of load, experiments left holding objects (caches created,
# objects allocated, page blocks taken, vmalloc areas mapped, some
# failures injected), and unload: every cycle loads and unloads cleanly,
# unmaps its areas, leaves nothing in /proc, and after the last one the
# kernel's free memory is what it was before the first and its vmalloc
# space holds no area of rmm's (kmemleak is scanned by vm-run afterwards
# on the debug kernel).
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

CYCLES=${1:-50}
ktap_plan 6

# cycle I: one load, experiment, unload. Prints what went wrong and fails.
cycle() {
	i=$1
	params="demo=$((i % 2))"
	[ $((i % 7)) = 3 ] && params="$params debug=1"
	rmm_load $params || { echo "cycle $i: insmod $params failed"; return 1; }
	[ -e /proc/rmm_ctl ] || { echo "cycle $i: no /proc/rmm_ctl"; return 1; }
	ctl_ok "create lc_ctor 100 ctor" "create lc_big 3000 debug" "create lc_align 40 align=64 hwcache" \
		"alloc lc_ctor $((2000 + 37 * i))" "alloc lc_big 60" "alloc lc_align 500" \
		"alloc kmalloc-256 700" "alloc kmalloc-8192 5" "page-alloc 0 40" "page-alloc 4 3" \
		"page-alloc 10 1" "free lc_ctor 500" "shrink lc_ctor" \
		"vmalloc lc_v1 $((64 + i))K" "vmalloc lc_v2 1M" "vmalloc lc_v3 $((4096 * i + 1))" \
		"alloc kmalloc-64 100 atomic" "page-alloc 1 10 atomic|zero" "vfree lc_v2" "vmalloc lc_v4 2M" ||
		{ echo "cycle $i: experiment failed"; return 1; }
	# The kernel sees rmm's three areas in its own vmalloc space.
	maps=$(grep -c '\[rmm\] vmap$' /proc/vmallocinfo)
	[ "$maps" = 3 ] && [ "$(wc -l < /proc/rmm_vmallocinfo)" = 3 ] ||
		{ echo "cycle $i: $maps rmm areas in /proc/vmallocinfo"; return 1; }
	if [ $((i % 5)) = 0 ]; then
		# Some cycles end with failures injected and half-done commands.
		ctl_ok "fail 3" >/dev/null || { echo "cycle $i: fail 3 refused"; return 1; }
		rmm_ctl "alloc lc_big 400"
		rmm_ctl "page-alloc 1 300"
		rmm_ctl "vmalloc lc_fail 256K"
	fi
	cat /proc/rmm_slabinfo /proc/rmm_buddyinfo /proc/rmm_stats /proc/rmm_vmallocinfo \
		/proc/rmm_zoneinfo /proc/rmm_frames >/dev/null ||
		{ echo "cycle $i: views unreadable"; return 1; }
	rmm_unload || { echo "cycle $i: rmmod failed"; return 1; }
	if ls /proc | grep -q rmm; then
		echo "cycle $i: left in /proc: $(ls /proc | grep rmm)"
		return 1
	fi
	# The kernel log of this cycle (cleared each time, so that 50 cycles
	# never overflow it): one unload summary, and no rmm line about leaks,
	# invalid frees or corruption (the injected ENOMEMs are expected).
	log=$(dmesg -c)
	[ "$(echo "$log" | grep -c 'rmm: unloaded: freed .*, unmapped 3 vmalloc areas, ')" = 1 ] ||
		{ echo "cycle $i: no unload summary with 3 areas unmapped in the log"; return 1; }
	[ "$(grep -c ' vmap$' /proc/vmallocinfo)" = "$vmaps" ] ||
		{ echo "cycle $i: $(grep -c ' vmap$' /proc/vmallocinfo) vmap areas after unload, $vmaps before load"; return 1; }
	if echo "$log" | grep rmm | grep -iE 'leak|invalid|corrupt|disagree|still allocated|refused'; then
		echo "cycle $i: rmm reported problems"
		return 1
	fi
}

# The kernel's vmap areas before rmm: each unload must leave as many.
vmaps=$(grep -c ' vmap$' /proc/vmallocinfo)
# A first cycle warms up what the kernel allocates once for any module
# (sysfs entries, per-CPU chunks), as memory.sh does.
dmesg -c >/dev/null
ktap_check "warm-up cycle" cycle 0
settle
before=$(mem_free_kb)
start=$(date +%s)

# Runs in this shell (not captured) so that progress shows as it goes.
all_cycles() {
	i=1
	while [ $i -le "$CYCLES" ]; do
		out=$(cycle $i 2>&1) || { echo "$out" | sed 's/^/# /'; return 1; }
		if [ $((i % 10)) = 0 ]; then
			settle
			ktap_print "after cycle $i: MemFree $(mem_free_kb) kB ($(( $(date +%s) - start )) s)"
		fi
		i=$((i + 1))
	done
}
all_cycles
ktap_result "$CYCLES cycles of load, experiment holding objects, unload, each logging no problem" [ $? = 0 ]
ktap_print "$CYCLES cycles took $(( $(date +%s) - start )) s"
settle
after=$(mem_free_kb)
ktap_print "MemFree before the cycles: $before kB, after: $after kB (difference $((before - after)) kB)"
# Tolerance: 2 MiB over 50 cycles, for the kernel's own caches (per-CPU
# page lists, slab caches of module loading) that do not shrink on demand.
ktap_check "free memory restored within 2 MiB" within_kb "$before" "$after" 2048
ktap_check "nothing of rmm left in /proc" sh -c '! ls /proc | grep -q rmm'
ktap_check "nothing of rmm left in /sys/module" test ! -e /sys/module/rmm
ktap_check "the kernel's vmalloc space has as many vmap areas as before the first cycle" \
	sh -c "[ \$(grep -c ' vmap\$' /proc/vmallocinfo) = $vmaps ]"
ktap_finished
