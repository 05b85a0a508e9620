#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Fault injection through the control file: with `fail N` every N-th page
# request fails (a cache's request for a new slab, a chunk from the kernel,
# a page-alloc block). At N = 1, 2, 3 and 7: allocations fail with ENOMEM
# keeping what they got, the failures are counted in rmm_stats, constructors
# ran only for the slabs that were built, and the books balance. After
# `fail 0` everything works again, everything frees, shrink gives every
# chunk back, and after unload the kernel's free memory is back.
# With `fail 1 refill` only the pool's refills fail: allocations go on down
# to the min watermark, then fail with ENOMEM, and nothing is lost; vmalloc
# failing part-way (its pages or its mapping) keeps nothing either.
#
# One memory node: with two, a slab whose pages were refused on one node
# is built on the other (the slab caches' fallback, a page request of its
# own), so at N = 2 every refused request is followed by one that succeeds
# and allocations never fail. tests/guest/numa.sh tests that fallback.
# vm-run: nodes 1
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

RATES="1 2 3 7"
ktap_plan $((3 + 5 * 4 + 5 + 7))

# buddy_failures: failed page allocations, all orders.
buddy_failures() {
	awk '$1 == "buddy" && $2 ~ /^order=/ {
			for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "failures") n += kv[2] } }
		END { print n + 0 }' /proc/rmm_stats
}

# Caches with the pattern constructor: small on-slab objects, debug with
# off-slab descriptors, multi-page slabs; and one without.
CTOR_CACHES="fi_small fi_debug fi_pages"
ALL_CACHES="$CTOR_CACHES fi_plain"

# ctor_ok: every constructor cache constructed exactly the objects of the
# slabs it built (grown x objperslab), and the plain cache none.
ctor_ok() {
	for c in $CTOR_CACHES; do
		calls=$(cache_stat "$c" ctor_calls)
		want=$(( $(cache_stat "$c" grown) * $(slab_field "$c" 5) ))
		[ "$calls" = "$want" ] || { echo "$c: ctor_calls $calls != grown x objperslab $want"; return 1; }
	done
	[ "$(cache_stat fi_plain ctor_calls)" = 0 ] || { echo "fi_plain ran a constructor"; return 1; }
}

# books_ok: no half-built slab and no lost page: every cache's slabs are
# grown - reaped, its objects held are its active ones, and the pages the
# page allocator handed out are exactly the caches' slabs and the held
# blocks (nothing else allocates here).
books_ok() {
	slab_pages=0
	for c in $(awk 'NR > 2 { print $1 }' /proc/rmm_slabinfo); do
		slabs=$(slab_field "$c" 15)
		[ "$slabs" = $(( $(cache_stat "$c" grown) - $(cache_stat "$c" reaped) )) ] ||
			{ echo "$c: $slabs slabs, grown $(cache_stat "$c" grown) reaped $(cache_stat "$c" reaped)"; return 1; }
		[ "$(cache_stat "$c" held)" = "$(cache_stat "$c" active)" ] ||
			{ echo "$c: held $(cache_stat "$c" held) != active $(cache_stat "$c" active)"; return 1; }
		slab_pages=$((slab_pages + slabs * $(slab_field "$c" 6)))
	done
	# (busybox awk has no ^ without its math library)
	block_pages=$(awk '$1 == "buddy" && $2 ~ /^order=/ {
			split($2, o, "="); pages = 1; for (i = 0; i < o[2]; i++) pages *= 2
			for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "held") n += kv[2] * pages } }
		END { print n + 0 }' /proc/rmm_stats)
	[ "$(buddy_stat pages_allocated)" = $((slab_pages + block_pages)) ] ||
		{ echo "pages_allocated $(buddy_stat pages_allocated) != slabs $slab_pages + blocks $block_pages"; return 1; }
}

# Warm up what the kernel allocates once for any module, as memory.sh does.
rmm_load demo=0 && rmm_unload
settle
mem_before=$(mem_free_kb)

ktap_check "load" rmm_load demo=0
ktap_check "create caches" ctl_ok "create fi_small 64 ctor" "create fi_debug 1500 ctor debug" \
	"create fi_pages 9000 ctor" "create fi_plain 200"
# One chunk in the allocator from the start, so that at N = 2 not every
# slab needs a chunk request too (which would fail every other time).
ktap_check "a chunk to start with" ctl_ok "page-alloc 0 1" "page-free 0 1"

for n in $RATES; do
	ctl_ok "fail $n" >/dev/null
	requests0=$(rmm_stat fail_requests)
	injected0=$(rmm_stat fail_injected)
	failures0=$(buddy_failures)
	all_enomem() {
		for line in "alloc fi_small 4000" "alloc fi_debug 400" "alloc fi_pages 200" \
			"alloc fi_plain 3000" "page-alloc 2 200"; do
			ctl_enomem "$line" || return 1
		done
	}
	ktap_check "fail $n: alloc and page-alloc fail with ENOMEM" all_enomem
	every=$(rmm_stat fail_every)
	requests=$(( $(rmm_stat fail_requests) - requests0 ))
	injected=$(( $(rmm_stat fail_injected) - injected0 ))
	failures=$(( $(buddy_failures) - failures0 ))
	ktap_print "fail $n: $requests page requests, $injected failed on purpose, $failures page allocations failed"
	counted() {
		[ "$every" = "$n" ] || { echo "fail_every $every"; return 1; }
		[ "$injected" = $((requests / n)) ] || { echo "$injected injected of $requests requests at 1 in $n"; return 1; }
		# Each of the 5 commands stopped at a failed page allocation, and
		# only injected failures happen here.
		[ "$failures" -ge 5 ] && [ "$failures" -le "$injected" ] ||
			{ echo "$failures page allocations failed, $injected injected"; return 1; }
	}
	ktap_check "fail $n: injected failures counted in rmm_stats" counted
	kept_ok() {
		if [ "$n" = 1 ]; then
			for c in $ALL_CACHES; do
				[ "$(cache_stat "$c" held)" = 0 ] && [ "$(cache_stat "$c" grown)" = 0 ] ||
					{ echo "$c: held $(cache_stat "$c" held), grown $(cache_stat "$c" grown) at fail 1"; return 1; }
			done
		else
			[ "$(cache_stat fi_small held)" -gt 0 ] || { echo "fi_small kept nothing at fail $n"; return 1; }
		fi
	}
	ktap_check "fail $n: what was allocated before the failure is kept (nothing at fail 1)" kept_ok
	ktap_check "fail $n: constructors ran only for slabs built" ctor_ok
	ktap_check "fail $n: no half-built slab, no lost page" books_ok
	ctl_ok "fail 0" "free fi_small all" "free fi_debug all" "free fi_pages all" "free fi_plain all" \
		"page-free 2 all" >/dev/null
done

# zone_stat KEY: KEY on the "zone" line of rmm_stats.
zone_stat() {
	awk -v k="$1" '$1 == "zone" { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' /proc/rmm_stats
}
chunks0=$(buddy_stat chunks)
refill_failures0=$(zone_stat refill_failures)
injected0=$(rmm_stat fail_injected)
refill_fail_ok() {
	ctl_ok "fail 1 refill" || return 1
	ctl_enomem "page-alloc 0 1000000" || return 1
	ctl_enomem "alloc fi_small 100000" || return 1
	ctl_enomem "page-alloc 5 1" || return 1
	[ "$(rmm_stat fail_refill)" = 1 ] || { echo "fail_refill $(rmm_stat fail_refill)"; return 1; }
	[ "$(buddy_stat chunks)" = "$chunks0" ] || { echo "chunks $chunks0 -> $(buddy_stat chunks)"; return 1; }
	failed=$(( $(zone_stat refill_failures) - refill_failures0 ))
	injected=$(( $(rmm_stat fail_injected) - injected0 ))
	[ "$failed" -ge 3 ] && [ "$failed" = "$injected" ] ||
		{ echo "$failed refills failed, $injected injected"; return 1; }
	[ "$(buddy_stat pages_free)" -le "$(zone_stat min)" ] || { echo "free $(buddy_stat pages_free) above min"; return 1; }
}
ktap_check "fail 1 refill: every refill fails, allocations run the pool down to min, then ENOMEM" refill_fail_ok
ktap_print "fail 1 refill: $(( $(zone_stat refill_failures) - refill_failures0 )) refills refused; the pool of $(buddy_stat pages_total) pages ran down to $(buddy_stat pages_free) free pages (min $(zone_stat min))"
ktap_check "fail 1 refill: no half-built slab, no lost page" books_ok
ktap_check "fail 1 refill: what was allocated frees" ctl_ok "fail 0" "free fi_small all" "page-free 0 all" "page-free 5 all"
vmalloc_fail_ok() {
	for n in 2 3 17; do
		ctl_ok "fail $n" || return 1
		ctl_enomem "vmalloc fv 64K" || return 1
	done
	ctl_ok "fail 0" || return 1
	[ "$(awk '$1 == "vmalloc" { print $2 }' /proc/rmm_stats)" = areas=0 ] || { echo "$(grep '^vmalloc ' /proc/rmm_stats)"; return 1; }
	[ "$(grep -c '\[rmm\] vmap$' /proc/vmallocinfo)" = 0 ] && [ ! -s /proc/rmm_vmallocinfo ] || { echo "something is mapped"; return 1; }
	books_ok
}
ktap_check "vmalloc failing at page 2, 3 or at the mapping (17): ENOMEM, no page held, nothing mapped" vmalloc_fail_ok
vmalloc_again_ok() {
	ctl_ok "vmalloc fv 64K" || return 1
	[ "$(grep -c '\[rmm\] vmap$' /proc/vmallocinfo)" = 1 ] || { echo "not mapped"; return 1; }
	ctl_ok "vfree fv" && books_ok
}
ktap_check "after fail 0 vmalloc works and frees" vmalloc_again_ok

injected_total=$(rmm_stat fail_injected)
ktap_check "after fail 0 allocations work" ctl_ok "fail 0" "alloc fi_small 4000" "alloc fi_debug 400" \
	"alloc fi_pages 200" "alloc fi_plain 3000" "page-alloc 2 200" "page-alloc 10 2"
injection_off() {
	[ "$(rmm_stat fail_every)" = 0 ] || { echo "fail_every $(rmm_stat fail_every)"; return 1; }
	[ "$(rmm_stat fail_injected)" = "$injected_total" ] || { echo "failures injected after fail 0"; return 1; }
}
ktap_check "... and nothing more is injected" injection_off
ktap_check "constructors still match the slabs built" ctor_ok
ktap_check "free everything" ctl_ok "free fi_small all" "free fi_debug all" "free fi_pages all" \
	"free fi_plain all" "page-free 2 all" "page-free 10 all"
shrunk() {
	ctl_ok "shrink fi_small" "shrink fi_debug" "shrink fi_pages" "shrink fi_plain" || return 1
	for c in $ALL_CACHES; do
		[ "$(slab_field "$c" 15)" = 0 ] || { echo "$c keeps $(slab_field "$c" 15) slabs"; return 1; }
	done
	[ "$(buddy_stat chunks)" = 0 ] && [ "$(buddy_stat pages_allocated)" = 0 ] ||
		{ echo "after shrink: chunks $(buddy_stat chunks), pages_allocated $(buddy_stat pages_allocated)"; return 1; }
}
ktap_check "shrink gives every slab and every chunk back" shrunk
ktap_check "unload" rmm_unload
settle
mem_after=$(mem_free_kb)
ktap_print "MemFree before load: $mem_before kB, after unload: $mem_after kB"
ktap_check "free memory restored within 1 MiB" within_kb "$mem_before" "$mem_after" 1024

ktap_finished
