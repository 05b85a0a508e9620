#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The batch policy and the periodic reaper: freeing a batch of objects keeps
# their empty slabs (the cache had that many objects out a moment ago and
# will likely want them again), a second batch builds no slab, and once the
# cache stays idle the reaper thread (reap_ms) gives back every empty slab
# beyond the free limit, counted in "reaped".
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 8

# 2048-byte objects: eight per slab, so 400 objects are 50 slabs.
ktap_check "load with reap_ms=300" rmm_load demo=0 reap_ms=300
ktap_check "rmm_reap thread runs" sh -c 'ps -o comm 2>/dev/null | grep -qx rmm_reap || grep -qx rmm_reap /proc/[0-9]*/comm'

# Two batches of 400 in one write (the state is locked for a whole write,
# so no reap falls in between): the second one builds nothing, because the
# first one's frees kept the slabs.
ctl_ok "create c 2048" >/dev/null
ktap_check "two batches" ctl_ok "alloc c 400" "free c all" "alloc c 400" "free c all"
ktap_check "the second batch built no slab" sh -c "[ $(cache_stat c grown) = $((400 / $(slab_field c 5))) ]"

# Idle now: within a few reap periods the slabs beyond the free limit go.
limit=$(( $(slab_field c 10) * ($(nproc) + 1) + $(slab_field c 5) ))
reaped_ok() {
	i=0
	while [ $i -lt 50 ]; do
		empty=$(( $(slab_field c 15) - $(slab_field c 14) ))
		[ $((empty * $(slab_field c 5))) -le "$limit" ] && return 0
		sleep 0.2
		i=$((i + 1))
	done
	echo "still $empty empty slabs after 10 s (free limit $limit objects)"
	return 1
}
ktap_check "the reaper gives back the empty slabs of an idle cache" reaped_ok
counted_ok() {
	[ "$(cache_stat c reaped)" -gt 0 ] || { echo "cache reaped=0"; return 1; }
	[ $(( $(cache_stat c grown) - $(cache_stat c reaped) )) = "$(slab_field c 15)" ] ||
		{ echo "grown - reaped != num_slabs"; return 1; }
	# The frees released nothing (the second batch built nothing), so the
	# reaper's passes released them all.
	[ "$(rmm_stat reaped_slabs)" = "$(cache_stat c reaped)" ] ||
		{ echo "reaper released $(rmm_stat reaped_slabs), cache reaped $(cache_stat c reaped)"; return 1; }
	[ "$(rmm_stat reaps)" -gt 0 ]
}
ktap_check "reaped and the reaper's counts agree" counted_ok
ktap_check "the cache works on" ctl_ok "alloc c 10" "free c all" "destroy c"
ktap_check "unload" rmm_unload
