// SPDX-License-Identifier: GPL-2.0

//! Pages: rmm's page allocator against the kernel's (`pages`: block pairs
//! per order, batches of order-0 pages), and rmm's vmalloc against the
//! kernel's (`vmalloc`).

use super::{log, timed, Pages};
use crate::bench_loops::{block_batches, block_pairs, Blocks};
use crate::bench_spec::{Record, Selection, MAX_BENCH_ORDER, PAGE_BATCH, VMALLOC_PAGES};
use crate::gfp::Gfp;
use crate::kernel_layer::bindings;
use crate::vmalloc::{self, VmArea};
use core::hint::black_box;
use core::ptr::{null_mut, NonNull};
use kernel::alloc::{flags, KVec};
use kernel::ffi::c_ulong;
use kernel::prelude::*;

/// rmm's page allocator.
struct RmmBlocks<'a>(&'a Pages);

impl Blocks for RmmBlocks<'_> {
    const IMPL: &'static str = "rmm";

    #[inline(never)]
    fn alloc(&self, order: u32) -> Option<NonNull<u8>> {
        self.0.alloc_pages(order, Gfp::KERNEL).ok()
    }

    #[inline(never)]
    unsafe fn free(&self, block: NonNull<u8>, order: u32) {
        // SAFETY: The caller guarantees that `block` is a live block of
        // this order from this allocator, no longer used.
        let _ = unsafe { self.0.free_pages(block, order) };
    }
}

/// The kernel's page allocator through its address interface
/// (`__get_free_pages`, `free_pages`), the interface rmm's has.
struct KernelBlocks;

impl Blocks for KernelBlocks {
    const IMPL: &'static str = "kernel";

    #[inline]
    fn alloc(&self, order: u32) -> Option<NonNull<u8>> {
        // SAFETY: Any order and flags are accepted; 0 means failure.
        let addr = unsafe { bindings::get_free_pages_noprof(bindings::GFP_KERNEL, order) };
        NonNull::new(addr as *mut u8)
    }

    #[inline]
    unsafe fn free(&self, block: NonNull<u8>, order: u32) {
        // SAFETY: The caller guarantees that `block` came from
        // `__get_free_pages` with this order and is no longer used.
        unsafe { bindings::free_pages(block.as_ptr() as c_ulong, order) };
    }
}

fn log_blocks<B: Blocks>(blocks: &B, selection: &Selection) -> Result {
    for order in 0..=MAX_BENCH_ORDER {
        let iters = selection.page_iters(order);
        block_pairs(blocks, order, Selection::warmup(iters).min(100));
        let ns = timed(|| block_pairs(blocks, order, iters))?;
        log(Record::new("page_pair", B::IMPL, iters.into(), ns).order(order));
    }
    let rounds = selection.page_batch_rounds();
    let mut slots = KVec::from_elem(null_mut(), PAGE_BATCH, flags::GFP_KERNEL)?;
    block_batches(blocks, &mut slots, 1);
    let ns = timed(|| block_batches(blocks, &mut slots, rounds))?;
    let ops = u64::from(rounds) * PAGE_BATCH as u64;
    log(Record::new("page_batch", B::IMPL, ops, ns).order(0));
    Ok(())
}

pub(super) fn page_blocks(selection: &Selection, pages: &Pages) -> Result {
    log_blocks(&RmmBlocks(pages), selection)?;
    log_blocks(&KernelBlocks, selection)
}

// vmalloc.

/// rmm's vmalloc of `size` bytes (out of line, as the kernel's is).
#[inline(never)]
fn rmm_vmalloc(pages: &Pages, size: usize) -> Option<VmArea> {
    vmalloc::vmalloc(pages, size, Gfp::KERNEL).ok()
}

/// rmm's vfree.
///
/// # Safety
///
/// `area` came from [`rmm_vmalloc`] with `pages` and is not used.
#[inline(never)]
unsafe fn rmm_vfree(pages: &Pages, area: VmArea) {
    // SAFETY: The caller's guarantee.
    unsafe { vmalloc::vfree(pages, area) };
}

fn rmm_vmalloc_pairs(pages: &Pages, size: usize, iters: u32) -> bool {
    for _ in 0..iters {
        let Some(area) = rmm_vmalloc(pages, black_box(size)) else {
            return false;
        };
        // SAFETY: Just allocated from `pages`, not used.
        unsafe { rmm_vfree(pages, black_box(area)) };
    }
    true
}

fn kernel_vmalloc_pairs(size: usize, iters: u32) -> bool {
    for _ in 0..iters {
        // SAFETY: `vmalloc` may sleep, which the benchmark (run at load, in
        // process context) allows; it returns null on failure.
        let area = unsafe { bindings::vmalloc_noprof(black_box(size) as c_ulong) };
        if area.is_null() {
            return false;
        }
        // SAFETY: From `vmalloc` just now, not used again.
        unsafe { bindings::vfree(black_box(area)) };
    }
    true
}

/// vmalloc and vfree pairs of [`VMALLOC_PAGES`] pages, rmm's (pages from
/// its page allocator, mapped with `vmap`) against the kernel's.
pub(super) fn vmallocs(selection: &Selection, pages: &Pages) -> Result {
    for nr_pages in VMALLOC_PAGES {
        let size = nr_pages * crate::platform::PAGE_SIZE;
        let iters = selection.vmalloc_iters(nr_pages);
        let warmup = Selection::warmup(iters).min(50);
        rmm_vmalloc_pairs(pages, size, warmup);
        let ns = timed(|| rmm_vmalloc_pairs(pages, size, iters))?;
        log(Record::new("vmalloc", "rmm", iters.into(), ns).size(size));
        kernel_vmalloc_pairs(size, warmup);
        let ns = timed(|| kernel_vmalloc_pairs(size, iters))?;
        log(Record::new("vmalloc", "kernel", iters.into(), ns).size(size));
    }
    Ok(())
}
