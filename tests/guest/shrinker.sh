#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The memory shrinker: empty slabs and free chunks rmm keeps go back to the
# kernel when the kernel asks (here through drop_caches, which runs every
# shrinker as reclaim does), and rmm keeps working afterwards.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 7

rmm_stat() {
	awk -v k="$1" '$1 == "rmm" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' /proc/rmm_stats
}

ktap_check "load" rmm_load demo=0
ktap_check "allocate 40 MiB of objects and free them without shrinking" \
	ctl_ok "create big 2000" "alloc big 20000" "free big all"
chunks=$(buddy_stat chunks)
reclaimable=$(rmm_stat reclaimable)
free_before=$(mem_free_kb)
ktap_print "before drop_caches: chunks=$chunks reclaimable=$reclaimable pages, MemFree=$free_before kB"
ktap_check "rmm holds reclaimable memory (> 1000 pages)" sh -c "[ ${reclaimable:-0} -gt 1000 ]"
echo 2 >/proc/sys/vm/drop_caches
chunks_after=$(buddy_stat chunks)
free_after=$(mem_free_kb)
ktap_print "after drop_caches: chunks=$chunks_after reclaimable=$(rmm_stat reclaimable) pages, MemFree=$free_after kB"
ktap_check "the shrinker gave chunks back to the kernel" sh -c "[ $chunks_after -lt $chunks ]"
ktap_check "the kernel's free memory grew by at least 30 MiB" sh -c "[ $((free_after - free_before)) -gt 30720 ]"
ktap_check "rmm still works after shrinking" ctl_ok "alloc big 100" "free big all" "destroy big"
ktap_check "unload" rmm_unload
ktap_finished
