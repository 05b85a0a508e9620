// SPDX-License-Identifier: GPL-2.0

//! The buddy allocator's bookkeeping, on frame numbers.
//!
//! Long because the algorithm and the structures it needs to find a frame's
//! chunk in O(1) (the radix directory, the chunk metadata and its spare
//! pool) are one piece: each relies on the others' invariants.
//!
//! [`BuddyCore`] knows nothing about memory contents: it hands out and takes
//! back *frame numbers* (an address divided by the page size) from chunks of
//! [`CHUNK_FRAMES`] frames that the caller adds, each aligned to its size.
//! A block of order `k` is `2^k` frames starting at a frame that is a
//! multiple of `2^k` inside one chunk. Allocation takes the smallest free
//! block that is large enough and splits it, putting the unused halves on the
//! lists of lower orders; freeing merges a block with its buddy (the other
//! half of the block of the next order) for as long as the buddy is free.
//!
//! # Data structures
//!
//! Every chunk has a [`ChunkMeta`] with one small record per frame (kind,
//! order, free-list links), the way the kernel has a `struct page` per page.
//! Free lists are doubly linked through those records, and links are 32-bit
//! *frame ids* (`slot << MAX_ORDER | offset in chunk`), so unlinking a buddy
//! during a merge is O(1) and following a link needs no lookup.
//!
//! Chunks are found from frame numbers through a [`ChunkTable`]: a fixed
//! array of slots (a slot's index is part of every frame id) and, in front
//! of it, a two-level radix directory from chunk number to slot, indexed by
//! the bits of the address with no hashing or probing, the way sparsemem
//! finds a `struct page`. Entries never move,
//! and chunk metadata, once allocated, is only freed when the core is
//! destroyed: the metadata of a removed chunk goes to a spare pool for the
//! next chunk. So the table can be read without any lock
//! ([`ChunkTable::lookup`]) while the owner of the [`BuddyCore`] changes it:
//! that is how the page allocator answers "which block owns this address" on
//! every slab free without touching the buddy lock. A removed chunk's slot
//! becomes a tombstone that a later chunk may reuse. The metadata kept is
//! bounded by the largest number of chunks ever present at once.
//!
//! Besides the buddy's own records, each [`ChunkMeta`] carries two atomic
//! words per frame for the user of the core (the page allocator keeps its
//! "handed out" tag and the owner word there); the core only zeroes them.
//!
//! # Nodes
//!
//! Every chunk belongs to a memory node, given when it is added and kept in
//! its metadata ([`ChunkMeta::node`], readable without a lock). The free
//! lists are kept per node ([`FreeArea`], the kernel's `free_area` of a
//! node's zone): a block is split from and merged into its own chunk, so it
//! never changes node, and an allocation names the node whose lists it
//! takes from. The chunk table is shared by all nodes: an address finds its
//! chunk, and so its node, in one lookup whatever the node.

use crate::gfp::Gfp;
use crate::platform::{AllocError, Platform, MAX_NODES};
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// Largest order: a chunk is one block of this order.
pub const MAX_ORDER: u32 = 10;
/// Number of orders, `0..=MAX_ORDER`.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;
/// Frames per chunk.
pub const CHUNK_FRAMES: usize = 1 << MAX_ORDER;
/// Chunk capacity used when the caller has no preference: 1024 chunks, that
/// is 4 GiB with 4 KiB pages. Its slots then take 32 KiB, beside the
/// directory's 64 KiB root.
pub const DEFAULT_MAX_CHUNKS: usize = 1024;
/// Largest chunk capacity a [`BuddyCore`] accepts (frame ids must fit 32 bits).
pub const MAX_CHUNKS_LIMIT: usize = 1 << 20;

/// End of a free list.
const NIL: u32 = u32::MAX;
/// Slot key of a slot that never held a chunk.
const KEY_EMPTY: usize = 0;
/// Slot key of a slot whose chunk was removed.
const KEY_TOMBSTONE: usize = usize::MAX;
/// Chunk-number bits a radix leaf resolves: a leaf covers 2^13 chunks
/// (32 GiB of address space) in 64 KiB.
const LEAF_BITS: u32 = 13;
/// Entries of a radix leaf.
pub const LEAF_ENTRIES: usize = 1 << LEAF_BITS;
/// Chunk-number bits the root resolves: with the leaf, 26 bits of chunk
/// number, so 48 bits of address (x86-64's 4-level address space). Higher
/// address bits alias; a lookup confirms the whole chunk number in its slot.
const ROOT_BITS: u32 = 13;
/// Entries of the radix root.
const ROOT_ENTRIES: usize = 1 << ROOT_BITS;

/// What a frame record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum FrameKind {
    /// Not the first frame of a block (inside a larger block, free or not).
    Tail,
    /// First frame of a free block, linked on the free list of its order.
    Free,
    /// First frame of an allocated block.
    Allocated,
}

/// The buddy's record of one frame.
#[derive(Clone, Copy, Debug)]
struct FrameState {
    next: u32,
    prev: u32,
    order: u8,
    kind: FrameKind,
}

/// Per-chunk metadata: the buddy's frame records plus atomic words and a
/// tag per frame for the core's user.
///
/// Allocate it with [`ChunkMeta::LAYOUT`] and initialise it with
/// [`ChunkMeta::init`] before handing it to [`BuddyCore::add_chunk`].
///
/// # Invariants
///
/// `frames` is only accessed by the [`BuddyCore`] that owns the chunk table
/// holding this metadata, through `&mut BuddyCore` (or `&BuddyCore` for
/// reads), so no two threads access it at once. `words`, `aux_words` and
/// `tags` are atomics that anyone may read.
pub struct ChunkMeta {
    frames: UnsafeCell<[FrameState; CHUNK_FRAMES]>,
    words: [AtomicUsize; CHUNK_FRAMES],
    aux_words: [AtomicUsize; CHUNK_FRAMES],
    tags: [AtomicU8; CHUNK_FRAMES],
    /// Next metadata in the core's spare pool (only while in the pool).
    next_spare: AtomicPtr<ChunkMeta>,
    /// Chunk number + 1 of the chunk this metadata describes, 0 while it
    /// describes none: what a directory lookup checks.
    chunk_key: AtomicUsize,
    /// Index of the slot holding this metadata (while `chunk_key != 0`).
    slot: AtomicUsize,
    /// Memory node of the chunk (while `chunk_key != 0`).
    node: AtomicUsize,
}

// SAFETY: `frames` is only touched by the owning `BuddyCore` under its
// exclusive access (see the type invariants); everything else is atomic.
unsafe impl Sync for ChunkMeta {}
// SAFETY: `ChunkMeta` holds plain data and atomics, no thread-bound state.
unsafe impl Send for ChunkMeta {}

impl ChunkMeta {
    /// Layout of the memory a [`ChunkMeta`] needs.
    pub const LAYOUT: Layout = Layout::new::<ChunkMeta>();

    /// Initialises a fresh [`ChunkMeta`] in `mem`: every frame a tail, user
    /// words and tags zero. Works in place, without a large stack temporary.
    ///
    /// # Safety
    ///
    /// `mem` must be valid for writes of [`ChunkMeta::LAYOUT`] and suitably
    /// aligned, and nothing else may access it during the call.
    pub unsafe fn init(mem: NonNull<u8>) -> NonNull<ChunkMeta> {
        let meta = mem.cast::<ChunkMeta>().as_ptr();
        let tail = FrameState {
            next: NIL,
            prev: NIL,
            order: 0,
            kind: FrameKind::Tail,
        };
        // SAFETY: the caller guarantees `meta` is valid for writes of a whole
        // `ChunkMeta`; `UnsafeCell<[T; N]>` and `[T; N]` have the layout of
        // `T` repeated, so every pointer below stays inside it.
        unsafe {
            let frames = ptr::addr_of_mut!((*meta).frames).cast::<FrameState>();
            let words = ptr::addr_of_mut!((*meta).words).cast::<AtomicUsize>();
            let aux_words = ptr::addr_of_mut!((*meta).aux_words).cast::<AtomicUsize>();
            let tags = ptr::addr_of_mut!((*meta).tags).cast::<AtomicU8>();
            for i in 0..CHUNK_FRAMES {
                frames.add(i).write(tail);
                words.add(i).write(AtomicUsize::new(0));
                aux_words.add(i).write(AtomicUsize::new(0));
                tags.add(i).write(AtomicU8::new(0));
            }
            ptr::addr_of_mut!((*meta).next_spare).write(AtomicPtr::new(ptr::null_mut()));
            ptr::addr_of_mut!((*meta).chunk_key).write(AtomicUsize::new(0));
            ptr::addr_of_mut!((*meta).slot).write(AtomicUsize::new(0));
            ptr::addr_of_mut!((*meta).node).write(AtomicUsize::new(0));
        }
        // The caller handed in a non-null pointer.
        mem.cast()
    }

    /// The user word of the frame at `offset` in the chunk (masked to the
    /// chunk), zero when the chunk is added.
    #[inline(always)]
    pub fn word(&self, offset: usize) -> &AtomicUsize {
        &self.words[offset & (CHUNK_FRAMES - 1)]
    }

    /// The second user word of the frame at `offset` in the chunk (masked
    /// to the chunk), zero when the chunk is added.
    #[inline(always)]
    pub fn aux_word(&self, offset: usize) -> &AtomicUsize {
        &self.aux_words[offset & (CHUNK_FRAMES - 1)]
    }

    /// The user tag of the frame at `offset` in the chunk (masked to the
    /// chunk), zero when the chunk is added.
    #[inline(always)]
    pub fn tag(&self, offset: usize) -> &AtomicU8 {
        &self.tags[offset & (CHUNK_FRAMES - 1)]
    }

    /// The memory node of the chunk (meaningful while the chunk is in a
    /// core: the node it was added on).
    #[inline(always)]
    pub fn node(&self) -> usize {
        self.node.load(Ordering::Relaxed)
    }

    /// The first of the chunk's frame records.
    ///
    /// # Safety
    ///
    /// `meta` points to live, initialised metadata. The records may only be
    /// used as the type invariants allow (by the owning core).
    unsafe fn records(meta: *const ChunkMeta) -> *mut FrameState {
        // SAFETY: the caller guarantees `meta` is live; no reference to the
        // cell's contents is made.
        unsafe { UnsafeCell::raw_get(ptr::addr_of!((*meta).frames)).cast::<FrameState>() }
    }
}

/// One entry of the [`ChunkTable`].
struct Slot {
    /// `KEY_EMPTY`, `KEY_TOMBSTONE` or chunk number + 1.
    key: AtomicUsize,
    /// Metadata of the slot's chunk; null while the slot holds none.
    meta: AtomicPtr<ChunkMeta>,
}

/// A second-level block of the radix directory: for each of
/// [`LEAF_ENTRIES`] consecutive chunk numbers, null or the metadata of the
/// chunk (which says which chunk it describes: the directory ignores
/// address bits above 48).
///
/// Allocate it with [`RadixLeaf::LAYOUT`] and initialise it with
/// [`RadixLeaf::init`] before handing it to [`BuddyCore::add_chunk`].
pub struct RadixLeaf {
    entries: [AtomicPtr<ChunkMeta>; LEAF_ENTRIES],
}

impl RadixLeaf {
    /// Layout of the memory a [`RadixLeaf`] needs.
    pub const LAYOUT: Layout = Layout::new::<RadixLeaf>();

    /// Initialises a leaf with no entries in `mem`, in place.
    ///
    /// # Safety
    ///
    /// `mem` must be valid for writes of [`RadixLeaf::LAYOUT`] and suitably
    /// aligned, and nothing else may access it during the call.
    pub unsafe fn init(mem: NonNull<u8>) -> NonNull<RadixLeaf> {
        let leaf = mem.cast::<RadixLeaf>();
        // SAFETY: the caller gives us the memory; all-zero bytes are valid
        // null `AtomicPtr`s meaning "no chunk".
        unsafe { leaf.as_ptr().write_bytes(0, 1) };
        leaf
    }
}

/// Map from chunk number to chunk metadata that can be read without locks.
///
/// # Invariants
///
/// `slots` points to `slot_count` initialised `Slot`s and `root` to
/// `ROOT_ENTRIES` leaf pointers, allocated together with the table;
/// `slot_count` is a power of two of at least 2 and twice the chunk
/// capacity at least, so a free slot always exists for a new chunk. Keys,
/// metadata pointers, leaves and leaf entries only change through the
/// owning [`BuddyCore`] (one writer at a time); a live key never moves; a
/// live key's slot has non-null metadata and its chunk's leaf entry names
/// the slot; metadata and leaves that were ever published stay valid until
/// the table is destroyed.
pub struct ChunkTable {
    slots: NonNull<Slot>,
    slot_count: usize,
    root: NonNull<AtomicPtr<RadixLeaf>>,
}

// SAFETY: all shared state is atomic (or frame records guarded by the owning
// `BuddyCore`, see `ChunkMeta`); the slot pointer is only dereferenced for
// shared access.
unsafe impl Sync for ChunkTable {}
// SAFETY: as above; nothing in the table is tied to a thread.
unsafe impl Send for ChunkTable {}

impl ChunkTable {
    fn slot(&self, index: usize) -> &Slot {
        debug_assert!(index < self.slot_count);
        // SAFETY: by the type invariants `slots` holds `slot_count`
        // initialised slots and `index` is masked below `slot_count` by all
        // callers.
        unsafe { &*self.slots.as_ptr().add(index & (self.slot_count - 1)) }
    }

    /// The root entry for `chunk`.
    fn root_entry(&self, chunk: usize) -> &AtomicPtr<RadixLeaf> {
        let index = (chunk >> LEAF_BITS) & (ROOT_ENTRIES - 1);
        // SAFETY: `root` holds `ROOT_ENTRIES` initialised entries (type
        // invariants) and `index` is masked below that.
        unsafe { &*self.root.as_ptr().add(index) }
    }

    /// The leaf entry for `chunk`, if its leaf exists.
    #[inline(always)]
    fn leaf_entry(&self, chunk: usize) -> Option<&AtomicPtr<ChunkMeta>> {
        let leaf = self.root_entry(chunk).load(Ordering::Acquire);
        // SAFETY: published leaves stay valid until the table is destroyed
        // (type invariants), which outlives `&self`.
        let leaf = unsafe { leaf.as_ref() }?;
        Some(&leaf.entries[chunk & (LEAF_ENTRIES - 1)])
    }

    /// Finds the slot of the chunk containing `frame`.
    fn find(&self, frame: usize) -> Option<usize> {
        let meta = self.lookup(frame)?;
        Some(meta.slot.load(Ordering::Relaxed))
    }

    /// The metadata of the chunk containing `frame`, or `None` if no chunk
    /// contains it. Lock-free: safe to call while the owning [`BuddyCore`]
    /// is being changed on another CPU.
    ///
    /// A chunk being added or removed concurrently may or may not be seen,
    /// and a lookup racing with the removal of its chunk may return the
    /// metadata after it was given to another chunk: only lookups of frames
    /// that the caller knows to be in a live chunk have a reliable answer.
    /// The reference always stays valid memory.
    #[inline(always)]
    pub fn lookup(&self, frame: usize) -> Option<&ChunkMeta> {
        let chunk = frame >> MAX_ORDER;
        let meta = self.leaf_entry(chunk)?.load(Ordering::Acquire);
        // SAFETY: metadata that was ever published stays valid until the
        // table is destroyed (type invariants), which outlives `&self`.
        let meta = unsafe { meta.as_ref() }?;
        // The directory ignores address bits above 48, and a racing removal
        // may leave the entry briefly: the key says which chunk it is.
        (meta.chunk_key.load(Ordering::Acquire) == chunk.wrapping_add(1)).then_some(meta)
    }

    /// Number of slots (twice the chunk capacity, rounded to a power of two).
    pub fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Leaves of the radix directory allocated so far.
    pub fn leaves(&self) -> usize {
        (0..ROOT_ENTRIES)
            .filter(|&index| {
                !self
                    .root_entry(index << LEAF_BITS)
                    .load(Ordering::Relaxed)
                    .is_null()
            })
            .count()
    }
}

/// Why [`BuddyCore::add_chunk`] refused a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddChunkError {
    /// The base frame is not a multiple of [`CHUNK_FRAMES`].
    Misaligned,
    /// The chunk is already present.
    Duplicate,
    /// The table holds its maximum number of chunks.
    TableFull,
    /// No spare metadata is left in the core and none was given.
    NeedMeta,
    /// The chunk needs a new radix leaf and none was given.
    NeedLeaf,
    /// The node number is not below [`MAX_NODES`].
    BadNode,
}

impl fmt::Display for AddChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddChunkError::Misaligned => "chunk not aligned to its size",
            AddChunkError::Duplicate => "chunk already present",
            AddChunkError::TableFull => "chunk table full",
            AddChunkError::NeedMeta => "chunk metadata needed",
            AddChunkError::NeedLeaf => "radix leaf needed",
            AddChunkError::BadNode => "node number out of range",
        })
    }
}

/// Why [`BuddyCore::free`] refused a free. The core's state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFreeError {
    /// The frame is in no chunk of this core.
    OutsideChunks,
    /// The frame is inside an allocated block but is not its first frame.
    NotBlockHead,
    /// The block was allocated with another order.
    WrongOrder {
        /// The order the block has.
        actual: u32,
    },
    /// The frame is inside a free block.
    AlreadyFree,
    /// The order is above [`MAX_ORDER`].
    BadOrder,
}

impl fmt::Display for FrameFreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameFreeError::OutsideChunks => f.write_str("frame outside every chunk"),
            FrameFreeError::NotBlockHead => f.write_str("not the first frame of a block"),
            FrameFreeError::WrongOrder { actual } => {
                write!(f, "wrong order, the block has order {actual}")
            }
            FrameFreeError::AlreadyFree => f.write_str("block already free"),
            FrameFreeError::BadOrder => f.write_str("order out of range"),
        }
    }
}

/// The block a frame belongs to, from [`BuddyCore::block_of`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// First frame of the block.
    pub head: usize,
    /// Order of the block.
    pub order: u32,
    /// Whether the block is free.
    pub free: bool,
}

/// A chunk taken out by [`BuddyCore::evict_chunk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictedChunk {
    /// First frame of the chunk.
    pub base_frame: usize,
    /// Frames of the chunk that were still allocated.
    pub allocated_frames: usize,
}

/// A block handed out by [`BuddyCore::alloc_block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocatedBlock {
    /// First frame of the block.
    pub frame: usize,
    /// Metadata of the block's chunk (what [`ChunkTable::lookup`] of
    /// `frame` returns), live until the core is destroyed: the block's tag
    /// and owner word are reached without a lookup.
    pub meta: NonNull<ChunkMeta>,
}

/// Buddy allocator state over frame numbers.
///
/// Not synchronised: the owner wraps it in a lock. The chunk table
/// ([`BuddyCore::table`]) may additionally be read without that lock.
///
/// Memory for the table comes from [`Platform::alloc_meta`] in
/// [`BuddyCore::new`]; metadata of chunks comes from the caller in
/// [`BuddyCore::add_chunk`]. [`BuddyCore::destroy`] gives both back; a core
/// that is dropped without it leaks them (it has no platform to free them
/// with).
///
/// # Invariants
///
/// - `table` points to a live [`ChunkTable`] (allocated with `table_layout`)
///   owned by this core until [`BuddyCore::destroy`].
/// - `spare_metas` is a list, linked through `next_spare`, of metadata owned
///   by the core that no slot holds; every frame record in it describes one
///   free top-order block (head then tails).
/// - Every frame of every live chunk is covered by exactly one block; a
///   block's first frame has kind `Free` or `Allocated` and its order, all
///   other frames of the block have kind `Tail`.
/// - A block of order `k` starts at a multiple of `2^k` within its chunk.
/// - Free blocks of order `k` in chunks of node `n` are exactly the members
///   of `areas[n].heads[k]`'s list, and `areas[n].blocks[k]` counts them;
///   `areas[n].frames` is the sum of `areas[n].blocks[k] << k`, and
///   `areas[n].chunks` counts the live chunks of node `n` (their sum is
///   `chunks`). A live chunk's metadata names its node, below `MAX_NODES`.
/// - No free block below `MAX_ORDER` has a free buddy of the same order.
/// - `slots` and `slot_mask` are the table's `slots` and `slot_count - 1`.
pub struct BuddyCore {
    table: NonNull<ChunkTable>,
    /// The table's slots and `slot_count - 1`, copied here so that reaching
    /// a frame record takes one load less.
    slots: NonNull<Slot>,
    slot_mask: usize,
    table_layout: Layout,
    max_chunks: usize,
    chunks: usize,
    areas: [FreeArea; MAX_NODES],
    spare_metas: *mut ChunkMeta,
}

/// One node's free lists (the kernel's `free_area` array of a zone).
#[derive(Clone, Copy, Debug)]
struct FreeArea {
    heads: [u32; NR_ORDERS],
    blocks: [usize; NR_ORDERS],
    /// Frames in free blocks, kept so that the page allocator's watermark
    /// checks read one word.
    frames: usize,
    /// Live chunks of the node.
    chunks: usize,
}

impl FreeArea {
    const EMPTY: FreeArea = FreeArea {
        heads: [NIL; NR_ORDERS],
        blocks: [0; NR_ORDERS],
        frames: 0,
        chunks: 0,
    };
}

// SAFETY: the core owns its table and chunk metadata, which hold plain data
// and atomics; the table is shared with lock-free readers only for atomic
// reads, which are fine from any thread.
unsafe impl Send for BuddyCore {}

impl BuddyCore {
    /// Creates an empty core able to hold `max_chunks` chunks (clamped to
    /// `1..=MAX_CHUNKS_LIMIT`); the chunk table, 32 bytes per chunk of
    /// capacity plus the directory's 64 KiB root, comes from
    /// `platform.alloc_meta(.., gfp)`.
    pub fn new<P: Platform>(platform: &P, max_chunks: usize, gfp: Gfp) -> Result<Self, AllocError> {
        let max_chunks = max_chunks.clamp(1, MAX_CHUNKS_LIMIT);
        let slot_count = (2 * max_chunks).next_power_of_two();
        let slots = Layout::array::<Slot>(slot_count).map_err(|_| AllocError)?;
        let root = Layout::array::<AtomicPtr<RadixLeaf>>(ROOT_ENTRIES).map_err(|_| AllocError)?;
        let (table_layout, slots_offset) = Layout::new::<ChunkTable>()
            .extend(slots)
            .map_err(|_| AllocError)?;
        let (table_layout, root_offset) = table_layout.extend(root).map_err(|_| AllocError)?;
        let mem = platform.alloc_meta(table_layout, gfp).ok_or(AllocError)?;
        let table = mem.cast::<ChunkTable>();
        // SAFETY: `mem` is a fresh allocation of `table_layout`: the header
        // at its start, `slot_count` slots at `slots_offset` and the root at
        // `root_offset`.
        unsafe {
            let first_slot = mem.as_ptr().add(slots_offset).cast::<Slot>();
            for i in 0..slot_count {
                first_slot.add(i).write(Slot {
                    key: AtomicUsize::new(KEY_EMPTY),
                    meta: AtomicPtr::new(ptr::null_mut()),
                });
            }
            let root = mem.as_ptr().add(root_offset).cast::<AtomicPtr<RadixLeaf>>();
            for i in 0..ROOT_ENTRIES {
                root.add(i).write(AtomicPtr::new(ptr::null_mut()));
            }
            // INVARIANT: `slot_count` slots initialised above, a power of two
            // of at least 2 and at least twice `max_chunks`; an empty root.
            table.as_ptr().write(ChunkTable {
                slots: NonNull::new_unchecked(first_slot),
                slot_count,
                root: NonNull::new_unchecked(root),
            });
        }
        // SAFETY: initialised just above.
        let slots = unsafe { table.as_ref() }.slots;
        // INVARIANT: the table is live and no chunks are present; `slots`
        // and `slot_mask` are the table's.
        Ok(BuddyCore {
            table,
            slots,
            slot_mask: slot_count - 1,
            table_layout,
            max_chunks,
            chunks: 0,
            areas: [FreeArea::EMPTY; MAX_NODES],
            spare_metas: ptr::null_mut(),
        })
    }

    /// Gives the chunk table and every chunk's metadata back to `platform`.
    /// Chunks still present are forgotten (the caller owns their memory).
    ///
    /// # Safety
    ///
    /// `platform` must be the platform passed to [`BuddyCore::new`], every
    /// metadata block given to [`BuddyCore::add_chunk`] must have come from
    /// its `alloc_meta` with [`ChunkMeta::LAYOUT`], nothing may use
    /// references obtained from [`BuddyCore::table`] any more, and the core
    /// must not be used afterwards except to be dropped.
    pub unsafe fn destroy<P: Platform>(&mut self, platform: &P) {
        let table = self.table();
        for index in 0..table.slot_count {
            let meta = table
                .slot(index)
                .meta
                .swap(ptr::null_mut(), Ordering::Relaxed);
            if let Some(meta) = NonNull::new(meta) {
                // SAFETY: the caller guarantees metadata came from this
                // platform's `alloc_meta` with this layout; it is freed once
                // because the pointer was swapped out.
                unsafe { platform.free_meta(meta.cast(), ChunkMeta::LAYOUT) };
            }
        }
        while let Some(meta) = self.pop_spare_meta() {
            // SAFETY: as above; the pool and the slots never share metadata.
            unsafe { platform.free_meta(meta.cast(), ChunkMeta::LAYOUT) };
        }
        for index in 0..ROOT_ENTRIES {
            let leaf = self
                .table()
                .root_entry(index << LEAF_BITS)
                .swap(ptr::null_mut(), Ordering::Relaxed);
            if let Some(leaf) = NonNull::new(leaf) {
                // SAFETY: the caller guarantees leaves came from this
                // platform's `alloc_meta` with this layout; swapped out, so
                // freed once.
                unsafe { platform.free_meta(leaf.cast(), RadixLeaf::LAYOUT) };
            }
        }
        self.chunks = 0;
        self.areas = [FreeArea::EMPTY; MAX_NODES];
        // SAFETY: the table came from this platform's `alloc_meta` with
        // `table_layout` (type invariants); the caller guarantees nothing
        // uses it any more.
        unsafe { platform.free_meta(self.table.cast(), self.table_layout) };
    }

    /// The chunk table, readable without the lock that guards the core.
    pub fn table(&self) -> &ChunkTable {
        // SAFETY: the table is live while the core is (type invariants).
        unsafe { self.table.as_ref() }
    }

    /// Layout of the chunk table allocation, which starts at
    /// [`BuddyCore::table`] (for freeing it if the core itself is lost before
    /// any chunk was added).
    pub fn table_layout(&self) -> Layout {
        self.table_layout
    }

    /// Maximum number of chunks.
    pub fn max_chunks(&self) -> usize {
        self.max_chunks
    }

    /// Number of chunks present.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// Frames in all chunks present.
    pub fn total_frames(&self) -> usize {
        self.chunks * CHUNK_FRAMES
    }

    /// Free blocks per order, all nodes together.
    pub fn free_blocks(&self) -> [usize; NR_ORDERS] {
        let mut total = [0; NR_ORDERS];
        for area in &self.areas {
            for (sum, count) in total.iter_mut().zip(&area.blocks) {
                *sum += count;
            }
        }
        total
    }

    /// Frames in free blocks, all nodes together.
    pub fn free_frames(&self) -> usize {
        self.areas.iter().map(|area| area.frames).sum()
    }

    /// The area of `node` (masked below [`MAX_NODES`], a power of two).
    #[inline(always)]
    fn area(&self, node: usize) -> &FreeArea {
        &self.areas[node & (MAX_NODES - 1)]
    }

    #[inline(always)]
    fn area_mut(&mut self, node: usize) -> &mut FreeArea {
        &mut self.areas[node & (MAX_NODES - 1)]
    }

    /// Chunks present on `node`.
    pub fn chunks_on(&self, node: usize) -> usize {
        self.area(node).chunks
    }

    /// Frames in the chunks of `node`.
    pub fn total_frames_on(&self, node: usize) -> usize {
        self.area(node).chunks * CHUNK_FRAMES
    }

    /// Free blocks per order on `node` (a line of the kernel's
    /// `/proc/buddyinfo`).
    pub fn free_blocks_on(&self, node: usize) -> [usize; NR_ORDERS] {
        self.area(node).blocks
    }

    /// Frames in free blocks on `node`.
    #[inline(always)]
    pub fn free_frames_on(&self, node: usize) -> usize {
        self.area(node).frames
    }

    /// The metadata in `slot` (null if it holds none).
    #[inline(always)]
    fn meta_ptr(&self, slot: usize) -> *const ChunkMeta {
        // SAFETY: `slots` holds `slot_mask + 1` initialised slots (type
        // invariants) and the index is masked below that.
        let slot = unsafe { &*self.slots.as_ptr().add(slot & self.slot_mask) };
        slot.meta.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn frame_ptr(&self, id: u32) -> *mut FrameState {
        let id = id as usize;
        let meta = self.meta_ptr(id >> MAX_ORDER);
        debug_assert!(!meta.is_null());
        // SAFETY: frame ids only name frames of chunks in the table, whose
        // metadata is live; the offset is below `CHUNK_FRAMES`.
        unsafe { ChunkMeta::records(meta).add(id & (CHUNK_FRAMES - 1)) }
    }

    fn state(&self, id: u32) -> FrameState {
        // SAFETY: `frame_ptr` points to an initialised record that only this
        // core accesses (`ChunkMeta` invariants); `&self` excludes writers.
        unsafe { *self.frame_ptr(id) }
    }

    fn state_mut(&mut self, id: u32) -> &mut FrameState {
        // SAFETY: as in `state`; `&mut self` makes this the only access, and
        // the returned borrow keeps `self` borrowed.
        unsafe { &mut *self.frame_ptr(id) }
    }

    fn base_frame_of_slot(&self, slot: usize) -> usize {
        let key = self.table().slot(slot).key.load(Ordering::Relaxed);
        debug_assert!(key != KEY_EMPTY && key != KEY_TOMBSTONE);
        // A live key is chunk number + 1 (table invariants).
        key.wrapping_sub(1) << MAX_ORDER
    }

    /// Removes the chunk at `base_frame` from the directory and makes its
    /// slot a tombstone.
    fn unpublish(&mut self, slot: usize, base_frame: usize) {
        let table = self.table();
        if let Some(entry) = table.leaf_entry(base_frame >> MAX_ORDER) {
            entry.store(ptr::null_mut(), Ordering::Release);
        }
        let meta = table.slot(slot).meta.load(Ordering::Relaxed);
        // SAFETY: a live slot's metadata is valid (table invariants).
        if let Some(meta) = unsafe { meta.as_ref() } {
            meta.chunk_key.store(0, Ordering::Release);
        }
        table.slot(slot).key.store(KEY_TOMBSTONE, Ordering::Release);
    }

    fn pop_spare_meta(&mut self) -> Option<NonNull<ChunkMeta>> {
        let meta = NonNull::new(self.spare_metas)?;
        // SAFETY: pool members are live metadata owned by the core (type
        // invariants).
        self.spare_metas = unsafe { meta.as_ref() }.next_spare.load(Ordering::Relaxed);
        Some(meta)
    }

    /// Takes the metadata out of `slot` (whose key is already a tombstone)
    /// and puts it in the spare pool.
    fn retire_slot_meta(&mut self, slot: usize) {
        let meta = self
            .table()
            .slot(slot)
            .meta
            .swap(ptr::null_mut(), Ordering::Release);
        debug_assert!(!meta.is_null());
        // SAFETY: a live slot's metadata is valid (table invariants) and now
        // belongs to the pool alone.
        if let Some(meta_ref) = unsafe { meta.as_ref() } {
            meta_ref
                .next_spare
                .store(self.spare_metas, Ordering::Relaxed);
            // INVARIANT: the caller left the records as one free top-order
            // block.
            self.spare_metas = meta;
        }
    }

    fn push_free(&mut self, node: usize, order: usize, id: u32) {
        let rec = self.frame_ptr(id);
        // SAFETY: `rec` is the record of `id`.
        unsafe { self.push_free_rec(node, order, id, rec) }
    }

    /// Pushes the block `id` on `node`'s free list of `order`, writing its
    /// record.
    ///
    /// # Safety
    ///
    /// `rec` is the record of frame `id` (`frame_ptr(id)`), in a live chunk
    /// of `node`.
    #[inline(always)]
    unsafe fn push_free_rec(&mut self, node: usize, order: usize, id: u32, rec: *mut FrameState) {
        let head = self.area(node).heads[order];
        // SAFETY: per the caller, `rec` is a record of ours; `&mut self`
        // makes this the only access.
        unsafe {
            rec.write(FrameState {
                next: head,
                prev: NIL,
                order: order as u8,
                kind: FrameKind::Free,
            })
        };
        if head != NIL {
            self.state_mut(head).prev = id;
        }
        let area = self.area_mut(node);
        area.heads[order] = id;
        // At most one count per frame: cannot overflow.
        area.blocks[order] = area.blocks[order].wrapping_add(1);
        area.frames = area.frames.wrapping_add(1 << order);
    }

    fn unlink_free(&mut self, node: usize, order: usize, id: u32) {
        let rec = self.frame_ptr(id);
        // SAFETY: `rec` is the record of `id`.
        unsafe { self.unlink_free_rec(node, order, rec) }
    }

    /// Takes the free block whose record is `rec` off `node`'s list of
    /// `order`.
    ///
    /// # Safety
    ///
    /// `rec` is the record of a member of that list, in a live chunk.
    #[inline(always)]
    unsafe fn unlink_free_rec(&mut self, node: usize, order: usize, rec: *mut FrameState) {
        // SAFETY: per the caller, `rec` is a record of ours; `&mut self`
        // makes this the only access.
        let FrameState { next, prev, .. } = unsafe { rec.read() };
        if prev == NIL {
            self.area_mut(node).heads[order] = next;
        } else {
            self.state_mut(prev).next = next;
        }
        if next != NIL {
            self.state_mut(next).prev = prev;
        }
        // SAFETY: as above.
        unsafe {
            (*rec).next = NIL;
            (*rec).prev = NIL;
        }
        // The block was counted when pushed.
        let area = self.area_mut(node);
        area.blocks[order] = area.blocks[order].wrapping_sub(1);
        area.frames = area.frames.wrapping_sub(1 << order);
    }

    /// Adds a chunk of [`CHUNK_FRAMES`] free frames starting at `base_frame`,
    /// on node 0 (see [`BuddyCore::add_chunk_on`]).
    ///
    /// # Safety
    ///
    /// As [`BuddyCore::add_chunk_on`].
    pub unsafe fn add_chunk(
        &mut self,
        base_frame: usize,
        spare_meta: &mut Option<NonNull<ChunkMeta>>,
        spare_leaf: &mut Option<NonNull<RadixLeaf>>,
    ) -> Result<(), AddChunkError> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.add_chunk_on(base_frame, 0, spare_meta, spare_leaf) }
    }

    /// Adds a chunk of [`CHUNK_FRAMES`] free frames starting at `base_frame`,
    /// whose memory is on `node` (below [`MAX_NODES`]).
    ///
    /// The chunk gets metadata from the core's pool of spare metadata (left
    /// by removed chunks), or else takes `spare_meta`, leaving `None` behind;
    /// without either it fails with [`AddChunkError::NeedMeta`], and the
    /// caller retries with metadata allocated outside its lock. The same
    /// goes for a radix leaf when the chunk's range of the directory has
    /// none yet ([`AddChunkError::NeedLeaf`], `spare_leaf`). Whatever is
    /// left in `spare_meta` and `spare_leaf` stays the caller's.
    ///
    /// # Safety
    ///
    /// A `spare_meta` must have been allocated with [`ChunkMeta::LAYOUT`]
    /// from the `alloc_meta` of the platform later passed to
    /// [`BuddyCore::destroy`], initialised with [`ChunkMeta::init`], and not
    /// be used by the caller once taken; a `spare_leaf` likewise with
    /// [`RadixLeaf::LAYOUT`] and [`RadixLeaf::init`].
    pub unsafe fn add_chunk_on(
        &mut self,
        base_frame: usize,
        node: usize,
        spare_meta: &mut Option<NonNull<ChunkMeta>>,
        spare_leaf: &mut Option<NonNull<RadixLeaf>>,
    ) -> Result<(), AddChunkError> {
        if base_frame % CHUNK_FRAMES != 0 {
            return Err(AddChunkError::Misaligned);
        }
        if node >= MAX_NODES {
            return Err(AddChunkError::BadNode);
        }
        let table = self.table();
        if table.find(base_frame).is_some() {
            return Err(AddChunkError::Duplicate);
        }
        if self.chunks >= self.max_chunks {
            return Err(AddChunkError::TableFull);
        }
        let chunk = base_frame >> MAX_ORDER;
        // Live chunks fill at most half of the slots (type invariants).
        let Some(index) = (0..table.slot_count).find(|&index| {
            let key = table.slot(index).key.load(Ordering::Relaxed);
            key == KEY_EMPTY || key == KEY_TOMBSTONE
        }) else {
            return Err(AddChunkError::TableFull);
        };
        if table.leaf_entry(chunk).is_none() {
            let leaf = spare_leaf.take().ok_or(AddChunkError::NeedLeaf)?;
            // INVARIANT: the caller initialised the leaf; published once, it
            // stays until `destroy`.
            table
                .root_entry(chunk)
                .store(leaf.as_ptr(), Ordering::Release);
        }
        let meta = match self.pop_spare_meta() {
            Some(meta) => {
                // SAFETY: pool members are live metadata owned by the core.
                let meta_ref = unsafe { meta.as_ref() };
                // The user words were cleared by the user before freeing;
                // make sure anyway.
                for offset in 0..CHUNK_FRAMES {
                    meta_ref.words[offset].store(0, Ordering::Relaxed);
                    meta_ref.aux_words[offset].store(0, Ordering::Relaxed);
                    meta_ref.tags[offset].store(0, Ordering::Relaxed);
                }
                meta
            }
            None => spare_meta.take().ok_or(AddChunkError::NeedMeta)?,
        };
        let table = self.table();
        let slot = table.slot(index);
        // INVARIANT: the metadata describes one free top-order block (pool
        // invariant, or fresh from `ChunkMeta::init` as the caller
        // guarantees) and is published before the key.
        slot.meta.store(meta.as_ptr(), Ordering::Release);
        // INVARIANT: the key is published after its metadata, and the
        // directory entry after the key.
        slot.key.store(chunk + 1, Ordering::Release);
        // SAFETY: `meta` is live metadata now owned by the slot.
        let meta_ref = unsafe { meta.as_ref() };
        meta_ref.slot.store(index, Ordering::Relaxed);
        meta_ref.node.store(node, Ordering::Relaxed);
        meta_ref.chunk_key.store(chunk + 1, Ordering::Release);
        if let Some(entry) = table.leaf_entry(chunk) {
            entry.store(meta.as_ptr(), Ordering::Release);
        }
        self.chunks += 1;
        self.area_mut(node).chunks += 1;
        // INVARIANT: the new chunk is a single free block of the top order,
        // on the lists of its node.
        let id = (index << MAX_ORDER) as u32;
        self.push_free(node, MAX_ORDER as usize, id);
        Ok(())
    }

    /// Allocates a block of `2^order` frames from any node, the lowest
    /// numbered first; returns its first frame, or `None` if no free block
    /// is large enough (or `order > MAX_ORDER`).
    pub fn alloc(&mut self, order: u32) -> Option<usize> {
        (0..MAX_NODES).find_map(|node| self.alloc_block(order, node).map(|block| block.frame))
    }

    /// Allocates a block of `2^order` frames from `node`'s lists, returning
    /// it with the metadata of its chunk. Touches the records of the block
    /// taken from a list and of the halves it frees on the way down, never
    /// the frames inside them.
    pub fn alloc_block(&mut self, order: u32, node: usize) -> Option<AllocatedBlock> {
        if order > MAX_ORDER {
            return None;
        }
        let order = order as usize;
        let heads = &self.area(node).heads;
        let found = (order..NR_ORDERS).find(|&o| heads[o] != NIL)?;
        let id = heads[found];
        let slot = id as usize >> MAX_ORDER;
        let offset = id as usize & (CHUNK_FRAMES - 1);
        let meta = self.meta_ptr(slot);
        // A list member's chunk has metadata (type invariants); checked
        // before anything changes, so that `None` leaves the lists intact.
        let meta_nn = NonNull::new(meta.cast_mut())?;
        // SAFETY: list members are blocks of live chunks, whose metadata is
        // live (type invariants).
        let records = unsafe { ChunkMeta::records(meta) };
        // SAFETY: `offset < CHUNK_FRAMES`: the record of `id`, a member of
        // the list of `found`.
        unsafe { self.unlink_free_rec(node, found, records.add(offset)) };
        // Split: keep the lower half, free the upper half, down to `order`.
        for lower in (order..found).rev() {
            // `offset` is aligned to `2^found`, so `offset | half` is the
            // upper half's first frame, inside the chunk.
            let half = 1usize << lower;
            // SAFETY: the record of frame `offset | half` of the same chunk.
            unsafe {
                self.push_free_rec(node, lower, id | half as u32, records.add(offset | half));
            }
        }
        // SAFETY: the record of `id`, as above.
        let head = unsafe { &mut *records.add(offset) };
        // INVARIANT: the head now describes an allocated block of `order`;
        // its frames other than the head were already tails.
        head.kind = FrameKind::Allocated;
        head.order = order as u8;
        Some(AllocatedBlock {
            frame: self.base_frame_of_slot(slot) | offset,
            meta: meta_nn,
        })
    }

    /// The block containing `frame`, or `None` if no chunk contains it.
    pub fn block_of(&self, frame: usize) -> Option<BlockInfo> {
        let slot = self.table().find(frame)?;
        let offset = frame & (CHUNK_FRAMES - 1);
        let (head, state) = self.enclosing_head(slot, offset)?;
        Some(BlockInfo {
            head: self.base_frame_of_slot(slot) + head,
            order: u32::from(state.order),
            free: state.kind == FrameKind::Free,
        })
    }

    /// Head offset and record of the block covering `offset` in `slot`.
    fn enclosing_head(&self, slot: usize, offset: usize) -> Option<(usize, FrameState)> {
        // The block covering a frame starts at the frame rounded down to the
        // block's order; all frames between are tails, so the first
        // non-tail found rounding down by growing orders is the head.
        (0..NR_ORDERS).find_map(|order| {
            let head = offset & !((1 << order) - 1);
            let state = self.state(((slot << MAX_ORDER) + head) as u32);
            (state.kind != FrameKind::Tail).then_some((head, state))
        })
    }

    /// Frees the block of `2^order` frames starting at `frame`, merging it
    /// with free buddies. Invalid frees change nothing and say why.
    pub fn free(&mut self, frame: usize, order: u32) -> Result<(), FrameFreeError> {
        if order > MAX_ORDER {
            return Err(FrameFreeError::BadOrder);
        }
        let slot = self
            .table()
            .find(frame)
            .ok_or(FrameFreeError::OutsideChunks)?;
        let meta = self.meta_ptr(slot);
        // SAFETY: `meta` is the live metadata of `slot`, a live chunk found
        // by the lookup; the offset is masked into the chunk.
        unsafe { self.free_at(slot, meta, frame & (CHUNK_FRAMES - 1), order as usize) }
    }

    /// [`BuddyCore::free`] of the block at `offset` in the chunk described by
    /// `meta` (from [`BuddyCore::alloc_block`] or [`ChunkTable::lookup`]):
    /// no lookup. Metadata that is not a live chunk's of this core is
    /// refused with [`FrameFreeError::OutsideChunks`].
    pub fn free_in_chunk(
        &mut self,
        meta: &ChunkMeta,
        offset: usize,
        order: u32,
    ) -> Result<(), FrameFreeError> {
        if order > MAX_ORDER {
            return Err(FrameFreeError::BadOrder);
        }
        let meta: *const ChunkMeta = meta;
        // SAFETY: `meta` is a valid reference.
        let slot = unsafe { &*meta }.slot.load(Ordering::Relaxed) & self.slot_mask;
        if self.meta_ptr(slot) != meta {
            return Err(FrameFreeError::OutsideChunks);
        }
        // SAFETY: `meta` is the metadata of `slot`, so of a live chunk; the
        // offset is masked into the chunk.
        unsafe { self.free_at(slot, meta, offset & (CHUNK_FRAMES - 1), order as usize) }
    }

    /// Validates and frees the block at `offset` of order `order` in the
    /// chunk of `slot`, whose metadata is `meta`.
    ///
    /// # Safety
    ///
    /// `meta` is the metadata of the live chunk in `slot`; `offset` is
    /// below [`CHUNK_FRAMES`] and `order` at most [`MAX_ORDER`].
    #[inline(always)]
    unsafe fn free_at(
        &mut self,
        slot: usize,
        meta: *const ChunkMeta,
        offset: usize,
        order: usize,
    ) -> Result<(), FrameFreeError> {
        // SAFETY: `meta` is live per the caller.
        let records = unsafe { ChunkMeta::records(meta) };
        // SAFETY: `offset < CHUNK_FRAMES` per the caller; `&mut self` makes
        // every record access below the only one.
        let state = unsafe { records.add(offset).read() };
        match state.kind {
            FrameKind::Allocated if usize::from(state.order) == order => {}
            FrameKind::Allocated => {
                return Err(FrameFreeError::WrongOrder {
                    actual: u32::from(state.order),
                })
            }
            FrameKind::Free => return Err(FrameFreeError::AlreadyFree),
            FrameKind::Tail => {
                return Err(match self.enclosing_head(slot, offset) {
                    Some((_, head)) if head.kind == FrameKind::Free => FrameFreeError::AlreadyFree,
                    _ => FrameFreeError::NotBlockHead,
                })
            }
        }
        // SAFETY: `meta` is live per the caller.
        let node = unsafe { &*meta }.node();
        // Slots are below 2^20, so ids fit 32 bits.
        let base_id = (slot << MAX_ORDER) as u32;
        let mut offset = offset;
        let mut order = order;
        while order < MAX_ORDER as usize {
            let buddy = offset ^ (1 << order);
            // SAFETY: `buddy < CHUNK_FRAMES`: a record of the same chunk.
            let buddy_rec = unsafe { records.add(buddy) };
            // SAFETY: as above.
            let buddy_state = unsafe { buddy_rec.read() };
            if buddy_state.kind != FrameKind::Free || usize::from(buddy_state.order) != order {
                break;
            }
            // SAFETY: a free head of `order` is on that order's list.
            unsafe { self.unlink_free_rec(node, order, buddy_rec) };
            // INVARIANT: the upper half's head becomes a tail of the merged
            // block; the lower half's head is re-pushed below.
            // SAFETY: a record of the same chunk.
            unsafe { (*records.add(offset.max(buddy))).kind = FrameKind::Tail };
            offset = offset.min(buddy);
            order += 1;
        }
        // SAFETY: the record of frame `offset` of the chunk.
        unsafe { self.push_free_rec(node, order, base_id | offset as u32, records.add(offset)) };
        Ok(())
    }

    /// Removes one chunk whose frames are all free, from any node, and
    /// returns its first frame, or `None` if there is none. Its slot keeps
    /// the metadata for a later chunk.
    pub fn take_free_chunk(&mut self) -> Option<usize> {
        (0..MAX_NODES).find_map(|node| self.take_free_chunk_on(node))
    }

    /// [`BuddyCore::take_free_chunk`] of a chunk of `node`.
    pub fn take_free_chunk_on(&mut self, node: usize) -> Option<usize> {
        let id = self.area(node).heads[MAX_ORDER as usize];
        if id == NIL {
            return None;
        }
        self.unlink_free(node, MAX_ORDER as usize, id);
        self.area_mut(node).chunks -= 1;
        let slot = id as usize >> MAX_ORDER;
        let base_frame = self.base_frame_of_slot(slot);
        self.unpublish(slot, base_frame);
        // The records stay "free top-order head, rest tails", which is what
        // the pool expects.
        self.retire_slot_meta(slot);
        self.chunks -= 1;
        Some(base_frame)
    }

    /// Removes some chunk whatever its state (for tear-down), unlinking its
    /// free blocks, and returns it with the number of frames still
    /// allocated in it; `None` when no chunk is left. Allocated blocks of the
    /// chunk are forgotten.
    pub fn evict_chunk(&mut self) -> Option<EvictedChunk> {
        let table = self.table();
        let slot = (0..table.slot_count).find(|&index| {
            let key = table.slot(index).key.load(Ordering::Relaxed);
            key != KEY_EMPTY && key != KEY_TOMBSTONE
        })?;
        let base_frame = self.base_frame_of_slot(slot);
        let meta = self.meta_ptr(slot);
        // SAFETY: a live slot's metadata is valid (table invariants).
        let node = unsafe { &*meta }.node();
        let mut allocated_frames = 0;
        let mut offset = 0;
        while offset < CHUNK_FRAMES {
            let id = ((slot << MAX_ORDER) + offset) as u32;
            let state = self.state(id);
            let order = usize::from(state.order);
            match state.kind {
                FrameKind::Free => self.unlink_free(node, order, id),
                FrameKind::Allocated => allocated_frames += 1 << order,
                // Broken tiling (cannot happen): count the frame and go on.
                FrameKind::Tail => {
                    allocated_frames += 1;
                    offset += 1;
                    continue;
                }
            }
            // Leave the records as a reusable free top-order chunk.
            *self.state_mut(id) = FrameState {
                next: NIL,
                prev: NIL,
                order: 0,
                kind: FrameKind::Tail,
            };
            offset += 1 << order;
        }
        let head = self.state_mut((slot << MAX_ORDER) as u32);
        head.kind = FrameKind::Free;
        head.order = MAX_ORDER as u8;
        self.unpublish(slot, base_frame);
        self.retire_slot_meta(slot);
        self.chunks -= 1;
        self.area_mut(node).chunks -= 1;
        Some(EvictedChunk {
            base_frame,
            allocated_frames,
        })
    }

    /// Calls `f` with the first frame of every chunk present.
    pub fn for_each_chunk(&self, mut f: impl FnMut(usize)) {
        let table = self.table();
        for index in 0..table.slot_count {
            let key = table.slot(index).key.load(Ordering::Relaxed);
            if key != KEY_EMPTY && key != KEY_TOMBSTONE {
                f((key - 1) << MAX_ORDER);
            }
        }
    }

    /// Checks every invariant of the core, walking all records and lists
    /// (O(frames); for tests and debugging). Returns what is broken.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let table = self.table();
        let mut free_heads_seen = [[0usize; NR_ORDERS]; MAX_NODES];
        let mut chunks = 0;
        let mut node_chunks = [0usize; MAX_NODES];
        for slot in 0..table.slot_count {
            let key = table.slot(slot).key.load(Ordering::Relaxed);
            if key == KEY_EMPTY || key == KEY_TOMBSTONE {
                continue;
            }
            chunks += 1;
            // SAFETY: a live slot's metadata is valid (table invariants).
            let node = unsafe { &*self.meta_ptr(slot) }.node();
            if node >= MAX_NODES {
                return Err("chunk node out of range");
            }
            node_chunks[node] += 1;
            if table.find((key - 1) << MAX_ORDER) != Some(slot) {
                return Err("chunk not found by lookup");
            }
            let mut offset = 0;
            while offset < CHUNK_FRAMES {
                let state = self.state(((slot << MAX_ORDER) + offset) as u32);
                let order = usize::from(state.order);
                if state.kind == FrameKind::Tail {
                    return Err("block starts with a tail record");
                }
                if order > MAX_ORDER as usize || offset & ((1 << order) - 1) != 0 {
                    return Err("block misaligned or order out of range");
                }
                for inner in offset + 1..offset + (1 << order) {
                    if self.state(((slot << MAX_ORDER) + inner) as u32).kind != FrameKind::Tail {
                        return Err("non-tail record inside a block");
                    }
                }
                if state.kind == FrameKind::Free {
                    free_heads_seen[node][order] += 1;
                    if order < MAX_ORDER as usize {
                        let buddy = offset ^ (1 << order);
                        let buddy_state = self.state(((slot << MAX_ORDER) + buddy) as u32);
                        if buddy_state.kind == FrameKind::Free
                            && usize::from(buddy_state.order) == order
                        {
                            return Err("free buddies left unmerged");
                        }
                    }
                }
                offset += 1 << order;
            }
        }
        if chunks != self.chunks {
            return Err("chunk count wrong");
        }
        let limit = self.total_frames();
        for (node, area) in self.areas.iter().enumerate() {
            if area.chunks != node_chunks[node] {
                return Err("node chunk count wrong");
            }
            self.check_area(node, area, &free_heads_seen[node], limit)?;
        }
        Ok(())
    }

    /// Checks the lists of `node` against the free heads found in its
    /// chunks (`heads_seen`), with `limit` frames at most on a list.
    fn check_area(
        &self,
        node: usize,
        area: &FreeArea,
        heads_seen: &[usize; NR_ORDERS],
        limit: usize,
    ) -> Result<(), &'static str> {
        for (order, &heads_seen) in heads_seen.iter().enumerate() {
            let mut id = area.heads[order];
            let mut prev = NIL;
            let mut length = 0;
            while id != NIL {
                let state = self.state(id);
                if state.kind != FrameKind::Free || usize::from(state.order) != order {
                    return Err("free list member is not a free block of its order");
                }
                // SAFETY: list members are in live chunks, whose metadata
                // is valid (type invariants).
                if unsafe { &*self.meta_ptr(id as usize >> MAX_ORDER) }.node() != node {
                    return Err("free block on another node's list");
                }
                if state.prev != prev {
                    return Err("free list back link wrong");
                }
                length += 1;
                if length > limit {
                    return Err("free list loops");
                }
                prev = id;
                id = state.next;
            }
            if length != area.blocks[order] || length != heads_seen {
                return Err("free block count wrong");
            }
        }
        let counted: usize = area
            .blocks
            .iter()
            .enumerate()
            .map(|(order, count)| count << order)
            .sum();
        if counted != area.frames {
            return Err("free frame count wrong");
        }
        Ok(())
    }
}
