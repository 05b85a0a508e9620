# SPDX-License-Identifier: GPL-2.0
#
# rmm: the kernel's memory allocators, rebuilt in Rust-for-Linux.
#
#   make            build rmm.ko against the cached perf test kernel
#                   (or against KDIR=/path/to/your/built/kernel)
#   make run        the demo: boot a VM, load rmm, show what it does, unload
#   make shell      a root shell in the VM, rmm.ko beside it (KERNEL=debug for
#                   the sanitizers); leave with poweroff or Ctrl-A X
#   make test       every test: host tests, format, lints, guest tests
#   make bench      rmm against SLUB, the page allocator and percpu_counter
#                   (bench/, README's performance section; about 2 minutes)
#   make fmt        format the sources;  make fmt-check  check only
#   make clippy     lint the host crate and the module (kernel CLIPPY=1)
#   make rust-analyzer   write rust-project.json for editors
#
# Everything built or installed lives in $(RMM_CACHE) (default ~/.cache/rmm).

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
FLAVOUR := $(if $(KDIR),kdir,perf)
KERNEL ?= perf
RUSTFMT := /usr/bin/rustfmt
CLIPPY_DRIVER := /usr/bin/clippy-driver

.PHONY: all module setup run shell test bench host-test fmt fmt-check clippy rust-analyzer clean

all: module

setup:
	@scripts/setup

module: setup
	@ko=$$(scripts/build-module $(FLAVOUR) | tail -n 1) && cp "$$ko" rmm.ko && \
		echo "rmm: built rmm.ko ($(FLAVOUR) kernel)"

run: setup
	@scripts/vm-run --kernel perf --quiet tests/guest/demo.sh

shell: setup
	@scripts/vm-run --shell --kernel $(KERNEL)

test: setup
	@scripts/run-tests

bench: setup
	@scripts/bench

host-test:
	cargo test

fmt:
	cargo fmt
	$(RUSTFMT) --edition 2021 src/rmm.rs

fmt-check:
	cargo fmt --check
	$(RUSTFMT) --edition 2021 --check src/rmm.rs

clippy: setup
	cargo clippy --all-targets -- -D warnings
	@scripts/build-module $(if $(KDIR),kdir,debug) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) >/dev/null && \
		echo "rmm: kernel clippy: no warnings"

rust-analyzer: setup
	@scripts/rust-analyzer $(FLAVOUR)

clean:
	cargo clean
	rm -f rmm.ko rust-project.json
