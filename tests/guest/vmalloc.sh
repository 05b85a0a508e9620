#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# vmalloc over rmm's own pages: `vmalloc NAME SIZE` maps order-0 pages of
# rmm's page allocator into one virtually contiguous range with the
# kernel's vmap, `vfree NAME` unmaps and frees them. Checks
# /proc/rmm_vmallocinfo against the kernel's own /proc/vmallocinfo, shows
# from the pages' own frame numbers (/proc/rmm_frames) that an area's
# virtual addresses are contiguous while its frames are not, next to a
# page-alloc block whose frames are; a 64 MiB area; every error; failures
# (of the pages, of the mapping) that leave nothing held or mapped; and
# areas freed at unload.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 22

# Real addresses for root in the %pK views (rmm's and the kernel's).
echo 1 > /proc/sys/kernel/kptr_restrict

# kernel_rmm_maps: rmm's areas in the kernel's own /proc/vmallocinfo
# (vmap areas whose caller is in the rmm module).
kernel_rmm_maps() {
	grep -c '\[rmm\] vmap$' /proc/vmallocinfo
}

vmap_lines_before=$(grep -c ' vmap$' /proc/vmallocinfo)
ktap_check "load" rmm_load demo=0

modes_ok() {
	for f in rmm_vmallocinfo:400 rmm_frames:400 rmm_zoneinfo:444; do
		mode=$(stat -c %a "/proc/${f%:*}")
		[ "$mode" = "${f#*:}" ] || { echo "/proc/${f%:*} has mode $mode"; return 1; }
	done
	as_nobody cat /proc/rmm_vmallocinfo >/dev/null 2>&1 && { echo "nobody read rmm_vmallocinfo"; return 1; }
	as_nobody cat /proc/rmm_zoneinfo | grep -q '^Node 0, zone      rmm$' || { echo "nobody cannot read rmm_zoneinfo"; return 1; }
}
ktap_check "rmm_vmallocinfo and rmm_frames 0400, rmm_zoneinfo 0444" modes_ok
ktap_check "no areas: rmm_vmallocinfo is empty" sh -c '[ ! -s /proc/rmm_vmallocinfo ] && [ "$(wc -c < /proc/rmm_vmallocinfo)" = 0 ]'

ktap_check "vmalloc demo 256K and page-alloc 6 1" ctl_ok "vmalloc demo 256K" "page-alloc 6 1"

# info_ok NAME PAGES: NAME's line of rmm_vmallocinfo is the kernel's
# format, its size PAGES + 1 (guard) pages, its range that size, and the
# kernel's /proc/vmallocinfo has a vmap area with the same range and size.
info_ok() {
	line=$(grep " $1 pages=" /proc/rmm_vmallocinfo)
	echo "$line" | grep -qE "^0x[0-9a-f]{16}-0x[0-9a-f]{16} +[0-9]+ $1 pages=$2 vmalloc$" ||
		{ echo "bad line: '$line'"; return 1; }
	size=$(echo "$line" | awk '{ print $2 }')
	[ "$size" = $((($2 + 1) * 4096)) ] || { echo "size $size for $2 pages"; return 1; }
	range=${line%% *}
	start=${range%-*}
	end=${range#*-}
	[ $((end - start)) = "$size" ] || { echo "range $range is not $size bytes"; return 1; }
	kernel=$(grep "^$range " /proc/vmallocinfo)
	echo "$kernel" | grep -qE "^$range +$size .*\[rmm\] vmap$" ||
		{ echo "kernel's vmallocinfo: '$kernel'"; return 1; }
}
ktap_check "rmm_vmallocinfo: the area in the kernel's format, and in the kernel's own vmallocinfo" info_ok demo 64
ktap_print "/proc/rmm_vmallocinfo: $(cat /proc/rmm_vmallocinfo)"
ktap_print "/proc/vmallocinfo:     $(grep "^$(awk '{ print $1 }' /proc/rmm_vmallocinfo) " /proc/vmallocinfo)"

# frames_of NAME: NAME's lines of rmm_frames.
frames_of() {
	grep "^vmalloc $1 " /proc/rmm_frames
}

area_frames_ok() {
	frames_of demo | awk '
		NR > 1 && $4 - prev != 4096 { print "page " $3 ": address not consecutive"; bad = 1 }
		$5 != $6 { print "page " $3 ": rmm page frame " $5 ", mapped frame " $6; bad = 1 }
		NR > 1 && $5 != last + 1 { breaks++ }
		{ prev = $4; last = $5; n++ }
		END {
			if (n != 64) { print n " pages"; bad = 1 }
			if (breaks == 0) { print "the frames are one contiguous run"; bad = 1 }
			exit bad
		}'
}
ktap_check "demo: 64 consecutive virtual pages, each mapping its own page's frame (vmalloc_to_pfn = page_to_pfn), frames not contiguous" area_frames_ok
block_frames_ok() {
	grep '^block 6 0 ' /proc/rmm_frames | awk '
		NR > 1 && ($5 - prev != 4096 || $6 != last + 1) { print "page " $4 " breaks the run"; bad = 1 }
		{ prev = $5; last = $6; n++ }
		END { if (n != 64) { print n " pages"; bad = 1 }; exit bad }'
}
ktap_check "page-alloc 6 1: 64 pages whose frames are one contiguous run" block_frames_ok
ktap_print "vmalloc demo, page, virtual address, frame, mapped frame:"
frames_of demo | head -n 20 | sed 's/^/#   /'
ktap_print "   ..."
ktap_print "page-alloc block of order 6, page, virtual address, frame:"
grep '^block 6 0 ' /proc/rmm_frames | head -n 4 | sed 's/^/#   /'
ktap_print "   ..."
runs=$(frames_of demo | awk 'NR == 1 || $5 != last + 1 { r++ } { last = $5 } END { print r }')
ktap_print "demo's 64 frames form $runs runs of ascending consecutive frames (rmm's per-CPU lists hand out the most recently filled page first); the block's form 1"

allocated_before=$(buddy_stat pages_allocated)
ktap_check "vmalloc big 64M" ctl_ok "vmalloc big 64M"
ktap_check "big: 16384 pages in rmm_vmallocinfo and the kernel's vmallocinfo" info_ok big 16384
big_frames_ok() {
	frames_of big | awk '
		NR > 1 && $4 - prev != 4096 { bad = 1 }
		$5 != $6 { bad = 1 }
		{ prev = $4; n++ }
		END { if (n != 16384) print n " pages"; exit bad || n != 16384 }'
}
ktap_check "big: 16384 consecutive virtual pages, each mapping its own frame" big_frames_ok
big_books_ok() {
	[ "$(line_stat vmalloc areas)" = 2 ] && [ "$(line_stat vmalloc pages)" = $((64 + 16384)) ] ||
		{ echo "vmalloc line: $(grep '^vmalloc ' /proc/rmm_stats)"; return 1; }
	[ "$(buddy_stat pages_allocated)" = $((allocated_before + 16384)) ] ||
		{ echo "pages_allocated $allocated_before -> $(buddy_stat pages_allocated)"; return 1; }
	[ "$(kernel_rmm_maps)" = 2 ] || { echo "$(kernel_rmm_maps) rmm areas in /proc/vmallocinfo"; return 1; }
}
ktap_check "the area's pages are rmm's (pages_allocated +16384) and counted in rmm_stats" big_books_ok

errors_ok() {
	ctl_err "File exists" "vmalloc demo 4K" || return 1
	ctl_err "No such file or directory" "vfree nope" || return 1
	for line in "vmalloc x 0" "vmalloc x 2G" "vmalloc x 12Q" "vmalloc bad/name 4K" "vmalloc x" "vfree" "vfree a b"; do
		ctl_err "Invalid argument" "$line" || return 1
	done
	dmesg | grep -q 'rmm_ctl: vmalloc demo: an area of that name exists (-EEXIST)' || { echo "no EEXIST line"; return 1; }
	dmesg | grep -q 'rmm_ctl: vfree nope: no such area (-ENOENT)' || { echo "no ENOENT line"; return 1; }
}
ktap_check "EEXIST, ENOENT, EINVAL, each with its log line" errors_ok
too_many_ok() {
	i=2
	while [ $i -lt 64 ]; do
		ctl_ok "vmalloc many$i 1" || return 1
		i=$((i + 1))
	done
	ctl_err "No space left on device" "vmalloc one-more 1" || return 1
	i=2
	while [ $i -lt 64 ]; do
		ctl_ok "vfree many$i" || return 1
		i=$((i + 1))
	done
}
ktap_check "at most 64 areas (ENOSPC), and they all go again" too_many_ok

# books: what a failed vmalloc must leave as it was.
books() {
	echo "$(line_stat vmalloc areas) $(line_stat vmalloc pages) $(buddy_stat pages_allocated) $(kernel_rmm_maps) $(wc -l < /proc/rmm_vmallocinfo)"
}
before=$(books)
failures=$(line_stat vmalloc failures)
pages_fail_ok() {
	fresh_log_window
	ctl_ok "fail 7" || return 1
	rmm_ctl "vmalloc f 64K" && { echo "vmalloc under fail 7 succeeded"; return 1; }
	ctl_ok "fail 0" || return 1
	dmesg | grep -q 'rmm_ctl: vmalloc f: out of memory after 6 of 16 pages, all given back (-ENOMEM)' ||
		{ echo "no ENOMEM line"; return 1; }
	[ "$(books)" = "$before" ] || { echo "books $before -> $(books)"; return 1; }
}
ktap_check "page 7 of 16 refused: ENOMEM, nothing held or mapped" pages_fail_ok
map_fail_ok() {
	# 4 pages are requests 1 to 4 (the pool has room: no refill), the
	# mapping is request 5.
	fresh_log_window
	ctl_ok "fail 5" || return 1
	rmm_ctl "vmalloc m 16K" && { echo "vmalloc under fail 5 succeeded"; return 1; }
	ctl_ok "fail 0" || return 1
	dmesg | grep -q 'rmm_ctl: vmalloc m: mapping the pages failed, all given back (-ENOMEM)' ||
		{ echo "no mapping failure line"; return 1; }
	[ "$(books)" = "$before" ] || { echo "books $before -> $(books)"; return 1; }
	[ "$(line_stat vmalloc failures)" = $((failures + 2)) ] || { echo "failures not counted"; return 1; }
}
ktap_check "the mapping refused: ENOMEM, the pages given back, nothing mapped" map_fail_ok

vfree_ok() {
	ctl_ok "vfree big" || return 1
	[ "$(buddy_stat pages_allocated)" = "$allocated_before" ] ||
		{ echo "pages_allocated $(buddy_stat pages_allocated), was $allocated_before"; return 1; }
	[ "$(kernel_rmm_maps)" = 1 ] && [ "$(wc -l < /proc/rmm_vmallocinfo)" = 1 ] ||
		{ echo "still mapped: $(kernel_rmm_maps)"; return 1; }
	[ "$(frames_of big | wc -l)" = 0 ] || { echo "big still in rmm_frames"; return 1; }
	dmesg | grep -q 'rmm_ctl: vfree big: 16384 pages unmapped and freed' || { echo "no vfree line"; return 1; }
}
ktap_check "vfree big: unmapped, its 16384 pages back in rmm's allocator" vfree_ok
ktap_check "shrink gives the 16 chunks back" sh -c '. ./rmm_lib.sh; ctl_ok "shrink kmalloc-8" && [ "$(buddy_stat chunks)" -le 2 ]'

ktap_check "more areas to leave at unload" ctl_ok "vmalloc left1 1M" "vmalloc left2 12345"
dmesg -c >/dev/null
ktap_check "unload with 3 areas mapped" rmm_unload
ktap_check "unload unmapped and freed them" sh -c "dmesg | grep -q 'rmm: unloaded: freed 0 objects and 1 page blocks, unmapped 3 vmalloc areas, destroyed 13 caches'"
ktap_check "the kernel's vmallocinfo has as many vmap areas as before load" \
	sh -c "[ \$(grep -c ' vmap\$' /proc/vmallocinfo) = $vmap_lines_before ]"
ktap_check "no rmm line in dmesg reports a problem" sh -c "! dmesg | grep rmm | grep -iE 'leak|invalid|disagree|still allocated|no such mapping'"
ktap_finished
