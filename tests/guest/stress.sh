#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Concurrent stress (stress=N): one kernel thread per CPU does random
# allocations and frees across four caches of its own and the generic
# kmalloc caches, handing objects to each other so that they are freed on
# another CPU. Every object carries its owner's stamp, checked before it is
# freed: an object handed out twice shows up as a corruption. On the debug
# kernel KASAN, lockdep and kmemleak watch too (vm-run fails the run on any
# report).
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

OPS=1000000

ktap_plan 7

# stress_field WORD: the number before WORD in the summary line.
stress_field() {
	echo "$line" | awk -v w="$1" '{ for (i = 2; i <= NF; i++) if ($i == w) { print $(i - 1); exit } }'
}

dmesg -c >/dev/null
ktap_check "load with stress=$OPS" rmm_load demo=0 stress=$OPS
dmesg | grep "rmm: stress: thread" | sed 's/^/# /'
line=$(dmesg | grep "rmm: stress: .* operations on")
ktap_print "$line"
ops=$(stress_field operations)
ms=$(stress_field ms,)
cpus=$(grep -c '^processor' /proc/cpuinfo)
ktap_print "operations: ${ops:-?} in ${ms:-?} ms on $cpus CPUs"
ktap_check "at least $OPS operations" [ "${ops:-0}" -ge "$OPS" ]
ktap_check "every CPU took part" sh -c "echo '$line' | grep -q ' on $cpus CPUs '"
ktap_check "objects were freed on another CPU" [ "$(stress_field cross-CPU)" -gt 0 ]
ktap_check "no corruptions, no allocation failures" \
	sh -c "echo '$line' | grep -q ' 0 corruptions, 0 allocation failures\$'"
# shellcheck disable=SC2016
ktap_check "the generic caches were used and are empty again" sh -c '
	. ./rmm_lib.sh
	for c in kmalloc-16 kmalloc-8192; do
		[ "$(cache_stat $c allocs)" -gt 0 ] || { echo "$c unused"; exit 1; }
	done
	awk "\$1 ~ /^cache=/ && \$2 !~ /^(cpu|node)=/ && \$0 !~ / active=0 / { print; bad = 1 } END { exit bad }" \
		/proc/rmm_stats'
ktap_check "unload" rmm_unload
ktap_finished
