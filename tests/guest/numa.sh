#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Memory nodes, on the VM's two nodes with one vCPU each (scripts/vm-run's
# default with 2 vCPUs): rmm_buddyinfo has a line per node in the format
# of the kernel's own /proc/buddyinfo; page blocks allocated from a shell
# bound to a CPU land on that CPU's node, and `page-alloc ... node=N` on
# node N, as the kernel itself says of the pages (held_pages in the node
# lines of rmm_stats counts them by page_to_nid); frees from the other
# node's CPU go back to their own node; the numastat counters say what
# happened; the same for slab objects (`alloc ... node=N`, remote frees
# home, slabinfo the total of the nodes); node=5 and node=x are EINVAL
# with a clear line; with node 0's
# pool exhausted and its refills failing (fault injection), requests of
# CPU 0 fall back to node 1, counted as numa_miss there and numa_foreign
# on node 0; shrink and unload give every chunk of every node back, and
# each node's free memory returns.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

nodes=$(find /sys/devices/system/node -maxdepth 1 -name 'node[0-9]*' 2>/dev/null | wc -l)
if [ "$nodes" != 2 ] || [ ! -e /sys/devices/system/cpu/cpu1 ]; then
	ktap_plan 1
	ktap_skip "memory nodes" "needs 2 nodes and 2 CPUs (scripts/vm-run --smp 2 --nodes 2), found $nodes nodes"
	ktap_finished
fi

ktap_plan 17

# node_stat NODE KEY: KEY on the node=NODE line of rmm_stats.
node_stat() {
	line_stat "node=$1" "$2"
}

# ctl_on CPU LINE: writes LINE to the control file from a shell bound to
# CPU (busybox taskset), so that rmm sees that CPU as the caller; the
# error text is left in $RMM_CTL_ERR as rmm_ctl does.
ctl_on() {
	# shellcheck disable=SC2016 # $1 of the inner shell
	RMM_CTL_ERR=$(taskset -c "$1" sh -c 'echo "$1" >/proc/rmm_ctl' sh "$2" 2>&1)
}

# ctl_on_ok CPU LINE: ctl_on, and the write succeeds.
ctl_on_ok() {
	ctl_on "$1" "$2" || { echo "write '$2' on CPU $1 failed: $RMM_CTL_ERR"; return 1; }
}

# Warm up what the kernel allocates once for any module, as the other
# memory tests do.
rmm_load demo=0 && rmm_unload
settle
node0_before=$(free_kb 0)
node1_before=$(free_kb 1)

topology_ok() {
	[ -e /sys/devices/system/cpu/cpu0/node0 ] && [ -e /sys/devices/system/cpu/cpu1/node1 ] ||
		{ echo "cpu0: $(ls -d /sys/devices/system/cpu/cpu0/node*), cpu1: $(ls -d /sys/devices/system/cpu/cpu1/node*)"; return 1; }
	[ "$(cat /sys/devices/system/node/has_memory)" = 0-1 ] || { echo "nodes with memory: $(cat /sys/devices/system/node/has_memory)"; return 1; }
}
ktap_check "the VM: node 0 with CPU 0, node 1 with CPU 1, both with memory" topology_ok
ktap_check "load" rmm_load demo=0

# buddyinfo_format_ok FILE: every line of FILE is exactly what the kernel's
# frag_show_print writes ("Node %d, zone %8s " and "%6lu " per order),
# rebuilt from the line's own words.
buddyinfo_format_ok() {
	while IFS= read -r line; do
		# shellcheck disable=SC2086 # the words of the line
		set -- $line
		[ $# -eq 15 ] || { echo "not 11 orders: '$line'"; return 1; }
		node=${2%,}
		zone=$4
		shift 4
		rebuilt="$(printf 'Node %d, zone %8s ' "$node" "$zone")$(printf '%6d ' "$@")"
		[ "$line" = "$rebuilt" ] || { echo "'$line'"; echo "'$rebuilt' is the kernel's format"; return 1; }
	done < "$1"
}
buddyinfo_ok() {
	# The check rebuilds the kernel's own file as it is...
	buddyinfo_format_ok /proc/buddyinfo || return 1
	# ... and rmm's, with a line for each node with memory, in order.
	buddyinfo_format_ok /proc/rmm_buddyinfo || return 1
	[ "$(awk '{ print $1, $2, $3, $4 }' /proc/rmm_buddyinfo | tr '\n' /)" = "Node 0, zone rmm/Node 1, zone rmm/" ] ||
		{ cat /proc/rmm_buddyinfo; return 1; }
	[ "$(awk '{ print $2 }' /proc/rmm_buddyinfo | tr '\n' ' ')" = "$(awk '{ print $2 }' /proc/buddyinfo | uniq | tr '\n' ' ')" ] ||
		{ echo "the kernel's nodes: $(awk '{ print $2 }' /proc/buddyinfo | uniq | tr '\n' ' ')"; return 1; }
}
ktap_check "rmm_buddyinfo: a line per node, in the format of the kernel's /proc/buddyinfo" buddyinfo_ok

# pinned_ok CPU NODE: 8 pages allocated from CPU land on NODE by the
# kernel's account (page_to_nid), as hits of a local CPU.
pinned_ok() {
	other=$((1 - $2))
	held0=$(node_stat "$2" held_pages)
	other0=$(node_stat "$other" held_pages)
	hit0=$(node_stat "$2" numa_hit)
	local0=$(node_stat "$2" local_node)
	ctl_on_ok "$1" "page-alloc 0 8" || return 1
	[ "$(node_stat "$2" held_pages)" = $((held0 + 8)) ] && [ "$(node_stat "$other" held_pages)" = "$other0" ] ||
		{ echo "held pages: node $2 $held0 -> $(node_stat "$2" held_pages), node $other $other0 -> $(node_stat "$other" held_pages)"; return 1; }
	[ "$(node_stat "$2" numa_hit)" = $((hit0 + 8)) ] && [ "$(node_stat "$2" local_node)" = $((local0 + 8)) ] ||
		{ grep '^node=' /proc/rmm_stats; return 1; }
}
ktap_check "page-alloc on CPU 0: the pages are on node 0 (page_to_nid), numa_hit and local_node" pinned_ok 0 0
ktap_check "page-alloc on CPU 1: the pages are on node 1 (page_to_nid), numa_hit and local_node" pinned_ok 1 1
grep '^node=' /proc/rmm_stats | sed 's/^/#   /'

remote_free_ok() {
	remote0=$(node_stat 0 free_remote)
	local1=$(node_stat 1 free_local)
	pcp1=$(node_stat 1 pages_pcp)
	ctl_on_ok 1 "page-free 0 all" || return 1
	# CPU 1 freed its own 8 pages and CPU 0's 8: those went home to node
	# 0's lists, not onto CPU 1's.
	[ "$(node_stat 0 free_remote)" = $((remote0 + 8)) ] && [ "$(node_stat 1 free_local)" = $((local1 + 8)) ] ||
		{ grep '^node=' /proc/rmm_stats; return 1; }
	[ "$(node_stat 1 pages_pcp)" -le $((pcp1 + 8)) ] && [ "$(node_stat 0 held_pages)" = 0 ] && [ "$(node_stat 1 held_pages)" = 0 ] ||
		{ grep '^node=' /proc/rmm_stats; return 1; }
}
ktap_check "frees on CPU 1 of node 0's pages go back to node 0 (free_remote), its own are free_local" remote_free_ok

node_pinned_ok() {
	hit1=$(node_stat 1 numa_hit)
	other1=$(node_stat 1 other_node)
	miss1=$(node_stat 1 numa_miss)
	ctl_on_ok 0 "page-alloc 2 4 node=1" || return 1
	[ "$(node_stat 1 held_pages)" = 16 ] && [ "$(node_stat 0 held_pages)" = 0 ] ||
		{ echo "held pages: node 0 $(node_stat 0 held_pages), node 1 $(node_stat 1 held_pages)"; return 1; }
	[ "$(node_stat 1 numa_hit)" = $((hit1 + 4)) ] && [ "$(node_stat 1 other_node)" = $((other1 + 4)) ] &&
		[ "$(node_stat 1 numa_miss)" = "$miss1" ] || { grep '^node=' /proc/rmm_stats; return 1; }
	ctl_on_ok 1 "page-alloc 1 2 atomic node=0" || return 1
	[ "$(node_stat 0 held_pages)" = 4 ] || { echo "node=0 from CPU 1: $(node_stat 0 held_pages) pages on node 0"; return 1; }
	ctl_ok "page-free 2 all" "page-free 1 all"
}
ktap_check "page-alloc node=1 on CPU 0 lands on node 1: numa_hit and other_node there" node_pinned_ok

bad_node_ok() {
	fresh_log_window
	for line in "page-alloc 0 1 node=5" "page-alloc 0 1 node=2" "page-alloc 0 1 node=x" "page-alloc 3 1 atomic node=" "alloc kmalloc-64 1 node=9"; do
		ctl_err "Invalid argument" "$line" || return 1
	done
	dmesg | grep -q 'rmm_ctl: page-alloc order 0: no node 5 with memory (nodes with memory: 0 1) (-EINVAL)' ||
		{ echo "no line for node=5"; dmesg | grep rmm_ctl | tail -n 5; return 1; }
	dmesg | grep -q 'rmm_ctl: page-alloc: node must be node=N, N a decimal node number (-EINVAL)' ||
		{ echo "no line for node=x"; return 1; }
	[ "$(node_stat 0 held_pages)" = 0 ] && [ "$(node_stat 1 held_pages)" = 0 ] || { echo "something was allocated"; return 1; }
}
ktap_check "node=5, node=2 and node=x are EINVAL, each with its line in the kernel log" bad_node_ok
dmesg | grep 'rmm_ctl: page-alloc order 0: no node 5' | tail -n 1 | sed 's/^/#   /'

# cache_node_stat CACHE NODE KEY: KEY on the cache=CACHE node=NODE line.
cache_node_stat() {
	cache_part_stat "$1" "node=$2" "$3"
}

# Slab objects: where they land (by the node of their pages, through the
# kernel), and where their frees go.
objects_ok() {
	remote1=$(cache_node_stat kmalloc-64 1 remote_allocs)
	ctl_on_ok 0 "alloc kmalloc-64 100 node=1" && ctl_on_ok 1 "alloc kmalloc-64 50" && ctl_on_ok 0 "alloc kmalloc-64 70" || return 1
	[ "$(node_stat 0 held_objects)" = 70 ] && [ "$(node_stat 1 held_objects)" = 150 ] ||
		{ echo "held objects: node 0 $(node_stat 0 held_objects), node 1 $(node_stat 1 held_objects)"; return 1; }
	[ "$(cache_node_stat kmalloc-64 1 remote_allocs)" = $((remote1 + 100)) ] ||
		{ grep '^cache=kmalloc-64 node=' /proc/rmm_stats; return 1; }
}
ktap_check "alloc on CPU 0 with node=1, on CPU 1, on CPU 0: the objects are on nodes 1, 1, 0 (page_to_nid)" objects_ok
grep '^cache=kmalloc-64 node=' /proc/rmm_stats | sed 's/^/#   /'

slabinfo_totals_ok() {
	for f in active_slabs:14 slabs:15 objects:3 active_objs:2; do
		key=${f%:*}
		sum=$(( $(cache_node_stat kmalloc-64 0 "$key") + $(cache_node_stat kmalloc-64 1 "$key") ))
		[ "$sum" = "$(slab_field kmalloc-64 "${f#*:}")" ] || { echo "$key: nodes $sum, slabinfo $(slab_field kmalloc-64 "${f#*:}")"; return 1; }
	done
	[ "$(cache_node_stat kmalloc-64 0 slabs)" -gt 0 ] && [ "$(cache_node_stat kmalloc-64 1 slabs)" -gt 0 ] ||
		{ echo "slabs on one node only"; return 1; }
}
ktap_check "rmm_slabinfo's row is the total of the cache's nodes" slabinfo_totals_ok

object_frees_ok() {
	remote0=$(( $(cache_node_stat kmalloc-64 0 remote_frees) + $(cache_node_stat kmalloc-64 0 alien) ))
	flushes0=$(cache_node_stat kmalloc-64 0 alien_flushes)
	ctl_on_ok 1 "free kmalloc-64 all" || return 1
	# The objects cached on a node are those in its CPU's array (node 1's
	# objects were allocated and partly freed on CPU 1 above).
	for n in 0 1; do
		cpu_cached=$(cache_part_stat kmalloc-64 "cpu=$n" cached)
		is_number "$cpu_cached" || { echo "no cached count for CPU $n"; return 1; }
		[ "$(cache_node_stat kmalloc-64 $n cached)" = "$cpu_cached" ] ||
			{ echo "node $n caches $(cache_node_stat kmalloc-64 $n cached), CPU $n's array $cpu_cached"; return 1; }
	done
	[ "$(cache_node_stat kmalloc-64 1 cached)" -gt 0 ] || { echo "CPU 1's array is empty: the check above compared nothing"; return 1; }
	# CPU 1 freed node 0's 70 objects: into its alien array, home to node
	# 0's lists a batch at a time (remote_frees), the last ones waiting.
	[ $(( $(cache_node_stat kmalloc-64 0 remote_frees) + $(cache_node_stat kmalloc-64 0 alien) )) = $((remote0 + 70)) ] ||
		{ grep '^cache=kmalloc-64 node=' /proc/rmm_stats; return 1; }
	[ "$(cache_node_stat kmalloc-64 0 alien_flushes)" -gt "$flushes0" ] || { echo "no alien flush"; grep '^cache=kmalloc-64 node=' /proc/rmm_stats; return 1; }
	# A shrink sends the waiting ones home.
	ctl_ok "shrink kmalloc-64" || return 1
	[ "$(cache_node_stat kmalloc-64 0 alien)" = 0 ] && [ "$(cache_node_stat kmalloc-64 0 remote_frees)" = $((remote0 + 70)) ] ||
		{ grep '^cache=kmalloc-64 node=' /proc/rmm_stats; return 1; }
	[ "$(node_stat 0 held_objects)" = 0 ] && [ "$(node_stat 1 held_objects)" = 0 ] || { echo "objects still held"; return 1; }
}
ktap_check "frees on CPU 1 of node 0's objects go back to node 0 through CPU 1's alien array (remote_frees)" object_frees_ok

# Fallback: one chunk on each node, then refills fail; CPU 0's requests
# take node 0 down to its min watermark, then go to node 1.
fallback_ok() {
	ctl_on_ok 0 "page-alloc 0 1" && ctl_on_ok 1 "page-alloc 0 1" && ctl_ok "page-free 0 all" || return 1
	[ "$(node_stat 0 chunks)" = 1 ] && [ "$(node_stat 1 chunks)" = 1 ] || { grep '^node=' /proc/rmm_stats; return 1; }
	miss1=$(node_stat 1 numa_miss)
	foreign0=$(node_stat 0 numa_foreign)
	other1=$(node_stat 1 other_node)
	failures=$(line_stat zone refill_failures)
	ctl_ok "fail 1 refill" || return 1
	ctl_on_ok 0 "page-alloc 0 1500" || { ctl_ok "fail 0"; return 1; }
	ctl_ok "fail 0" || return 1
	on0=$(node_stat 0 held_pages)
	on1=$(node_stat 1 held_pages)
	echo "1500 pages for CPU 0 with the refills failing: $on0 on node 0, $on1 on node 1" >/tmp/numa-fallback
	[ $((on0 + on1)) = 1500 ] && [ "$on0" -le 1024 ] && [ "$on1" -gt 0 ] || { echo "held on node 0: $on0, node 1: $on1"; return 1; }
	# Every page node 1 gave was wanted on node 0.
	[ "$(node_stat 1 numa_miss)" = $((miss1 + on1)) ] && [ "$(node_stat 0 numa_foreign)" = $((foreign0 + on1)) ] &&
		[ "$(node_stat 1 other_node)" = $((other1 + on1)) ] || { grep '^node=' /proc/rmm_stats; return 1; }
	[ "$(node_stat 0 chunks)" = 1 ] && [ "$(node_stat 1 chunks)" = 1 ] && [ "$(line_stat zone refill_failures)" -gt "$failures" ] ||
		{ echo "chunks $(node_stat 0 chunks) $(node_stat 1 chunks), refill failures $failures -> $(line_stat zone refill_failures)"; return 1; }
}
ktap_check "node 0 exhausted, its refills failing: CPU 0 falls back to node 1 (numa_miss there, numa_foreign on node 0)" fallback_ok
ktap_print "$(cat /tmp/numa-fallback 2>/dev/null)"
grep '^node=' /proc/rmm_stats | sed 's/^/#   /'

shrunk_ok() {
	ctl_ok "page-free 0 all" "shrink kmalloc-64" || return 1
	for n in 0 1; do
		[ "$(node_stat $n chunks)" = 0 ] && [ "$(node_stat $n pages_total)" = 0 ] ||
			{ echo "node $n keeps $(node_stat $n chunks) chunks"; return 1; }
	done
	[ "$(buddy_stat chunks)" = 0 ] || { echo "chunks $(buddy_stat chunks)"; return 1; }
	[ "$(awk '{ for (i = 5; i <= NF; i++) s += $i } END { print s + 0 }' /proc/rmm_buddyinfo)" = 0 ] || { cat /proc/rmm_buddyinfo; return 1; }
}
ktap_check "shrink gives every chunk of both nodes back" shrunk_ok

# Chunks on both nodes at unload.
both_nodes_ok() {
	ctl_on_ok 0 "page-alloc 3 5" && ctl_on_ok 1 "page-alloc 3 5" || return 1
	[ "$(node_stat 0 chunks)" = 1 ] && [ "$(node_stat 1 chunks)" = 1 ] || { grep '^node=' /proc/rmm_stats; return 1; }
}
ktap_check "blocks held on both nodes again, a chunk each" both_nodes_ok
ktap_check "unload" rmm_unload
unload_line_ok() {
	dmesg | grep 'rmm: unloaded:' | tail -n 1 | grep -q 'returned 2048 pages' || { dmesg | grep 'rmm: unloaded:' | tail -n 1; return 1; }
}
ktap_check "unload returns both nodes' chunks (2048 pages)" unload_line_ok
settle
node0_after=$(free_kb 0)
node1_after=$(free_kb 1)
ktap_print "node 0: $node0_before kB free before load, $node0_after kB after unload; node 1: $node1_before kB, $node1_after kB"
nodes_back_ok() {
	within_kb "$node0_before" "$node0_after" 1024 || { echo "node 0: $node0_before -> $node0_after kB"; return 1; }
	within_kb "$node1_before" "$node1_after" 1024 || { echo "node 1: $node1_before -> $node1_after kB"; return 1; }
}
ktap_check "each node's free memory back within 1 MiB" nodes_back_ok

ktap_finished
