#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Interrupt safety: GFP_ATOMIC allocations and frees in hard interrupt
# context on every CPU at once (irqtest=N), through kmalloc and the page
# allocator. On the debug kernel, lockdep then checks that no rmm lock is
# ever taken with interrupts enabled (vm-run fails the run on any report).
# Then every CPU takes atomic pages in interrupt context until the pool
# runs dry, which draws on the whole emergency reserve below the min
# watermark, and gives them back; process context refills the pool again.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 9

# zone_stat KEY: KEY on the "zone" line of rmm_stats.
zone_stat() {
	awk -v k="$1" '$1 == "zone" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' /proc/rmm_stats
}

dmesg -c >/dev/null
ktap_check "load with irqtest=500" rmm_load demo=0 irqtest=500
line=$(dmesg | grep "rmm: irq test: [0-9]")
ktap_print "$line"
cpus=$(grep -c '^processor' /proc/cpuinfo)
ktap_check "the test ran in interrupt context on every CPU" \
	sh -c "echo '$line' | grep -q 'on $cpus CPUs'"
ktap_check "every allocation succeeded (1000 pairs per CPU)" \
	sh -c "echo '$line' | grep -q ': $((1000 * cpus)) allocation and free pairs .* 0 failed'"
ktap_check "the caches were used and are empty again" \
	sh -c '. ./rmm_lib.sh; [ "$(cache_stat kmalloc-8 allocs)" -ge 50 ] && [ "$(cache_stat kmalloc-8 active)" = 0 ]'
reserve=$(dmesg | grep "rmm: irq test: reserve:")
ktap_print "$reserve"
# "N pages taken ... on C CPUs until the pool ran dry, R of them from the
# reserve below min M in A allocations, F given back"
set -- $(echo "$reserve" | sed -n 's/.*reserve: \([0-9]*\) pages taken .* on \([0-9]*\) CPUs .*, \([0-9]*\) of them from the reserve below min \([0-9]*\) in \([0-9]*\) allocations, \([0-9]*\) given back$/\1 \2 \3 \4 \5 \6/p')
ktap_check "the reserve round ran in interrupt context on every CPU" [ "${2:-}" = "$cpus" ]
ktap_check "atomic requests took the whole reserve, min ($4) pages, and not one more" \
	sh -c "[ '${4:-0}' -gt 0 ] && [ '$3' = '$4' ] && [ '$5' -ge 1 ] && [ '$1' -gt '$4' ]"
ktap_check "every page taken was given back, in interrupt context" \
	sh -c ". ./rmm_lib.sh; [ '${6:-x}' = '$1' ] && [ \$(buddy_stat invalid_frees) = 0 ]"
refill_ok() {
	[ "$(zone_stat reserve_pages)" = "$4" ] || { echo "reserve_pages $(zone_stat reserve_pages), round took $4"; return 1; }
	ctl_ok "page-alloc 0 1" "page-free 0 1" || return 1
	[ "$(zone_stat free)" -ge "$(zone_stat high)" ] || { echo "free $(zone_stat free) below high $(zone_stat high)"; return 1; }
}
ktap_check "rmm_stats counted the reserve pages; process context refills the pool" refill_ok "$@"
ktap_check "unload" rmm_unload
ktap_finished
