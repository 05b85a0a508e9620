#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/shell_pty.sh [perf|debug]: `make shell` used as a person uses it, in
# a terminal: tmux gives it a pseudo-terminal, types into it with send-keys
# and reads the screen with capture-pane. Two sessions on the given kernel
# (default debug, the one `make test` has built): one typing insmod, cat
# /proc/rmm_slabinfo, slabtop on it, dmesg, a Ctrl-C, rmmod and poweroff;
# one leaving with the QEMU escape Ctrl-A X. Also `make shell` without a
# terminal. Prints KTAP; exits non-zero on any failure.
set -euo pipefail
. "$(dirname "$0")/../scripts/common.sh"
cd "$RMM_ROOT"

flavour=${1:-debug}
case "$flavour" in perf | debug) ;; *) die "usage: tests/shell_pty.sh [perf|debug]" ;; esac
command -v tmux >/dev/null || die "tmux is missing: run scripts/setup"
# Seconds to wait for the prompt (the debug kernel boots slowly under TCG)
# and for anything else to show.
boot_wait=180
step_wait=60

work=$(mktemp -d)
tmux_=(tmux -L "rmm-pty-$$" -f /dev/null)
cleanup() {
	"${tmux_[@]}" kill-server 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

num=0
failed=0
ok() { num=$((num + 1)); echo "ok $num $1"; }
not_ok() { num=$((num + 1)); failed=$((failed + 1)); echo "not ok $num $1"; }

# screen SESSION: the session's whole screen and scrollback, wrapped lines
# joined.
screen() { "${tmux_[@]}" capture-pane -p -J -S - -t "$1" 2>/dev/null; }

# wait_for SESSION SECONDS REGEX: until an extended regex matches a line of
# the screen; fails (showing the screen's end) when it never does.
wait_for() {
	local s=$1 secs=$2 re=$3 i
	for ((i = 0; i < secs * 2; i++)); do
		screen "$s" | grep -qE -- "$re" && return 0
		sleep 0.5
	done
	echo "# waited $secs s for /$re/; the screen ends with:"
	screen "$s" | grep -v '^$' | tail -n 15 | sed 's/^/#   /'
	return 1
}

# type SESSION TEXT: types TEXT and Enter, as a person would.
type_line() {
	"${tmux_[@]}" send-keys -t "$1" -l -- "$2"
	"${tmux_[@]}" send-keys -t "$1" Enter
}

# check NAME SESSION SECONDS REGEX
check() {
	if wait_for "$2" "$3" "$4"; then ok "$1"; else not_ok "$1"; fi
}

# prompts SESSION: how many shell prompts the screen shows so far.
prompts() { screen "$1" | grep -cE '^root@rmm-vm:/rmm# ' || true; }

# prompt_after SESSION N WHAT: waits until the screen shows more than N
# prompts (the one WHAT was typed at, then a new one).
prompt_after() {
	local i
	for ((i = 0; i < step_wait * 2; i++)); do
		[ "$(prompts "$1")" -gt "$2" ] && return 0
		sleep 0.5
	done
	echo "# no prompt after $3"
	return 1
}

# type_and_wait SESSION TEXT: types TEXT and waits for the next prompt.
type_and_wait() {
	local n
	n=$(prompts "$1")
	type_line "$1" "$2"
	prompt_after "$1" "$n" "'$2'"
}

# start SESSION: `make shell` in a new 150x45 terminal; the terminal's
# settings are saved before and after it, and its exit status printed.
start() {
	"${tmux_[@]}" new-session -d -s "$1" -x 150 -y 45 \
		"stty -g >'$work/$1.before'; make -s --no-print-directory shell KERNEL=$flavour; echo \"rmm-pty: make shell exited with \$?\"; stty -g >'$work/$1.after'; exec sleep 900"
}

# sane SESSION: the terminal's settings are back to what they were.
sane() {
	local i
	for ((i = 0; i < 20; i++)); do
		[ -s "$work/$1.after" ] && break
		sleep 0.5
	done
	[ -s "$work/$1.after" ] || { echo "# no settings saved after the shell"; return 1; }
	cmp -s "$work/$1.before" "$work/$1.after" || {
		echo "# before: $(cat "$work/$1.before")"
		echo "# after:  $(cat "$work/$1.after")"
		return 1
	}
}

echo "TAP version 13"
echo "1..15"
t0=$(date +%s)

# Without a terminal: a clear refusal, before anything is booted.
if out=$(make -s --no-print-directory shell KERNEL="$flavour" </dev/null 2>&1); then
	not_ok "make shell without a terminal fails (it succeeded)"
else
	case "$out" in
	*"needs a terminal"*) ok "make shell without a terminal fails with a clear message" ;;
	*) echo "$out" | sed 's/^/# /'; not_ok "make shell without a terminal fails with a clear message" ;;
	esac
fi

start a
check "the prompt comes up in /rmm" a "$boot_wait" '^root@rmm-vm:/rmm# '
check "a line before the prompt says how to leave: poweroff or Ctrl-A X" a 1 '^rmm-vm: to leave: poweroff .*Ctrl-A X'

type_and_wait a 'insmod rmm.ko' || true
type_and_wait a 'cat /proc/rmm_slabinfo' || true
check "cat /proc/rmm_slabinfo shows the slabinfo 2.1 header" a 1 '^slabinfo - version: 2\.1$'
check "and the row of the demo cache rmm_student" a 1 \
	'^rmm_student +[0-9]+ +161 +24 +161 +1 : tunables'
check "and the row of kmalloc-64" a 1 '^kmalloc-64 +[0-9]+ +[0-9]+ +64 +[0-9]+ +1 : tunables +[0-9]+ +[0-9]+ +0 : slabdata'
# The README's recipe: slabtop on rmm's slabinfo, in its full-screen mode.
# Full screen (the alternate screen, without scrollback, while it runs),
# so prompts are counted before; q quits it.
n=$(prompts a)
type_line a "unshare -m sh -c 'mount --bind /proc/rmm_slabinfo /proc/slabinfo && slabtop --sort=n'"
check "slabtop's screen on rmm_slabinfo shows rmm_student (0.02K objects, 161 per slab)" a "$step_wait" \
	'^ *[0-9]+ +[0-9]+ +[0-9]+% +0\.02K +[0-9]+ +161 +[0-9]+K rmm_student'
"${tmux_[@]}" send-keys -t a q
prompt_after a "$n" "slabtop's q" || true
type_and_wait a "dmesg | grep 'rmm: loaded'" || true
check "dmesg shows the module's load line" a 1 '^\[ *[0-9.]+\] rmm: loaded: 14 caches'

# Ctrl-C stops the foreground command, not the VM. (The guest's shell
# expands what is in single quotes here.)
# shellcheck disable=SC2016
type_line a 'echo "sleeping: $((6 * 6))"; sleep 600'
wait_for a "$step_wait" '^sleeping: 36$' || true
sleep 0.5
"${tmux_[@]}" send-keys -t a C-c
# shellcheck disable=SC2016
type_and_wait a 'echo "interrupted: $((6 * 7))"' || true
check "Ctrl-C interrupts a command in the guest and the shell goes on" a 1 '^interrupted: 42$'

type_and_wait a 'rmmod rmm' || true
type_and_wait a 'cat /proc/rmm_slabinfo' || true
check "after rmmod rmm, /proc/rmm_slabinfo is gone" a 1 '^cat: can.t open ./proc/rmm_slabinfo.: No such file or directory'
type_line a 'poweroff'
check "poweroff ends the VM and make shell exits with 0" a "$step_wait" '^rmm-pty: make shell exited with 0$'
last=$(screen a | grep -E '^root@rmm-vm:' | tail -n 1)
if [ "$last" = 'root@rmm-vm:/rmm# poweroff' ]; then
	ok "no prompt after poweroff"
else
	echo "# the last prompt: '$last'"
	not_ok "no prompt after poweroff"
fi
if sane a; then ok "the terminal's settings are restored"; else not_ok "the terminal's settings are restored"; fi

# The QEMU escape, for a guest that no longer answers.
start b
if wait_for b "$boot_wait" '^root@rmm-vm:/rmm# '; then
	"${tmux_[@]}" send-keys -t b C-a x
	check "Ctrl-A X stops QEMU and make shell returns" b "$step_wait" '^rmm-pty: make shell exited with [0-9]+$'
	if sane b; then ok "the terminal's settings are restored after Ctrl-A X"; else not_ok "the terminal's settings are restored after Ctrl-A X"; fi
else
	not_ok "Ctrl-A X stops QEMU and make shell returns (no prompt)"
	not_ok "the terminal's settings are restored after Ctrl-A X (no prompt)"
fi

echo "# $((num - failed)) of $num passed in $(($(date +%s) - t0)) s ($flavour kernel)"
[ "$num" = 15 ] || { echo "# planned 15 tests but ran $num"; failed=$((failed + 1)); }
[ "$failed" = 0 ]
