#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Running out of memory: objects of a 4000-byte cache, then order-10
# blocks, are allocated through the control file until the kernel refuses
# (-ENOMEM, "Cannot allocate memory"). rmm asks the kernel for whole
# order-10 chunks, which never wake the OOM killer, so the kernel stays
# healthy: this script (the guest's init) keeps running. Afterwards
# everything is freed, the shrinker (drop_caches) gives every chunk back,
# and after unload the free memory is back to where it started.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 6

# alloc_until_enomem LINE: repeats the control LINE until it fails with
# ENOMEM (at most 1000 times); any other error is a failure.
alloc_until_enomem() {
	n=0
	while [ $n -lt 1000 ]; do
		if ! rmm_ctl "$1"; then
			case "$RMM_CTL_ERR" in
			*"Cannot allocate memory"*) return 0 ;;
			*) echo "'$1' failed with '$RMM_CTL_ERR'"; return 1 ;;
			esac
		fi
		n=$((n + 1))
	done
	echo "'$1' never ran out of memory"
	return 1
}

# out_of_memory: fills rmm until the kernel refuses, objects first, then
# blocks; prints what went wrong.
out_of_memory() {
	ctl_ok "create big 4000" &&
		alloc_until_enomem "alloc big 4096" &&
		alloc_until_enomem "page-alloc 10 4"
}

# mem_kb: MemFree; under KASAN plus the kernel's slab memory, where freed
# objects wait in a quarantine (up to 1/32 of the memory) that shrinks only
# as the kernel allocates again. rmm's own bookkeeping comes from kmalloc and
# is watched there by kmemleak instead.
if grep -q ' kasan_quarantine_reduce$' /proc/kallsyms; then
	mem_kb() { awk '$1 == "MemFree:" || $1 == "Slab:" { kb += $2 } END { print kb }' /proc/meminfo; }
	mem_name="MemFree + Slab (KASAN)"
else
	mem_kb() { mem_free_kb; }
	mem_name=MemFree
fi

# A first round, unmeasured, brings the kernel's own caches (and, under
# KASAN, its quarantine of freed objects) to where memory pressure leaves
# them, so that the measured round sees only what rmm itself keeps.
rmm_load demo=0 && out_of_memory >/dev/null && rmm_unload
sync
echo 3 >/proc/sys/vm/drop_caches
before=$(mem_kb)
ktap_check "load" rmm_load demo=0
ktap_result "objects, then order-10 blocks, until ENOMEM" out_of_memory
ktap_print "$mem_name before load: $before kB, out of memory: $(mem_kb) kB, holding $(slab_field big 2) objects and $(buddy_stat chunks) chunks"
ktap_check "free everything" ctl_ok "free big all" "page-free 10 all" "destroy big"
echo 3 >/proc/sys/vm/drop_caches
ktap_print "$mem_name after freeing and drop_caches: $(mem_kb) kB"
# The chunks' bookkeeping stays until unload (it is reused for the next
# chunks), so here only the chunks are checked.
chunks_back() {
	chunks=$(buddy_stat chunks)
	numbers chunks="$chunks" && [ "$chunks" = 0 ]
}
ktap_check "the shrinker gave every chunk back" chunks_back
ktap_check "unload" rmm_unload
echo 3 >/proc/sys/vm/drop_caches
after=$(mem_kb)
ktap_print "$mem_name after unload: $after kB (difference $((before - after)) kB)"
ktap_check "free memory recovered within 4 MiB" within_kb "$before" "$after" 4096
ktap_finished
