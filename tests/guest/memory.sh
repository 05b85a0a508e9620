#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# After unload the kernel's free memory is back to what it was before the
# load, within a small tolerance, even when the module held objects, blocks
# and caches at unload; and nothing of rmm is left in procfs.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 6

# A first load and unload warms up what the kernel allocates once for any
# module (sysfs entries, per-CPU chunk population), so that the measured
# cycle sees only what rmm itself takes.
rmm_load demo=0 && rmm_unload
settle
before=$(free_kb)
ktap_check "load" rmm_load
ktap_check "hold objects, blocks and caches at unload" ctl_ok "create m1 100 ctor" "create m2 5000" \
	"alloc m1 20000" "alloc m2 200" "alloc kmalloc-256 5000" "page-alloc 0 300" "page-alloc 6 3"
during=$(free_kb)
ktap_print "free memory (free_kb) before load: $before kB, while holding: $during kB"
took_memory() {
	numbers before="$before" during="$during" && [ $((before - during)) -gt 4096 ]
}
ktap_check "the module really took memory (> 4 MiB)" took_memory
ktap_check "unload" rmm_unload
# What the kernel frees late (RCU callbacks, the per-CPU allocator's
# depopulation work) has time to run before the reading.
sleep 2
settle
after=$(free_kb)
ktap_print "free memory after unload: $after kB (difference $((before - after)) kB)"
# Tolerance: 1 MiB, for the kernel's own caches (slab caches of module
# loading) that do not shrink on demand. free_kb counts the pages on the
# kernel's per-CPU lists, which MemFree leaves out: with two nodes, four
# such lists made MemFree differ by up to 3.3 MB with nothing leaked.
ktap_check "free memory restored within 1 MiB" within_kb "$before" "$after" 1024
ktap_check "nothing of rmm left in /proc" sh -c '! ls /proc | grep -q rmm'
ktap_finished
