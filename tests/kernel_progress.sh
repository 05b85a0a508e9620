#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/kernel_progress.sh: a kernel build shows its progress lines even when
# the caller keeps its output in a log, as scripts/run-tests does with the
# lints. A dry run of scripts/build-kernel: a scratch cache (RMM_CACHE), an
# unpacked "source tree" holding only a stand-in merge_config.sh, and a
# stand-in `make` first on PATH that writes a few "  CC" lines slowly and
# makes Module.symvers. Nothing is compiled. Prints KTAP.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Before common.sh, which derives the tool paths from RMM_CACHE.
export RMM_CACHE=$work/cache RMM_PROGRESS_INTERVAL=1
# The default route first: run-tests' RMM_PROGRESS_FD is not for these runs.
unset RMM_PROGRESS_FD
. "$(dirname "$0")/../scripts/common.sh"
cd "$RMM_ROOT"
tools=$(dirname "$BINDGEN")
mkdir -p "$tools" "$work/bin"
printf '#!/bin/sh\necho "bindgen %s"\n' "$BINDGEN_VERSION" >"$tools/bindgen"
# make: configuration targets make an empty .config; the build target
# writes 8 objects over about 3 seconds.
cat >"$work/bin/make" <<'MAKE'
#!/bin/bash
out=
for a in "$@"; do case "$a" in O=*) out=${a#O=} ;; esac; done
case " $* " in
*" tinyconfig "*) mkdir -p "$out" && : >"$out/.config" ;;
*" olddefconfig "*) ;;
*" bzImage "*)
	for i in 1 2 3 4 5 6 7 8; do echo "  CC      kernel/file$i.o"; sleep 0.4; done
	touch "$out/Module.symvers" ;;
*) echo "stand-in make: unexpected arguments: $*" >&2; exit 2 ;;
esac
MAKE
src=$RMM_CACHE/src/linux-$(kernel_source_version)
mkdir -p "$src/scripts/kconfig"
touch "$src/.rmm-unpacked"
# merge_config.sh -m -O DIR CONFIG FRAGMENT...: the fragments' lines, as if
# every option had stuck.
cat >"$src/scripts/kconfig/merge_config.sh" <<'MERGE'
#!/bin/bash
shift 3
config=$1
shift
cat "$@" >>"$config"
MERGE
chmod +x "$tools/bindgen" "$work/bin/make" "$src/scripts/kconfig/merge_config.sh"
export PATH=$work/bin:$PATH

num=0
failed=0
result() { # result NAME OK(0/1)
	num=$((num + 1))
	if [ "$2" = 0 ]; then echo "ok $num $1"; else failed=$((failed + 1)); echo "not ok $num $1"; fi
}
# lines_ok FILE FLAVOUR: the progress lines of a build, in order.
lines_ok() {
	local f=$1 fl=$2 ok=0
	grep -qE "^rmm: building the $fl kernel in " "$f" || ok=1
	grep -qE "^rmm: this takes [0-9]+ to [0-9]+ minutes on 2 cores" "$f" || ok=1
	grep -qE "^rmm:   $fl kernel: 0 min, [1-8] objects built$" "$f" || ok=1
	grep -qE "^rmm: kernel $fl built in 0 min [0-9]+ s$" "$f" || ok=1
	[ $ok = 0 ] || { echo "# progress lines:"; sed 's/^/#   /' "$f"; }
	return $ok
}

echo "TAP version 13"
echo "1..4"

# Called as usual: progress on stderr, only the build directory on stdout.
set +e
scripts/build-kernel debug >"$work/stdout" 2>"$work/stderr"
rc=$?
set -e
result "the dry debug build succeeds" $rc
lines_ok "$work/stderr" debug
result "its progress lines are on stderr" $?
[ "$(cat "$work/stdout")" = "$(kernel_build_dir debug)" ] && [ -f "$(kernel_build_dir debug)/.rmm-complete" ]
result "stdout holds only the build directory" $?

# As inside run-tests' lint step: stdout and stderr into a log, the
# progress to RMM_PROGRESS_FD (run-tests' own stderr).
(RMM_PROGRESS_FD=3 scripts/build-kernel perf >"$work/lint.log" 2>&1 3>"$work/fd3") || true
lines_ok "$work/fd3" perf && ! grep -q 'perf kernel' "$work/lint.log"
result "with the output discarded, the perf build's progress reaches RMM_PROGRESS_FD" $?

[ "$failed" = 0 ]
