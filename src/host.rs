// SPDX-License-Identifier: GPL-2.0

//! The host side of [`Platform`]: `std` locks, threads standing in for CPUs,
//! and memory from the global allocator. Only built by cargo, never in the
//! kernel module.
//!
//! Besides providing the services, it keeps the books tests need: pages and
//! metadata outstanding (so a leak fails a test), every report and info
//! line, and a fault injector that fails every N-th page request.
//!
//! The mapping service ([`Platform::map_pages`]) is emulated: a mapping is
//! a fresh page-aligned host allocation of the pages plus a guard page,
//! with a record of the pages it stands for. Writes through it do not
//! reach the pages (the host cannot alias its heap), but
//! [`Platform::mapped_frame`] answers from the record as `vmalloc_to_pfn`
//! answers from the page tables, so tests can check that an area maps
//! exactly its pages, in order, and that every mapping is removed.

extern crate std;

use self::std::alloc::{alloc, alloc_zeroed, dealloc};
use self::std::boxed::Box;
use self::std::cell::Cell;
use self::std::collections::BTreeMap;
use self::std::string::{String, ToString};
use self::std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use self::std::sync::{Arc, Mutex};
use self::std::vec::Vec;
use crate::gfp::Gfp;
use crate::page_alloc::ReserveBasis;
use crate::platform::{
    AllocError, Lock, LockClass, PerCpu, Platform, MAX_NODES, PAGE_SHIFT, PAGE_SIZE,
};
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

std::thread_local! {
    static THIS_CPU: Cell<Option<usize>> = const { Cell::new(None) };
}

static NEXT_THREAD_CPU: AtomicUsize = AtomicUsize::new(0);

/// One emulated mapping: where it is, and the pages it stands for.
struct HostMapping {
    base: usize,
    pages: Vec<usize>,
}

impl HostMapping {
    /// The host allocation behind the mapping: the pages and a guard page.
    fn layout(pages: usize) -> Layout {
        Layout::from_size_align((pages + 1) * PAGE_SIZE, PAGE_SIZE).expect("mapping layout")
    }
}

/// A [`Platform`] for tests on the host.
///
/// It may have several memory nodes ([`HostPlatform::with_nodes`]): CPUs
/// are spread over them in equal runs (CPUs 0 and 1 on node 0, 2 and 3 on
/// node 1 with four CPUs and two nodes), every page block handed out is
/// recorded with its node so that [`Platform::page_node`] answers as the
/// kernel's `page_to_nid` does, and a node can be given a page limit to
/// exhaust it.
pub struct HostPlatform {
    nr_cpus: usize,
    nr_nodes: usize,
    /// Every block handed out and not freed: start, then end and node.
    blocks: Mutex<BTreeMap<usize, (usize, usize)>>,
    /// Pages each node may have out at once (`usize::MAX`: no limit).
    node_limit: [AtomicUsize; MAX_NODES],
    node_pages_out: [AtomicUsize; MAX_NODES],
    /// Page requests refused because of a node's limit.
    node_refusals: AtomicUsize,
    pages_out: AtomicUsize,
    page_requests: AtomicUsize,
    fail_every: AtomicUsize,
    meta_out: AtomicUsize,
    reports: Mutex<Vec<String>>,
    infos: Mutex<Vec<String>>,
    clock_ns: AtomicU64,
    mappings: Mutex<Vec<HostMapping>>,
    map_requests: AtomicUsize,
    map_fail_every: AtomicUsize,
    basis: Mutex<ReserveBasis>,
}

impl HostPlatform {
    /// A platform with `nr_cpus` CPUs on one node.
    pub fn new(nr_cpus: usize) -> Self {
        Self::with_nodes(nr_cpus, 1)
    }

    /// A platform with `nr_cpus` CPUs spread over `nr_nodes` memory nodes
    /// (1 to [`MAX_NODES`], at most one per CPU).
    pub fn with_nodes(nr_cpus: usize, nr_nodes: usize) -> Self {
        assert!(nr_cpus > 0);
        assert!((1..=MAX_NODES.min(nr_cpus)).contains(&nr_nodes));
        HostPlatform {
            nr_cpus,
            nr_nodes,
            blocks: Mutex::new(BTreeMap::new()),
            node_limit: [(); MAX_NODES].map(|_| AtomicUsize::new(usize::MAX)),
            node_pages_out: [(); MAX_NODES].map(|_| AtomicUsize::new(0)),
            node_refusals: AtomicUsize::new(0),
            pages_out: AtomicUsize::new(0),
            page_requests: AtomicUsize::new(0),
            fail_every: AtomicUsize::new(0),
            meta_out: AtomicUsize::new(0),
            reports: Mutex::new(Vec::new()),
            infos: Mutex::new(Vec::new()),
            mappings: Mutex::new(Vec::new()),
            map_requests: AtomicUsize::new(0),
            map_fail_every: AtomicUsize::new(0),
            basis: Mutex::new(ReserveBasis::default()),
            clock_ns: AtomicU64::new(0),
        }
    }

    /// Moves the platform's clock ([`Platform::monotonic_ns`]) on by `ns`.
    /// The host clock stands still otherwise, so tests of rate limits are
    /// repeatable.
    pub fn advance_clock(&self, ns: u64) {
        self.clock_ns.fetch_add(ns, Ordering::SeqCst);
    }

    /// Fails every `n`-th mapping request from now on; 0 turns failures
    /// off.
    pub fn fail_maps_every(&self, n: usize) {
        self.map_requests.store(0, Ordering::SeqCst);
        self.map_fail_every.store(n, Ordering::SeqCst);
    }

    /// Mappings made and not removed.
    pub fn mappings_outstanding(&self) -> usize {
        self.mappings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The pages the mapping starting at `addr` stands for, in order.
    pub fn mapped_pages(&self, addr: usize) -> Option<Vec<usize>> {
        self.mappings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|mapping| mapping.base == addr)
            .map(|mapping| mapping.pages.clone())
    }

    /// Sets what [`Platform::reserve_basis`] answers (the kernel's
    /// `min_free_kbytes` and managed pages; both 0 at first, which gives no
    /// automatic reserve).
    pub fn set_reserve_basis(&self, basis: ReserveBasis) {
        *self.basis.lock().unwrap_or_else(|e| e.into_inner()) = basis;
    }

    /// Makes the calling thread run "on" `cpu` from now on (until changed).
    ///
    /// Threads that never call this are spread over the CPUs round-robin.
    pub fn set_this_cpu(cpu: usize) {
        THIS_CPU.with(|c| c.set(Some(cpu)));
    }

    /// Fails every `n`-th page request from now on; 0 turns failures off,
    /// 1 fails every request.
    pub fn fail_every(&self, n: usize) {
        self.page_requests.store(0, Ordering::SeqCst);
        self.fail_every.store(n, Ordering::SeqCst);
    }

    /// Pages currently taken from this platform and not given back.
    pub fn pages_outstanding(&self) -> usize {
        self.pages_out.load(Ordering::SeqCst)
    }

    /// Metadata allocations currently not freed.
    pub fn meta_outstanding(&self) -> usize {
        self.meta_out.load(Ordering::SeqCst)
    }

    /// Every line reported so far.
    pub fn reports(&self) -> Vec<String> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes and clears the lines reported so far.
    pub fn take_reports(&self) -> Vec<String> {
        core::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every informational line logged so far.
    pub fn infos(&self) -> Vec<String> {
        self.infos.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes and clears the informational lines logged so far.
    pub fn take_infos(&self) -> Vec<String> {
        core::mem::take(&mut *self.infos.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Lets `node` have at most `pages` pages out at once from now on
    /// (`None`: no limit). Requests beyond it fail, as `__GFP_THISNODE`
    /// requests to an exhausted node do.
    pub fn set_node_limit(&self, node: usize, pages: Option<usize>) {
        self.node_limit[node].store(pages.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    /// Pages of `node` currently taken and not given back.
    pub fn node_pages_outstanding(&self, node: usize) -> usize {
        self.node_pages_out[node].load(Ordering::SeqCst)
    }

    /// Page requests refused because a node reached its limit.
    pub fn node_refusals(&self) -> usize {
        self.node_refusals.load(Ordering::SeqCst)
    }

    /// Takes `pages` pages of `node`'s limit, or says no.
    fn charge_node(&self, node: usize, pages: usize) -> bool {
        let limit = self.node_limit[node].load(Ordering::SeqCst);
        let out = &self.node_pages_out[node];
        let charged = out
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                now.checked_add(pages).filter(|&after| after <= limit)
            })
            .is_ok();
        if !charged {
            self.node_refusals.fetch_add(1, Ordering::SeqCst);
        }
        charged
    }

    fn should_fail(&self) -> bool {
        let every = self.fail_every.load(Ordering::SeqCst);
        let n = self.page_requests.fetch_add(1, Ordering::SeqCst) + 1;
        every != 0 && n % every == 0
    }
}

/// [`Lock`] on the host: a `std` mutex.
pub struct HostLock<T>(Mutex<T>);

impl<T: Send> Lock<T> for HostLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // A panicking test thread poisons the mutex; the data is still what
        // the allocator left, so keep going and let the test report.
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

/// Pads a value to its own cache lines, as per-CPU areas are.
#[repr(align(128))]
struct Padded<T>(T);

/// One CPU's instance on the host, with the lock that stands in for "this
/// CPU with interrupts off".
struct HostSlot<T> {
    exclusive: Mutex<()>,
    value: T,
}

/// [`PerCpu`] on the host: one padded slot per CPU. Threads are not CPUs
/// (several may run "on" one CPU number at once), so
/// [`PerCpu::with_local`] takes the slot's lock: what interrupts-off gives
/// in the kernel, exclusive use of the instance, is what the lock gives.
pub struct HostPerCpu<T>(Box<[Padded<HostSlot<T>>]>);

impl<T> HostPerCpu<T> {
    fn run_exclusive<R>(&self, cpu: usize, f: impl FnOnce(&T) -> R) -> R {
        let slot = &self.0[cpu].0;
        let _guard = slot.exclusive.lock().unwrap_or_else(|e| e.into_inner());
        f(&slot.value)
    }
}

impl<T: Send + Sync> PerCpu<T> for HostPerCpu<T> {
    fn get(&self, cpu: usize) -> &T {
        &self.0[cpu].0.value
    }

    fn with_local<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.run_exclusive(host_this_cpu(self.0.len()), f)
    }
}

/// The CPU number the calling thread runs on, out of `nr_cpus`.
fn host_this_cpu(nr_cpus: usize) -> usize {
    let cpu = THIS_CPU.with(|c| match c.get() {
        Some(cpu) => cpu,
        None => {
            let cpu = NEXT_THREAD_CPU.fetch_add(1, Ordering::Relaxed);
            c.set(Some(cpu));
            cpu
        }
    });
    cpu.checked_rem(nr_cpus).unwrap_or(0)
}

impl Platform for HostPlatform {
    type Lock<T: Send> = HostLock<T>;
    type PerCpu<T: Send + Sync> = HostPerCpu<T>;

    fn new_lock<T: Send>(&self, value: T, _class: LockClass) -> Result<HostLock<T>, AllocError> {
        Ok(HostLock(Mutex::new(value)))
    }

    fn new_percpu<T: Send + Sync>(
        &self,
        mut init: impl FnMut(usize) -> Result<T, AllocError>,
    ) -> Result<HostPerCpu<T>, AllocError> {
        let mut slots = Vec::with_capacity(self.nr_cpus);
        for cpu in 0..self.nr_cpus {
            slots.push(Padded(HostSlot {
                exclusive: Mutex::new(()),
                value: init(cpu)?,
            }));
        }
        Ok(HostPerCpu(slots.into_boxed_slice()))
    }

    fn on_each_cpu<T: Send + Sync>(&self, data: &HostPerCpu<T>, f: &(dyn Fn(usize, &T) + Sync)) {
        for cpu in 0..data.0.len() {
            data.run_exclusive(cpu, |value| f(cpu, value));
        }
    }

    fn nr_cpu_ids(&self) -> usize {
        self.nr_cpus
    }

    fn this_cpu(&self) -> usize {
        host_this_cpu(self.nr_cpus)
    }

    fn nr_nodes(&self) -> usize {
        self.nr_nodes
    }

    fn node_has_memory(&self, node: usize) -> bool {
        node < self.nr_nodes
    }

    fn cpu_node(&self, cpu: usize) -> usize {
        (cpu * self.nr_nodes / self.nr_cpus).min(self.nr_nodes - 1)
    }

    fn page_node(&self, page: NonNull<u8>) -> usize {
        let addr = page.as_ptr() as usize;
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        match blocks.range(..=addr).next_back() {
            Some((_, &(end, node))) if addr < end => node,
            _ => panic!("page_node of {addr:#x}, which is no page of this platform"),
        }
    }

    fn alloc_pages(&self, order: u32, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        if order > 20 || node >= self.nr_nodes || self.should_fail() {
            return None;
        }
        if !self.charge_node(node, 1 << order) {
            return None;
        }
        let size = PAGE_SIZE << order;
        let Ok(layout) = Layout::from_size_align(size, size) else {
            self.node_pages_out[node].fetch_sub(1 << order, Ordering::SeqCst);
            return None;
        };
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe {
            if gfp.zeroed() {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        };
        let Some(ptr) = NonNull::new(ptr) else {
            self.node_pages_out[node].fetch_sub(1 << order, Ordering::SeqCst);
            return None;
        };
        let start = ptr.as_ptr() as usize;
        self.blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(start, (start + size, node));
        if !gfp.zeroed() {
            // Fill fresh pages with garbage so that code relying on
            // unrequested zeroing fails its tests.
            // SAFETY: `ptr` points to `size` writable bytes just allocated.
            unsafe { ptr.as_ptr().write_bytes(0xa5, size) };
        }
        self.pages_out.fetch_add(1 << order, Ordering::SeqCst);
        Some(ptr)
    }

    unsafe fn free_pages(&self, ptr: NonNull<u8>, order: u32) {
        let size = PAGE_SIZE << order;
        let start = ptr.as_ptr() as usize;
        let record = self
            .blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&start);
        match record {
            Some((end, node)) if end == start + size => {
                self.node_pages_out[node].fetch_sub(1 << order, Ordering::SeqCst);
            }
            _ => panic!("free_pages of {start:#x} order {order}, not a block handed out"),
        }
        // SAFETY: `alloc_pages` made this exact layout for this order.
        let layout = unsafe { Layout::from_size_align_unchecked(size, size) };
        // SAFETY: the caller guarantees `ptr` came from `alloc_pages` with
        // this order and is not used again.
        unsafe { dealloc(ptr.as_ptr(), layout) };
        self.pages_out.fetch_sub(1 << order, Ordering::SeqCst);
    }

    fn alloc_meta(&self, layout: Layout, _gfp: Gfp) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(layout.size().max(1), layout.align()).ok()?;
        // SAFETY: the size is non-zero.
        let ptr = NonNull::new(unsafe { alloc(layout) })?;
        self.meta_out.fetch_add(1, Ordering::SeqCst);
        Some(ptr)
    }

    unsafe fn free_meta(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `alloc_meta` accepted this layout with the size raised to 1.
        let layout =
            unsafe { Layout::from_size_align_unchecked(layout.size().max(1), layout.align()) };
        // SAFETY: the caller guarantees `ptr` came from `alloc_meta` with
        // this layout and is not used again.
        unsafe { dealloc(ptr.as_ptr(), layout) };
        self.meta_out.fetch_sub(1, Ordering::SeqCst);
    }

    fn report(&self, args: fmt::Arguments<'_>) {
        let line = args.to_string();
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    fn info(&self, args: fmt::Arguments<'_>) {
        let line = args.to_string();
        self.infos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    fn monotonic_ns(&self) -> u64 {
        self.clock_ns.load(Ordering::SeqCst)
    }

    fn reserve_basis(&self) -> ReserveBasis {
        *self.basis.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn map_pages(&self, pages: &[NonNull<u8>]) -> Option<NonNull<u8>> {
        let every = self.map_fail_every.load(Ordering::SeqCst);
        let n = self.map_requests.fetch_add(1, Ordering::SeqCst) + 1;
        if pages.is_empty() || (every != 0 && n % every == 0) {
            return None;
        }
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { alloc(HostMapping::layout(pages.len())) })?;
        self.mappings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(HostMapping {
                base: base.as_ptr() as usize,
                pages: pages.iter().map(|page| page.as_ptr() as usize).collect(),
            });
        Some(base)
    }

    unsafe fn unmap_pages(&self, addr: NonNull<u8>, count: usize) {
        let mut mappings = self.mappings.lock().unwrap_or_else(|e| e.into_inner());
        let base = addr.as_ptr() as usize;
        let Some(index) = mappings
            .iter()
            .position(|mapping| mapping.base == base && mapping.pages.len() == count)
        else {
            drop(mappings);
            self.report(format_args!(
                "host: unmap_pages({base:#x}, {count}) of no such mapping"
            ));
            return;
        };
        mappings.swap_remove(index);
        // SAFETY: `map_pages` allocated the mapping with this layout, and
        // its record is gone, so it is freed once.
        unsafe { dealloc(addr.as_ptr(), HostMapping::layout(count)) };
    }

    fn mapped_frame(&self, addr: NonNull<u8>) -> Option<usize> {
        let addr = addr.as_ptr() as usize;
        self.mappings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find_map(|mapping| {
                let index = addr.checked_sub(mapping.base)? / PAGE_SIZE;
                mapping.pages.get(index).map(|page| page >> PAGE_SHIFT)
            })
    }
}

/// A [`HostPlatform`] behind an `Arc`: a test keeps a handle to the books
/// (pages outstanding, reports, `cond_resched` calls) while an allocator
/// that owns another handle is used and dropped.
#[derive(Clone)]
pub struct SharedHostPlatform {
    host: Arc<HostPlatform>,
    resched: Arc<AtomicUsize>,
}

impl SharedHostPlatform {
    /// A shared platform with `nr_cpus` CPUs.
    pub fn new(nr_cpus: usize) -> Self {
        Self::with_nodes(nr_cpus, 1)
    }

    /// A shared platform with `nr_cpus` CPUs over `nr_nodes` nodes (see
    /// [`HostPlatform::with_nodes`]).
    pub fn with_nodes(nr_cpus: usize, nr_nodes: usize) -> Self {
        SharedHostPlatform {
            host: Arc::new(HostPlatform::with_nodes(nr_cpus, nr_nodes)),
            resched: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The platform and its books.
    pub fn host(&self) -> &HostPlatform {
        &self.host
    }

    /// How often the allocator called [`Platform::cond_resched`].
    pub fn resched_calls(&self) -> usize {
        self.resched.load(Ordering::SeqCst)
    }
}

impl Platform for SharedHostPlatform {
    type Lock<T: Send> = HostLock<T>;
    type PerCpu<T: Send + Sync> = HostPerCpu<T>;

    fn new_lock<T: Send>(&self, value: T, class: LockClass) -> Result<HostLock<T>, AllocError> {
        self.host.new_lock(value, class)
    }

    fn new_percpu<T: Send + Sync>(
        &self,
        init: impl FnMut(usize) -> Result<T, AllocError>,
    ) -> Result<HostPerCpu<T>, AllocError> {
        self.host.new_percpu(init)
    }

    fn on_each_cpu<T: Send + Sync>(&self, data: &HostPerCpu<T>, f: &(dyn Fn(usize, &T) + Sync)) {
        self.host.on_each_cpu(data, f)
    }

    fn nr_cpu_ids(&self) -> usize {
        self.host.nr_cpu_ids()
    }

    fn this_cpu(&self) -> usize {
        self.host.this_cpu()
    }

    fn nr_nodes(&self) -> usize {
        self.host.nr_nodes()
    }

    fn node_has_memory(&self, node: usize) -> bool {
        self.host.node_has_memory(node)
    }

    fn cpu_node(&self, cpu: usize) -> usize {
        self.host.cpu_node(cpu)
    }

    fn page_node(&self, page: NonNull<u8>) -> usize {
        self.host.page_node(page)
    }

    fn alloc_pages(&self, order: u32, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        self.host.alloc_pages(order, gfp, node)
    }

    unsafe fn free_pages(&self, ptr: NonNull<u8>, order: u32) {
        // SAFETY: The caller's guarantees are passed on unchanged.
        unsafe { self.host.free_pages(ptr, order) }
    }

    fn alloc_meta(&self, layout: Layout, gfp: Gfp) -> Option<NonNull<u8>> {
        self.host.alloc_meta(layout, gfp)
    }

    unsafe fn free_meta(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: The caller's guarantees are passed on unchanged.
        unsafe { self.host.free_meta(ptr, layout) }
    }

    fn report(&self, args: fmt::Arguments<'_>) {
        self.host.report(args)
    }

    fn monotonic_ns(&self) -> u64 {
        self.host.monotonic_ns()
    }

    fn info(&self, args: fmt::Arguments<'_>) {
        self.host.info(args)
    }

    fn cond_resched(&self) {
        self.resched.fetch_add(1, Ordering::SeqCst);
    }

    fn reserve_basis(&self) -> ReserveBasis {
        self.host.reserve_basis()
    }

    fn map_pages(&self, pages: &[NonNull<u8>]) -> Option<NonNull<u8>> {
        self.host.map_pages(pages)
    }

    unsafe fn unmap_pages(&self, addr: NonNull<u8>, count: usize) {
        // SAFETY: The caller's guarantees are passed on unchanged.
        unsafe { self.host.unmap_pages(addr, count) }
    }

    fn mapped_frame(&self, addr: NonNull<u8>) -> Option<usize> {
        self.host.mapped_frame(addr)
    }
}
