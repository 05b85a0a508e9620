#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Invalid frees are detected in the default mode: `invalid-free` frees an
# interior pointer, a page-allocator block and an object of another cache
# into caches without debugging (on-slab, off-slab, with a constructor,
# generic), and a double free into a debug cache; each is refused with the
# cache's error line, counted in `errors`, and leaves the held objects, the
# constructed pattern and the cache working; a double free into a cache
# without debugging is refused by the command itself. Then everything frees
# and rmm unloads clean (vm-run fails the run on any KASAN, lockdep or
# kmemleak report in the log).
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 30

# reason KIND: what the cache says when it refuses that kind of free.
reason() {
	case $1 in
	interior) echo "not the start of an object" ;;
	foreign | wrong-cache) echo "not an object of this cache" ;;
	double) echo "double free" ;;
	esac
}

# invalid_free CACHE KIND: the command succeeds; the log has exactly one
# error line of the cache with the kind's reason, and the command's info
# line; the cache's errors grew by one; its held and active objects did not
# change.
invalid_free() {
	c=$1
	k=$2
	why=$(reason "$k")
	errors=$(cache_stat "$c" errors)
	held=$(cache_stat "$c" held)
	active=$(cache_stat "$c" active)
	dmesg -c >/dev/null
	ctl_ok "invalid-free $c $k" || return 1
	log=$(dmesg)
	n=$(echo "$log" | grep -c "rmm slab $c: free of 0x[0-9a-f]*: $why\$")
	if [ "$n" != 1 ]; then
		echo "expected one line 'rmm slab $c: free of ...: $why', found $n in:"
		echo "$log"
		return 1
	fi
	if ! echo "$log" | grep -q "rmm_ctl: invalid-free $c $k: detected: $why\$"; then
		echo "no info line for $c $k in:"
		echo "$log"
		return 1
	fi
	now=$(cache_stat "$c" errors)
	[ "$now" = $((errors + 1)) ] || { echo "errors=$now, expected $((errors + 1))"; return 1; }
	[ "$(cache_stat "$c" held)" = "$held" ] || { echo "held changed from $held"; return 1; }
	[ "$(cache_stat "$c" active)" = "$active" ] || { echo "active changed from $active"; return 1; }
}

# double_needs_debug CACHE: `double` on a cache without debugging fails with
# EINVAL, says why, and counts nothing.
double_needs_debug() {
	errors=$(cache_stat "$1" errors)
	dmesg -c >/dev/null
	ctl_err "Invalid argument" "invalid-free $1 double" || return 1
	dmesg | grep -q "rmm_ctl: invalid-free $1: double frees are detected only in debug caches" ||
		{ echo "no explanation in the log:"; dmesg; return 1; }
	! dmesg | grep -q "rmm slab $1:" || { echo "the cache saw a free"; return 1; }
	[ "$(cache_stat "$1" errors)" = "$errors" ] || { echo "errors changed"; return 1; }
}

# errors_are CACHE=N...: the caches' errors counts.
errors_are() {
	for pair in "$@"; do
		got=$(cache_stat "${pair%%=*}" errors)
		[ "$got" = "${pair#*=}" ] || { echo "${pair%%=*}: errors=$got, expected ${pair#*=}"; return 1; }
	done
}

dmesg -c >/dev/null
ktap_check "load" rmm_load demo=0
ktap_check "create caches and hold objects in them" ctl_ok \
	"create plain 40" "create big 3000" "create pat 100 ctor" "create dbg 64 debug" \
	"alloc plain 5" "alloc big 2" "alloc pat 7" "alloc dbg 3" "alloc kmalloc-64 4"

for c in plain big pat kmalloc-64; do
	for k in interior foreign wrong-cache; do
		ktap_check "$k free into $c is detected and counted" invalid_free "$c" "$k"
	done
done
ktap_check "double free into a cache without debug is refused (EINVAL)" double_needs_debug plain
for k in interior foreign wrong-cache double; do
	ktap_check "$k free into the debug cache is detected and counted" invalid_free dbg "$k"
done
ktap_check "errors count every invalid free" \
	errors_are plain=3 big=3 pat=3 kmalloc-64=3 dbg=4

dmesg -c >/dev/null
ktap_check "the caches work on: allocate more, free everything" ctl_ok \
	"alloc plain 100" "alloc pat 50" "alloc dbg 20" "alloc big 5" \
	"free plain all" "free pat all" "free dbg all" "free big all" "free kmalloc-64 all"
ktap_check "constructed objects kept their pattern (corruptions=0)" \
	sh -c '. ./rmm_lib.sh; [ "$(cache_stat pat corruptions)" = 0 ]'
ktap_check "no error line since" sh -c '! dmesg | grep "rmm slab\|rmm_ctl:"'
ktap_check "shrink and destroy the caches" ctl_ok \
	"shrink plain" "destroy plain" "destroy big" "destroy pat" "destroy dbg"
ktap_check "unload" rmm_unload
ktap_check "unload freed every page" \
	sh -c 'dmesg | grep -q "rmm: unloaded: freed 0 objects and 0 page blocks, destroyed 13 caches"'

# With debug=1 every cache detects double frees, the generic ones included.
ktap_check "load with debug=1" rmm_load demo=0 debug=1
ktap_check "double free into a generic cache is detected (debug=1)" invalid_free kmalloc-32 double
ktap_check "interior free into a generic cache is detected (debug=1)" invalid_free kmalloc-32 interior
ktap_check "unload (debug=1)" rmm_unload

ktap_finished
