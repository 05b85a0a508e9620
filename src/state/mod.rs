// SPDX-License-Identifier: GPL-2.0

//! The state of the rmm module, independent of the kernel: the page
//! allocator, the generic kmalloc caches, the caches created through the
//! control file, and the objects and page blocks the control file holds.
//!
//! The kernel layer keeps one [`Rmm`] behind a sleeping mutex and calls it
//! from the procfs callbacks: [`Rmm::execute`] for writes to `rmm_ctl`,
//! [`crate::views`] for the read-only files, [`Rmm::shrink_all`] and
//! [`Rmm::reclaimable_pages`] for the memory shrinker, [`Rmm::run_demo`] for
//! `demo=1` and [`Rmm::teardown`] on unload.
//!
//! # Control commands
//!
//! Each line of a write is one command (grammar in [`crate::control`]).
//! Lines run in order; the first failing line stops the write and its error
//! is the write's result. Lines before it keep their effect: a write is not
//! a transaction. Every failure is reported through
//! [`Platform::report`] as one line naming the command and the reason, e.g.
//! `rmm_ctl: destroy foo: 3 objects still allocated (-EBUSY)`.
//!
//! A failing command changes nothing, with one exception: `alloc` and
//! `page-alloc` running out of memory keep what they got (see below).
//!
//! - `create NAME SIZE [align=N] [ctor] [debug] [hwcache]` creates a cache.
//!   `-EEXIST` if a cache of that name exists (generic ones included),
//!   `-ENOSPC` if [`MAX_USER_CACHES`] caches exist already. `debug` turns on
//!   red zones and poisoning ([`SlabFlags::DEBUG`]; every cache gets them
//!   when the module runs with `debug=1`), `hwcache` aligns to cache lines,
//!   `ctor` installs [`pattern_ctor`].
//! - `alloc NAME COUNT` allocates COUNT objects and holds them. When memory
//!   runs out it fails with `-ENOMEM`, but the objects allocated before stay
//!   held (and counted in the views): the report says how many.
//! - `free NAME COUNT|all` frees held objects, most recently allocated
//!   first. Asking for more than are held is `-EINVAL` and frees nothing;
//!   `all` with nothing held succeeds. Objects of a `ctor` cache are checked
//!   against [`pattern_byte`] first: a mismatch is reported (at most
//!   [`CORRUPTION_REPORTS`] lines per command), counted in `corruptions`,
//!   and repaired by running the constructor again so that the cache gets
//!   back an object in constructed state; the free itself goes ahead and
//!   the command succeeds.
//! - `shrink NAME` empties the cache's per-CPU arrays, gives its empty slabs
//!   back to the page allocator, then shrinks the page allocator, which
//!   gives wholly free chunks back to the kernel; one info line tells how
//!   much went back.
//! - `destroy NAME` destroys a cache. `-EBUSY` while it has objects
//!   allocated, including the objects this module holds for the control
//!   file: free them first. The generic `kmalloc-*` caches live as long as
//!   the module: destroying one is `-EPERM`.
//! - `page-alloc ORDER COUNT` / `page-free ORDER COUNT|all`: the same for
//!   blocks of `2^ORDER` pages from the page allocator.
//! - `alloc` and `page-alloc` take an optional flag word (grammar in
//!   [`crate::control`]): `kernel` (the default), `atomic` (may not sleep,
//!   may take the page allocator's emergency reserve), `nowait` (may not
//!   sleep, stops at the `low` watermark), each optionally `|zero`. `zero`
//!   on a cache with a constructor is `-EINVAL` (zeroing would destroy the
//!   constructed state).
//! - `alloc` and `page-alloc` also take `node=N` (before or after the flag
//!   word): the objects or blocks prefer node N
//!   ([`crate::slab::KmemCache::alloc_node`], the kernel's
//!   `kmem_cache_alloc_node`;
//!   [`crate::page_alloc::PageAllocator::alloc_pages_node`],
//!   `alloc_pages_node`), falling back to the other nodes by distance only
//!   when N has no memory left for them, as the calling CPU's node is
//!   preferred without it. A node that does not exist or has no memory (N
//!   at or above `nr_node_ids`, a memoryless node) is `-EINVAL`, reported
//!   as `no node N with memory (nodes with memory: ...)`, and nothing is
//!   done.
//! - `vmalloc NAME SIZE` / `vfree NAME`: a virtually contiguous area of
//!   SIZE bytes (`K`, `M`, `G` suffixes) built from order-0 pages of the
//!   page allocator, held under NAME; see [`crate::areas`] for the errors.
//! - `reserve auto|KB` sets the page allocator's emergency reserve (the
//!   `min` watermark): its share of the kernel's `min_free_kbytes`, or KB
//!   KiB (0: no reserve and no watermarks); the module's `reserve=`.
//! - `fail N [refill]` (N from 0 to 1000000) makes every N-th page request
//!   fail from now on, as if memory had run out ([`Rmm::set_fail_every`],
//!   the module's `fail=N`): the page requests are a cache's requests for a
//!   new slab, the page allocator's requests to the kernel for a new chunk
//!   (its refills), the blocks `page-alloc` asks for (and large `kmalloc`
//!   blocks), the pages of a vmalloc area and its mapping. With `refill`
//!   only the refills are numbered and failed. `fail 1` fails them all,
//!   `fail 0` turns it off. Allocations then fail with `-ENOMEM` as above;
//!   a slab whose pages were refused is not built, so no constructor runs
//!   for it. The rate and the failures injected show in `rmm_stats`
//!   (`fail_every`, `fail_refill`, `fail_requests`, `fail_injected`).
//! - `invalid-free NAME KIND` deliberately frees an invalid pointer into
//!   cache NAME, to show that rmm detects it (the `invalid_free` function):
//!   `interior` frees an address inside an object of NAME (half its size
//!   past its start, at least one byte), `foreign` the start of an order-0
//!   block of rmm's page allocator, `wrong-cache` an object of a generic
//!   `kmalloc-*` cache other than NAME, `double` an object of NAME that was
//!   just freed. The command allocates what it needs itself, frees it
//!   properly once the cache has refused the invalid free, and touches no
//!   held object: nothing leaks and nothing held changes. What it leaves is
//!   the cache's report line (`rmm slab NAME: free of ADDRESS: REASON`,
//!   from the cache's own free check), one more in the cache's `errors` in
//!   `rmm_stats`, one info line naming the kind and the reason, and what
//!   any allocation and free leave in the cache (a slab built, objects in
//!   the per-CPU array). Interior, foreign and wrong-cache frees are
//!   detected in every mode. A double free is detected only in a debug
//!   cache (`create ... debug` or `debug=1`): elsewhere it would corrupt
//!   the cache, as in the kernel without `slub_debug`, so `double` on a
//!   cache without debugging fails with `-EINVAL` and does nothing.
//!   `-ENOMEM` if what the command needs cannot be allocated (nothing is
//!   freed then). `-EIO` if the free was *not* detected as expected
//!   (accepted, refused for another reason, or not counted): a regression
//!   of the free checks. A cache that accepted the pointer cannot be
//!   trusted any more; what the command allocated for the test is then
//!   left allocated (leaked) rather than freed under it.
//!
//! Unknown caches are `-ENOENT`, malformed lines `-EINVAL`, and after
//! [`Rmm::teardown`] every command fails with `-ENODEV`.
//!
//! Long loops (`alloc 1048576 ...`) call [`Platform::cond_resched`] every
//! [`RESCHED_EVERY`] objects and allocate with [`Gfp::KERNEL`](crate::gfp::Gfp::KERNEL): commands run
//! in process context with only a sleeping mutex held.

mod demo;
mod errors;
mod exec;
mod held;
mod invalid_free;
mod teardown;
mod user_caches;

pub use demo::{demo_ctor_logs, Student, DEMO_CACHE, DEMO_CTOR_LOG_FIRST};
pub use errors::{errno, CtlError, CtlErrorKind, Missed, Verb};
pub use held::{pattern_byte, pattern_ctor};
pub use teardown::TeardownSummary;

use crate::areas::VmAreas;
use crate::kmalloc::{Kmalloc, KMALLOC_CACHES};
use crate::page_alloc::{FaultStats, PageAllocator, MAX_ORDER};
use crate::platform::{AllocError, OfflineCpu, Platform};
use crate::ratelimit::RateLimit;
use crate::slab::{KmemCache, SlabFlags};
use core::ptr::NonNull;
use held::{AddrStack, Held};
use user_caches::UserCaches;

/// Most caches the control file may create (the demo's cache counts).
pub const MAX_USER_CACHES: usize = 64;

/// Objects (or blocks) between two [`Platform::cond_resched`] calls in the
/// long loops of `alloc`, `free`, `page-alloc`, `page-free` and teardown.
pub const RESCHED_EVERY: usize = 256;

/// Most corruption lines one command reports; further corrupted objects
/// are counted and summed up in one more line.
pub const CORRUPTION_REPORTS: usize = 4;

/// Number of block orders the control file can hold (0 to `MAX_ORDER`).
const NR_BLOCK_ORDERS: usize = MAX_ORDER as usize + 1;

/// What [`Rmm::cpu_dead`] handed back from an offline CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuHandback {
    /// Objects from the CPU's per-CPU arrays, back in their slabs.
    pub objects: usize,
    /// Pages from the CPU's page list, back on the buddy lists.
    pub pages: usize,
}

/// A cache as the views see it.
pub struct CacheEntry<'a, P: Platform> {
    /// The cache.
    pub cache: &'a KmemCache<P>,
    /// Objects the control file holds in it.
    pub held: usize,
    /// Held objects found corrupted when freed through the control file.
    pub corruptions: usize,
    /// Whether it is a generic `kmalloc-*` cache.
    pub generic: bool,
}

impl<P: Platform> Clone for CacheEntry<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Platform> Copy for CacheEntry<'_, P> {}

/// A cache found by name: an index into the generic caches or into the
/// user caches.
#[derive(Clone, Copy)]
enum Found {
    Generic(usize),
    User(usize),
}

/// The state of the rmm module.
///
/// # Invariants
///
/// `users` were added with `pages`' platform; their caches are live (not
/// destroyed) and their names distinct from each other and from the
/// generic caches' names. `generic_held[i]` holds objects of the generic
/// cache `i`, `blocks[o]` blocks of order `o` from `pages`, `areas` vmalloc
/// areas from `pages`. After teardown (`torn_down`) there are no user
/// caches, every stack and `areas` are empty and the generic caches are
/// destroyed.
pub struct Rmm<P: Platform> {
    kmalloc: Kmalloc<P>,
    areas: VmAreas<P>,
    generic_held: [Held; KMALLOC_CACHES],
    users: UserCaches<P>,
    blocks: [AddrStack; NR_BLOCK_ORDERS],
    corruptions: usize,
    reaps: ReapStats,
    ctl_errors: RateLimit,
    debug_all: bool,
    torn_down: bool,
    // Last: dropped after everything that came from it.
    pages: PageAllocator<P>,
}

/// What the reap passes ([`Rmm::reap_all`]) did since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReapStats {
    /// Passes run.
    pub passes: usize,
    /// Empty slabs they gave back.
    pub released: usize,
}

impl<P: Platform> Rmm<P> {
    /// Creates the page allocator and the generic caches. With `debug_all`
    /// (the module's `debug=1`) every cache, generic ones included, gets red
    /// zones and poisoning.
    pub fn new(platform: P, debug_all: bool) -> Result<Self, AllocError> {
        let pages = PageAllocator::new(platform)?;
        let flags = if debug_all {
            SlabFlags::DEBUG
        } else {
            SlabFlags::NONE
        };
        let kmalloc = Kmalloc::with_flags(&pages, flags).map_err(|_| AllocError)?;
        // INVARIANT: no user caches, nothing held.
        Ok(Rmm {
            kmalloc,
            areas: VmAreas::new(),
            generic_held: core::array::from_fn(|_| Held::new(false)),
            users: UserCaches::new(),
            blocks: core::array::from_fn(|_| AddrStack::new()),
            corruptions: 0,
            reaps: ReapStats::default(),
            ctl_errors: RateLimit::kernel_default(),
            debug_all,
            torn_down: false,
            pages,
        })
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        self.pages.platform()
    }

    /// The page allocator.
    pub fn pages(&self) -> &PageAllocator<P> {
        &self.pages
    }

    /// The generic caches.
    pub fn kmalloc(&self) -> &Kmalloc<P> {
        &self.kmalloc
    }

    /// The vmalloc areas the control file holds.
    pub fn areas(&self) -> &VmAreas<P> {
        &self.areas
    }

    /// Whether every cache is created with debugging (`debug=1`).
    pub fn debug_all(&self) -> bool {
        self.debug_all
    }

    /// Whether [`Rmm::teardown`] has run.
    pub fn is_torn_down(&self) -> bool {
        self.torn_down
    }

    /// Caches created through the control file (or the demo) and alive.
    pub fn user_caches(&self) -> usize {
        self.users.len()
    }

    /// Held objects found corrupted so far, in all caches (destroyed ones
    /// included).
    pub fn corruptions(&self) -> usize {
        self.corruptions
    }

    /// Failed control commands since load, and how many of them were not
    /// logged because of the rate limit.
    pub fn ctl_errors(&self) -> (usize, usize) {
        (self.ctl_errors.total(), self.ctl_errors.dropped())
    }

    /// Makes every `every`-th page request fail from now on, 0 for none
    /// (the control file's `fail N`, the module's `fail=N`; see the module
    /// documentation). Any value is accepted; the control file limits it to
    /// [`crate::control::MAX_FAIL_EVERY`].
    pub fn set_fail_every(&self, every: usize) {
        self.pages.faults().set_every(every);
    }

    /// The fault injector's rate and counters.
    pub fn fault_stats(&self) -> FaultStats {
        self.pages.faults().stats()
    }

    /// Page blocks of `order` held for the control file.
    pub fn held_blocks(&self, order: u32) -> usize {
        self.blocks.get(order as usize).map_or(0, AddrStack::len)
    }

    /// The page blocks of `order` held for the control file, most recently
    /// allocated first.
    pub fn held_blocks_of(&self, order: u32) -> impl Iterator<Item = NonNull<u8>> + '_ {
        self.blocks
            .get(order as usize)
            .into_iter()
            .flat_map(AddrStack::iter)
    }

    fn generic(&self, index: usize) -> Option<&KmemCache<P>> {
        self.kmalloc.caches().nth(index)
    }

    /// Every live cache in `/proc/slabinfo` order: as in the kernel, which
    /// lists the most recently created cache first, the control file's
    /// caches newest first, then the generic caches largest first.
    pub fn caches(&self) -> impl Iterator<Item = CacheEntry<'_, P>> + '_ {
        let users = self.users.iter().rev().map(|user| CacheEntry {
            cache: &user.cache,
            held: user.held.objects.len(),
            corruptions: user.held.corruptions,
            generic: false,
        });
        let generics = (0..KMALLOC_CACHES).rev().filter_map(move |index| {
            let cache = self.generic(index)?;
            let held = &self.generic_held[index];
            Some(CacheEntry {
                cache,
                held: held.objects.len(),
                corruptions: held.corruptions,
                generic: true,
            })
        });
        users
            .chain(generics)
            .filter(|entry| !entry.cache.is_destroyed())
    }

    /// The live cache named `name`.
    pub fn cache(&self, name: &str) -> Option<CacheEntry<'_, P>> {
        self.caches().find(|entry| entry.cache.name() == name)
    }

    /// The objects held in cache `name`, most recently allocated first (the
    /// order `free` takes them in).
    pub fn held_objects(&self, name: &str) -> Option<impl Iterator<Item = NonNull<u8>> + '_> {
        let held = match self.find(name)? {
            Found::Generic(index) => self.generic_held.get(index)?,
            Found::User(index) => &self.users.get(index)?.held,
        };
        Some(held.objects.iter())
    }

    fn find(&self, name: &str) -> Option<Found> {
        if self.torn_down {
            return None;
        }
        if let Some(index) = self.kmalloc.caches().position(|cache| cache.name() == name) {
            return Some(Found::Generic(index));
        }
        self.users.position(name).map(Found::User)
    }

    /// Runs `f` on a found cache, its held objects and the page allocator
    /// (`None` only for an index out of range, which `find` never gives).
    fn with_found<R>(
        &mut self,
        found: Found,
        f: impl FnOnce(&PageAllocator<P>, &KmemCache<P>, &mut Held) -> R,
    ) -> Option<R> {
        match found {
            Found::Generic(index) => {
                let cache = self.kmalloc.caches().nth(index)?;
                let held = self.generic_held.get_mut(index)?;
                Some(f(&self.pages, cache, held))
            }
            Found::User(index) => {
                let user = self.users.get_mut(index)?;
                Some(f(&self.pages, &user.cache, &mut user.held))
            }
        }
    }

    /// Hands back what CPU `cpu` held in every cache's per-CPU array and in
    /// the page allocator's per-CPU lists, after it went offline.
    pub fn cpu_dead(&mut self, cpu: &OfflineCpu) -> CpuHandback {
        let mut back = CpuHandback::default();
        for entry in self.caches() {
            // SAFETY: the CPU is offline and its data ours alone
            // (`OfflineCpu`'s invariant).
            back.objects += unsafe { entry.cache.cpu_dead(&self.pages, cpu.number()) };
        }
        // SAFETY: as above.
        back.pages = unsafe { self.pages.cpu_dead(cpu.number()) };
        back
    }

    /// Shrinks every cache, then the page allocator; returns the pages the
    /// page allocator gave back to the platform (for a memory shrinker's
    /// `scan_objects`).
    pub fn shrink_all(&self) -> usize {
        if self.torn_down {
            return 0;
        }
        for entry in self.caches() {
            entry.cache.shrink(&self.pages);
        }
        self.pages.shrink()
    }

    /// One reap pass over every cache ([`KmemCache::reap`]), as the
    /// kernel module's reaper thread runs it periodically: empty slabs kept
    /// for a recent peak that is over go back to the page allocator.
    /// Returns the slabs released.
    pub fn reap_all(&mut self) -> usize {
        if self.torn_down {
            return 0;
        }
        let released = self
            .caches()
            .map(|entry| entry.cache.reap(&self.pages))
            .sum();
        self.reaps.passes += 1;
        self.reaps.released += released;
        released
    }

    /// The reap passes so far and the slabs they released.
    pub fn reap_stats(&self) -> ReapStats {
        self.reaps
    }

    /// An estimate of what [`Rmm::shrink_all`] could free, in pages (for a
    /// memory shrinker's `count_objects`): the pages of empty slabs of every
    /// cache plus the pages of wholly free chunks (free blocks of the
    /// largest order). Approximate: objects sitting in per-CPU arrays keep
    /// their slabs out of the count, pages on per-CPU page lists keep their
    /// chunk out, and an empty slab's pages go back to the platform only if
    /// they complete a free chunk.
    pub fn reclaimable_pages(&self) -> usize {
        if self.torn_down {
            return 0;
        }
        let empty_slab_pages: usize = self
            .caches()
            .map(|entry| {
                let info = entry.cache.slabinfo();
                (info.num_slabs - info.active_slabs) * info.pagesperslab
            })
            .sum();
        let free_chunks = self.pages.buddyinfo()[MAX_ORDER as usize];
        empty_slab_pages + (free_chunks << MAX_ORDER)
    }
}

impl<P: Platform> Drop for Rmm<P> {
    fn drop(&mut self) {
        if !self.torn_down {
            let summary = self.teardown();
            self.platform().info(format_args!("teardown: {summary}"));
        }
    }
}
