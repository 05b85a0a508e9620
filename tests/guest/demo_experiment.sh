#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The classic slab experiment run at load (demo=1): the cache rmm_student,
# its constructor run once per object of the first slab (logged with a
# rate limit), two students printed, the cache in slabinfo until rmmod.
. "$(dirname "$0")/ktap.sh"
. "$(dirname "$0")/rmm_lib.sh"

ktap_plan 9

dmesg -c >/dev/null
ktap_check "load with demo=1 (the default)" rmm_load
ktap_check "dmesg shows the cache created" sh -c 'dmesg | grep -q "rmm: demo: created cache rmm_student"'
ktap_check "dmesg shows the constructor running" sh -c 'dmesg | grep -q "rmm: demo: student constructor running"'
ctor_lines=$(dmesg | grep -c "student constructor running")
per_slab=$(slab_field rmm_student 5)
ktap_print "constructor lines in dmesg: $ctor_lines, objects per slab: $per_slab"
ktap_check "constructor logging is rate-limited (fewer lines than objects)" \
	sh -c "[ $ctor_lines -ge 1 ] && [ $ctor_lines -lt $per_slab ]"
ktap_check "dmesg shows both students" \
	sh -c 'dmesg | grep -q "rmm: student 1: id=1 name=alice" && dmesg | grep -q "rmm: student 2: id=2 name=bob"'
ctor_once_per_object() {
	calls=$(cache_stat rmm_student ctor_calls)
	slabs=$(slab_field rmm_student 15)
	[ "$slabs" = 1 ] || { echo "expected one slab, got $slabs"; return 1; }
	[ "$calls" = "$per_slab" ] || { echo "ctor_calls $calls != objects per slab $per_slab"; return 1; }
}
ktap_check "the constructor ran exactly once per object of the first slab" ctor_once_per_object
ktap_check "the students were freed (no active objects held by callers)" sh -c '. ./rmm_lib.sh; [ "$(cache_stat rmm_student active)" = 0 ]'
ktap_check "unload" rmm_unload
ktap_check "dmesg shows the unload summary and no error" \
	sh -c 'dmesg | grep -q "rmm: unloaded: " && ! dmesg | grep -E "rmm.*(error|corrupt|leak)"'

ktap_finished
