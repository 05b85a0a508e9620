#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /proc/rmm_slabinfo and /proc/rmm_buddyinfo: exact headers, every row's
# invariants, consistency with rmm_stats, and shrink giving memory back.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 14

ktap_check "load" rmm_load demo=1
ktap_check "some load on several caches" ctl_ok "create s1 24 ctor" "create s2 700" "create s3 3000 hwcache" \
	"alloc s1 500" "alloc s2 6000" "alloc s3 20" "alloc kmalloc-32 300" "alloc kmalloc-8192 3" "page-alloc 2 5"

header_ok() {
	[ "$(sed -n 1p /proc/rmm_slabinfo)" = "slabinfo - version: 2.1" ] &&
		[ "$(sed -n 2p /proc/rmm_slabinfo)" = "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>" ]
}
ktap_check "the two header lines of /proc/slabinfo 2.1" header_ok

rows_ok() {
	slabinfo_rows_ok 14
}
ktap_check "every row: num_objs = slabs x objperslab, active <= total, pages a power of two, objsize aligned" rows_ok

row_format_ok() {
	# The kernel's format: %-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata %6lu %6lu %6lu
	tail -n +3 /proc/rmm_slabinfo | while IFS= read -r line; do
		set -- $line
		want=$(printf '%-17s %6d %6d %6d %4d %4d : tunables %4d %4d %4d : slabdata %6d %6d %6d' \
			"$1" "$2" "$3" "$4" "$5" "$6" "$9" "${10}" "${11}" "${14}" "${15}" "${16}")
		[ "$line" = "$want" ] || { echo "row '$line' is not '$want'"; return 1; }
	done
}
ktap_check "rows printed with the kernel's column widths" row_format_ok

sizes_ok() {
	for c in s1:24 s2:700 s3:3000 kmalloc-8:8 kmalloc-96:96 kmalloc-192:192 kmalloc-8192:8192; do
		n=${c%%:*}
		want=${c#*:}
		got=$(slab_field "$n" 4)
		[ -n "$got" ] && [ "$got" -ge "$want" ] || { echo "$n objsize $got < $want"; return 1; }
	done
	[ $(( $(slab_field s3 4) % 64 )) -eq 0 ] || { echo "s3 not cache-line aligned"; return 1; }
}
ktap_check "object sizes at least what was asked, hwcache aligned to 64" sizes_ok

ktap_check "every generic cache present" sh -c '. ./rmm_lib.sh; for s in 8 16 32 64 96 128 192 256 512 1024 2048 4096 8192; do has_cache kmalloc-$s || { echo "no kmalloc-$s"; exit 1; }; done'
ktap_check "the demo cache rmm_student is listed" has_cache rmm_student

stats_match() {
	for c in s1 s2 s3 kmalloc-32; do
		total=$(cache_stat $c total)
		[ "$total" = "$(slab_field $c 3)" ] || { echo "$c total $total != slabinfo $(slab_field $c 3)"; return 1; }
		act=$(( $(cache_stat $c active) + $(cache_stat $c cached) + $(cache_stat $c alien) ))
		[ "$act" = "$(slab_field $c 2)" ] || { echo "$c active+cached+alien $act != slabinfo $(slab_field $c 2)"; return 1; }
	done
}
ktap_check "slabinfo agrees with rmm_stats (active_objs = active + cached + alien)" stats_match

buddyinfo_ok() {
	# One line per node with memory (the nodes of the kernel's own
	# /proc/buddyinfo), in node order; the counts of all lines together
	# are the stats' free blocks.
	want_nodes=$(awk '{ print $2 }' /proc/buddyinfo | uniq | tr -d , | tr '\n' ' ')
	got_nodes=$(awk '{ print $2 }' /proc/rmm_buddyinfo | tr -d , | tr '\n' ' ')
	[ "$got_nodes" = "$want_nodes" ] || { echo "nodes '$got_nodes', the kernel's '$want_nodes'"; return 1; }
	while read -r line; do
		case "$line" in "Node "[0-9]*", zone      rmm "*) ;; *) echo "bad prefix: '$line'"; return 1 ;; esac
		[ "$(echo "$line" | wc -w)" -eq 15 ] || { echo "expected 11 counts: '$line'"; return 1; }
	done < /proc/rmm_buddyinfo
	# shellcheck disable=SC2046 # the free blocks of each order, all nodes
	set -- $(awk '{ for (i = 5; i <= NF; i++) n[i] += $i } END { for (i = 5; i <= 15; i++) print n[i] + 0 }' /proc/rmm_buddyinfo)
	sum=0
	o=0
	for n in "$@"; do
		sum=$((sum + n * (1 << o)))
		want=$(awk -v o=$o '$1 == "buddy" && $2 == "order=" o { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "free_blocks") print kv[2] } }' /proc/rmm_stats)
		[ "$n" = "$want" ] || { echo "order $o: buddyinfo $n, stats $want"; return 1; }
		o=$((o + 1))
	done
	[ "$sum" = "$(buddy_stat pages_free)" ] || { echo "buddyinfo pages $sum != pages_free $(buddy_stat pages_free)"; return 1; }
	[ $(( $(buddy_stat pages_free) + $(buddy_stat pages_pcp) + $(buddy_stat pages_allocated) )) = "$(buddy_stat pages_total)" ] ||
		{ echo "free + pcp + allocated != total"; return 1; }
}
ktap_check "buddyinfo format, and consistent with the stats" buddyinfo_ok

ctor_ok() {
	[ "$(cache_stat s1 ctor_calls)" = "$(cache_stat s1 total)" ] ||
		{ echo "ctor_calls $(cache_stat s1 ctor_calls) != objects created $(cache_stat s1 total)"; return 1; }
	[ "$(cache_stat s2 ctor_calls)" = 0 ]
}
ktap_check "constructor calls equal objects created" ctor_ok

chunks_before=$(buddy_stat chunks)
ctl_ok "free s1 all" "free s2 all" "free s3 all" "free kmalloc-32 all" "free kmalloc-8192 all" "page-free 2 all" >/dev/null
slabs_before=$(slab_field s1 15)
ktap_check "shrink every cache" ctl_ok "shrink s1" "shrink s2" "shrink s3" "shrink kmalloc-32" "shrink kmalloc-8192"
shrink_ok() {
	for c in s1 s2 s3; do
		[ "$(slab_field $c 15)" = 0 ] || { echo "$c still has $(slab_field $c 15) slabs"; return 1; }
	done
	[ "$(cache_stat s1 reaped)" -ge "$slabs_before" ] || { echo "s1 reaped $(cache_stat s1 reaped) < $slabs_before"; return 1; }
	[ "$(buddy_stat chunks)" -lt "$chunks_before" ] || { echo "chunks $chunks_before -> $(buddy_stat chunks)"; return 1; }
}
ktap_check "shrink gave slabs back (reaped counted) and chunks back to the kernel" shrink_ok
ktap_check "unload" rmm_unload

ktap_finished
