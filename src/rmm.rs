// SPDX-License-Identifier: GPL-2.0

//! rmm: the kernel's memory allocators, rebuilt in Rust.
//!
//! The crate root of the kernel module. The allocator core (everything but
//! [`kernel_layer`]) is the same source that `cargo test` builds on the host
//! through `src/lib.rs`.

use kernel::prelude::*;

pub mod buddy;
pub mod control;
pub mod gfp;
pub mod kmalloc;
pub mod meta_vec;
pub mod page_alloc;
pub mod percpu_counter;
pub mod platform;
pub mod slab;

pub mod kernel_layer;

use kernel_layer::procfs::{ProcEntry, ProcShow, SeqWriter};

module! {
    type: Rmm,
    name: "rmm",
    author: "rmm developers",
    description: "The kernel's memory allocators (buddy, slab, per-CPU counters) rebuilt in Rust",
    license: "GPL",
}

struct SlabInfoView;

impl ProcShow for SlabInfoView {
    fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        out.write_str("slabinfo - version: 2.1\n")?;
        out.write_str("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n")
    }
}

struct Rmm {
    _slabinfo: ProcEntry,
}

impl kernel::Module for Rmm {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let slabinfo = ProcEntry::view::<SlabInfoView>(kernel::c_str!("rmm_slabinfo"), 0o400)?;
        pr_info!("loaded\n");
        Ok(Rmm {
            _slabinfo: slabinfo,
        })
    }
}

impl Drop for Rmm {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
