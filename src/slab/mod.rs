// SPDX-License-Identifier: GPL-2.0

//! Slab caches, the kernel's SLAB design rebuilt on rmm's page allocator.
//!
//! A [`KmemCache`] hands out objects of one size. It carves them from
//! *slabs*, blocks of `2^order` pages from [`crate::page_alloc`], laid out by
//! [`SlabLayout`]. Every slab has a descriptor and a free-object index,
//! inside the slab for small objects and in
//! [`crate::platform::Platform::alloc_meta`] memory for large ones. The
//! cache keeps its slabs on three lists (full, partial, empty) per memory
//! node, each node's under its own lock (see `node.rs`), and in front of
//! them one array of free objects per CPU, touched only by its CPU with
//! interrupts off (see `cpu_array.rs`), so that most allocations and frees
//! take no lock and touch only their CPU's array. A slab is on the lists
//! of its pages' node; a CPU's array holds objects of its own node only,
//! and a free on another node's CPU goes into that CPU's alien array, and
//! home to the object's node a batch at a time.
//!
//! ```text
//!  KmemCache ──┬── CPU 0 array [obj, obj, obj, ...]   (CPU-local, no lock;
//!              │         alien [obj of node 1, ...]    objects of its node;
//!              ├── CPU 1 array [obj, ...]               alien: other nodes',
//!              │         alien [...]                    on their way home)
//!              └── per node: lists (SlabNode lock)
//!                   ├── full:    slab ⇄ slab
//!                   ├── partial: slab ⇄ slab ⇄ slab
//!                   └── empty:   slab
//!  slab (2^order pages, on-slab bookkeeping):
//!  | colour | obj 0 | obj 1 | ... | obj n-1 | leftover | desc | free index |
//!                                                         ▲
//!  page owner word ──(cache id, node, colour)─────────────┘ (computed)
//! ```
//!
//! The page allocator's per-block owner word leads from any object back to
//! its slab, as `struct page` does in the kernel; see `OwnerTag` in
//! `descriptor.rs` for the encoding: checking a pointer reads nothing but
//! that word, so a wild pointer cannot make rmm read freed memory.
//!
//! # Locks
//!
//! Lock order: CPU-local section of a cache's arrays (interrupts off, no
//! lock) → `SlabNode` (one node's; two are never held at once) → the page
//! allocator's CPU-local lists (no lock) → `Buddy`. Pages are never allocated under a slab lock (the page allocator may have to go to
//! the platform, which may sleep in the kernel), and constructors never run
//! under one: growing takes pages and builds the slab unlocked, then locks
//! to add it. Pages *are* freed under the `SlabNode` lock; freeing never
//! sleeps, and releasing slabs only under that lock is what lets a free
//! validate a pointer against the slab's descriptor without a
//! use-after-free. [`crate::platform::Platform::report`] is called with no
//! slab lock held, except for internal-consistency reports.
//!
//! # Debug mode and constructors
//!
//! With [`SlabFlags::RED_ZONE`] and/or [`SlabFlags::POISON`] the cache
//! tracks every object's state in a byte of its slab's bookkeeping, changed
//! with compare-and-swap, so a double free is caught even when two CPUs
//! race. Red zones are checked on free and on allocation; poison on
//! allocation. Poisoning is skipped for caches with a constructor, as SLUB
//! does (SLAB re-ran the constructor after checking the poison): that way a
//! constructor runs once per object whatever the debug flags, and objects
//! keep their constructed state between free and allocation, which is what
//! constructors are for.
//!
//! Outside debug mode only cheap checks are made on free: the pointer must
//! be in a slab of this cache, at the start of an object.

mod cache;
mod cpu_array;
#[cfg(all(test, loom))]
mod cpu_local_model;
mod debug;
mod descriptor;
mod layout;
mod node;
mod stats;

pub use cache::{
    CreateError, Ctor, CtorCall, DestroyError, KmemCache, SlabFreeError, MAX_NAME_LEN,
};
pub use debug::{POISON_END, POISON_FREE, RED_ZONE_BYTE};
pub use layout::{
    LayoutError, SlabFlags, SlabLayout, MAX_COLOURS, MAX_OBJECT_SIZE, MIN_ALIGN,
    MIN_OBJECTS_PER_SLAB, OFF_SLAB_MIN_SIZE, RED_ZONE_AFTER, SLAB_MAX_ORDER,
};
pub use stats::{CacheNodeStats, CacheStats, SlabInfo, SlabInfoRow, SLABINFO_HEADER};

pub(crate) use descriptor::{reserve_owner_ids, OwnerTag};

/// Bytes of a slab descriptor before its free-object index (for tests and
/// layout checks).
pub const DESC_HEADER_SIZE: usize = descriptor::DESC_HEADER_SIZE;

/// The per-CPU array limit SLAB's `enable_cpucache` chooses for slots of
/// `stride` bytes: 1 above 128 KiB, 8 above a page, 24 above 1 KiB, 54
/// above 256 bytes, else 120.
pub fn cpucache_limit(stride: usize) -> usize {
    cpu_array::cpucache_limit(stride)
}
