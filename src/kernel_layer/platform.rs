// SPDX-License-Identifier: GPL-2.0

//! The kernel side of [`Platform`]: pages from the kernel's page allocator,
//! interrupt-safe spinlocks, the kernel's per-CPU areas, `vmap` and
//! `pr_err`.

use super::bindings;
use super::irq_lock::SpinLockIrq;
use super::percpu::KernelPerCpu;
use super::vmap;
use crate::address_hash::{hash_address, scrub_addresses, LineBuffer};
use crate::gfp::Gfp;
use crate::page_alloc::ReserveBasis;
use crate::platform::{AllocError, Lock, LockClass, Platform};
use core::alloc::Layout;
use core::fmt::{self, Write};
use core::pin::Pin;
use core::ptr::{addr_of_mut, NonNull};
use kernel::alloc::{allocator::Kmalloc, flags, Allocator, Flags, KBox};
use kernel::init::InPlaceInit;
use kernel::prelude::*;

/// The kernel's services, as the allocator core sees them.
pub struct KernelPlatform {
    nr_cpus: usize,
    /// `nr_node_ids`, at most `MAX_NODES` (checked at load,
    /// [`KernelPlatform::check_nodes`]).
    nr_nodes: usize,
    /// Key for hashing addresses in report lines (random per load).
    address_key: u64,
}

impl Default for KernelPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelPlatform {
    /// Refuses a kernel with more possible nodes (`nr_node_ids`) than
    /// rmm's per-node tables hold ([`MAX_NODES`](crate::platform::MAX_NODES)).
    /// Checked when the module loads, not when it is built: a kernel built
    /// for many nodes (a distribution's `NODES_SHIFT=10`) usually has few.
    pub fn check_nodes() -> Result {
        // SAFETY: `nr_node_ids` is set during boot, before modules load, and
        // never changes afterwards.
        let nodes = unsafe { bindings::nr_node_ids } as usize;
        if nodes > crate::platform::MAX_NODES {
            pr_err!(
                "rmm: this kernel has {} possible memory nodes; rmm keeps tables for {}\n",
                nodes,
                crate::platform::MAX_NODES
            );
            return Err(EINVAL);
        }
        Ok(())
    }

    /// The platform of the running kernel.
    pub fn new() -> Self {
        // SAFETY: `nr_cpu_ids` is set during boot, before modules load, and
        // never changes afterwards.
        let nr_cpus = unsafe { bindings::nr_cpu_ids } as usize;
        // SAFETY: `nr_node_ids` is set during boot, before modules load, and
        // never changes afterwards.
        let nr_nodes = unsafe { bindings::nr_node_ids } as usize;
        // SAFETY: `get_random_u64` may be called from any context.
        let address_key = unsafe { bindings::get_random_u64() };
        KernelPlatform {
            nr_cpus,
            nr_nodes: nr_nodes.clamp(1, crate::platform::MAX_NODES),
            address_key,
        }
    }
}

/// The kernel's `gfp_t` for an allocation with `gfp`. rmm reports its own
/// failures, so the page allocator's warning is turned off.
fn raw_gfp(gfp: Gfp) -> bindings::gfp_t {
    let mut raw = match (gfp.may_sleep(), gfp.may_use_reserve()) {
        (true, _) => bindings::GFP_KERNEL,
        (false, true) => bindings::GFP_ATOMIC,
        (false, false) => bindings::GFP_NOWAIT,
    };
    raw |= bindings::__GFP_NOWARN;
    if gfp.zeroed() {
        raw |= bindings::__GFP_ZERO;
    }
    raw
}

/// The same as [`raw_gfp`], for the kernel crate's allocators.
fn kernel_flags(gfp: Gfp) -> Flags {
    let mut f = match (gfp.may_sleep(), gfp.may_use_reserve()) {
        (true, _) => flags::GFP_KERNEL,
        (false, true) => flags::GFP_ATOMIC,
        (false, false) => flags::GFP_NOWAIT,
    };
    f = f | flags::__GFP_NOWARN;
    if gfp.zeroed() {
        f = f | flags::__GFP_ZERO;
    }
    f
}

/// [`Lock`] in the kernel: a pinned, heap-allocated [`SpinLockIrq`].
pub struct KernelLock<T>(Pin<KBox<SpinLockIrq<T>>>);

impl<T: Send> Lock<T> for KernelLock<T> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self.0.lock();
        f(&mut guard)
    }
}

/// Makes a lock of one lockdep class: every call site of this macro has
/// its own static class key.
macro_rules! new_lock_of_class {
    ($value:expr, $name:literal) => {
        KBox::pin_init(
            SpinLockIrq::new($value, kernel::c_str!($name), kernel::static_lock_class!()),
            flags::GFP_KERNEL,
        )
    };
}

impl Platform for KernelPlatform {
    type Lock<T: Send> = KernelLock<T>;
    type PerCpu<T: Send + Sync> = KernelPerCpu<T>;

    fn new_lock<T: Send>(&self, value: T, class: LockClass) -> Result<KernelLock<T>, AllocError> {
        let lock = match class {
            LockClass::Buddy => new_lock_of_class!(value, "rmm_buddy"),
            LockClass::SlabNode => new_lock_of_class!(value, "rmm_slab_node"),
            LockClass::Other => new_lock_of_class!(value, "rmm_other"),
        };
        lock.map(KernelLock).map_err(|_| AllocError)
    }

    fn new_percpu<T: Send + Sync>(
        &self,
        init: impl FnMut(usize) -> Result<T, AllocError>,
    ) -> Result<KernelPerCpu<T>, AllocError> {
        KernelPerCpu::new(self.nr_cpus, init)
    }

    fn on_each_cpu<T: Send + Sync>(&self, data: &KernelPerCpu<T>, f: &(dyn Fn(usize, &T) + Sync)) {
        data.on_each_cpu(f)
    }

    fn nr_cpu_ids(&self) -> usize {
        self.nr_cpus
    }

    #[inline]
    fn this_cpu(&self) -> usize {
        // SAFETY: Reading the current CPU number has no preconditions; the
        // result may be stale, which the `Platform` contract allows.
        unsafe { bindings::rmm_raw_smp_processor_id() as usize }
    }

    fn nr_nodes(&self) -> usize {
        self.nr_nodes
    }

    fn node_has_memory(&self, node: usize) -> bool {
        // SAFETY: any node number below `nr_node_ids` may be asked about.
        node < self.nr_nodes && unsafe { bindings::rmm_node_has_memory(node as i32) }
    }

    fn cpu_node(&self, cpu: usize) -> usize {
        if cpu >= self.nr_cpus {
            return 0;
        }
        // SAFETY: `cpu` is a possible CPU number (below `nr_cpu_ids`),
        // whose node the kernel set up at boot.
        let node = unsafe { bindings::rmm_cpu_to_node(cpu as u32) };
        usize::try_from(node).unwrap_or(0)
    }

    fn node_distance(&self, from: usize, to: usize) -> u32 {
        if from >= self.nr_nodes || to >= self.nr_nodes {
            return crate::platform::REMOTE_DISTANCE;
        }
        // SAFETY: both node numbers are below `nr_node_ids`.
        let distance = unsafe { bindings::rmm_node_distance(from as i32, to as i32) };
        u32::try_from(distance).unwrap_or(crate::platform::REMOTE_DISTANCE)
    }

    fn alloc_pages(&self, order: u32, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        if !self.node_has_memory(node) {
            return None;
        }
        // SAFETY: any flags and order are accepted for a node with memory;
        // the kernel returns NULL when it cannot satisfy the request
        // (including orders above its maximum). `__GFP_THISNODE` is added
        // by the helper.
        let addr = unsafe { bindings::rmm_alloc_pages_node(raw_gfp(gfp), order, node as i32) };
        NonNull::new(addr.cast::<u8>())
    }

    fn page_node(&self, page: NonNull<u8>) -> usize {
        // SAFETY: the `Platform` contract: `page` is in pages from
        // `alloc_pages`, so in the kernel's direct map, where
        // `virt_to_page` is valid.
        let node = unsafe { bindings::rmm_page_nid(page.as_ptr().cast()) };
        usize::try_from(node).unwrap_or(0)
    }

    unsafe fn free_pages(&self, ptr: NonNull<u8>, order: u32) {
        // SAFETY: The caller guarantees that `ptr` came from `alloc_pages`
        // (the kernel's `__get_free_pages`) with this order and is unused.
        unsafe { bindings::free_pages(ptr.as_ptr() as kernel::ffi::c_ulong, order) };
    }

    fn alloc_meta(&self, layout: Layout, gfp: Gfp) -> Option<NonNull<u8>> {
        Kmalloc::alloc(layout, kernel_flags(gfp))
            .ok()
            .map(|p| p.cast::<u8>())
    }

    unsafe fn free_meta(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: The caller guarantees that `ptr` came from `alloc_meta`,
        // that is from `Kmalloc` with this layout, and is unused.
        unsafe { Kmalloc::free(ptr, layout) };
    }

    /// Logs the line with `pr_err`, with every kernel address in it hashed
    /// as `%p` would print it (see [`crate::report`]): the kernel log may be
    /// readable by users who must not learn kernel addresses.
    fn report(&self, args: fmt::Arguments<'_>) {
        let mut raw = LineBuffer::<256>::new();
        let _ = raw.write_fmt(args);
        let mut line = LineBuffer::<256>::new();
        let _ = scrub_addresses(raw.as_str(), &mut line, |address| {
            hash_address(address, self.address_key)
        });
        let cut = if raw.truncated() || line.truncated() {
            "..."
        } else {
            ""
        };
        pr_err!("{}{}\n", line.as_str(), cut);
    }

    fn info(&self, args: fmt::Arguments<'_>) {
        pr_info!("{}\n", args);
    }

    fn monotonic_ns(&self) -> u64 {
        // SAFETY: `ktime_get` has no preconditions.
        let now = unsafe { bindings::ktime_get() };
        // The monotonic clock starts at boot: never negative.
        now.max(0) as u64
    }

    fn cond_resched(&self) {
        // SAFETY: The `Platform` contract only calls this where sleeping is
        // allowed; `DEBUG_ATOMIC_SLEEP` kernels check that it is.
        unsafe { bindings::rmm_cond_resched() };
    }

    /// The min watermarks and managed pages of the kernel's low-memory
    /// zones, read now (so a `min_free_kbytes` set through sysctl counts).
    fn reserve_basis(&self) -> ReserveBasis {
        let mut min_pages: kernel::ffi::c_ulong = 0;
        let mut managed_pages: kernel::ffi::c_ulong = 0;
        // SAFETY: both pointers are to locals; the helper only reads the
        // zones' watermarks and counters.
        unsafe {
            bindings::rmm_kernel_reserve(addr_of_mut!(min_pages), addr_of_mut!(managed_pages))
        };
        ReserveBasis {
            min_pages: min_pages as usize,
            managed_pages: managed_pages as usize,
        }
    }

    fn map_pages(&self, pages: &[NonNull<u8>]) -> Option<NonNull<u8>> {
        vmap::map_pages(pages)
    }

    unsafe fn unmap_pages(&self, addr: NonNull<u8>, _count: usize) {
        // SAFETY: The caller guarantees a live mapping of ours that nothing
        // uses, in a context that may sleep.
        unsafe { vmap::unmap_pages(addr) };
    }

    fn page_frame(&self, page: NonNull<u8>) -> usize {
        vmap::page_frame(page)
    }

    fn mapped_frame(&self, addr: NonNull<u8>) -> Option<usize> {
        vmap::mapped_frame(addr)
    }

    /// `0x` and the address as `%pK` prints it for the reader: hashed
    /// with `kptr_restrict` 0, itself for a reader with `CAP_SYSLOG` with
    /// `kptr_restrict` 1, zeros otherwise.
    fn write_address(&self, out: &mut dyn fmt::Write, addr: usize) -> fmt::Result {
        let mut buf = [0u8; 24];
        // SAFETY: `buf` has room for `buf.len()` bytes, which `scnprintf`
        // does not exceed (it NUL-terminates within them); `%pK` only
        // prints the pointer's value, never dereferences it.
        let len = unsafe {
            bindings::rmm_format_kptr(buf.as_mut_ptr().cast(), buf.len(), addr as *const _)
        };
        let len = usize::try_from(len).unwrap_or(0).min(buf.len());
        let text = core::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?;
        write!(out, "0x{text}")
    }
}
