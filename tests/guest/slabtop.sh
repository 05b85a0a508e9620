#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The standard readers on rmm's files: procps' slabtop and vmstat -m read
# /proc/rmm_slabinfo bind-mounted over /proc/slabinfo in a private mount
# namespace, and collectl reads /proc/rmm_buddyinfo bind-mounted over
# /proc/buddyinfo (procps has no reader of buddyinfo). Every cache and every
# figure they show must be the ones rmm's files hold. The binaries are
# Debian's, copied into the image by scripts/vm-run for scripts that say:
# vm-run: with-tools
# With --show, the readers' output is printed as well (for the README).
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 12

# in_rmm_ns CMD...: CMD in a private mount namespace where /proc/slabinfo
# and /proc/buddyinfo are rmm's files, as a user would do it:
#   unshare -m sh -c 'mount --bind /proc/rmm_slabinfo /proc/slabinfo && slabtop --once'
in_rmm_ns() {
	unshare -m sh -c 'mount --bind /proc/rmm_slabinfo /proc/slabinfo &&
		mount --bind /proc/rmm_buddyinfo /proc/buddyinfo && exec "$@"' sh "$@"
}

tools_ok() {
	for t in slabtop vmstat collectl unshare; do
		command -v $t >/dev/null || { echo "$t missing from the image"; return 1; }
	done
	slabtop --version | grep -q procps || { echo "slabtop is not procps': $(slabtop --version 2>&1)"; return 1; }
	vmstat --version | grep -q procps || { echo "vmstat is not procps': $(vmstat --version 2>&1)"; return 1; }
}
ktap_check "procps' slabtop and vmstat, collectl and unshare are in the image" tools_ok
ktap_check "load" rmm_load demo=0
# foo: 200-byte objects, 100 held; kmalloc-64 and a page block for variety.
ktap_check "a cache of our own with objects held" ctl_ok "create foo 200" "alloc foo 100" "alloc kmalloc-64 70" "page-alloc 2 3"

ns_is_rmm() {
	in_rmm_ns cat /proc/slabinfo >/tmp/ns-slabinfo || return 1
	cmp /tmp/ns-slabinfo /proc/rmm_slabinfo || return 1
	in_rmm_ns cat /proc/buddyinfo | cmp - /proc/rmm_buddyinfo
}
ktap_check "inside the namespace /proc/slabinfo and /proc/buddyinfo are rmm's" ns_is_rmm

outside_is_kernel() {
	grep -q '^foo ' /proc/slabinfo && { echo "foo in the kernel's /proc/slabinfo"; return 1; }
	grep -q '^kmem_cache ' /proc/slabinfo || { echo "no kmem_cache in /proc/slabinfo: $(head -n 3 /proc/slabinfo)"; return 1; }
}
ktap_check "outside it /proc/slabinfo is still the kernel's" outside_is_kernel

# expected_slabtop: the rows slabtop must print for rmm_slabinfo, as
# "NAME OBJS ACTIVE USE OBJSIZE SLABS OBJ/SLAB CACHESIZE" (4 kB pages).
expected_slabtop() {
	tail -n +3 /proc/rmm_slabinfo | awk '{
		use = $3 ? int($2 * 100 / $3) : 0
		printf "%s %d %d %d%% %.2fK %d %d %dK\n", $1, $3, $2, use, $4 / 1024, $15, $5, $15 * $6 * 4
	}' | sort
}
# slabtop_rows FILE: slabtop's rows in the same shape.
slabtop_rows() {
	awk 'seen { print $8, $1, $2, $3, $4, $5, $6, $7 } / OBJS ACTIVE +USE/ { seen = 1 }' "$1" | sort
}

slabtop_rows_ok() {
	in_rmm_ns slabtop --once --sort=n >/tmp/slabtop.out 2>&1 || { cat /tmp/slabtop.out; return 1; }
	expected_slabtop >/tmp/slabtop.want
	slabtop_rows /tmp/slabtop.out >/tmp/slabtop.got
	[ -s /tmp/slabtop.got ] || { echo "no rows in slabtop's output:"; cat /tmp/slabtop.out; return 1; }
	diff /tmp/slabtop.want /tmp/slabtop.got || return 1
	# foo is there, with at least the 100 objects held.
	awk '$1 == "foo" && $3 >= 100 && $5 == "0.20K" { found = 1 } END { exit !found }' /tmp/slabtop.got ||
		{ echo "foo: '$(grep '^foo ' /tmp/slabtop.got)'"; return 1; }
}
ktap_check "slabtop --once lists every rmm cache, and only them, with rmm's figures" slabtop_rows_ok

# The summary: sums over rmm's rows as slabtop computes them.
slabtop_summary_ok() {
	want=$(tail -n +3 /proc/rmm_slabinfo | awk '{
		ao += $2; to += $3; as += $14; ts += $15; n++; if ($2) ac++
		asz += $2 * $4; tsz += $3 * $4
	} END {
		printf "%d / %d\n%d / %d\n%d / %d\n%.2fK / %.2fK\n", ao, to, as, ts, ac, n, asz / 1024, tsz / 1024
	}')
	got=$(sed -n 's/^ Active \/ Total \(Objects\|Slabs\|Caches\|Size\) (% used) *: \([^(]*\) (.*/\2/p' /tmp/slabtop.out | sed 's/ *$//')
	[ "$want" = "$got" ] || { echo "summary: want"; echo "$want"; echo "got"; echo "$got"; return 1; }
}
ktap_check "slabtop's summary (objects, slabs, caches, size) sums rmm's rows" slabtop_summary_ok

vmstat_ok() {
	in_rmm_ns vmstat -m >/tmp/vmstat.out 2>&1 || { cat /tmp/vmstat.out; return 1; }
	head -n 1 /tmp/vmstat.out | grep -qE '^Cache +Num +Total +Size +Pages$' || { echo "header: $(head -n 1 /tmp/vmstat.out)"; return 1; }
	# vmstat -m's columns: active objects, objects, object size, and
	# (despite the name "Pages") objects per slab.
	tail -n +3 /proc/rmm_slabinfo | awk '{ print $1, $2, $3, $4, $5 }' | sort >/tmp/vmstat.want
	tail -n +2 /tmp/vmstat.out | awk '{ print $1, $2, $3, $4, $5 }' | sort >/tmp/vmstat.got
	diff /tmp/vmstat.want /tmp/vmstat.got || return 1
	awk '$1 == "foo" && $2 >= 100 && $4 == 200 { found = 1 } END { exit !found }' /tmp/vmstat.got ||
		{ echo "foo: '$(grep '^foo ' /tmp/vmstat.got)'"; return 1; }
}
ktap_check "vmstat -m lists every rmm cache, and only them, with rmm's figures" vmstat_ok

# The readers follow rmm live: 500 more objects show at once.
live_ok() {
	before=$(awk '$1 == "foo" { print $3 }' /tmp/slabtop.got)
	ctl_ok "alloc foo 500" || return 1
	in_rmm_ns slabtop --once >/tmp/slabtop2.out 2>&1 || { cat /tmp/slabtop2.out; return 1; }
	expected_slabtop | grep '^foo ' >/tmp/foo.want
	slabtop_rows /tmp/slabtop2.out | grep '^foo ' >/tmp/foo.got
	diff /tmp/foo.want /tmp/foo.got || return 1
	after=$(awk '{ print $3 }' /tmp/foo.got)
	[ "$after" -ge $((before + 500)) ] || { echo "slabtop: foo active $before, then $after"; return 1; }
	in_rmm_ns vmstat -m | awk -v a="$after" '$1 == "foo" && $2 == a { found = 1 } END { exit !found }' ||
		{ echo "vmstat -m: '$(in_rmm_ns vmstat -m | grep '^foo ')', slabtop $after"; return 1; }
}
ktap_check "after 'alloc foo 500' both show 500 more active objects in foo, as rmm_slabinfo does" live_ok

# collectl's memory fragmentation view of rmm_buddyinfo: one line per
# node and zone with the 11 counts (a line per node with memory).
collectl_ok() {
	in_rmm_ns collectl -sB -c1 >/tmp/collectl.out 2>/dev/null || { cat /tmp/collectl.out; return 1; }
	grep -qE '^# MEMORY FRAGMENTATION' /tmp/collectl.out || { cat /tmp/collectl.out; return 1; }
	want=$(awk '{ node = $2; sub(/,/, "", node); $1 = $2 = $3 = $4 = ""; print node " rmm" $0 }' /proc/rmm_buddyinfo | tr -s ' ' | sed 's/ $//')
	got=$(awk '$2 == "rmm"' /tmp/collectl.out | tr -s ' ' | sed 's/^ //; s/ $//')
	[ -n "$got" ] || { echo "no rmm zone in collectl's output:"; cat /tmp/collectl.out; return 1; }
	[ "$want" = "$got" ] || { echo "want '$want'"; echo "got  '$got'"; return 1; }
	# Not all zero: rmm took a chunk and split it.
	[ "$(echo "$got" | awk '{ for (i = 3; i <= NF; i++) s += $i } END { print s + 0 }')" -gt 0 ]
}
ktap_check "collectl -sB shows rmm_buddyinfo's free blocks of every order" collectl_ok
if [ "${1:-}" = --show ]; then
	for f in /tmp/slabtop.out /tmp/vmstat.out /tmp/collectl.out; do
		echo "# ---- $f"
		sed 's/^/# /' "$f"
	done
fi

cleanup_ok() {
	ctl_ok "free foo all" "free kmalloc-64 all" "page-free 2 all" "destroy foo" || return 1
	in_rmm_ns slabtop --once >/tmp/slabtop3.out 2>&1 || { cat /tmp/slabtop3.out; return 1; }
	slabtop_rows /tmp/slabtop3.out >/tmp/slabtop3.got
	grep -q '^kmalloc-64 ' /tmp/slabtop3.got || { echo "no kmalloc-64 row"; cat /tmp/slabtop3.out; return 1; }
	! grep -q '^foo ' /tmp/slabtop3.got
}
ktap_check "after destroy foo, slabtop no longer lists it" cleanup_ok
ktap_check "unload" rmm_unload

ktap_finished
