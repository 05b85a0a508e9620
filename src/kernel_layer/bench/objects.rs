// SPDX-License-Identifier: GPL-2.0

//! Objects: an rmm cache against a SLUB cache (`pair`, `batch`), rmm's
//! kmalloc against the kernel's (`kmalloc`), and caches with a constructor
//! (`ctor`). The two sides here are also the ones the multi-CPU cases and
//! the `parts` case use.

use super::{log, timed, Pages};
use crate::bench_loops::{batch_round, batch_rounds, pairs, Objects};
use crate::bench_spec::{Record, Selection, BATCH, CTOR_SIZES, OBJECT_SIZES};
use crate::gfp::Gfp;
use crate::kernel_layer::bindings;
use crate::kernel_layer::platform::KernelPlatform;
use crate::kmalloc::Kmalloc;
use crate::slab::{Ctor, CtorCall, KmemCache, SlabFlags};
use core::hint::black_box;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::alloc::{flags, KVec};
use kernel::c_str;
use kernel::ffi::{c_uint, c_void};
use kernel::prelude::*;

/// An rmm slab cache on the benchmark's page allocator.
pub(super) struct RmmCache<'a> {
    pub(super) cache: KmemCache<KernelPlatform>,
    pub(super) pages: &'a Pages,
}

impl<'a> RmmCache<'a> {
    pub(super) fn new(pages: &'a Pages, size: usize, ctor: Option<Ctor>) -> Result<Self> {
        let cache = KmemCache::create(pages, "rmm_bench", size, 0, SlabFlags::NONE, ctor)
            .map_err(|_| ENOMEM)?;
        Ok(RmmCache { cache, pages })
    }
}

impl Objects for RmmCache<'_> {
    const IMPL: &'static str = "rmm";

    #[inline(never)]
    fn alloc(&self) -> Option<NonNull<u8>> {
        self.cache.alloc(self.pages, Gfp::KERNEL).ok()
    }

    #[inline(never)]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: The caller guarantees that `obj` is a live object of this
        // cache that nothing uses any more. A refused free is reported by
        // the cache itself.
        let _ = unsafe { self.cache.free(self.pages, obj) };
    }

    fn slabs_grown(&self) -> Option<u64> {
        u64::try_from(self.cache.stats().grown).ok()
    }
}

impl Drop for RmmCache<'_> {
    fn drop(&mut self) {
        let errors = self.cache.stats().errors;
        if errors != 0 {
            pr_err!("rmm_bench: the rmm cache reported {} errors\n", errors);
        }
        if let Err(error) = self.cache.destroy(self.pages) {
            pr_err!("rmm_bench: cannot destroy the rmm cache: {:?}\n", error);
        }
    }
}

/// A SLUB cache of its own (`SLAB_NO_MERGE`, as rmm's is its own).
///
/// # Invariants
///
/// `cache` is a live cache from `kmem_cache_create`, destroyed on drop.
pub(super) struct SlubCache {
    cache: NonNull<bindings::kmem_cache>,
}

// SAFETY: The kernel's `kmem_cache` functions may be called from any thread
// and concurrently.
unsafe impl Send for SlubCache {}
// SAFETY: As above.
unsafe impl Sync for SlubCache {}

/// The constructor type of `kmem_cache_create`.
type SlubCtor = unsafe extern "C" fn(*mut c_void);

impl SlubCache {
    pub(super) fn new(size: usize, ctor: Option<SlubCtor>) -> Result<Self> {
        let mut args = bindings::kmem_cache_args {
            align: 0,
            useroffset: 0,
            usersize: 0,
            freeptr_offset: 0,
            use_freeptr_offset: false,
            ctor,
        };
        let no_merge = 1 << bindings::_slab_flag_bits__SLAB_NO_MERGE;
        let size = c_uint::try_from(size).map_err(|_| EINVAL)?;
        // SAFETY: The name is a static NUL-terminated string and `args` is
        // valid for the call; the kernel copies what it keeps.
        let cache = unsafe {
            bindings::__kmem_cache_create_args(
                c_str!("rmm_bench_slub").as_char_ptr(),
                size,
                &mut args,
                no_merge,
            )
        };
        // INVARIANT: A non-null result is a live cache.
        NonNull::new(cache)
            .map(|cache| SlubCache { cache })
            .ok_or(ENOMEM)
    }
}

impl Objects for SlubCache {
    const IMPL: &'static str = "kernel";

    #[inline]
    fn alloc(&self) -> Option<NonNull<u8>> {
        // SAFETY: By the type invariant the cache is live.
        let obj =
            unsafe { bindings::kmem_cache_alloc_noprof(self.cache.as_ptr(), bindings::GFP_KERNEL) };
        NonNull::new(obj.cast())
    }

    #[inline]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: The cache is live and the caller guarantees that `obj` is
        // one of its objects, allocated and no longer used.
        unsafe { bindings::kmem_cache_free(self.cache.as_ptr(), obj.as_ptr().cast()) };
    }
}

impl Drop for SlubCache {
    fn drop(&mut self) {
        // SAFETY: The cache is live (type invariant) and every object of it
        // was freed by the loop that used it.
        unsafe { bindings::kmem_cache_destroy(self.cache.as_ptr()) };
    }
}

/// rmm's kmalloc at one size (passed through `black_box`, so the size class
/// is looked up at run time, like the kernel's `__kmalloc` for a size that
/// is not a compile-time constant).
struct RmmKmalloc<'a> {
    kmalloc: &'a Kmalloc<KernelPlatform>,
    pages: &'a Pages,
    size: usize,
}

impl Objects for RmmKmalloc<'_> {
    const IMPL: &'static str = "rmm";

    #[inline(never)]
    fn alloc(&self) -> Option<NonNull<u8>> {
        self.kmalloc
            .kmalloc(self.pages, black_box(self.size), Gfp::KERNEL)
            .ok()
    }

    #[inline(never)]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: The caller guarantees that `obj` came from this kmalloc
        // and is no longer used.
        let _ = unsafe { self.kmalloc.kfree(self.pages, obj) };
    }
}

/// The kernel's `kmalloc` of a size unknown at compile time
/// (`__kmalloc_noprof`) and `kfree`.
struct KernelKmalloc {
    size: usize,
}

impl Objects for KernelKmalloc {
    const IMPL: &'static str = "kernel";

    #[inline]
    fn alloc(&self) -> Option<NonNull<u8>> {
        // SAFETY: `__kmalloc_noprof` accepts any size and flags.
        let obj = unsafe { bindings::__kmalloc_noprof(black_box(self.size), bindings::GFP_KERNEL) };
        NonNull::new(obj.cast())
    }

    #[inline]
    unsafe fn free(&self, obj: NonNull<u8>) {
        // SAFETY: The caller guarantees that `obj` came from `kmalloc` and
        // is no longer used.
        unsafe { bindings::kfree(obj.as_ptr().cast()) };
    }
}

/// Warms `objects` up, times `iters` pairs and logs them.
fn log_pairs<O: Objects>(case: &str, objects: &O, size: usize, iters: u32) -> Result {
    pairs(objects, Selection::warmup(iters));
    let ns = timed(|| pairs(objects, iters))?;
    log(Record::new(case, O::IMPL, iters.into(), ns).size(size));
    Ok(())
}

pub(super) fn object_pairs(selection: &Selection, pages: &Pages) -> Result {
    let iters = selection.pair_iters();
    for size in OBJECT_SIZES {
        log_pairs("pair", &RmmCache::new(pages, size, None)?, size, iters)?;
        log_pairs("pair", &SlubCache::new(size, None)?, size, iters)?;
    }
    Ok(())
}

/// Warms `objects` up with one round, times `rounds` and logs them as
/// objects (each one allocation and one free).
fn log_batches<O: Objects>(objects: &O, size: usize, rounds: u32) -> Result {
    let mut slots = KVec::from_elem(null_mut(), BATCH, flags::GFP_KERNEL)?;
    batch_round(objects, &mut slots);
    let grown_before = objects.slabs_grown();
    let ns = timed(|| batch_rounds(objects, &mut slots, rounds))?;
    let ops = u64::from(rounds) * BATCH as u64;
    let mut record = Record::new("batch", O::IMPL, ops, ns).size(size);
    if let (Some(before), Some(after)) = (grown_before, objects.slabs_grown()) {
        // Slabs built during the timed rounds (each one pages, a
        // descriptor and, as freed slabs go back, a trip to the page
        // allocator).
        record = record.extra("slabs_grown", after.wrapping_sub(before));
    }
    log(record);
    Ok(())
}

pub(super) fn object_batches(selection: &Selection, pages: &Pages) -> Result {
    let rounds = selection.batch_rounds();
    for size in OBJECT_SIZES {
        log_batches(&RmmCache::new(pages, size, None)?, size, rounds)?;
        log_batches(&SlubCache::new(size, None)?, size, rounds)?;
    }
    Ok(())
}

pub(super) fn kmalloc_pairs(selection: &Selection, pages: &Pages) -> Result {
    let mut kmalloc = Kmalloc::new(pages).map_err(|_| ENOMEM)?;
    let iters = selection.pair_iters();
    let mut result = Ok(());
    for size in OBJECT_SIZES {
        let rmm = RmmKmalloc {
            kmalloc: &kmalloc,
            pages,
            size,
        };
        result = log_pairs("kmalloc", &rmm, size, iters)
            .and_then(|()| log_pairs("kmalloc", &KernelKmalloc { size }, size, iters));
        if result.is_err() {
            break;
        }
    }
    if let Err(error) = kmalloc.destroy(pages) {
        pr_err!(
            "rmm_bench: cannot destroy the rmm kmalloc caches: {:?}\n",
            error
        );
    }
    result
}

// Constructors.

/// Constructor calls since the last reset, both sides.
static CTOR_CALLS: AtomicU64 = AtomicU64::new(0);

/// What the constructors write into an object's first word.
const CONSTRUCTED: u64 = 0x726d_6d5f_6374_6f72;

/// The same work as `slub_ctor`, whose counter it shares (SLUB's
/// constructors get no context).
///
/// # Safety
///
/// As for every [`crate::slab::Ctor`]: `obj` is `call.size` writable bytes.
unsafe fn rmm_ctor(obj: NonNull<u8>, call: &CtorCall<'_>) {
    if call.size >= core::mem::size_of::<u64>() {
        // SAFETY: The slab allocator hands the constructor an object of
        // `call.size` bytes that it may write.
        unsafe { obj.as_ptr().cast::<u64>().write_unaligned(CONSTRUCTED) };
    }
    CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// # Safety
///
/// Only SLUB calls it, with an object of a [`CTOR_SIZES`] cache (at least
/// 8 bytes).
unsafe extern "C" fn slub_ctor(obj: *mut c_void) {
    // SAFETY: SLUB hands the constructor an object of the cache's size,
    // at least 8 bytes here, that it may write.
    unsafe { obj.cast::<u64>().write_unaligned(CONSTRUCTED) };
    CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// A cold batch round on a new cache, then warm batch rounds, then as many
/// pairs, logging the time and the constructor calls of each.
fn log_ctor<O: Objects>(objects: &O, size: usize, rounds: u32) -> Result {
    let mut slots = KVec::from_elem(null_mut(), BATCH, flags::GFP_KERNEL)?;
    CTOR_CALLS.store(0, Ordering::Relaxed);
    let ns = timed(|| batch_round(objects, &mut slots))?;
    let calls = CTOR_CALLS.swap(0, Ordering::Relaxed);
    log(Record::new("ctor_cold", O::IMPL, BATCH as u64, ns)
        .size(size)
        .extra("ctor", calls));
    let ns = timed(|| batch_rounds(objects, &mut slots, rounds))?;
    let calls = CTOR_CALLS.swap(0, Ordering::Relaxed);
    let ops = u64::from(rounds) * BATCH as u64;
    log(Record::new("ctor_warm", O::IMPL, ops, ns)
        .size(size)
        .extra("ctor", calls));
    let iters = rounds.saturating_mul(BATCH as u32);
    let ns = timed(|| pairs(objects, iters))?;
    let calls = CTOR_CALLS.swap(0, Ordering::Relaxed);
    log(Record::new("ctor_pair", O::IMPL, iters.into(), ns)
        .size(size)
        .extra("ctor", calls));
    Ok(())
}

pub(super) fn constructors(selection: &Selection, pages: &Pages) -> Result {
    let rounds = selection.batch_rounds();
    for size in CTOR_SIZES {
        log_ctor(&RmmCache::new(pages, size, Some(rmm_ctor))?, size, rounds)?;
        log_ctor(&SlubCache::new(size, Some(slub_ctor))?, size, rounds)?;
    }
    Ok(())
}
