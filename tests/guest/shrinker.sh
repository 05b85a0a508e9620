#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The memory shrinker: empty slabs and free chunks rmm keeps go back to the
# kernel when the kernel asks (here through drop_caches, which runs every
# shrinker as reclaim does), and rmm keeps working afterwards.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 11

ktap_check "load" rmm_load demo=0
ktap_check "allocate 40 MiB of objects and free them without shrinking" \
	ctl_ok "create big 2000" "alloc big 20000" "free big all"
chunks=$(buddy_stat chunks)
reclaimable=$(rmm_stat reclaimable)
free_before=$(mem_free_kb)
ktap_print "before drop_caches: chunks=$chunks reclaimable=$reclaimable pages, MemFree=$free_before kB"
holds_reclaimable() {
	numbers reclaimable="$reclaimable" && [ "$reclaimable" -gt 1000 ]
}
ktap_check "rmm holds reclaimable memory (> 1000 pages)" holds_reclaimable
echo 2 >/proc/sys/vm/drop_caches
chunks_after=$(buddy_stat chunks)
free_after=$(mem_free_kb)
ktap_print "after drop_caches: chunks=$chunks_after reclaimable=$(rmm_stat reclaimable) pages, MemFree=$free_after kB"
chunks_back() {
	numbers chunks="$chunks" chunks_after="$chunks_after" && [ "$chunks_after" -lt "$chunks" ]
}
ktap_check "the shrinker gave chunks back to the kernel" chunks_back
memory_back() {
	numbers free_before="$free_before" free_after="$free_after" && [ $((free_after - free_before)) -gt 30720 ]
}
ktap_check "the kernel's free memory grew by at least 30 MiB" memory_back
ktap_check "rmm still works after shrinking" ctl_ok "alloc big 100" "free big all"

# Real pressure: fill a tmpfs file 8 MiB beyond the free memory. Nothing
# but rmm's cached slabs and chunks can be reclaimed (no swap, tmpfs pages
# are not), so the file only fits if rmm's shrinker gives them back.
ktap_check "hold 40 MiB of cached slabs again" ctl_ok "alloc big 20000" "free big all"
chunks=$(buddy_stat chunks)
mount -o remount,size=95% /tmp
want=$(( ($(mem_free_kb) + 8192) / 1024 ))
got=$(dd if=/dev/zero of=/tmp/pressure bs=1M count=$want 2>&1 | sed -n 's/^\([0-9]*\)+0 records out/\1/p')
ktap_print "filled $got of $want MiB with rmm holding $chunks chunks; rmm now holds $(buddy_stat chunks)"
ktap_check "under memory pressure the file fitted (no OOM kill)" sh -c "[ '$got' = '$want' ]"
chunks_back_under_pressure() {
	now=$(buddy_stat chunks)
	numbers chunks="$chunks" now="$now" && [ "$now" -lt "$chunks" ]
}
ktap_check "the shrinker gave rmm's chunks back under pressure" chunks_back_under_pressure
rm -f /tmp/pressure
ktap_check "destroy the cache" ctl_ok "destroy big"
ktap_check "unload" rmm_unload
ktap_finished
