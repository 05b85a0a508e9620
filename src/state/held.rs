// SPDX-License-Identifier: GPL-2.0

//! What the control file holds: objects of each cache and page blocks of
//! each order, as stacks of addresses in page-sized blocks of bookkeeping
//! memory; allocating into them and freeing from them, with the pattern
//! check of `ctor` caches.

use super::errors::CtlErrorKind;
use super::{CORRUPTION_REPORTS, RESCHED_EVERY};
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::platform::{AllocError, Platform, PAGE_SIZE};
use crate::slab::{CtorCall, KmemCache};
use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::size_of;
use core::ptr::{self, NonNull};

/// The byte at `offset` of an object constructed by [`pattern_ctor`].
pub const fn pattern_byte(offset: usize) -> u8 {
    0x5a ^ (offset as u8)
}

/// The constructor of `create ... ctor` caches: byte `i` of the object
/// becomes [`pattern_byte`]`(i)`.
///
/// # Safety
///
/// As for every [`crate::slab::Ctor`]: `obj` is `call.size` writable bytes.
pub unsafe fn pattern_ctor(obj: NonNull<u8>, call: &CtorCall<'_>) {
    // SAFETY: per the caller's guarantee.
    unsafe { fill_pattern(obj, call.size) };
}

/// Writes the constructor's pattern into the `size` bytes at `obj`.
///
/// # Safety
///
/// `obj` is valid for writes of `size` bytes.
unsafe fn fill_pattern(obj: NonNull<u8>, size: usize) {
    for offset in 0..size {
        // SAFETY: inside the `size` bytes, per the caller.
        unsafe { obj.as_ptr().add(offset).write(pattern_byte(offset)) };
    }
}

/// The first byte of the `size`-byte object at `obj` that differs from the
/// constructor's pattern: its offset and value.
///
/// # Safety
///
/// `obj` must point to `size` readable bytes.
unsafe fn pattern_mismatch(obj: *const u8, size: usize) -> Option<(usize, u8)> {
    (0..size).find_map(|offset| {
        // SAFETY: `offset < size`, readable per the caller's guarantee.
        let value = unsafe { obj.add(offset).read() };
        (value != pattern_byte(offset)).then_some((offset, value))
    })
}

/// Addresses per block of an [`AddrStack`]: a page of words, less the link.
const STACK_BLOCK_SLOTS: usize = PAGE_SIZE / size_of::<*mut u8>() - 1;

/// One page-sized block of an [`AddrStack`].
#[repr(C)]
struct StackBlock {
    below: *mut StackBlock,
    slots: [*mut u8; STACK_BLOCK_SLOTS],
}

/// A stack of pointers (held objects, held blocks) in page-sized blocks of
/// bookkeeping memory.
///
/// Holding a million objects takes 8 MiB of addresses; one contiguous
/// array of that size is more than the kernel's `kmalloc` (behind
/// [`Platform::alloc_meta`]) can give, so the addresses go in a chain of
/// page-sized blocks instead, and no block is ever copied.
///
/// # Invariants
///
/// `top` is null or a [`StackBlock`] from `alloc_meta` with its layout,
/// whose first `top_len` slots (1 to `STACK_BLOCK_SLOTS`) are filled; every
/// block down its `below` chain is such a block with all slots filled; `len`
/// is the number of filled slots in all of them (0 exactly when `top` is
/// null).
pub(super) struct AddrStack {
    top: *mut StackBlock,
    top_len: usize,
    len: usize,
}

// SAFETY: the stack owns its blocks; nothing else points to them.
unsafe impl Send for AddrStack {}
// SAFETY: shared access only reads the blocks.
unsafe impl Sync for AddrStack {}

impl AddrStack {
    const BLOCK_LAYOUT: Layout = Layout::new::<StackBlock>();

    pub(super) const fn new() -> Self {
        // INVARIANT: empty.
        AddrStack {
            top: ptr::null_mut(),
            top_len: 0,
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push<P: Platform>(
        &mut self,
        platform: &P,
        ptr: NonNull<u8>,
    ) -> Result<(), AllocError> {
        if self.top.is_null() || self.top_len == STACK_BLOCK_SLOTS {
            let block = platform
                .alloc_meta(Self::BLOCK_LAYOUT, Gfp::KERNEL)
                .ok_or(AllocError)?
                .cast::<StackBlock>()
                .as_ptr();
            // SAFETY: fresh allocation with the block's layout; only the
            // link is initialised, slots are written before they are read.
            unsafe { ptr::addr_of_mut!((*block).below).write(self.top) };
            // INVARIANT: the old top was full (or null), the new one empty
            // until the write below.
            self.top = block;
            self.top_len = 0;
        }
        // SAFETY: `top` is a live block and `top_len < STACK_BLOCK_SLOTS`.
        unsafe { ptr::addr_of_mut!((*self.top).slots[self.top_len]).write(ptr.as_ptr()) };
        self.top_len += 1;
        self.len += 1;
        Ok(())
    }

    pub(super) fn pop<P: Platform>(&mut self, platform: &P) -> Option<NonNull<u8>> {
        if self.top.is_null() {
            return None;
        }
        self.top_len -= 1;
        self.len -= 1;
        // SAFETY: by the invariants the top block is live and its slot
        // `top_len` (the old `top_len - 1`) is filled.
        let popped = unsafe { (*self.top).slots[self.top_len] };
        if self.top_len == 0 {
            let block = self.top;
            // SAFETY: the block is live; its link was initialised.
            self.top = unsafe { (*block).below };
            self.top_len = if self.top.is_null() {
                0
            } else {
                STACK_BLOCK_SLOTS
            };
            if let Some(block) = NonNull::new(block) {
                // SAFETY: the block came from `alloc_meta` with this layout
                // and is out of the chain.
                unsafe { platform.free_meta(block.cast(), Self::BLOCK_LAYOUT) };
            }
        }
        // Only non-null pointers are pushed.
        NonNull::new(popped)
    }

    /// Pushes `count` pointers from `alloc`, calling
    /// [`Platform::cond_resched`] every [`RESCHED_EVERY`]. When `alloc`
    /// runs out, or the stack cannot grow (then `give_back` gets the
    /// pointer it could not keep), stops with `OutOfMemory` saying how many
    /// were pushed; those stay.
    pub(super) fn fill<P: Platform>(
        &mut self,
        platform: &P,
        count: usize,
        mut alloc: impl FnMut() -> Option<NonNull<u8>>,
        give_back: impl FnOnce(NonNull<u8>),
    ) -> Result<(), CtlErrorKind> {
        for done in 0..count {
            if done > 0 && done % RESCHED_EVERY == 0 {
                platform.cond_resched();
            }
            let out_of_memory = CtlErrorKind::OutOfMemory {
                done,
                requested: count,
            };
            let ptr = alloc().ok_or(out_of_memory)?;
            if self.push(platform, ptr).is_err() {
                give_back(ptr);
                return Err(out_of_memory);
            }
        }
        Ok(())
    }

    /// Pops up to `count` pointers, most recent first, into `release`,
    /// calling [`Platform::cond_resched`] every [`RESCHED_EVERY`]; returns
    /// how many.
    pub(super) fn drain<P: Platform>(
        &mut self,
        platform: &P,
        count: usize,
        mut release: impl FnMut(NonNull<u8>),
    ) -> usize {
        let mut popped = 0;
        while popped < count {
            let Some(ptr) = self.pop(platform) else {
                break;
            };
            if popped > 0 && popped % RESCHED_EVERY == 0 {
                platform.cond_resched();
            }
            release(ptr);
            popped += 1;
        }
        popped
    }

    /// The pointers, most recently pushed first.
    pub(super) fn iter(&self) -> AddrIter<'_> {
        AddrIter {
            block: self.top,
            index: self.top_len,
            _stack: PhantomData,
        }
    }
}

impl Drop for AddrStack {
    fn drop(&mut self) {
        // The blocks can only go back through the platform, which the stack
        // does not keep: owners pop everything first.
        debug_assert!(self.top.is_null(), "AddrStack dropped while not empty");
    }
}

/// Iterator over an [`AddrStack`], top first.
pub(super) struct AddrIter<'a> {
    block: *mut StackBlock,
    index: usize,
    _stack: PhantomData<&'a AddrStack>,
}

impl Iterator for AddrIter<'_> {
    type Item = NonNull<u8>;

    fn next(&mut self) -> Option<NonNull<u8>> {
        if self.block.is_null() {
            return None;
        }
        self.index -= 1;
        // SAFETY: the stack is borrowed, so its blocks are live; `index`
        // was below the block's filled slots.
        let ptr = unsafe { (*self.block).slots[self.index] };
        if self.index == 0 {
            // SAFETY: as above.
            self.block = unsafe { (*self.block).below };
            self.index = STACK_BLOCK_SLOTS;
        }
        // Only non-null pointers are pushed.
        NonNull::new(ptr)
    }
}

/// Objects held for the control file in one cache.
pub(super) struct Held {
    pub(super) objects: AddrStack,
    /// The cache has [`pattern_ctor`]: check objects before freeing them.
    pub(super) pattern: bool,
    pub(super) corruptions: usize,
}

impl Held {
    pub(super) const fn new(pattern: bool) -> Self {
        Held {
            objects: AddrStack::new(),
            pattern,
            corruptions: 0,
        }
    }
}

/// Outcome of freeing held objects of one cache.
#[derive(Default)]
pub(super) struct Freed {
    pub(super) objects: usize,
    pub(super) corrupted: usize,
}

/// Allocates `count` objects into `held`, from `node`'s slabs if one is
/// named (a node with memory, checked by the caller); on running out,
/// keeps what was allocated and says how much.
pub(super) fn alloc_held<P: Platform>(
    pages: &PageAllocator<P>,
    cache: &KmemCache<P>,
    held: &mut Held,
    count: usize,
    gfp: Gfp,
    node: Option<usize>,
) -> Result<(), CtlErrorKind> {
    held.objects.fill(
        pages.platform(),
        count,
        || alloc_object(pages, cache, gfp, node),
        |obj| {
            // SAFETY: the object was just allocated and never handed out.
            let _ = unsafe { cache.free(pages, obj) };
        },
    )
}

/// One object of `cache` for `alloc NAME COUNT [FLAGS] [node=N]`, from
/// `node`'s slabs if one is named (`kmem_cache_alloc_node`); `None` when
/// the cache has no memory for it.
fn alloc_object<P: Platform>(
    pages: &PageAllocator<P>,
    cache: &KmemCache<P>,
    gfp: Gfp,
    node: Option<usize>,
) -> Option<NonNull<u8>> {
    match node {
        None => cache.alloc(pages, gfp).ok(),
        Some(node) => cache.alloc_node(pages, gfp, node).ok(),
    }
}

/// Frees the `count` most recently held objects (at most what is held),
/// checking the constructor pattern first; `what` names the operation in
/// corruption reports.
pub(super) fn free_held<P: Platform>(
    pages: &PageAllocator<P>,
    cache: &KmemCache<P>,
    held: &mut Held,
    count: usize,
    what: &str,
) -> Freed {
    let platform = pages.platform();
    let size = cache.object_size();
    let pattern = held.pattern;
    let mut corrupted = 0;
    let objects = held.objects.drain(platform, count, |obj| {
        if pattern {
            // SAFETY: a held object of `size` bytes, allocated from `cache`
            // and not freed.
            if let Some((offset, value)) = unsafe { pattern_mismatch(obj.as_ptr(), size) } {
                corrupted += 1;
                if corrupted <= CORRUPTION_REPORTS {
                    platform.report(format_args!(
                        "rmm_ctl: {what} {}: object {obj:p} corrupted: byte {offset} is {value:#04x}, expected {:#04x}",
                        cache.name(),
                        pattern_byte(offset)
                    ));
                }
                // Give the cache back an object in constructed state.
                // SAFETY: as above.
                unsafe { fill_pattern(obj, size) };
            }
        }
        // SAFETY: the object was allocated from `cache` by `alloc_held` and
        // only the held stack knew it. A rejection is reported by the cache.
        let _ = unsafe { cache.free(pages, obj) };
    });
    let freed = Freed { objects, corrupted };
    if freed.corrupted > CORRUPTION_REPORTS {
        platform.report(format_args!(
            "rmm_ctl: {what} {}: {} more corrupted objects not listed",
            cache.name(),
            freed.corrupted - CORRUPTION_REPORTS
        ));
    }
    held.corruptions += freed.corrupted;
    freed
}
