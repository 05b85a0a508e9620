#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# debug=1: every cache, the generic ones included, gets red zones and
# poisoning (larger slots), and everything still works and unloads clean.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 7

dmesg -c >/dev/null
ktap_check "load with debug=1" rmm_load debug=1 demo=1
ktap_check "the load line says debug=1" sh -c 'dmesg | grep -q "rmm: loaded: .* debug=1"'
ktap_check "generic slots grow by their red zones (kmalloc-8 slot above 8 bytes)" \
	sh -c '. ./rmm_lib.sh; [ "$(slab_field kmalloc-8 4)" -gt 8 ]'
ktap_check "a new cache gets red zones too (40-byte objects in larger slots)" \
	sh -c '. ./rmm_lib.sh; echo "create dbg 40" > /proc/rmm_ctl && [ "$(slab_field dbg 4)" -gt 40 ]'
ktap_check "allocate and free through checked caches" \
	ctl_ok "alloc dbg 3000" "alloc kmalloc-64 500" "free dbg all" "free kmalloc-64 all" "shrink dbg" "destroy dbg"
ktap_check "no detection reported (errors=0 everywhere)" \
	sh -c '! grep "^cache=" /proc/rmm_stats | grep -v " cpu=" | grep -v " node=" | grep -qv " errors=0 "'
ktap_check "unload" rmm_unload
ktap_finished
