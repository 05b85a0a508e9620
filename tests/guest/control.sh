#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Every /proc/rmm_ctl command, every documented error, and that a failing
# command changes nothing.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 39

ktap_check "load" rmm_load demo=0

ktap_check "create a cache" ctl_ok "create t1 40"
ktap_check "it is in slabinfo" has_cache t1
ktap_check "create with every option" ctl_ok "create t2 100 align=64 ctor debug hwcache"
ktap_check "objsize of t2 is at least 100 and 64-aligned" \
	sh -c '[ "$(awk "\$1 == \"t2\" { print \$4 }" /proc/rmm_slabinfo)" -ge 100 ] &&
		[ $(( $(awk "\$1 == \"t2\" { print \$4 }" /proc/rmm_slabinfo) % 64 )) -eq 0 ]'
ktap_check "duplicate name is EEXIST" ctl_err "File exists" "create t1 40"
ktap_check "generic name is EEXIST" ctl_err "File exists" "create kmalloc-64 64"

ktap_check "alloc 100" ctl_ok "alloc t1 100"
ktap_check "stats show 100 held, 100 active" \
	sh -c '. ./rmm_lib.sh; [ "$(cache_stat t1 held)" = 100 ] && [ "$(cache_stat t1 active)" = 100 ]'
ktap_check "alloc from a generic cache" ctl_ok "alloc kmalloc-128 10"
ktap_check "free 40" ctl_ok "free t1 40"
ktap_check "60 held after free 40" sh -c '. ./rmm_lib.sh; [ "$(cache_stat t1 held)" = 60 ]'
ktap_check "freeing more than held is EINVAL" ctl_err "Invalid argument" "free t1 61"
ktap_check "... and frees nothing" sh -c '. ./rmm_lib.sh; [ "$(cache_stat t1 held)" = 60 ]'
ktap_check "destroy with objects held is EBUSY" ctl_err "Device or resource busy" "destroy t1"
ktap_check "... and the cache stays" has_cache t1
ktap_check "free all" ctl_ok "free t1 all"
ktap_check "shrink" ctl_ok "shrink t1"
ktap_check "no slabs left after shrink" sh -c '[ "$(awk "\$1 == \"t1\" { print \$15 }" /proc/rmm_slabinfo)" = 0 ]'
ktap_check "destroy" ctl_ok "destroy t1"
ktap_check "a destroyed cache is gone from slabinfo" sh -c '! grep -q "^t1 " /proc/rmm_slabinfo'
ktap_check "destroying a generic cache is EPERM" ctl_err "Operation not permitted" "destroy kmalloc-64"

ktap_check "unknown cache is ENOENT" ctl_err "No such file or directory" "alloc nosuch 1"
ktap_check "unknown command is EINVAL" ctl_err "Invalid argument" "frobnicate"
ktap_check "bad number is EINVAL" ctl_err "Invalid argument" "alloc t2 12x"
ktap_check "bad name is EINVAL" ctl_err "Invalid argument" "create bad/name 8"
ktap_check "size 0 is EINVAL" ctl_err "Invalid argument" "create z 0"
ktap_check "alignment not a power of two is EINVAL" ctl_err "Invalid argument" "create z 8 align=24"
ktap_check "alignment above the page size is EINVAL" ctl_err "Invalid argument" "create z 8 align=8192"
long=$(printf 'x%.0s' $(seq 1 300))
ktap_check "a line over 256 bytes is EINVAL" ctl_err "Invalid argument" "shrink $long"

rmm_ctl "alloc t2 5" "create bad/name 8" >/dev/null 2>&1
ktap_check "several lines in one write run in order up to the failing one" \
	sh -c '. ./rmm_lib.sh; [ "$(cache_stat t2 held)" = 5 ]'
ctl_ok "free t2 all" >/dev/null
# The views, but the failed-command counters (the one thing a failed
# command changes).
views() {
	cat /proc/rmm_slabinfo /proc/rmm_stats /proc/rmm_buddyinfo | sed 's/ ctl_errors[a-z_]*=[0-9]*//g'
}
before=$(views)
for bad in "create z 0" "destroy nosuch" "page-alloc 11 1" "free t2 1" "destroy kmalloc-8" \
	"create t2 8" "alloc t2 0" "page-free 3 1" "shrink"; do
	rmm_ctl "$bad"
done
after=$(views)
same_state() {
	[ "$before" = "$after" ] || { echo "before:"; echo "$before"; echo "after:"; echo "$after"; return 1; }
}
ktap_check "failing commands change nothing in slabinfo, stats or buddyinfo" same_state
ktap_check "page-alloc and page-free" ctl_ok "page-alloc 3 4" "page-free 3 2" "page-free 3 all"
ktap_check "page-alloc order 10" ctl_ok "page-alloc 10 1" "page-free 10 all"
ktap_check "ctor pattern intact on free (no corruption reported)" \
	sh -c '. ./rmm_lib.sh; echo "alloc t2 50" > /proc/rmm_ctl && echo "free t2 all" > /proc/rmm_ctl && [ "$(cache_stat t2 corruptions)" = 0 ]'
ktap_check "every error logged one line naming the command" \
	sh -c 'dmesg | grep -q "rmm_ctl: destroy t1" && dmesg | grep -q "rmm_ctl: alloc nosuch"'

# Thousands of failing writes: every one counted in rmm_stats, but the
# kernel log gets at most 10 lines per 5 seconds (the kernel's default rate
# limit), and a line saying how many were left out.
errors_before=$(rmm_stat ctl_errors)
start=$(date +%s)
i=0
while [ $i -lt 3000 ]; do
	echo "destroy nosuch3000" >/proc/rmm_ctl 2>/dev/null
	i=$((i + 1))
done
elapsed=$(($(date +%s) - start))
errors_after=$(rmm_stat ctl_errors)
counted_ok() {
	is_number "$errors_before" && is_number "$errors_after" || { echo "ctl_errors unreadable: '$errors_before' '$errors_after'"; return 1; }
	[ $((errors_after - errors_before)) = 3000 ] || { echo "ctl_errors grew by $((errors_after - errors_before)), not 3000"; return 1; }
	is_number "$(rmm_stat ctl_errors_unlogged)" && [ "$(rmm_stat ctl_errors_unlogged)" -gt 0 ]
}
ktap_check "3000 failing writes are all counted in rmm_stats" counted_ok
logged=$(dmesg | grep -c "rmm_ctl: destroy nosuch3000")
bound=$((10 * (elapsed / 5 + 2)))
ktap_print "3000 failing writes in ${elapsed} s: $logged lines logged (at most $bound allowed)"
ktap_check "... but only a handful of lines reach the kernel log" \
	sh -c "[ $logged -ge 1 ] && [ $logged -le $bound ] && [ $bound -lt 300 ]"
ktap_check "unload" rmm_unload

ktap_finished
