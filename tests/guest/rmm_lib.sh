# SPDX-License-Identifier: GPL-2.0
#
# Helpers for rmm's guest tests: loading, the control file, and reading
# values out of rmm_stats and rmm_slabinfo. Source after ktap.sh.

# rmm_load [PARAM=VALUE...]: loads rmm.ko. The periodic reaper is off unless
# reap_ms= is given: tests read several files in turn and compare their
# counts, which a reap in between would change (tests/guest/reap.sh tests it).
rmm_load() {
	case " $* " in
	*" reap_ms="*) insmod "$RMM_KO" "$@" ;;
	*) insmod "$RMM_KO" reap_ms=0 "$@" ;;
	esac
}

rmm_unload() {
	rmmod rmm
}

# rmm_ctl LINE...: writes the lines to /proc/rmm_ctl in one write (the
# shell's echo builtin writes its whole argument at once and, unlike
# printf, reports a failed write). The write's error message (strerror
# text) is left in $RMM_CTL_ERR.
rmm_ctl() {
	lines=$(printf '%s\n' "$@")
	RMM_CTL_ERR=$( { echo "$lines" >/proc/rmm_ctl; } 2>&1)
}

# as_nobody CMD...: runs CMD as the unprivileged user nobody (uid 65534).
as_nobody() {
	grep -q '^nobody:' /etc/passwd 2>/dev/null || {
		mkdir -p /etc
		echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd
		echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
		echo 'root:x:0:' >/etc/group
		echo 'nogroup:x:65534:' >>/etc/group
	}
	su -s /bin/sh nobody -c "$*"
}

# ctl_ok LINE...: the write succeeds.
ctl_ok() {
	if ! rmm_ctl "$@"; then
		echo "write '$*' failed: $RMM_CTL_ERR"
		return 1
	fi
}

# ctl_enomem LINE: the write fails with ENOMEM (glibc and musl word it
# differently).
ctl_enomem() {
	if rmm_ctl "$1"; then
		echo "write '$1' succeeded, expected ENOMEM"
		return 1
	fi
	case "$RMM_CTL_ERR" in
	*"Cannot allocate memory"* | *"Out of memory"*) return 0 ;;
	*) echo "write '$1' failed with '$RMM_CTL_ERR', expected ENOMEM"; return 1 ;;
	esac
}

# ctl_err TEXT LINE...: the write fails and its error message contains TEXT
# (the C library's strerror text of the errno, e.g. "Invalid argument").
ctl_err() {
	want=$1
	shift
	if rmm_ctl "$@"; then
		echo "write '$*' succeeded, expected '$want'"
		return 1
	fi
	case "$RMM_CTL_ERR" in
	*"$want"*) return 0 ;;
	*) echo "write '$*' failed with '$RMM_CTL_ERR', expected '$want'"; return 1 ;;
	esac
}

# cache_stat CACHE KEY: the value of KEY on the cache's line of rmm_stats
# (not its per-CPU or per-node lines).
cache_stat() {
	awk -v c="cache=$1" -v k="$2" '
		$1 == c && $2 !~ /^(cpu|node)=/ {
			for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } }
		}' /proc/rmm_stats
}

# cache_part_stat CACHE PART KEY: KEY on the cache's line of rmm_stats for
# one CPU or one node (PART is cpu=N or node=N).
cache_part_stat() {
	awk -v c="cache=$1" -v p="$2" -v k="$3" '
		$1 == c && $2 == p {
			for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } }
		}' /proc/rmm_stats
}

# rmm_stat KEY: a value of the last line ("rmm ...") of rmm_stats.
rmm_stat() {
	awk -v k="$1" '
		$1 == "rmm" {
			for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } }
		}' /proc/rmm_stats
}

# line_stat LINE KEY: KEY on the stats line starting with the word LINE.
line_stat() {
	awk -v w="$1" -v k="$2" '
		$1 == w && $2 !~ /^(order|cpu)=/ {
			for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } }
		}' /proc/rmm_stats
}

# buddy_stat KEY: a value of the first "buddy" line of rmm_stats.
buddy_stat() {
	awk -v k="$1" '
		$1 == "buddy" && $2 !~ /^order=/ {
			for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } }
		}' /proc/rmm_stats
}

# slab_field NAME N: field N (1-based, as in the slabinfo header: 2 active_objs,
# 3 num_objs, 4 objsize, 5 objperslab, 6 pagesperslab, 9 limit, 10 batchcount,
# 11 sharedfactor, 14 active_slabs, 15 num_slabs) of the cache's slabinfo row.
slab_field() {
	awk -v n="$1" -v f="$2" '$1 == n { print $f; exit }' /proc/rmm_slabinfo
}

has_cache() {
	grep -q "^$1 " /proc/rmm_slabinfo
}

# is_number VALUE: VALUE is a non-empty string of decimal digits (busybox
# test takes an empty operand as 0, so readings are checked first).
is_number() {
	case "$1" in
	'' | *[!0-9]*) return 1 ;;
	*) return 0 ;;
	esac
}

# numbers NAME=VALUE...: every VALUE is a number; says which is not.
numbers() {
	for pair in "$@"; do
		is_number "${pair#*=}" || { echo "${pair%%=*} is not a number: '${pair#*=}'"; return 1; }
	done
}

# within_kb BEFORE AFTER LIMIT: both are numbers and AFTER is less than
# LIMIT kB below BEFORE (memory given back within a tolerance).
within_kb() {
	numbers before="$1" after="$2" && [ $(($1 - $2)) -lt "$3" ]
}

# fresh_log_window: waits until the control file's rate limit for failure
# lines (10 per 5 s, as the kernel's) starts a new window, so that the next
# failures are logged: for checks of a failed command's log line that come
# after many failures.
fresh_log_window() {
	sleep 6
}

# settle: gives back what the kernel keeps cached and would give back on
# demand: page cache, dentries and inodes, and every slab cache's empty
# slabs, which on a KASAN kernel also empties its quarantine of freed
# objects (up to 1/32 of memory, far more than the tolerances), so that
# MemFree readings compare.
settle() {
	sync
	echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
	for f in /sys/kernel/slab/*/shrink; do
		echo 1 > "$f" 2>/dev/null
	done
}

# mem_free_kb: MemFree from /proc/meminfo.
mem_free_kb() {
	awk '$1 == "MemFree:" { print $2 }' /proc/meminfo
}

# free_kb [NODE]: free memory as the kernel holds it, in kB, of every node
# or of NODE, steady to a fraction of a MB where MemFree wanders by
# several: the free pages of the zones plus those on the zones' per-CPU
# lists (MemFree leaves those out, and with two nodes there are a zone's
# lists per CPU on each), plus Slab (KASAN's quarantine holds freed
# objects there).
free_kb() {
	free=$(awk -v n="${1:+$1,}" '
		/^Node / { on = (n == "" || $2 == n) }
		on && $1 == "pages" && $2 == "free" { pages += $3 }
		on && $1 == "count:" { pages += $2 }
		END { print pages * 4 }' /proc/zoneinfo)
	if [ -n "${1:-}" ]; then
		slab=$(awk '$3 == "Slab:" { print $4 }' "/sys/devices/system/node/node$1/meminfo")
	else
		slab=$(awk '$1 == "Slab:" { print $2 }' /proc/meminfo)
	fi
	echo $((free + slab))
}

# slabinfo_rows_ok [MIN_ROWS]: every row of rmm_slabinfo has the kernel's
# fields and keeps the invariants: num_objs = objperslab x num_slabs,
# active_objs <= num_objs, pages per slab a power of two, at least one object
# per slab, active_slabs <= num_slabs, objsize word-aligned, sane tunables;
# and there are at least MIN_ROWS rows (default 13, the generic caches).
slabinfo_rows_ok() {
	tail -n +3 /proc/rmm_slabinfo | awk -v min="${1:-13}" '
	function pow2(n) { while (n > 1 && n % 2 == 0) n /= 2; return n == 1 }
	{
		rows++
		if (NF != 16 || $7 != ":" || $8 != "tunables" || $12 != ":" || $13 != "slabdata") { print "bad row: " $0; bad = 1; next }
		if ($3 != $5 * $15) { print $1 ": num_objs " $3 " != objperslab " $5 " * num_slabs " $15; bad = 1 }
		if ($2 > $3) { print $1 ": active_objs above num_objs"; bad = 1 }
		if (!pow2($6)) { print $1 ": pagesperslab " $6 " not a power of two"; bad = 1 }
		if ($5 < 1) { print $1 ": no objects per slab"; bad = 1 }
		if ($14 > $15) { print $1 ": active_slabs above num_slabs"; bad = 1 }
		if ($4 % 8 != 0) { print $1 ": objsize " $4 " not word aligned"; bad = 1 }
		if ($9 < 1 || $10 < 1 || $10 > $9) { print $1 ": bad tunables"; bad = 1 }
	}
	END { if (rows < min) { print "only " rows " rows"; bad = 1 }; exit bad }'
}
