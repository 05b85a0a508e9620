// SPDX-License-Identifier: GPL-2.0

//! The kernel-independent core of rmm, built on the host.
//!
//! The kernel module's crate root is `src/rmm.rs`; it declares the same
//! modules from the same files, so what `cargo test` checks here is the code
//! the module runs. Only [`host`] is host-only.

#![no_std]
#![warn(
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    unsafe_op_in_unsafe_fn
)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::float_arithmetic)]

pub mod address_hash;
pub mod areas;
pub mod bench_loops;
pub mod bench_remote;
pub mod bench_spec;
pub mod buddy;
pub mod control;
pub mod gfp;
pub mod kmalloc;
pub mod page_alloc;
pub mod percpu_counter;
pub mod platform;
pub mod ratelimit;
pub mod slab;
pub mod state;
pub mod stress;
pub mod views;
pub mod vmalloc;

pub mod host;
