// SPDX-License-Identifier: GPL-2.0

//! What the allocator core needs from the world around it.
//!
//! The allocators in this crate are written once and run in two places: in the
//! kernel module, where pages come from the kernel's page allocator, locks are
//! interrupt-safe spinlocks and per-CPU data lives in the kernel's per-CPU
//! areas; and on the host, where `cargo test` drives them from many threads
//! (see [`crate::host`]). [`Platform`] is the seam between the two.

use crate::gfp::Gfp;
use crate::page_alloc::ReserveBasis;
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

/// Size of a page, as on x86-64.
pub const PAGE_SHIFT: u32 = 12;
/// Size of a page in bytes.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Size of a hardware cache line, as on x86-64 (`L1_CACHE_BYTES`).
pub const CACHE_LINE_SIZE: usize = 64;

/// Most memory nodes the allocators keep apart, a power of two: the
/// kernel's `MAX_NUMNODES` in rmm's test kernels (`CONFIG_NODES_SHIFT=3`).
/// The module refuses to load on a kernel with more possible nodes
/// (`nr_node_ids`). Node numbers are below [`Platform::nr_nodes`], which
/// is at most this.
pub const MAX_NODES: usize = 8;

/// Distance between a node and itself, as the kernel's `LOCAL_DISTANCE`.
pub const LOCAL_DISTANCE: u32 = 10;
/// Distance between two nodes the platform says nothing about, as the
/// kernel's `REMOTE_DISTANCE`.
pub const REMOTE_DISTANCE: u32 = 20;

/// An allocation could not be satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("out of memory")
    }
}

/// A CPU that has gone offline and whose per-CPU data nothing else uses
/// until it comes back: what the CPU-hotplug teardown gets (SLAB's
/// `cpuup_canceled`, SLUB's `slub_cpu_dead`), and what lets the state hand
/// back that CPU's arrays and lists without an IPI it could not answer.
///
/// # Invariants
///
/// CPU `number` is offline, and while this value exists nothing but its
/// holder touches that CPU's per-CPU data.
///
/// Neither `Send` nor `Sync`, and handed out by reference only by the
/// hotplug layer, so that it cannot outlive the teardown callback or go to
/// another thread.
#[derive(Debug)]
pub struct OfflineCpu {
    number: usize,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl OfflineCpu {
    /// Vouches that CPU `number` is offline.
    ///
    /// # Safety
    ///
    /// CPU `number` is offline and stays so while the value lives, and
    /// nothing else uses its per-CPU data meanwhile (the hotplug teardown
    /// of that CPU, before it can come back).
    pub unsafe fn new(number: usize) -> Self {
        // INVARIANT: the caller's guarantee.
        OfflineCpu {
            number,
            _not_send: core::marker::PhantomData,
        }
    }

    /// The CPU's number.
    pub fn number(&self) -> usize {
        self.number
    }
}

/// Which kind of lock is being created.
///
/// The kernel's lock validator (lockdep) tracks locks by class; giving each
/// kind of lock its own class lets it check the nesting order
/// (`SlabNode` before `Buddy`; CPU-local sections, which hold no lock, come
/// first, the slab's before the page allocator's) instead of reporting
/// every nesting as recursion. The host ignores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockClass {
    /// The buddy allocator's free lists.
    Buddy,
    /// A slab cache's full, partial and empty lists.
    SlabNode,
    /// Anything else (registries, held-object lists).
    Other,
}

/// A mutual-exclusion lock around a `T`.
///
/// On the kernel side this is a spinlock taken with interrupts disabled, so it
/// may be taken from any context, including interrupt handlers, and the code
/// run under it must not sleep.
pub trait Lock<T>: Send + Sync {
    /// Runs `f` with exclusive access to the protected value.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// One `T` for every possible CPU, in the manner of `alloc_percpu`.
///
/// Two ways in. [`PerCpu::with_local`] is the fast path: the calling CPU's
/// own instance, which nothing else touches until `f` returns (in the
/// kernel: interrupts are off and the instance is reached through the
/// CPU's per-CPU base, as `this_cpu_ptr` does; no lock). [`PerCpu::get`]
/// reaches any CPU's instance, for what may be read from anywhere (atomics).
/// To *change* another CPU's instance, go through
/// [`Platform::on_each_cpu`], which runs the change on that CPU.
///
/// Types that keep CPU-local state (`UnsafeCell`s, or atomics written with
/// plain load-then-store) rely on this: only `with_local`,
/// `Platform::on_each_cpu` and callers of the `unsafe` offline-CPU entry
/// points touch that state, one at a time per instance.
pub trait PerCpu<T>: Send + Sync {
    /// The instance belonging to `cpu`; `cpu` must be below
    /// [`Platform::nr_cpu_ids`], otherwise this panics.
    fn get(&self, cpu: usize) -> &T;

    /// Runs `f` on the calling CPU's instance, with exclusive use of it
    /// until `f` returns: no `with_local` of another context and no
    /// [`Platform::on_each_cpu`] runs on the same instance meanwhile.
    ///
    /// `f` must not sleep and must not call `with_local` or `on_each_cpu`
    /// on the same `PerCpu` (on the host that deadlocks; in the kernel it
    /// would hand out the instance twice).
    fn with_local<R>(&self, f: impl FnOnce(&T) -> R) -> R;
}

/// The services the allocator core takes from its environment.
pub trait Platform: Send + Sync + 'static {
    /// The lock type (an interrupt-safe spinlock in the kernel).
    type Lock<T: Send>: Lock<T>;
    /// The per-CPU storage type (the kernel's per-CPU allocator in the kernel).
    type PerCpu<T: Send + Sync>: PerCpu<T>;

    /// Creates a lock of the given class around `value`.
    fn new_lock<T: Send>(&self, value: T, class: LockClass) -> Result<Self::Lock<T>, AllocError>;

    /// Creates per-CPU storage, calling `init` once for every possible CPU
    /// number from 0 to [`Platform::nr_cpu_ids`] - 1.
    fn new_percpu<T: Send + Sync>(
        &self,
        init: impl FnMut(usize) -> Result<T, AllocError>,
    ) -> Result<Self::PerCpu<T>, AllocError>;

    /// Number of possible CPU numbers (`nr_cpu_ids`).
    fn nr_cpu_ids(&self) -> usize;

    /// The CPU the caller is running on.
    ///
    /// Only a hint: the caller may migrate right after. Code must stay correct
    /// whichever CPU's data it ends up using; the per-CPU locks make sure it
    /// does.
    fn this_cpu(&self) -> usize;

    /// Runs `f(cpu, instance)` for the instance of every possible CPU, each
    /// with the exclusivity of that CPU's [`PerCpu::with_local`]: in the
    /// kernel by an IPI to every online CPU, which runs `f` with interrupts
    /// off (SLAB's `on_each_cpu(do_drain)`); on the host under the
    /// instance's lock. Returns when every call has finished.
    ///
    /// CPUs that are offline are skipped: their instances are handed back
    /// by the CPU-hotplug callback as they go down (see the users'
    /// `cpu_dead` functions). Call only where sleeping is allowed and no
    /// interrupt-disabling lock is held.
    fn on_each_cpu<T: Send + Sync>(&self, data: &Self::PerCpu<T>, f: &(dyn Fn(usize, &T) + Sync));

    /// Number of possible node numbers (`nr_node_ids`), from 1 to
    /// [`MAX_NODES`]. The default is one node.
    fn nr_nodes(&self) -> usize {
        1
    }

    /// Whether `node` is online and has memory (`node_state(node,
    /// N_MEMORY)`): only such nodes are asked for pages. The default has
    /// node 0 alone.
    fn node_has_memory(&self, node: usize) -> bool {
        node == 0
    }

    /// The node `cpu` belongs to (`cpu_to_node`), below
    /// [`Platform::nr_nodes`]. A CPU's node does not change while the
    /// platform lives. The default puts every CPU on node 0.
    fn cpu_node(&self, _cpu: usize) -> usize {
        0
    }

    /// How far memory of node `to` is from CPUs of node `from`
    /// (`node_distance`): [`LOCAL_DISTANCE`] for the same node, more for
    /// others. The default has every other node at [`REMOTE_DISTANCE`].
    fn node_distance(&self, from: usize, to: usize) -> u32 {
        if from == to {
            LOCAL_DISTANCE
        } else {
            REMOTE_DISTANCE
        }
    }

    /// Takes `2^order` contiguous pages, aligned to their size, from the
    /// underlying page allocator, on node `node` only (`__GFP_THISNODE`: no
    /// fallback to another node; the caller chooses where to fall back);
    /// zeroed if `gfp` asks for it.
    fn alloc_pages(&self, order: u32, gfp: Gfp, node: usize) -> Option<NonNull<u8>>;

    /// The node of the page at `page`, an address of a page from
    /// [`Platform::alloc_pages`] (the kernel's
    /// `page_to_nid(virt_to_page(page))`). The default is node 0.
    fn page_node(&self, _page: NonNull<u8>) -> usize {
        0
    }

    /// Returns pages taken with [`Platform::alloc_pages`].
    ///
    /// # Safety
    ///
    /// `ptr` must have come from `alloc_pages` of this platform with the same
    /// `order`, must not have been returned already, and nothing may use the
    /// pages afterwards.
    unsafe fn free_pages(&self, ptr: NonNull<u8>, order: u32);

    /// Allocates memory for the allocators' own bookkeeping (never handed to
    /// users), like the kernel's `kmalloc` used for off-slab descriptors.
    fn alloc_meta(&self, layout: Layout, gfp: Gfp) -> Option<NonNull<u8>>;

    /// Frees memory from [`Platform::alloc_meta`].
    ///
    /// # Safety
    ///
    /// `ptr` must have come from `alloc_meta` of this platform with the same
    /// `layout` and must not be used afterwards.
    unsafe fn free_meta(&self, ptr: NonNull<u8>, layout: Layout);

    /// Reports a detected error (invalid free, corruption) to the log, as
    /// `pr_err` does in the kernel. One call is one line.
    fn report(&self, args: fmt::Arguments<'_>);

    /// Logs an informational line, as `pr_info` does in the kernel. The host
    /// drops it.
    fn info(&self, _args: fmt::Arguments<'_>) {}

    /// Nanoseconds on a monotonic clock (`ktime_get_ns` in the kernel), for
    /// rate limits.
    fn monotonic_ns(&self) -> u64;

    /// A point in a long loop where the caller may be rescheduled
    /// (`cond_resched`). Only called where sleeping is allowed.
    fn cond_resched(&self) {}

    /// What the page allocator's automatic emergency reserve is computed
    /// from: the kernel's `min_free_kbytes` and the pages it is shared
    /// among (see [`crate::page_alloc::watermark`]). The default, an empty
    /// basis, gives no automatic reserve.
    fn reserve_basis(&self) -> ReserveBasis {
        ReserveBasis::default()
    }

    /// Maps `pages`, in order, into one virtually contiguous range of
    /// kernel addresses, as the kernel's `vmap` does, and returns its
    /// start; `None` if that is impossible. Each entry is the address of a
    /// page of the page allocator (from a chunk of
    /// [`Platform::alloc_pages`]). The range is followed by one unmapped
    /// guard page, as the kernel's is. May sleep. The default has no
    /// mapping service and always fails.
    fn map_pages(&self, _pages: &[NonNull<u8>]) -> Option<NonNull<u8>> {
        None
    }

    /// Removes a mapping made by [`Platform::map_pages`] (`vunmap`). The
    /// pages themselves stay allocated. May sleep.
    ///
    /// # Safety
    ///
    /// `addr` must have come from `map_pages` of this platform for `count`
    /// pages, must not have been unmapped already, and nothing may use the
    /// mapping afterwards.
    unsafe fn unmap_pages(&self, _addr: NonNull<u8>, _count: usize) {}

    /// The frame number of the page at `page`, an address of the page
    /// allocator's (the kernel's `page_to_pfn(virt_to_page(page))`). The
    /// default numbers pages by their address.
    fn page_frame(&self, page: NonNull<u8>) -> usize {
        page.as_ptr() as usize >> PAGE_SHIFT
    }

    /// The frame number of the page mapped at `addr` in a mapping of
    /// [`Platform::map_pages`], found from the mapping itself (the
    /// kernel's `vmalloc_to_pfn`, which walks the page tables); `None` if
    /// nothing is mapped there.
    fn mapped_frame(&self, _addr: NonNull<u8>) -> Option<usize> {
        None
    }

    /// Writes a kernel address for a view that shows addresses, as the
    /// kernel's `%pK` does for its own views: in the kernel, hashed or
    /// zeroed unless `kptr_restrict` lets the reader see it; `0x` and 16
    /// hex digits here.
    fn write_address(&self, out: &mut dyn fmt::Write, addr: usize) -> fmt::Result {
        write!(out, "0x{addr:016x}")
    }
}
