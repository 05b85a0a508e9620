#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The emergency reserve and the watermarks of rmm's page allocator:
# reserve= and `reserve` set the min watermark (auto: rmm's share of the
# kernel's own min watermarks, checked against /proc/zoneinfo); requests
# that may not sleep never refill the pool; with refills failing (fault
# injection), ordinary requests exhaust the pool down to min, GFP_NOWAIT
# then fails cleanly, GFP_ATOMIC still succeeds from the reserve, and
# nothing is lost; process context allocating again refills it. Also the
# flag words of alloc and page-alloc, and /proc/rmm_zoneinfo in the
# kernel's format.
#
# The pool is one node's here: the script runs on CPU 0, so every request
# prefers node 0 and the figures are those of one zone on a VM with
# several nodes too (tests/guest/numa.sh tests the nodes).
if [ -z "${RMM_ON_CPU0:-}" ] && [ -e /sys/devices/system/cpu/cpu1 ]; then
	RMM_ON_CPU0=1 exec taskset -c 0 sh "$0" "$@"
fi
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 17

# zoneinfo KEY: a value of /proc/rmm_zoneinfo (first occurrence: node 0's
# zone, which holds the pool).
zoneinfo() {
	awk -v k="$1" '{ v = $NF; $NF = ""; sub(/ +$/, ""); sub(/^ +/, ""); sub(/:$/, "") } $0 == k { print v; exit }' /proc/rmm_zoneinfo
}

ktap_check "load with reserve=256 (KiB)" rmm_load demo=0 reserve=256
# The watermarks are shared among the nodes by their pages: an empty pool
# has none yet (refill_ok checks them once it has a chunk).
ktap_check "the parameter set a reserve in KiB (reserve_auto=0); an empty pool has no watermarks yet" \
	sh -c '[ "$(grep "^zone " /proc/rmm_stats | cut -d" " -f3-7)" = "min=0 low=0 high=0 reserve_kb=0 reserve_auto=0" ]'

no_refill_ok() {
	for line in "page-alloc 0 1 atomic" "page-alloc 0 1 nowait" "page-alloc 4 1 atomic" "alloc kmalloc-64 1 atomic"; do
		ctl_enomem "$line" || return 1
	done
	[ "$(buddy_stat chunks)" = 0 ] && [ "$(line_stat zone refills)" = 0 ] ||
		{ echo "chunks $(buddy_stat chunks), refills $(line_stat zone refills)"; return 1; }
}
ktap_check "an empty pool: atomic and nowait requests fail, they never refill" no_refill_ok

refill_ok() {
	ctl_ok "page-alloc 0 1" "page-free 0 1" || return 1
	[ "$(buddy_stat chunks)" = 1 ] && [ "$(line_stat zone refills)" = 1 ] && [ "$(line_stat zone refill_chunks)" = 1 ] ||
		{ echo "$(grep '^zone ' /proc/rmm_stats)"; return 1; }
	[ "$(line_stat zone free)" -ge "$(line_stat zone high)" ] || { echo "free $(line_stat zone free) below high"; return 1; }
	[ "$(grep "^zone " /proc/rmm_stats | cut -d" " -f3-7)" = "min=64 low=80 high=96 reserve_kb=256 reserve_auto=0" ] ||
		{ echo "$(grep '^zone ' /proc/rmm_stats)"; return 1; }
}
ktap_check "a sleeping request refills the pool above high: min 64 pages, low 80, high 96" refill_ok

zoneinfo_ok() {
	head -n 1 /proc/rmm_zoneinfo | grep -qx 'Node 0, zone      rmm' || { echo "first line: $(head -n 1 /proc/rmm_zoneinfo)"; return 1; }
	keys=$(awk 'NR > 1 { $NF = ""; sub(/ +$/, ""); sub(/^ +/, ""); print }' /proc/rmm_zoneinfo | sed -n '1,10p' | tr '\n' ,)
	[ "$keys" = "pages free,boost,min,low,high,promo,spanned,present,managed,cma," ] || { echo "keys: $keys"; return 1; }
	[ "$(zoneinfo min)" = "$(line_stat zone min)" ] && [ "$(zoneinfo low)" = "$(line_stat zone low)" ] &&
		[ "$(zoneinfo high)" = "$(line_stat zone high)" ] || { echo "watermarks differ from rmm_stats"; return 1; }
	[ "$(zoneinfo 'pages free')" = "$(buddy_stat pages_free)" ] && [ "$(zoneinfo nr_free_pages)" = "$(buddy_stat pages_free)" ] ||
		{ echo "pages free $(zoneinfo 'pages free'), buddy $(buddy_stat pages_free)"; return 1; }
	[ "$(zoneinfo managed)" = 1024 ] && [ "$(zoneinfo present)" = 1024 ] && [ "$(zoneinfo spanned)" = 1024 ] ||
		{ echo "managed/present/spanned not one chunk"; return 1; }
	# Every CPU's pageset under the zone of every node with memory, as the
	# kernel lists them.
	cpus=$(grep -c '^processor' /proc/cpuinfo)
	zones=$(grep -c '^Node [0-9]*, zone      rmm$' /proc/rmm_zoneinfo)
	[ "$zones" = "$(wc -l < /proc/rmm_buddyinfo)" ] || { echo "$zones zones, $(wc -l < /proc/rmm_buddyinfo) buddyinfo lines"; return 1; }
	[ "$(grep -c '^    cpu: ' /proc/rmm_zoneinfo)" = $((cpus * zones)) ] || { echo "pagesets of $(grep -c '^    cpu: ' /proc/rmm_zoneinfo) CPUs in $zones zones"; return 1; }
	counts=$(awk '$1 == "count:" { n += $2 } END { print n }' /proc/rmm_zoneinfo)
	[ "$counts" = "$(buddy_stat pages_pcp)" ] || { echo "pagesets count $counts, pages_pcp $(buddy_stat pages_pcp)"; return 1; }
	grep -q '^  start_pfn:           [1-9]' /proc/rmm_zoneinfo || { echo "no start_pfn"; return 1; }
	# The kernel's format line for line: every line of rmm's zones, numbers
	# aside, is a line the kernel prints for its zones (but the zones' first
	# lines and the protection line, which has one entry per zone).
	sed 's/[0-9][0-9]*/N/g' /proc/zoneinfo | sort -u > /tmp/kernel-shapes
	sed '/^Node /d; /protection:/d; s/[0-9][0-9]*/N/g' /proc/rmm_zoneinfo | sort -u > /tmp/rmm-shapes
	extra=$(grep -vxF -f /tmp/kernel-shapes /tmp/rmm-shapes)
	[ -z "$extra" ] || { echo "lines /proc/zoneinfo never has: $extra"; return 1; }
	grep -q '^        protection: (0)$' /proc/rmm_zoneinfo || { echo "no protection line"; return 1; }
}
ktap_check "rmm_zoneinfo: /proc/zoneinfo's format, figures as in rmm_stats" zoneinfo_ok
sed 's/^/#   /' /proc/rmm_zoneinfo | head -n 20

auto_ok() {
	ctl_ok "reserve auto" || return 1
	# rmm's share of the min watermarks of the kernel's low-memory zones,
	# as __setup_per_zone_wmarks shares min_free_kbytes among zones.
	want=$(awk -v pool="$(buddy_stat pages_total)" '
		/^Node/ { zone = $4 }
		zone != "Movable" && zone != "HighMem" && $1 == "min" { min += $2 }
		zone != "Movable" && zone != "HighMem" && $1 == "managed" { managed += $2 }
		END { printf "%d\n", min * pool / managed }' /proc/zoneinfo)
	[ "$(line_stat zone min)" = "$want" ] || { echo "auto min $(line_stat zone min), expected $want"; return 1; }
	[ "$want" -gt 0 ] && [ "$(line_stat zone reserve_auto)" = 1 ] || { echo "auto min is $want"; return 1; }
	ctl_ok "reserve 256"
}
ktap_check "reserve auto: rmm's share of the kernel's min watermarks, as /proc/zoneinfo shows them" auto_ok
ktap_print "reserve auto: $(dmesg | grep 'rmm_ctl: reserve auto' | sed 's/.*watermarks //') for a pool of $(buddy_stat pages_total) (min_free_kbytes $(cat /proc/sys/vm/min_free_kbytes))"
reserve_errors_ok() {
	for line in "reserve -1" "reserve 262145" "reserve 1M" "reserve" "reserve auto 2"; do
		ctl_err "Invalid argument" "$line" || return 1
	done
	dmesg | grep -q 'rmm_ctl: reserve 256: watermarks min 64 low 80 high 96 pages' || { echo "no reserve line"; return 1; }
}
ktap_check "bad reserve settings: EINVAL" reserve_errors_ok

allocated0=$(buddy_stat pages_allocated)
exhaust_ok() {
	ctl_ok "fail 1 refill" || return 1
	ctl_enomem "page-alloc 0 5000" || return 1
	[ "$(line_stat zone free)" = 64 ] && [ "$(buddy_stat pages_pcp)" = 0 ] ||
		{ echo "free $(line_stat zone free), pcp $(buddy_stat pages_pcp) after ordinary requests ran out"; return 1; }
	[ "$(line_stat zone reserve_allocs)" = 0 ] && [ "$(line_stat zone refill_failures)" -ge 1 ] && [ "$(line_stat zone refused)" -ge 1 ] &&
		[ "$(line_stat zone min_allocs)" -ge 1 ] || { echo "$(grep '^zone ' /proc/rmm_stats)"; return 1; }
	[ "$(line_stat rmm fail_refill)" = 1 ] && [ "$(line_stat rmm fail_injected)" -ge 1 ] || { echo "refills not injected"; return 1; }
	[ "$(buddy_stat chunks)" = 1 ] || { echo "chunks $(buddy_stat chunks)"; return 1; }
}
ktap_check "refills failing: ordinary requests stop at min, the reserve intact" exhaust_ok
nowait_ok() {
	fresh_log_window
	refused=$(line_stat zone refused)
	ctl_enomem "page-alloc 0 1 nowait" || return 1
	ctl_enomem "page-alloc 0 1" || return 1
	[ "$(line_stat zone free)" = 64 ] && [ "$(line_stat zone refused)" = $((refused + 2)) ] ||
		{ echo "free $(line_stat zone free), refused $refused -> $(line_stat zone refused)"; return 1; }
	dmesg | grep -q 'rmm_ctl: page-alloc order 0: out of memory after 0 of 1 blocks, 0 kept (-ENOMEM)' || { echo "no ENOMEM line"; return 1; }
}
ktap_check "GFP_NOWAIT (and GFP_KERNEL, its refill failing) fails cleanly at min: ENOMEM, nothing taken" nowait_ok
atomic_ok() {
	ctl_ok "page-alloc 0 1 atomic" || return 1
	[ "$(line_stat zone free)" = 63 ] && [ "$(line_stat zone reserve_allocs)" = 1 ] && [ "$(line_stat zone reserve_pages)" = 1 ] ||
		{ echo "$(grep '^zone ' /proc/rmm_stats)"; return 1; }
	ctl_ok "page-alloc 0 63 GFP_ATOMIC" || return 1
	[ "$(line_stat zone free)" = 0 ] && [ "$(line_stat zone reserve_pages)" = 64 ] || { echo "$(grep '^zone ' /proc/rmm_stats)"; return 1; }
	ctl_enomem "page-alloc 0 1 atomic"
}
ktap_check "GFP_ATOMIC still succeeds, from the reserve, down to its last page" atomic_ok
books_ok() {
	held=$(awk '$1 == "buddy" && $2 == "order=0" { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "held") print kv[2] } }' /proc/rmm_stats)
	[ "$(buddy_stat pages_allocated)" = $((allocated0 + held)) ] && [ "$held" = $((1024 - allocated0)) ] ||
		{ echo "pages_allocated $(buddy_stat pages_allocated), held $held, before $allocated0"; return 1; }
	[ "$(buddy_stat pages_free)" = 0 ] && [ "$(buddy_stat pages_total)" = 1024 ] || { echo "pool changed"; return 1; }
}
ktap_check "nothing lost: every page of the pool is held" books_ok
refilled_ok() {
	refills=$(line_stat zone refills)
	ctl_ok "fail 0" "page-alloc 0 1" || return 1
	[ "$(line_stat zone refills)" = $((refills + 1)) ] && [ "$(buddy_stat chunks)" = 2 ] ||
		{ echo "refills $refills -> $(line_stat zone refills), chunks $(buddy_stat chunks)"; return 1; }
	[ "$(line_stat zone free)" -ge "$(line_stat zone high)" ] || { echo "free $(line_stat zone free) below high $(line_stat zone high)"; return 1; }
	ctl_ok "page-alloc 0 10 atomic" "page-alloc 0 10 nowait"
}
ktap_check "process context allocating again refills the pool and the reserve" refilled_ok
ktap_check "everything goes back" sh -c '. ./rmm_lib.sh; ctl_ok "page-free 0 all" "shrink kmalloc-8" && [ "$(buddy_stat chunks)" = 0 ] && [ "$(buddy_stat pages_allocated)" = 0 ]'

flags_ok() {
	ctl_ok "create fl 200" "create flc 64 ctor" || return 1
	# The pool is empty: a sleeping allocation first, which refills it.
	ctl_ok "alloc fl 10 kernel|zero" "alloc fl 100 atomic" "alloc fl 100 nowait" "alloc fl 10 GFP_ATOMIC|__GFP_ZERO" \
		"page-alloc 3 2 nowait|zero" || return 1
	[ "$(cache_stat fl held)" = 220 ] || { echo "held $(cache_stat fl held)"; return 1; }
	fresh_log_window
	ctl_err "Invalid argument" "alloc flc 1 zero" || return 1
	dmesg | grep -q "rmm_ctl: alloc flc: zeroing would destroy what the cache's constructor built (-EINVAL)" || { echo "no zero line"; return 1; }
	[ "$(cache_stat flc errors)" = 0 ] && [ "$(cache_stat flc allocs)" = 0 ] || { echo "flc was touched"; return 1; }
	for line in "alloc fl 1 bogus" "alloc fl 1 atomic|nowait" "page-alloc 0 1 ATOMIC" "alloc fl 1 atomic zero"; do
		ctl_err "Invalid argument" "$line" || return 1
	done
	ctl_ok "free fl all" "page-free 3 all" "destroy fl" "destroy flc"
}
ktap_check "alloc and page-alloc take flag words; zero on a constructed cache is EINVAL" flags_ok

ktap_check "unload" rmm_unload
bad_param_ok() {
	dmesg -c >/dev/null
	insmod "$RMM_KO" reserve=lots 2>/dev/null && { rmmod rmm; echo "loaded with reserve=lots"; return 1; }
	dmesg | grep -q 'rmm: reserve=lots: reserve must be auto or 0 to 262144 (KiB)' || { echo "no error line"; return 1; }
	[ ! -e /proc/rmm_ctl ] || { echo "files left"; return 1; }
}
ktap_check "reserve=lots refuses to load, saying why" bad_param_ok
ktap_check "reserve=auto loads" sh -c '. ./rmm_lib.sh; rmm_load demo=0 reserve=auto && grep -q "^zone .* reserve_auto=1 " /proc/rmm_stats && rmm_unload'
ktap_finished
