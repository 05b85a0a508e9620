// SPDX-License-Identifier: GPL-2.0

//! vmalloc over rmm's own pages: memory that is contiguous in virtual
//! addresses, built from single pages wherever they are in physical memory.
//!
//! The kernel's `vmalloc` (`mm/vmalloc.c`, `__vmalloc_node_range`) takes
//! order-0 pages from the page allocator one by one, keeps them in an array
//! (`vm_struct::pages`) and maps them into a free range of the vmalloc
//! address space through the kernel's page tables; `vfree` unmaps the
//! range and frees the pages. This module does the same with rmm's pieces:
//!
//! - the pages come from rmm's [`PageAllocator`] ([`PageAllocator::alloc_pages`]
//!   of order 0, so through the CPU's per-CPU list), with the flags given;
//! - the array of page addresses is bookkeeping memory
//!   ([`Platform::alloc_meta`]);
//! - the mapping is the platform's mapping service
//!   ([`Platform::map_pages`]; in the kernel `vmap`, which also reserves
//!   a guard page after the range, and [`Platform::unmap_pages`], `vunmap`).
//!
//! A request that cannot be served fails and leaves nothing behind: pages
//! taken before the failure go back to the page allocator, the array is
//! freed and nothing is mapped. The mapping counts as one page request for
//! the fault injector ([`crate::page_alloc::FaultInjector`]), after the
//! pages, so that tests can make it fail.
//!
//! Mapping and unmapping may sleep, as in the kernel: [`vmalloc`] and
//! [`vfree`] are for process context only.

use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::platform::{Platform, PAGE_SIZE};
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

/// Largest area [`vmalloc`] serves: 1 GiB.
pub const MAX_VMALLOC_SIZE: usize = 1 << 30;

/// Pages allocated (or freed) between two [`Platform::cond_resched`]
/// calls.
const RESCHED_EVERY: usize = 256;

/// Why [`vmalloc`] failed. Nothing is held or mapped afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmallocError {
    /// A size of 0 or above [`MAX_VMALLOC_SIZE`], or flags that do not
    /// allow sleeping (mapping may sleep).
    BadRequest,
    /// No bookkeeping memory for the array of pages.
    NoArray,
    /// The page allocator ran out after `got` of `wanted` pages (all given
    /// back).
    NoPages {
        /// Pages obtained before the failure.
        got: usize,
        /// Pages asked for.
        wanted: usize,
    },
    /// The pages were there but could not be mapped (no virtual range, no
    /// page tables, or fault injection).
    MapFailed,
}

impl fmt::Display for VmallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmallocError::BadRequest => write!(
                f,
                "size must be 1 to {} MiB, flags must allow sleeping",
                MAX_VMALLOC_SIZE >> 20
            ),
            VmallocError::NoArray => f.write_str("out of memory for the page array"),
            VmallocError::NoPages { got, wanted } => write!(
                f,
                "out of memory after {got} of {wanted} pages, all given back"
            ),
            VmallocError::MapFailed => f.write_str("mapping the pages failed, all given back"),
        }
    }
}

/// Pages of an area of `size` bytes: `size` rounded up to whole pages.
pub const fn pages_for(size: usize) -> usize {
    size.div_ceil(PAGE_SIZE)
}

/// A virtually contiguous area: order-0 pages of a [`PageAllocator`]
/// mapped in order at [`VmArea::addr`].
///
/// It must be given back with [`vfree`] to the allocator it came from; a
/// dropped area leaks its pages, its array and its mapping.
///
/// # Invariants
///
/// `pages` points to an array of `nr_pages` (at least 1) page addresses in
/// bookkeeping memory from the allocator's platform (`alloc_meta` with
/// `VmArea::array_layout`); each is an order-0 block handed out by the
/// allocator for this area alone; `addr` is the start of their mapping, in
/// array order, by that platform's `map_pages`.
pub struct VmArea {
    addr: NonNull<u8>,
    pages: NonNull<NonNull<u8>>,
    nr_pages: usize,
}

// SAFETY: the area owns its pages, its array and its mapping; nothing else
// refers to them, so it may move to another thread.
unsafe impl Send for VmArea {}
// SAFETY: shared access only reads the array.
unsafe impl Sync for VmArea {}

impl VmArea {
    /// The layout of an array of `nr_pages` page addresses.
    fn array_layout(nr_pages: usize) -> Option<Layout> {
        Layout::array::<NonNull<u8>>(nr_pages).ok()
    }

    /// The first byte of the area, in the mapping.
    pub fn addr(&self) -> NonNull<u8> {
        self.addr
    }

    /// Pages in the area.
    pub fn nr_pages(&self) -> usize {
        self.nr_pages
    }

    /// Bytes in the area (whole pages).
    pub fn size(&self) -> usize {
        self.nr_pages * PAGE_SIZE
    }

    /// Bytes of virtual addresses the area takes: its pages and the guard
    /// page the kernel's `vmap` reserves after them (what
    /// `/proc/vmallocinfo` shows as the area's size).
    pub fn reserved_size(&self) -> usize {
        (self.nr_pages + 1) * PAGE_SIZE
    }

    /// The address of each page in the page allocator's memory (the
    /// direct map in the kernel), in the order they are mapped.
    pub fn pages(&self) -> &[NonNull<u8>] {
        // SAFETY: by the invariants `pages` is an initialised array of
        // `nr_pages` entries owned by the area, which is borrowed.
        unsafe { core::slice::from_raw_parts(self.pages.as_ptr(), self.nr_pages) }
    }

    /// The address of page `index` of the area in the mapping.
    pub fn page_addr(&self, index: usize) -> usize {
        (self.addr.as_ptr() as usize).wrapping_add(index.wrapping_mul(PAGE_SIZE))
    }
}

/// Gives back the first `count` pages of `array` and the array itself.
///
/// # Safety
///
/// `array` came from `alloc_meta` of `pages`' platform with the layout of
/// `capacity` addresses; its first `count` entries are order-0 blocks
/// handed out by `pages` and used by nothing else; none of it is used
/// afterwards.
unsafe fn give_back<P: Platform>(
    pages: &PageAllocator<P>,
    array: NonNull<NonNull<u8>>,
    count: usize,
    capacity: usize,
) {
    let platform = pages.platform();
    for index in 0..count {
        if index > 0 && index % RESCHED_EVERY == 0 {
            platform.cond_resched();
        }
        // SAFETY: `index < count`, an initialised entry per the caller.
        let page = unsafe { array.as_ptr().add(index).read() };
        // SAFETY: an order-0 block of `pages` that nothing uses, per the
        // caller. A rejection would be reported by the allocator.
        let _ = unsafe { pages.free_pages(page, 0) };
    }
    if let Some(layout) = VmArea::array_layout(capacity) {
        // SAFETY: allocated with this layout from this platform, per the
        // caller, and not used afterwards.
        unsafe { platform.free_meta(array.cast(), layout) };
    }
}

/// Allocates `size` bytes (rounded up to pages) of virtually contiguous
/// memory: that many order-0 pages from `pages`, with `gfp` (zeroed if it
/// says so; it must allow sleeping), mapped in one range. Fails without
/// leaving anything held or mapped.
pub fn vmalloc<P: Platform>(
    pages: &PageAllocator<P>,
    size: usize,
    gfp: Gfp,
) -> Result<VmArea, VmallocError> {
    let platform = pages.platform();
    let nr_pages = pages_for(size);
    if nr_pages == 0 || size > MAX_VMALLOC_SIZE || !gfp.may_sleep() {
        return Err(VmallocError::BadRequest);
    }
    let layout = VmArea::array_layout(nr_pages).ok_or(VmallocError::BadRequest)?;
    let array = platform
        .alloc_meta(layout, gfp.without_zero())
        .ok_or(VmallocError::NoArray)?
        .cast::<NonNull<u8>>();
    for index in 0..nr_pages {
        if index > 0 && index % RESCHED_EVERY == 0 {
            platform.cond_resched();
        }
        match pages.alloc_pages(0, gfp) {
            // SAFETY: `index < nr_pages`, inside the array.
            Ok(page) => unsafe { array.as_ptr().add(index).write(page) },
            Err(_) => {
                // SAFETY: the array came from `alloc_meta` with the layout
                // of `nr_pages` addresses; its first `index` entries are
                // pages just allocated for this area.
                unsafe { give_back(pages, array, index, nr_pages) };
                return Err(VmallocError::NoPages {
                    got: index,
                    wanted: nr_pages,
                });
            }
        }
    }
    // SAFETY: all `nr_pages` entries were written above.
    let list = unsafe { core::slice::from_raw_parts(array.as_ptr(), nr_pages) };
    let mapped = if pages.faults().should_fail() {
        None
    } else {
        platform.map_pages(list)
    };
    let Some(addr) = mapped else {
        // SAFETY: as above, with all `nr_pages` entries filled; the failed
        // mapping holds none of them.
        unsafe { give_back(pages, array, nr_pages, nr_pages) };
        return Err(VmallocError::MapFailed);
    };
    // INVARIANT: the array of `nr_pages` pages allocated above, mapped at
    // `addr` by the allocator's platform.
    Ok(VmArea {
        addr,
        pages: array,
        nr_pages,
    })
}

/// Unmaps `area` and gives its pages and its array back.
///
/// # Safety
///
/// `area` came from [`vmalloc`] with `pages`, and nothing uses its memory
/// (through the mapping or its pages) any more.
pub unsafe fn vfree<P: Platform>(pages: &PageAllocator<P>, area: VmArea) {
    // SAFETY: the mapping was made by this platform for `nr_pages` pages
    // (type invariants) and, per the caller, is no longer used.
    unsafe { pages.platform().unmap_pages(area.addr, area.nr_pages) };
    // SAFETY: the array and its pages are the area's alone (type
    // invariants), unmapped now and, per the caller, unused.
    unsafe { give_back(pages, area.pages, area.nr_pages, area.nr_pages) };
}
