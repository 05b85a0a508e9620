#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The guest side of `make bench` (run by scripts/bench through vm-run; not a
# test, so it lives outside tests/guest): loads rmm with bench=ARG, which
# runs the benchmarks during the load, and prints the result lines the
# kernel logged. Fails if the module did not load, the run did not finish,
# or rmm or the benchmark reported an error.
#
#   scripts/vm-run --kernel perf --icount --smp 1 scripts/bench-guest.sh pair,iters=1000

cases=${1:-all}
dmesg -c >/dev/null
echo "rmm_bench: guest kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)"
if ! insmod "$RMM_KO" demo=0 bench="$cases"; then
	echo "rmm_bench: error: insmod failed"
	dmesg | tail -n 20
	exit 1
fi
dmesg | grep -o 'rmm_bench: .*'
rmmod rmm || exit 1
dmesg | grep -q 'rmm_bench: end' || { echo "rmm_bench: error: the run did not finish"; exit 1; }
# rmm reports invalid frees and corruption with pr_err lines of its own.
if dmesg | grep -E 'rmm_bench: .*(failed|cannot|errors|lost|bad)|rmm (slab|kmalloc)|rmm: invalid|rmm: .*disagree'; then
	echo "rmm_bench: error: see the lines above"
	exit 1
fi
exit 0
