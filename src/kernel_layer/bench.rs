// SPDX-License-Identifier: GPL-2.0

//! Benchmarks of rmm against the kernel's own allocators, run at load when
//! asked (`insmod rmm.ko bench=all`; see [`crate::bench_spec`] for the grammar).
//!
//! Every case runs rmm and the kernel in the same loop, with the same sizes,
//! in the same boot: an rmm [`KmemCache`] against a SLUB `kmem_cache`, rmm's
//! [`Kmalloc`] against `kmalloc`, rmm's [`PageAllocator`] against
//! `__get_free_pages`, rmm's [`PerCpuCounter`] against `percpu_counter` and
//! a plain atomic, rmm's [`vmalloc`](crate::vmalloc) against `vmalloc`. Each operation is one out-of-line call on both sides: the
//! rmm side goes through `#[inline(never)]` wrappers, the kernel side calls
//! the exported C function directly. Results go to the kernel log as
//! [`Record`] lines for `scripts/bench`.
//!
//! The rmm side uses allocators of its own (its own page allocator, caches
//! and kmalloc caches), not the module's state, so a benchmark neither sees
//! nor disturbs what `/proc/rmm_ctl` did.

use super::bindings;
use super::cpu_threads::{self, now, online_cpus, pause, CpuWork};
use super::platform::KernelPlatform;
use crate::bench_spec::{
    Case, Record, Selection, BATCH, CTOR_SIZES, MAX_BENCH_ORDER, OBJECT_SIZES, PAGE_BATCH,
    SMP_SIZES, VMALLOC_PAGES,
};
use crate::gfp::Gfp;
use crate::kmalloc::Kmalloc;
use crate::page_alloc::PageAllocator;
use crate::percpu_counter::PerCpuCounter;
use crate::platform::{Lock, LockClass, PerCpu, Platform};
use crate::slab::{Ctor, CtorCall, KmemCache, SlabFlags};
use crate::vmalloc::{self, VmArea};
use core::hint::black_box;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use kernel::alloc::{flags, KBox, KVec};
use kernel::c_str;
use kernel::ffi::{c_uint, c_ulong, c_void};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::types::Opaque;

type Pages = PageAllocator<KernelPlatform>;

/// Runs the benchmarks the `bench` parameter asks for (nothing if it is
/// unset or empty), logging one line per measurement.
pub fn run_if_asked(param: Option<&CStr>) {
    let Some(text) = param else {
        return;
    };
    let selection = match Selection::parse(text.as_bytes()) {
        Ok(selection) => selection,
        Err(error) => {
            pr_err!("rmm_bench: bad bench parameter: {}\n", error);
            return;
        }
    };
    if selection.is_empty() {
        return;
    }
    let cpus = online_cpus().unwrap_or_default();
    pr_info!(
        "rmm_bench: start iters={} reps={} online_cpus={}\n",
        selection.iters,
        selection.reps,
        cpus.len()
    );
    let pages = match PageAllocator::new(KernelPlatform::new()) {
        Ok(pages) => pages,
        Err(_) => {
            pr_err!("rmm_bench: cannot create a page allocator\n");
            return;
        }
    };
    empty_loops(&selection);
    for case in selection.cases() {
        let result = match case {
            Case::Pair => object_pairs(&selection, &pages),
            Case::Batch => object_batches(&selection, &pages),
            Case::Kmalloc => kmalloc_pairs(&selection, &pages),
            Case::Pages => page_blocks(&selection, &pages),
            Case::Counter => counters(&selection),
            Case::Ctor => constructors(&selection, &pages),
            Case::Parts => parts(&selection, &pages),
            Case::Vmalloc => vmallocs(&selection, &pages),
            Case::Smp => parallel(&selection, &pages, &cpus),
        };
        if let Err(error) = result {
            pr_err!("rmm_bench: case {} failed: {:?}\n", case.name(), error);
        }
    }
    pr_info!("rmm_bench: end\n");
}

/// Runs `body` and returns how long it took, or `ENOMEM` if it failed.
fn timed(body: impl FnOnce() -> bool) -> Result<i64> {
    let start = now();
    let ok = body();
    let elapsed = now() - start;
    if ok {
        Ok(elapsed)
    } else {
        Err(ENOMEM)
    }
}

fn log(record: Record<'_>) {
    pr_info!("{}\n", record);
}

/// What the loops cost without any allocator: a bare loop, and a loop of
/// two out-of-line calls (the shape of an allocation and free pair).
fn empty_loops(selection: &Selection) {
    let iters = selection.pair_iters();
    if let Ok(ns) = timed(|| {
        for i in 0..iters {
            black_box(i);
        }
        true
    }) {
        log(Record::new("empty", "loop", iters.into(), ns));
    }
    if let Ok(ns) = timed(|| {
        for i in 0..iters {
            black_box(nothing(black_box(i)));
            nothing(i);
        }
        true
    }) {
        log(Record::new("empty", "call", iters.into(), ns));
    }
}

#[inline(never)]
fn nothing(value: u32) -> u32 {
    value
}

// ---------------------------------------------------------------------------
// Objects: caches and kmalloc.
// ---------------------------------------------------------------------------

/// One side of an object benchmark: objects of one size.
trait Objects: Sync {
    /// What the log calls this side.
    const IMPL: &'static str;

    /// One object, or `None` if none could be had.
    fn alloc(&self) -> Option<NonNull<u8>>;

    /// Gives an object back.
    ///
    /// # Safety
    ///
    /// `obj` came from `self.alloc()`, was not given back yet, and is not
    /// used afterwards.
    unsafe fn free(&self, obj: NonNull<u8>);

    /// Slabs created so far, if the allocator counts them (SLUB does only
    /// with `CONFIG_SLUB_STATS`).
    fn slabs_grown(&self) -> Option<u64> {
        None
    }
}

/// An rmm slab cache on the benchmark's page allocator.
struct RmmCache<'a> {
    cache: KmemCache<KernelPlatform>,
    pages: &'a Pages,
}

impl<'a> RmmCache<'a> {
    fn new(pages: &'a Pages, size: usize, ctor: Option<Ctor>) -> Result<Self> {
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
struct SlubCache {
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
    fn new(size: usize, ctor: Option<SlubCtor>) -> Result<Self> {
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

/// `iters` allocation and free pairs.
fn pairs<O: Objects>(objects: &O, iters: u32) -> bool {
    for _ in 0..iters {
        let Some(obj) = objects.alloc() else {
            return false;
        };
        // SAFETY: `obj` was just allocated and is not used again.
        unsafe { objects.free(black_box(obj)) };
    }
    true
}

/// One batch round: fills `slots` with new objects, then frees them all in
/// the order they were allocated.
fn batch_round<O: Objects>(objects: &O, slots: &mut [*mut u8]) -> bool {
    let mut filled = 0;
    for slot in slots.iter_mut() {
        let Some(obj) = objects.alloc() else { break };
        *slot = obj.as_ptr();
        filled += 1;
    }
    for &obj in &slots[..filled] {
        if let Some(obj) = NonNull::new(obj) {
            // SAFETY: Allocated above, freed once, not used again.
            unsafe { objects.free(obj) };
        }
    }
    filled == slots.len()
}

fn batch_rounds<O: Objects>(objects: &O, slots: &mut [*mut u8], rounds: u32) -> bool {
    (0..rounds).all(|_| batch_round(objects, slots))
}

/// Warms `objects` up, times `iters` pairs and logs them.
fn log_pairs<O: Objects>(case: &str, objects: &O, size: usize, iters: u32) -> Result {
    pairs(objects, Selection::warmup(iters));
    let ns = timed(|| pairs(objects, iters))?;
    log(Record::new(case, O::IMPL, iters.into(), ns).size(size));
    Ok(())
}

fn object_pairs(selection: &Selection, pages: &Pages) -> Result {
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

fn object_batches(selection: &Selection, pages: &Pages) -> Result {
    let rounds = selection.batch_rounds();
    for size in OBJECT_SIZES {
        log_batches(&RmmCache::new(pages, size, None)?, size, rounds)?;
        log_batches(&SlubCache::new(size, None)?, size, rounds)?;
    }
    Ok(())
}

fn kmalloc_pairs(selection: &Selection, pages: &Pages) -> Result {
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

// ---------------------------------------------------------------------------
// Page blocks.
// ---------------------------------------------------------------------------

/// One side of a page benchmark.
trait Blocks {
    const IMPL: &'static str;

    /// A block of `2^order` pages.
    fn alloc(&self, order: u32) -> Option<NonNull<u8>>;

    /// Gives a block back.
    ///
    /// # Safety
    ///
    /// `block` came from `self.alloc(order)`, was not given back yet, and
    /// is not used afterwards.
    unsafe fn free(&self, block: NonNull<u8>, order: u32);
}

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

fn block_pairs<B: Blocks>(blocks: &B, order: u32, iters: u32) -> bool {
    for _ in 0..iters {
        let Some(block) = blocks.alloc(order) else {
            return false;
        };
        // SAFETY: Just allocated with this order, not used again.
        unsafe { blocks.free(black_box(block), order) };
    }
    true
}

/// Rounds of `slots.len()` order-0 pages, freed in allocation order.
fn block_batches<B: Blocks>(blocks: &B, slots: &mut [*mut u8], rounds: u32) -> bool {
    for _ in 0..rounds {
        let mut filled = 0;
        for slot in slots.iter_mut() {
            let Some(block) = blocks.alloc(0) else { break };
            *slot = block.as_ptr();
            filled += 1;
        }
        for &block in &slots[..filled] {
            if let Some(block) = NonNull::new(block) {
                // SAFETY: Allocated above at order 0, freed once.
                unsafe { blocks.free(block, 0) };
            }
        }
        if filled != slots.len() {
            return false;
        }
    }
    true
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

fn page_blocks(selection: &Selection, pages: &Pages) -> Result {
    log_blocks(&RmmBlocks(pages), selection)?;
    log_blocks(&KernelBlocks, selection)
}

// ---------------------------------------------------------------------------
// vmalloc.
// ---------------------------------------------------------------------------

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
fn vmallocs(selection: &Selection, pages: &Pages) -> Result {
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

// ---------------------------------------------------------------------------
// Counters.
// ---------------------------------------------------------------------------

/// One side of a counter benchmark.
trait Counter {
    const IMPL: &'static str;

    /// Adds `amount` on this CPU.
    fn add(&self, amount: i64);

    /// The exact value.
    fn sum(&self) -> i64;
}

struct RmmCounter {
    counter: PerCpuCounter<KernelPlatform>,
}

impl Counter for RmmCounter {
    const IMPL: &'static str = "rmm";

    #[inline(never)]
    fn add(&self, amount: i64) {
        self.counter.add(amount);
    }

    #[inline(never)]
    fn sum(&self) -> i64 {
        self.counter.sum()
    }
}

/// A kernel `percpu_counter` with the kernel's default batch.
///
/// # Invariants
///
/// `counter` was initialised by `percpu_counter_init` and is destroyed on
/// drop; it never moves (it lives in its own allocation).
struct KernelCounter {
    counter: KBox<Opaque<bindings::percpu_counter>>,
}

impl KernelCounter {
    fn new() -> Result<Self> {
        let counter = KBox::new(Opaque::uninit(), flags::GFP_KERNEL)?;
        // SAFETY: The memory is valid for a `percpu_counter` and stays at
        // this address until `drop`.
        let ret = unsafe { bindings::rmm_percpu_counter_init(counter.get(), 0) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: Initialised above, in its own allocation.
        Ok(KernelCounter { counter })
    }
}

impl Counter for KernelCounter {
    const IMPL: &'static str = "kernel";

    #[inline]
    fn add(&self, amount: i64) {
        // SAFETY: The counter is initialised (type invariant); the kernel
        // serialises concurrent users itself. `percpu_counter_add` is this
        // call with the global batch.
        unsafe {
            bindings::percpu_counter_add_batch(
                self.counter.get(),
                amount,
                bindings::percpu_counter_batch,
            )
        };
    }

    #[inline]
    fn sum(&self) -> i64 {
        // SAFETY: As for `add`.
        unsafe { bindings::__percpu_counter_sum(self.counter.get()) }
    }
}

impl Drop for KernelCounter {
    fn drop(&mut self) {
        // SAFETY: Initialised (type invariant) and not used any more.
        unsafe { bindings::percpu_counter_destroy_many(self.counter.get(), 1) };
    }
}

/// The floor: one shared atomic.
struct AtomicCounter(AtomicI64);

impl Counter for AtomicCounter {
    const IMPL: &'static str = "atomic";

    #[inline(never)]
    fn add(&self, amount: i64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    #[inline(never)]
    fn sum(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn log_counter<C: Counter>(counter: &C, selection: &Selection) -> Result {
    let adds = selection.pair_iters();
    let sums = selection.sum_iters();
    let ns = timed(|| {
        for _ in 0..adds {
            counter.add(black_box(1));
        }
        true
    })?;
    log(Record::new("counter_add", C::IMPL, adds.into(), ns));
    let ns = timed(|| {
        for _ in 0..sums {
            black_box(counter.sum());
        }
        true
    })?;
    log(Record::new("counter_sum", C::IMPL, sums.into(), ns));
    if counter.sum() != i64::from(adds) {
        pr_err!("rmm_bench: {} counter lost adds\n", C::IMPL);
        return Err(EINVAL);
    }
    Ok(())
}

fn counters(selection: &Selection) -> Result {
    let counter =
        PerCpuCounter::with_default_batch(&KernelPlatform::new(), 0).map_err(|_| ENOMEM)?;
    log_counter(&RmmCounter { counter }, selection)?;
    log_counter(&KernelCounter::new()?, selection)?;
    log_counter(&AtomicCounter(AtomicI64::new(0)), selection)
}

// ---------------------------------------------------------------------------
// Constructors.
// ---------------------------------------------------------------------------

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

fn constructors(selection: &Selection, pages: &Pages) -> Result {
    let rounds = selection.batch_rounds();
    for size in CTOR_SIZES {
        log_ctor(&RmmCache::new(pages, size, Some(rmm_ctor))?, size, rounds)?;
        log_ctor(&SlubCache::new(size, Some(slub_ctor))?, size, rounds)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Pieces of the fast paths.
// ---------------------------------------------------------------------------

/// The CPU number, as every rmm fast path asks for it.
#[inline(never)]
fn part_this_cpu(platform: &KernelPlatform) -> usize {
    platform.this_cpu()
}

/// A per-CPU slot lookup, as every rmm fast path makes one.
#[inline(never)]
fn part_percpu_get(percpu: &<KernelPlatform as Platform>::PerCpu<u64>, cpu: usize) -> u64 {
    *percpu.get(cpu)
}

/// A lock and unlock of an interrupt-safe spinlock around an increment, as
/// rmm takes one around every per-CPU array or page list operation.
#[inline(never)]
fn part_lock(lock: &<KernelPlatform as Platform>::Lock<u64>) {
    lock.with(|value| *value = value.wrapping_add(1));
}

/// The page owner lookup that finds an object's slab on free.
#[inline(never)]
fn part_block_owner(pages: &Pages, obj: *const u8) -> Option<usize> {
    pages.block_owner(obj)
}

/// The whole validation of a free outside debug mode (owner lookup, tag
/// decoding, object index).
#[inline(never)]
fn part_contains(cache: &RmmCache<'_>, obj: *const u8) -> bool {
    cache.cache.contains(cache.pages, obj)
}

/// Times `iters` calls of `body` and logs them as part `name`.
fn log_part(name: &str, iters: u32, mut body: impl FnMut()) -> Result {
    let ns = timed(|| {
        for _ in 0..iters {
            body();
        }
        true
    })?;
    log(Record::new("part", name, iters.into(), ns));
    Ok(())
}

/// What the pieces of rmm's fast paths cost alone, each as one out-of-line
/// call in a loop (the `empty` `call` figure is the loop and call).
fn parts(selection: &Selection, pages: &Pages) -> Result {
    let iters = selection.pair_iters();
    let platform = pages.platform();
    log_part("this_cpu", iters, || {
        black_box(part_this_cpu(platform));
    })?;
    let percpu = platform.new_percpu(|_| Ok(0u64)).map_err(|_| ENOMEM)?;
    log_part("percpu_get", iters, || {
        black_box(part_percpu_get(&percpu, black_box(0)));
    })?;
    let lock = platform
        .new_lock(0u64, LockClass::Other)
        .map_err(|_| ENOMEM)?;
    log_part("lock", iters, || part_lock(&lock))?;
    let cache = RmmCache::new(pages, 64, None)?;
    let obj = cache.alloc().ok_or(ENOMEM)?;
    let result = log_part("block_owner", iters, || {
        black_box(part_block_owner(pages, black_box(obj.as_ptr())));
    })
    .and_then(|()| {
        log_part("contains", iters, || {
            black_box(part_contains(&cache, black_box(obj.as_ptr())));
        })
    });
    // SAFETY: Allocated above, not used any more.
    unsafe { cache.free(obj) };
    result
}

// ---------------------------------------------------------------------------
// Several CPUs at once.
// ---------------------------------------------------------------------------

/// Work shared out to one kernel thread per CPU.
trait SmpJob: Sync {
    /// Runs the share of thread `role`; false if an allocation failed.
    fn run(&self, role: usize) -> bool;
}

/// Every thread does `iters` pairs.
struct ParallelPairs<'a, O> {
    objects: &'a O,
    iters: u32,
}

impl<O: Objects> SmpJob for ParallelPairs<'_, O> {
    fn run(&self, _role: usize) -> bool {
        pairs(self.objects, self.iters)
    }
}

/// Every thread does `rounds` batch rounds in its own part of `slots`.
struct ParallelBatches<'a, O> {
    objects: &'a O,
    rounds: u32,
    slots: KVec<AtomicPtr<u8>>,
}

impl<O: Objects> SmpJob for ParallelBatches<'_, O> {
    fn run(&self, role: usize) -> bool {
        let Some(mine) = self.slots.get(role * BATCH..(role + 1) * BATCH) else {
            return false;
        };
        for _ in 0..self.rounds {
            let mut filled = 0;
            for slot in mine {
                let Some(obj) = self.objects.alloc() else {
                    break;
                };
                slot.store(obj.as_ptr(), Ordering::Relaxed);
                filled += 1;
            }
            for slot in &mine[..filled] {
                if let Some(obj) = NonNull::new(slot.load(Ordering::Relaxed)) {
                    // SAFETY: Allocated above by this thread, freed once.
                    unsafe { self.objects.free(obj) };
                }
            }
            if filled != mine.len() {
                return false;
            }
        }
        true
    }
}

/// Buffers of [`BATCH`] objects between the allocating and the freeing
/// thread: one is filled while the other is freed.
const REMOTE_BUFFERS: usize = 2;

/// Thread 0 allocates `batches` batches of [`BATCH`] objects and hands each
/// to thread 1 (on another CPU), which frees it while thread 0 fills the
/// next. Handing over whole batches keeps the threads' own traffic small
/// next to the allocator's.
struct RemoteFree<'a, O> {
    objects: &'a O,
    batches: usize,
    /// `REMOTE_BUFFERS` buffers of `BATCH` slots.
    slots: KVec<AtomicPtr<u8>>,
    /// Batches filled so far.
    produced: AtomicUsize,
    /// Batches freed so far.
    consumed: AtomicUsize,
    /// The allocating thread gave up.
    failed: AtomicBool,
}

impl<O: Objects> RemoteFree<'_, O> {
    /// The buffer of batch `k`.
    fn buffer(&self, k: usize) -> Option<&[AtomicPtr<u8>]> {
        let start = (k % REMOTE_BUFFERS) * BATCH;
        self.slots.get(start..start + BATCH)
    }

    fn produce(&self) -> bool {
        for k in 0..self.batches {
            // Wait until the batch that last used this buffer is freed.
            while k - self.consumed.load(Ordering::Acquire) >= REMOTE_BUFFERS {
                pause();
            }
            let Some(buffer) = self.buffer(k) else {
                self.failed.store(true, Ordering::Release);
                return false;
            };
            for (filled, slot) in buffer.iter().enumerate() {
                let Some(obj) = self.objects.alloc() else {
                    for slot in &buffer[..filled] {
                        if let Some(obj) = NonNull::new(slot.load(Ordering::Relaxed)) {
                            // SAFETY: Allocated above, never handed over.
                            unsafe { self.objects.free(obj) };
                        }
                    }
                    self.failed.store(true, Ordering::Release);
                    return false;
                };
                slot.store(obj.as_ptr(), Ordering::Relaxed);
            }
            self.produced.store(k + 1, Ordering::Release);
        }
        true
    }

    fn consume(&self) -> bool {
        for k in 0..self.batches {
            while self.produced.load(Ordering::Acquire) <= k {
                // `produced` is stored before `failed`: seen `failed`, a
                // fresh `produced` is final.
                if self.failed.load(Ordering::Acquire) && self.produced.load(Ordering::Acquire) <= k
                {
                    return false;
                }
                pause();
            }
            let Some(buffer) = self.buffer(k) else {
                return false;
            };
            for slot in buffer {
                if let Some(obj) = NonNull::new(slot.load(Ordering::Relaxed)) {
                    // SAFETY: The producer allocated it and handed it over
                    // (published by the release store of `produced`); it is
                    // freed once, here, before the buffer is handed back.
                    unsafe { self.objects.free(obj) };
                }
            }
            self.consumed.store(k + 1, Ordering::Release);
        }
        true
    }
}

impl<O: Objects> SmpJob for RemoteFree<'_, O> {
    fn run(&self, role: usize) -> bool {
        match role {
            0 => self.produce(),
            _ => self.consume(),
        }
    }
}

/// One thread of a multi-CPU run: its role in the job, when it started and
/// ended, and whether an allocation failed.
struct Worker<'a> {
    job: &'a dyn SmpJob,
    failed: &'a AtomicBool,
    role: usize,
    start: AtomicI64,
    end: AtomicI64,
}

impl CpuWork for Worker<'_> {
    fn run(&self) {
        let start = now();
        let ok = self.job.run(self.role);
        let end = now();
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        if !ok {
            self.failed.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs `job` with one kernel thread bound to each CPU of `cpus` (thread
/// `i` on `cpus[i]`), all started together; returns the wall time from the
/// first start to the last end.
fn run_on_cpus(job: &dyn SmpJob, cpus: &[c_uint]) -> Result<i64> {
    let failed = AtomicBool::new(false);
    let mut workers = KVec::with_capacity(cpus.len(), flags::GFP_KERNEL)?;
    for role in 0..cpus.len() {
        workers.push(
            Worker {
                job,
                failed: &failed,
                role,
                start: AtomicI64::new(0),
                end: AtomicI64::new(0),
            },
            flags::GFP_KERNEL,
        )?;
    }
    cpu_threads::run_on_cpus(&workers, cpus, c_str!("rmm_bench/%u"))?;
    if failed.load(Ordering::Acquire) {
        return Err(ENOMEM);
    }
    let start = workers
        .iter()
        .map(|w| w.start.load(Ordering::Relaxed))
        .min();
    let end = workers.iter().map(|w| w.end.load(Ordering::Relaxed)).max();
    match (start, end) {
        (Some(start), Some(end)) => Ok(end - start),
        _ => Err(EINVAL),
    }
}

/// The multi-CPU measurements.
#[derive(Clone, Copy)]
enum SmpKind {
    /// Every CPU does pairs.
    Pair,
    /// Every CPU does batch rounds.
    Batch,
    /// One CPU allocates, another frees.
    Remote,
}

impl SmpKind {
    const ALL: [SmpKind; 3] = [SmpKind::Pair, SmpKind::Batch, SmpKind::Remote];
}

/// One multi-CPU measurement of one side, logged.
fn parallel_once<O: Objects>(
    kind: SmpKind,
    objects: &O,
    size: usize,
    selection: &Selection,
    cpus: &[c_uint],
    rep: u32,
) -> Result {
    let threads = cpus.len();
    let iters = selection.pair_iters();
    let (case, threads, ops, ns) = match kind {
        SmpKind::Pair => {
            let ns = run_on_cpus(&ParallelPairs { objects, iters }, cpus)?;
            ("smp_pair", threads, u64::from(iters) * threads as u64, ns)
        }
        SmpKind::Batch => {
            let rounds = selection.batch_rounds();
            let mut slots = KVec::with_capacity(threads * BATCH, flags::GFP_KERNEL)?;
            for _ in 0..threads * BATCH {
                slots.push(AtomicPtr::new(null_mut()), flags::GFP_KERNEL)?;
            }
            let job = ParallelBatches {
                objects,
                rounds,
                slots,
            };
            let ns = run_on_cpus(&job, cpus)?;
            let ops = u64::from(rounds) * (threads * BATCH) as u64;
            ("smp_batch", threads, ops, ns)
        }
        SmpKind::Remote => {
            let mut slots = KVec::with_capacity(REMOTE_BUFFERS * BATCH, flags::GFP_KERNEL)?;
            for _ in 0..REMOTE_BUFFERS * BATCH {
                slots.push(AtomicPtr::new(null_mut()), flags::GFP_KERNEL)?;
            }
            let batches = (iters as usize / BATCH).max(1);
            let job = RemoteFree {
                objects,
                batches,
                slots,
                produced: AtomicUsize::new(0),
                consumed: AtomicUsize::new(0),
                failed: AtomicBool::new(false),
            };
            let ns = run_on_cpus(&job, &cpus[..2])?;
            ("smp_remote", 2, (batches * BATCH) as u64, ns)
        }
    };
    log(Record::new(case, O::IMPL, ops, ns)
        .size(size)
        .parallel(threads, rep));
    Ok(())
}

fn parallel(selection: &Selection, pages: &Pages, cpus: &[c_uint]) -> Result {
    if cpus.len() < 2 {
        pr_info!("rmm_bench: case smp skipped: it needs 2 online CPUs\n");
        return Ok(());
    }
    for size in SMP_SIZES {
        let rmm = RmmCache::new(pages, size, None)?;
        let slub = SlubCache::new(size, None)?;
        // Warm both up on every CPU (not logged).
        let warm = Selection::warmup(selection.pair_iters());
        run_on_cpus(
            &ParallelPairs {
                objects: &rmm,
                iters: warm,
            },
            cpus,
        )?;
        run_on_cpus(
            &ParallelPairs {
                objects: &slub,
                iters: warm,
            },
            cpus,
        )?;
        for rep in 0..selection.reps {
            for kind in SmpKind::ALL {
                // The two sides run back to back, taking turns to go first,
                // so that a change in the host's load affects both alike.
                if rep % 2 == 0 {
                    parallel_once(kind, &rmm, size, selection, cpus, rep)?;
                    parallel_once(kind, &slub, size, selection, cpus, rep)?;
                } else {
                    parallel_once(kind, &slub, size, selection, cpus, rep)?;
                    parallel_once(kind, &rmm, size, selection, cpus, rep)?;
                }
            }
        }
    }
    Ok(())
}
