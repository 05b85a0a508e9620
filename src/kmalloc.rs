// SPDX-License-Identifier: GPL-2.0

//! `kmalloc`: memory of any size, from generic slab caches for requests up
//! to [`KMALLOC_MAX_CACHE_SIZE`] and straight from the page allocator above.
//!
//! The size classes are the kernel's: powers of two from 8 to 8192 bytes
//! plus 96 and 192 (`kmalloc-8` ... `kmalloc-8192`). Power-of-two classes
//! are naturally aligned (aligned to their size, up to a page), as the
//! kernel guarantees since 5.4; the 96- and 192-byte classes are aligned to
//! 8 bytes.
//!
//! Larger requests get a block of `2^order` pages. Its page owner word
//! records the order and this kmalloc instance, so [`Kmalloc::kfree`] and
//! [`Kmalloc::ksize`] need nothing else. A request of 0 bytes returns
//! [`zero_size_ptr`], a non-null sentinel that must not be dereferenced
//! (the kernel's `ZERO_SIZE_PTR`); freeing it does nothing.

use crate::gfp::Gfp;
use crate::page_alloc::{PageAllocator, MAX_ORDER};
use crate::platform::{AllocError, Platform, PAGE_SIZE};
use crate::slab::{
    reserve_owner_ids, CreateError, DestroyError, KmemCache, OwnerTag, SlabFlags, SlabFreeError,
};
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Object sizes of the generic caches, smallest first.
pub const KMALLOC_SIZES: [usize; 13] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];

/// Names of the generic caches, in the order of [`KMALLOC_SIZES`].
pub const KMALLOC_NAMES: [&str; 13] = [
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-32",
    "kmalloc-64",
    "kmalloc-96",
    "kmalloc-128",
    "kmalloc-192",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1024",
    "kmalloc-2048",
    "kmalloc-4096",
    "kmalloc-8192",
];

/// Number of generic caches.
pub const KMALLOC_CACHES: usize = KMALLOC_SIZES.len();

/// Largest request served by a generic cache; larger ones go to the page
/// allocator.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;

/// Largest request [`Kmalloc::kmalloc`] can serve: a block of
/// [`MAX_ORDER`] (4 MiB).
pub const KMALLOC_MAX_SIZE: usize = PAGE_SIZE << MAX_ORDER;

/// Address of the zero-size sentinel, as the kernel's `ZERO_SIZE_PTR`.
pub const ZERO_SIZE_PTR: usize = 16;

/// The sentinel [`Kmalloc::kmalloc`] returns for a 0-byte request. It is
/// not memory: never read or write through it.
pub fn zero_size_ptr() -> NonNull<u8> {
    NonNull::new(ZERO_SIZE_PTR as *mut u8).unwrap_or(NonNull::dangling())
}

/// Whether `ptr` is the zero-size sentinel.
pub fn is_zero_size_ptr(ptr: *const u8) -> bool {
    ptr as usize == ZERO_SIZE_PTR
}

/// The kernel's `size_index` table: generic cache for sizes 1..=192, by
/// `(size - 1) / 8`.
const SMALL_INDEX: [u8; 24] = [
    0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6,
];

/// The index in [`KMALLOC_SIZES`] of the cache serving `size` bytes, or
/// `None` for 0 and for sizes above [`KMALLOC_MAX_CACHE_SIZE`]
/// (`kmalloc_index` in the kernel).
#[inline(always)]
pub fn kmalloc_index(size: usize) -> Option<usize> {
    // 0 wraps to the largest value, so each range test also rules it out.
    let last_byte = size.wrapping_sub(1);
    if last_byte < 192 {
        Some(usize::from(SMALL_INDEX[last_byte / 8]))
    } else if last_byte < KMALLOC_MAX_CACHE_SIZE {
        // ceil(log2(size)): 8 for 193..=256, ..., 13 for 4097..=8192.
        let log = (usize::BITS - last_byte.leading_zeros()) as usize;
        Some(log - 8 + 7)
    } else {
        None
    }
}

/// The page order of a large request: the smallest order whose block holds
/// `size` bytes, or `None` above [`KMALLOC_MAX_SIZE`].
pub fn large_order(size: usize) -> Option<u32> {
    if size > KMALLOC_MAX_SIZE {
        return None;
    }
    let pages = size.div_ceil(PAGE_SIZE).max(1);
    Some(pages.next_power_of_two().trailing_zeros())
}

/// The generic caches and large-block bookkeeping of one kmalloc instance.
///
/// # Invariants
///
/// `caches[i]` serves [`KMALLOC_SIZES`]`[i]` and has owner id
/// `first_cache_id + i`; `id` is this instance's own owner id, in the owner
/// word of every large block it hands out.
///
/// The caches live in bookkeeping memory ([`Platform::alloc_meta`]), not
/// inside this value: together they are several kilobytes, too much to
/// build or move on a 16 KiB kernel stack. `live_caches` is
/// [`KMALLOC_CACHES`] while `caches` points to them, and 0 after a
/// successful [`Kmalloc::destroy`], which frees that memory (`caches` then
/// dangles and is never dereferenced). A count rather than an `Option`, so
/// that the fast paths test one bound instead of a pointer and a bound.
pub struct Kmalloc<P: Platform> {
    id: usize,
    first_cache_id: usize,
    caches: NonNull<KmemCache<P>>,
    live_caches: usize,
    large_blocks: AtomicUsize,
    errors: AtomicUsize,
}

// SAFETY: `Kmalloc` owns its caches like a `Box<[KmemCache<P>]>` would;
// caches are shared between threads through `&self` anyway.
unsafe impl<P: Platform> Send for Kmalloc<P> where KmemCache<P>: Send {}
// SAFETY: As above: shared access only hands out `&KmemCache<P>`.
unsafe impl<P: Platform> Sync for Kmalloc<P> where KmemCache<P>: Sync {}

fn caches_layout<P: Platform>() -> Layout {
    Layout::new::<[KmemCache<P>; KMALLOC_CACHES]>()
}

impl<P: Platform> Kmalloc<P> {
    /// Creates the generic caches, without debugging.
    pub fn new(pages: &PageAllocator<P>) -> Result<Self, CreateError> {
        Self::with_flags(pages, SlabFlags::NONE)
    }

    /// Creates the generic caches with `flags` (for instance
    /// [`SlabFlags::DEBUG`], like booting with `slab_debug`).
    pub fn with_flags(pages: &PageAllocator<P>, flags: SlabFlags) -> Result<Self, CreateError> {
        let first_id = reserve_owner_ids(pages, KMALLOC_CACHES + 1).ok_or(CreateError::NoMemory)?;
        let first_cache_id = first_id + 1;
        // Built in place in bookkeeping memory, one cache at a time: the
        // caches are a few kilobytes and kernel stacks small.
        let platform = pages.platform();
        let layout = caches_layout::<P>();
        let array = platform
            .alloc_meta(layout, Gfp::KERNEL)
            .ok_or(CreateError::NoMemory)?
            .cast::<KmemCache<P>>();
        for index in 0..KMALLOC_CACHES {
            let size = KMALLOC_SIZES[index];
            let align = if size.is_power_of_two() {
                size.min(PAGE_SIZE)
            } else {
                0
            };
            let name = KMALLOC_NAMES[index];
            match KmemCache::create_with_id(
                pages,
                name,
                size,
                align,
                flags,
                None,
                first_cache_id + index,
            ) {
                Ok(cache) => {
                    // SAFETY: `array` has room for `KMALLOC_CACHES` caches
                    // and slot `index` is not initialised yet.
                    unsafe { array.as_ptr().add(index).write(cache) };
                }
                Err(error) => {
                    for done in 0..index {
                        // SAFETY: slots below `index` were initialised
                        // above and are read out once, here.
                        let cache = unsafe { array.as_ptr().add(done).read() };
                        // A cache without allocations always destroys.
                        let _ = cache.destroy(pages);
                    }
                    // SAFETY: `array` came from `alloc_meta` with `layout`
                    // and holds no live cache any more.
                    unsafe { platform.free_meta(array.cast(), layout) };
                    return Err(error);
                }
            }
        }
        // INVARIANT: cache `i` was created for size `i` with id
        // `first_cache_id + i`; `first_id` was reserved for this instance.
        Ok(Kmalloc {
            id: first_id,
            first_cache_id,
            caches: array,
            live_caches: KMALLOC_CACHES,
            large_blocks: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
        })
    }

    /// The generic caches, smallest first; empty after `destroy`.
    #[inline(always)]
    fn cache_slice(&self) -> &[KmemCache<P>] {
        // SAFETY: `caches` points to `live_caches` initialised caches owned
        // by `self` (none after `destroy`, when the dangling but aligned
        // pointer makes an empty slice).
        unsafe { core::slice::from_raw_parts(self.caches.as_ptr(), self.live_caches) }
    }

    /// The generic cache serving `size` bytes, if any.
    #[inline(always)]
    pub fn cache_for(&self, size: usize) -> Option<&KmemCache<P>> {
        kmalloc_index(size).and_then(|index| self.cache_slice().get(index))
    }

    /// The generic caches, smallest first (for `/proc/slabinfo`).
    pub fn caches(&self) -> impl Iterator<Item = &KmemCache<P>> + '_ {
        self.cache_slice().iter()
    }

    /// Large blocks currently handed out.
    pub fn large_blocks(&self) -> usize {
        self.large_blocks.load(Ordering::Relaxed)
    }

    /// Invalid `kfree`/`ksize` pointers that belonged to no generic cache
    /// (those that did are counted by the cache).
    pub fn errors(&self) -> usize {
        self.errors.load(Ordering::Relaxed)
    }

    /// Allocates `size` bytes: from the generic cache of the size class, or
    /// a page block above [`KMALLOC_MAX_CACHE_SIZE`]; [`zero_size_ptr`] for
    /// 0 bytes. `Gfp::ZERO` zeroes the memory.
    #[inline]
    pub fn kmalloc(
        &self,
        pages: &PageAllocator<P>,
        size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        // A destroyed instance has no caches, so this finds none.
        if let Some(cache) = self.cache_for(size) {
            return cache.alloc(pages, gfp);
        }
        self.kmalloc_uncached(pages, size, gfp)
    }

    /// Every request no generic cache serves: a destroyed instance, 0 bytes,
    /// large blocks.
    #[cold]
    #[inline(never)]
    fn kmalloc_uncached(
        &self,
        pages: &PageAllocator<P>,
        size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        if self.live_caches == 0 {
            // Destroyed: nothing more is handed out, large blocks included.
            return Err(AllocError);
        }
        if size == 0 {
            return Ok(zero_size_ptr());
        }
        let order = large_order(size).ok_or(AllocError)?;
        let block = pages.alloc_pages(order, gfp)?;
        let tag = OwnerTag::Large {
            owner_id: self.id,
            order,
        };
        // SAFETY: a block just allocated at `order`, tagged as this
        // instance's large block of that order.
        unsafe { pages.set_block_owner(block, order, tag.encode(), 0) };
        self.large_blocks.fetch_add(1, Ordering::Relaxed);
        Ok(block)
    }

    /// The generic cache whose slab has the owner word `word`.
    fn cache_of(&self, word: usize) -> Option<&KmemCache<P>> {
        let OwnerTag::Slab { cache_id, .. } = OwnerTag::decode(word) else {
            return None;
        };
        // Ids below ours wrap to huge indexes, out of the slice.
        self.cache_slice()
            .get(cache_id.wrapping_sub(self.first_cache_id))
    }

    fn report_error(&self, pages: &PageAllocator<P>, ptr: *const u8, what: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        pages
            .platform()
            .report(format_args!("rmm kmalloc: kfree of {ptr:p}: {what}"));
    }

    /// Frees memory from [`Kmalloc::kmalloc`].
    ///
    /// The zero-size sentinel is accepted and ignored. Pointers of no
    /// generic cache and no large block of this instance, and large-block
    /// pointers that are not the start of their block, are reported and
    /// rejected with [`SlabFreeError::NotFromCache`] or
    /// [`SlabFreeError::NotAnObject`]; pointers into a generic cache are
    /// checked by the cache (see [`KmemCache::free`]).
    ///
    /// # Safety
    ///
    /// As for [`KmemCache::free`]: nothing may use the memory after a
    /// successful free; outside debug mode `ptr` must not be already free.
    #[inline]
    pub unsafe fn kfree(
        &self,
        pages: &PageAllocator<P>,
        ptr: NonNull<u8>,
    ) -> Result<(), SlabFreeError> {
        // One owner lookup finds the cache and validates the object. The
        // zero-size sentinel is in no chunk: its owner word is 0.
        let word = pages.owner_word(ptr.as_ptr());
        // A guess, read as if `word` were an on-slab tag, so that the common
        // case costs a shift and a bound: the cache's fast path checks the
        // whole word (kind bits and id), so a wrong guess only sends the
        // free to the slow path, which decodes the word properly.
        let guess = self
            .cache_slice()
            .get(OwnerTag::id_bits(word).wrapping_sub(self.first_cache_id));
        // SAFETY: the caller's guarantees are those of `free`; `word` is
        // the owner word of `ptr`.
        if guess.is_some_and(|cache| unsafe { cache.try_free_fast(ptr, word) }) {
            return Ok(());
        }
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.kfree_slow(pages, ptr, word) }
    }

    /// Every kfree but an object into an array with room: full arrays, debug mode, the zero-size sentinel,
    /// large blocks, invalid pointers.
    ///
    /// # Safety
    ///
    /// As [`Kmalloc::kfree`]; `word` is `pages.owner_word(ptr)`.
    #[cold]
    #[inline(never)]
    unsafe fn kfree_slow(
        &self,
        pages: &PageAllocator<P>,
        ptr: NonNull<u8>,
        word: usize,
    ) -> Result<(), SlabFreeError> {
        if let Some(cache) = self.cache_of(word) {
            // A slab word's id bits are the cache's id, so `kfree` guessed
            // this very cache and its fast path refused (debug mode, a full
            // array, another node's object): the cache's way for a refused
            // free, which checks everything.
            // SAFETY: the caller's guarantees are those of `free`; `word`
            // is `ptr`'s.
            return unsafe { cache.free_missed(pages, ptr, word) };
        }
        let raw = ptr.as_ptr();
        if is_zero_size_ptr(raw) {
            return Ok(());
        }
        match OwnerTag::decode(word) {
            OwnerTag::Large { owner_id, order } if owner_id == self.id && order <= MAX_ORDER => {
                if raw as usize & ((PAGE_SIZE << order) - 1) != 0 {
                    self.report_error(pages, raw, "not the start of a large block");
                    return Err(SlabFreeError::NotAnObject);
                }
                // SAFETY: the block was handed out by `kmalloc` at this order
                // (its owner word says so) and the caller gives it back.
                match unsafe { pages.free_pages(ptr, order) } {
                    Ok(()) => {
                        self.large_blocks.fetch_sub(1, Ordering::Relaxed);
                        Ok(())
                    }
                    // A racing free of the same block won; the page allocator
                    // has reported it.
                    Err(_) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        Err(SlabFreeError::DoubleFree)
                    }
                }
            }
            _ => {
                self.report_error(pages, raw, "not a kmalloc object");
                Err(SlabFreeError::NotFromCache)
            }
        }
    }

    /// The usable size of the memory at `ptr` (the kernel's `ksize`): the
    /// object size of its generic cache, or the whole large block; 0 for
    /// the zero-size sentinel; `None` if `ptr` is not the start of a
    /// kmalloc object or block.
    pub fn ksize(&self, pages: &PageAllocator<P>, ptr: *const u8) -> Option<usize> {
        if is_zero_size_ptr(ptr) {
            return Some(0);
        }
        let word = pages.block_owner(ptr)?;
        if let Some(cache) = self.cache_of(word) {
            return cache.contains(pages, ptr).then_some(cache.object_size());
        }
        match OwnerTag::decode(word) {
            OwnerTag::Large { owner_id, order }
                if owner_id == self.id
                    && order <= MAX_ORDER
                    && ptr as usize & ((PAGE_SIZE << order) - 1) == 0 =>
            {
                Some(PAGE_SIZE << order)
            }
            _ => None,
        }
    }

    /// Shrinks every generic cache; returns the slabs released.
    pub fn shrink(&self, pages: &PageAllocator<P>) -> usize {
        self.cache_slice()
            .iter()
            .map(|cache| cache.shrink(pages))
            .sum()
    }

    /// Destroys every generic cache. Refuses with [`DestroyError::Busy`]
    /// (counting objects and large blocks still allocated), changing
    /// nothing, while any memory from this instance is still allocated.
    pub fn destroy(&mut self, pages: &PageAllocator<P>) -> Result<(), DestroyError> {
        if self.live_caches == 0 {
            return Err(DestroyError::AlreadyDestroyed);
        }
        let array = self.caches;
        let active = self.large_blocks()
            + self
                .cache_slice()
                .iter()
                .map(|cache| cache.live_objects(pages))
                .sum::<usize>();
        if active > 0 {
            return Err(DestroyError::Busy { active });
        }
        for cache in self.cache_slice() {
            match cache.destroy(pages) {
                Ok(()) | Err(DestroyError::AlreadyDestroyed) => {}
                Err(error) => return Err(error),
            }
        }
        // INVARIANT: from here on nothing reaches the caches through `self`.
        self.live_caches = 0;
        for index in 0..KMALLOC_CACHES {
            // SAFETY: every slot holds a destroyed cache, dropped once here;
            // `live_caches` is 0 now, so nothing reaches them any more.
            unsafe { core::ptr::drop_in_place(array.as_ptr().add(index)) };
        }
        // SAFETY: `array` came from `alloc_meta` with this layout and is no
        // longer used.
        unsafe {
            pages
                .platform()
                .free_meta(array.cast(), caches_layout::<P>())
        };
        Ok(())
    }
}
