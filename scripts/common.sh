# SPDX-License-Identifier: GPL-2.0
# Shared settings for rmm's scripts. Sourced, not run.

RMM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything built or installed for rmm lives outside the tracked tree.
RMM_CACHE=${RMM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rmm}
RMM_TOOLS=$RMM_CACHE/tools
BINDGEN_VERSION=0.70.1
BINDGEN=$RMM_TOOLS/bin/bindgen
# The kernel's Rust support must use the Debian toolchain (rustc-web), which
# ships the core sources the kernel compiles; rustup's rustc has none here.
KRUSTC=/usr/bin/rustc
KERNEL_SERIES=6.12
KERNEL_TARBALL=/usr/src/linux-source-$KERNEL_SERIES.tar.xz

say() { printf 'rmm: %s\n' "$*"; }
die() { printf 'rmm: error: %s\n' "$*" >&2; exit 1; }

# progress MESSAGE: a line of a long step's progress (a kernel build). It
# goes to stderr, or to the open descriptor named by RMM_PROGRESS_FD:
# scripts/run-tests points that at its own stderr, so that the lines reach
# the person even from a step whose output it keeps in a log file.
progress() {
	local fd=${RMM_PROGRESS_FD:-2}
	if [[ "$fd" =~ ^[0-9]+$ ]] && { true >&"$fd"; } 2>/dev/null; then
		say "$@" >&"$fd"
	else
		say "$@" >&2
	fi
}

# The kernel version inside the Debian source tarball, e.g. 6.12.117.
kernel_source_version() {
	dpkg-query -W -f='${Version}' "linux-source-$KERNEL_SERIES" 2>/dev/null | sed 's/-.*//'
}

kernel_source_dir() {
	echo "$RMM_CACHE/src/linux-$(kernel_source_version)"
}

# The cache key of a kernel flavour: kernel version, the config fragments it is
# built from, and the compilers. A change to any of them means a rebuild.
kernel_key() {
	local flavour=$1
	{
		kernel_source_version
		cat "$RMM_ROOT/scripts/config/base.config"
		[ "$flavour" = debug ] && cat "$RMM_ROOT/scripts/config/debug.config"
		"$KRUSTC" --version
		clang --version | head -n 1
		"$BINDGEN" --version
	} | sha256sum | cut -c1-12
}

kernel_build_dir() {
	echo "$RMM_CACHE/kernels/$1-$(kernel_key "$1")"
}

kmake() {
	make LLVM=1 RUSTC="$KRUSTC" BINDGEN="$BINDGEN" "$@"
}
