#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Fuzzes /proc/rmm_ctl: thousands of generated writes, from valid commands
# with random arguments to random bytes, lines over 256 bytes, embedded NUL
# bytes, numbers that overflow 64 bits, negative numbers, huge counts and
# orders, unknown words, partial and multi-line writes, allocation flags,
# vmalloc areas, reserve settings and fault injection, written by several
# processes at once. Every write must succeed or fail
# with one of the documented errors (malformed ones with EINVAL); afterwards
# the views are consistent, everything frees and goes back to the kernel,
# and rmm unloads (vm-run checks the kernel log for crashes, warnings and,
# on the debug kernel, leaks).
#
#   scripts/vm-run --kernel debug tests/guest/fuzz_ctl.sh [SEED [WRITES]]
#
# replays a run: the seed is printed at the start.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

SEED=${1:-}
if [ -z "$SEED" ]; then
	SEED=$(tr -dc 0-9 </proc/sys/kernel/random/uuid | cut -c1-9)
	SEED=$((1${SEED:-0} % 1000000000))
fi
WRITES=${2:-3000}
WORKERS=4
SEQUENTIAL=60
DIR=/tmp/rmm_fuzz

ktap_plan 10
ktap_print "seed $SEED, $WRITES writes (replay: scripts/vm-run --kernel debug tests/guest/fuzz_ctl.sh $SEED $WRITES)"

# The generator writes one plan per worker plus a sequential one. A plan
# line is MODE EXPECT PAYLOAD, the first two one character each:
#   MODE T: echo PAYLOAD as one line; P: the same without the newline (a
#   partial write); R: PAYLOAD is "LINES FILE", write FILE's raw bytes in
#   one write (for NUL bytes and multi-line writes).
#   EXPECT S: must succeed; E: must fail with EINVAL; F: must fail with a
#   documented error; A: succeed or a documented error.
# Raw writes go to files of their own.
generate() {
	rm -rf "$DIR"
	mkdir -p "$DIR/raw"
	awk -v seed="$SEED" -v writes="$WRITES" -v workers="$WORKERS" -v seq="$SEQUENTIAL" -v dir="$DIR" '
	function rnd(n) { return int(rand() * n) }
	# (busybox awk has no ^ without its math library)
	function pow2(e,   v) { v = 1; while (e-- > 0) v *= 2; return v }
	function pick(list,   a, n) { n = split(list, a, " "); return a[rnd(n) + 1] }
	function name() { return pick("f0 f1 f2 f3 f4 f5 kmalloc-8 kmalloc-64 kmalloc-512 kmalloc-8192 nosuch") }
	function area() { return pick("v0 v1 v2 v3 f0 nosuch") }
	function flags() { return rnd(3) ? "" : " " pick("kernel atomic nowait zero atomic|zero nowait|zero GFP_ATOMIC GFP_KERNEL|__GFP_ZERO") }
	function vsize(   r) {
		r = rnd(4)
		if (r < 2) return 1 + rnd(70000)
		if (r < 3) return (1 + rnd(512)) "K"
		return (1 + rnd(4)) "M"
	}
	function digits(n,   s, i) { s = 1 + rnd(9); for (i = 1; i < n; i++) s = s rnd(10); return s }
	function letters(n,   s, i) { s = ""; for (i = 0; i < n; i++) s = s substr("abcdefghijklmnopqrstuvwxyz", 1 + rnd(26), 1); return s }
	function small_count(   r) {
		r = rnd(10)
		if (r < 6) return 1 + rnd(50)
		if (r < 9) return 1 + rnd(300)
		return 1 + rnd(1500)
	}
	function count_or_all() { return rnd(2) ? "all" : small_count() }
	function size(   r) {
		r = rnd(4)
		if (r < 3) return 1 + rnd(512)
		return 1 + rnd(9000)
	}
	# A well-formed command with random, memory-bounded arguments.
	function valid(   r, line, o) {
		r = rnd(100)
		if (r < 10) {
			line = "create " name() " " size()
			if (rnd(3) == 0) line = line " ctor"
			if (rnd(4) == 0) line = line " debug"
			if (rnd(5) == 0) line = line " hwcache"
			if (rnd(4) == 0) line = line " align=" pow2(rnd(13))
			return line
		}
		if (r < 33) return "alloc " name() " " small_count() flags()
		if (r < 53) return "free " name() " " count_or_all()
		if (r < 58) return "shrink " name()
		if (r < 64) return "destroy " name()
		if (r < 73) {
			o = rnd(11)
			return "page-alloc " o " " (o >= 8 ? 1 : 1 + rnd(8)) flags()
		}
		if (r < 83) return "page-free " rnd(11) " " (rnd(2) ? "all" : 1 + rnd(4))
		if (r < 89) return "vmalloc " area() " " vsize()
		if (r < 95) return "vfree " area()
		if (r < 97) return "reserve " pick("auto 0 64 256 1024")
		return "fail " (rnd(2) ? 0 : rnd(8)) (rnd(4) ? "" : " refill")
	}
	# A number no command accepts.
	function bad_number(   r) {
		r = rnd(9)
		if (r == 0) return digits(20 + rnd(40))
		if (r == 1) return "18446744073709551616"
		if (r == 2) return "-" (1 + rnd(100))
		if (r == 3) return "+" (1 + rnd(100))
		if (r == 4) return "0x" (10 + rnd(90))
		if (r == 5) return (1 + rnd(9)) "e" rnd(20)
		if (r == 6) return "-9223372036854775808"
		if (r == 7) return "1" letters(1)
		return "99999999999999999999"
	}
	# A line the parser must reject (EINVAL whatever the state).
	function invalid(   r, line, target) {
		r = rnd(14)
		if (r == 11) return "vmalloc " area() " " pick("0 0K 2G 1025M 4T 12Q -1 K")
		if (r == 12) return (rnd(2) ? "alloc f0 1" : "page-alloc 0 1") " " pick("atomic|nowait ATOMIC zero|| bogus GFP_HIGHMEM kernel,zero")
		if (r == 13) return "reserve " pick("-1 262145 1M AUTO x")
		if (r == 0) return "alloc " name() " " bad_number()
		if (r == 1) return "create " name() " " bad_number()
		if (r == 2) return "page-alloc " bad_number() " 1"
		if (r == 3) return "page-free 1 " bad_number()
		if (r == 4) return "fail " pick("1000001 4294967296 18446744073709551615 -1 all")
		if (r == 5) return pick("alloc free page-alloc page-free") " " pick("f0 kmalloc-8 1") " " pick("0 1048577 2097152 4294967296")
		if (r == 6) return "page-alloc " pick("11 12 64 4294967296 18446744073709551615") " 1"
		if (r == 7) return "zq" letters(rnd(8)) (rnd(2) ? " " name() " " small_count() : "")
		if (r == 8) return pick("alloc create free shrink destroy page-alloc page-free fail ALLOC Create")
		if (r == 9) {
			# Longer than 256 bytes.
			line = "alloc " name() " "
			target = 257 + rnd(300)
			while (length(line) < target) line = line substr("abc 123", 1 + rnd(7), 1)
			return line
		}
		return "create " name() " 8 align=" pick("3 24 8192 0 65536")
	}
	# A valid line with one character changed, dropped or added.
	function mutate(line,   pos, c, r) {
		pos = 1 + rnd(length(line))
		c = substr("abz019 -=\t._/", 1 + rnd(13), 1)
		r = rnd(3)
		if (r == 0) return substr(line, 1, pos - 1) c substr(line, pos + 1)
		if (r == 1) return substr(line, 1, pos - 1) substr(line, pos + 1)
		return substr(line, 1, pos - 1) c substr(line, pos)
	}
	# Echo would take a leading -n or -e as an option.
	function echo_safe(line) { return substr(line, 1, 1) == "-" ? " " line : line }
	# A control or non-ASCII byte (never a newline or a tab, never NUL).
	function odd_byte(   b) {
		do b = rnd(2) ? 1 + rnd(31) : 127 + rnd(129); while (b == 9 || b == 10)
		return b
	}
	function emit(plan, mode, expect, payload) { print mode expect payload > plan }
	# Raw write: pieces separated by "\001" stand for NUL bytes.
	function raw(plan, expect, text, lines,   file, parts, n, i) {
		file = dir "/raw/" (++raws)
		n = split(text, parts, "\001")
		for (i = 1; i <= n; i++) {
			printf "%s", parts[i] > file
			if (i < n) printf "%c", 0 > file
		}
		close(file)
		emit(plan, "R", expect, lines " " file)
	}
	function one_write(plan,   r, line, k, i, text, bad, cut, b, s, lines) {
		r = rnd(100)
		if (r < 40) { emit(plan, "T", "A", echo_safe(valid())); return 1 }
		if (r < 52) { emit(plan, "T", "E", echo_safe(invalid())); return 1 }
		if (r < 60) { emit(plan, "T", "A", echo_safe(mutate(valid()))); return 1 }
		if (r < 65) {
			# A control or non-ASCII byte inside a command.
			line = valid()
			cut = 1 + rnd(length(line))
			emit(plan, "T", "E", substr(line, 1, cut - 1) sprintf("%c", odd_byte()) substr(line, cut))
			return 1
		}
		if (r < 71) {
			# A NUL byte inside (or at the end of) a command.
			line = valid()
			cut = 1 + rnd(length(line) + 1)
			raw(plan, "E", substr(line, 1, cut - 1) "\001" substr(line, cut) "\n", 1)
			return 1
		}
		if (r < 75) {
			# Random bytes, a NUL in the first line.
			s = ""
			k = 1 + rnd(300)
			for (i = 0; i < k; i++) {
				b = rnd(256)
				s = s (b == 0 || b == 1 ? "\001" : sprintf("%c", b))
			}
			lines = 1
			for (i = 1; i <= length(s); i++) if (substr(s, i, 1) == "\n") lines++
			raw(plan, "E", "\001" s, lines)
			return lines
		}
		if (r < 83) {
			# Several lines in one write, sometimes ending with a bad one.
			k = 2 + rnd(4)
			text = ""
			for (i = 0; i < k; i++) text = text valid() "\n"
			bad = rnd(3) == 0
			if (bad) { text = text invalid() "\n"; k++ }
			raw(plan, bad ? "F" : "A", text, k)
			return k
		}
		if (r < 89) {
			# A command split over two writes.
			line = valid()
			cut = 1 + rnd(length(line))
			emit(plan, "P", "A", echo_safe(substr(line, 1, cut)))
			if (cut < length(line)) { emit(plan, "T", "A", echo_safe(substr(line, cut + 1))); return 2 }
			return 1
		}
		if (r < 93) { emit(plan, "P", "A", echo_safe(valid())); return 1 }
		if (r < 96) {
			# Exactly 256 bytes: fine as far as length goes.
			line = "shrink"
			while (length(line) < 256 - 3) line = line (rnd(2) ? " " : "\t")
			emit(plan, "T", "A", line " f" rnd(6))
			return 1
		}
		# Blank lines are nothing, and fine.
		emit(plan, "T", "S", substr("      ", 1, rnd(6)))
		return 1
	}
	BEGIN {
		srand(seed)
		# Sequential: huge counts bounded by injected failures, so that a
		# valid command of a million objects stops after a few slabs.
		plan = dir "/plan.seq"
		emit(plan, "T", "A", "create f0 " size())
		lines_total = 1
		for (w = 0; w < seq; w++) {
			if (rnd(2)) {
				emit(plan, "T", "S", "fail " (2 + rnd(30)))
				emit(plan, "T", "A", "alloc " name() " 1048576")
				if (rnd(2)) { emit(plan, "T", "A", "free " name() " all"); lines_total++ }
			} else {
				# A block of order o is up to 4 MiB: few of the big ones.
				o = rnd(11)
				emit(plan, "T", "S", "fail " (o >= 6 ? 2 + rnd(3) : 2 + rnd(30)))
				emit(plan, "T", "A", "page-alloc " o " 1048576")
				if (rnd(3)) { emit(plan, "T", "S", "page-free " o " all"); lines_total++ }
			}
			emit(plan, "T", "S", "fail 0")
			lines_total += 3
		}
		# The largest write taken (64 KiB, here of blank lines) and one
		# byte more (refused whole); counted as a line each.
		text = "\n"
		while (length(text) < 65536) text = text text
		raw(plan, "S", text, 1)
		text = "shrink f0\n"
		while (length(text) < 65536) text = text text
		raw(plan, "E", substr(text, 1, 65530) "\n\n\n\n\n\n\n", 1)
		lines_total += 2
		for (p = 1; p <= workers; p++) {
			plan = dir "/plan." p
			for (w = 0; w < writes / workers; w++) lines_total += one_write(plan)
		}
		print lines_total > (dir "/lines")
	}'
}

# worker PLAN OUT: runs a plan, writing counts and violations to OUT.
worker() {
	plan=$1
	out=$2
	errf=$out.err
	tried=0
	ok=0
	einval=0
	other=0
	bad=0
	: >"$out.bad"
	while IFS= read -r entry; do
		mode=${entry%"${entry#?}"}
		rest=${entry#?}
		expect=${rest%"${rest#?}"}
		payload=${rest#?}
		case $mode in
		T) { echo "$payload" >/proc/rmm_ctl; } 2>"$errf" ;;
		P) { echo -n "$payload" >/proc/rmm_ctl; } 2>"$errf" ;;
		R) dd if="${payload#* }" of=/proc/rmm_ctl bs=1048576 2>"$errf" ;;
		esac
		rc=$?
		tried=$((tried + 1))
		err="status $rc, no message"
		[ $rc = 0 ] || IFS= read -r err <"$errf"
		case "$rc:$err" in
		0:*) result=ok ;;
		*"Invalid argument"*) result=EINVAL ;;
		*"No such file or directory"* | *"Cannot allocate memory"* | *"Out of memory"* | \
			*"Device or resource busy"* | *"File exists"* | *"Operation not permitted"* | \
			*"No space left on device"*) result=other ;;
		*) result="undocumented: $err" ;;
		esac
		case "$result" in
		ok) ok=$((ok + 1)) ;;
		EINVAL) einval=$((einval + 1)) ;;
		other) other=$((other + 1)) ;;
		esac
		case "$expect:$result" in
		*:undocumented*) fine=0 ;;
		S:ok | E:EINVAL | F:EINVAL | F:other | A:*) fine=1 ;;
		*) fine=0 ;;
		esac
		if [ $fine = 0 ]; then
			bad=$((bad + 1))
			echo "$mode$expect '$payload': $result" >>"$out.bad"
		fi
	done <"$plan"
	echo "tried=$tried ok=$ok einval=$einval other=$other bad=$bad" >"$out"
}

ktap_check "load" rmm_load demo=1
t0=$(date +%s)
ktap_check "generate the writes" generate
ktap_print "generated $(cat $DIR/lines) lines in $(ls $DIR/raw | wc -l) raw and $(cat $DIR/plan.* | wc -l) writes in all ($(( $(date +%s) - t0 )) s)"

t0=$(date +%s)
worker "$DIR/plan.seq" "$DIR/out.seq"
ktap_print "sequential: $(cat $DIR/out.seq)"
p=1
while [ $p -le $WORKERS ]; do
	worker "$DIR/plan.$p" "$DIR/out.$p" &
	p=$((p + 1))
done
wait
ctl_ok "fail 0" >/dev/null
ktap_print "writes done in $(( $(date +%s) - t0 )) s"

totals() {
	cat "$DIR"/out.seq "$DIR"/out.[0-9]* | awk '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); sum[kv[1]] += kv[2] } }
		END { printf "tried=%d ok=%d einval=%d other=%d bad=%d\n", sum["tried"], sum["ok"], sum["einval"], sum["other"], sum["bad"] }'
}
total=$(totals)
ktap_print "all writes: $total; lines tried: $(cat $DIR/lines)"
all_documented() {
	cat "$DIR"/out.*.bad | head -n 20
	! cat "$DIR"/out.*.bad | grep -q .
}
ktap_check "every write succeeded or failed with a documented error as expected" all_documented
mixed() {
	set -- $(echo "$total" | tr '=' ' ')
	# tried N ok N einval N other N: the fuzz reached the commands, not
	# only the parser.
	[ "$2" -ge "$WRITES" ] && [ "$4" -gt $(($2 / 20)) ] && [ "$6" -gt $(($2 / 20)) ] && [ "$8" -gt 0 ] ||
		{ echo "too uniform: $total"; return 1; }
}
ktap_check "the writes reached commands: many succeeded, many were refused" mixed

rows_ok() {
	slabinfo_rows_ok 13
}
ktap_check "slabinfo rows keep their invariants" rows_ok

stats_ok() {
	for c in $(awk 'NR > 2 { print $1 }' /proc/rmm_slabinfo); do
		[ "$(cache_stat "$c" total)" = "$(slab_field "$c" 3)" ] ||
			{ echo "$c: total $(cache_stat "$c" total) != slabinfo $(slab_field "$c" 3)"; return 1; }
		# Out of the slabs: held, in CPU arrays, or waiting in alien
		# arrays to go home to another node.
		act=$(( $(cache_stat "$c" active) + $(cache_stat "$c" cached) + $(cache_stat "$c" alien) ))
		[ "$act" = "$(slab_field "$c" 2)" ] || { echo "$c: active+cached+alien $act != slabinfo $(slab_field "$c" 2)"; return 1; }
		[ "$(cache_stat "$c" errors)" = 0 ] || { echo "$c: $(cache_stat "$c" errors) errors"; return 1; }
	done
	[ $(( $(buddy_stat pages_free) + $(buddy_stat pages_pcp) + $(buddy_stat pages_allocated) )) = "$(buddy_stat pages_total)" ] ||
		{ echo "buddy: free + pcp + allocated != total"; return 1; }
	[ "$(buddy_stat invalid_frees)" = 0 ] || { echo "invalid frees: $(buddy_stat invalid_frees)"; return 1; }
}
ktap_check "slabinfo agrees with rmm_stats, no cache or page errors" stats_ok

release_all() {
	lines=""
	for c in $(awk 'NR > 2 { print $1 }' /proc/rmm_slabinfo); do
		lines="$lines
free $c all
shrink $c"
		case $c in kmalloc-*) ;; *) lines="$lines
destroy $c" ;; esac
	done
	o=0
	while [ $o -le 10 ]; do
		lines="$lines
page-free $o all"
		o=$((o + 1))
	done
	for a in $(awk '{ print $3 }' /proc/rmm_vmallocinfo); do
		lines="$lines
vfree $a"
	done
	lines="$lines
reserve auto"
	# A last shrink gives back the chunks of what the later lines freed.
	ctl_ok "$lines" "shrink kmalloc-8" || return 1
	[ "$(buddy_stat pages_allocated)" = 0 ] && [ "$(buddy_stat chunks)" = 0 ] ||
		{ echo "left: $(buddy_stat pages_allocated) pages allocated, $(buddy_stat chunks) chunks"; return 1; }
	[ ! -s /proc/rmm_vmallocinfo ] && [ "$(grep -c '\[rmm\] vmap$' /proc/vmallocinfo)" = 0 ] ||
		{ echo "areas left mapped"; return 1; }
	[ "$(awk 'NR > 2 && $1 !~ /^kmalloc-/' /proc/rmm_slabinfo)" = "" ] || { echo "user caches left"; return 1; }
}
ktap_check "everything frees and destroys; shrink gives every chunk back" release_all
no_reports() {
	# Nothing but the control file's own refusals: no corruption, invalid
	# free or internal inconsistency reported by the allocators.
	! dmesg | grep -E 'rmm' | grep -iE 'corrupt|invalid free|disagree|has no slab|leak'
}
ktap_check "no allocator error in the kernel log" no_reports
ktap_check "unload" rmm_unload
ktap_check "nothing of rmm left in /proc" sh -c '! ls /proc | grep -q rmm'
ktap_finished
