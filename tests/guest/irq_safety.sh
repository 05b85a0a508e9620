#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Interrupt safety: GFP_ATOMIC allocations and frees in hard interrupt
# context on every CPU at once (irqtest=N), through kmalloc and the page
# allocator. On the debug kernel, lockdep then checks that no rmm lock is
# ever taken with interrupts enabled (vm-run fails the run on any report).
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 5

dmesg -c >/dev/null
ktap_check "load with irqtest=500" rmm_load demo=0 irqtest=500
line=$(dmesg | grep "rmm: irq test:")
ktap_print "$line"
cpus=$(grep -c '^processor' /proc/cpuinfo)
ktap_check "the test ran in interrupt context on every CPU" \
	sh -c "echo '$line' | grep -q 'on $cpus CPUs'"
ktap_check "every allocation succeeded (1000 pairs per CPU)" \
	sh -c "echo '$line' | grep -q ': $((1000 * cpus)) allocation and free pairs .* 0 failed'"
ktap_check "the caches were used and are empty again" \
	sh -c '. ./rmm_lib.sh; [ "$(cache_stat kmalloc-8 allocs)" -ge 50 ] && [ "$(cache_stat kmalloc-8 active)" = 0 ]'
ktap_check "unload" rmm_unload
ktap_finished
