// SPDX-License-Identifier: GPL-2.0

//! One slab: its descriptor, its free-object index, the lists slabs sit on,
//! and the owner tags that lead from an object's page to its slab.
//!
//! The descriptor ([`SlabDesc`]) is followed in memory by the free-object
//! index, one `u8` or `u16` per object as SLAB's `freelist`: entries
//! `inuse..objects` hold the indices of the free objects, so taking an
//! object is `index[inuse++]` and giving one back is `index[--inuse] = i`.
//! In debug mode one atomic state byte per object follows the index.
//!
//! Descriptors are only ever reached through raw pointers: the list fields
//! and the index are touched under the lock of the node lists the slab is
//! on; the two atomic fields (`cache_id`, `s_mem`) and the state bytes are
//! atomics so that the debug checks and the invariant checks may read them
//! while the slab is live, and no `&mut SlabDesc` is ever formed. Nothing reaches a
//! descriptor without knowing its slab is live: the free fast path checks
//! an object against the page's owner word alone.

use super::layout::SlabLayout;
use crate::page_alloc::PageAllocator;
use crate::platform::{Platform, MAX_NODES};
use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Marks a live descriptor (checked by debug assertions).
const SLAB_MAGIC: u32 = 0x51ab_d35c;

/// Bytes of the descriptor header, before the free-object index.
pub(crate) const DESC_HEADER_SIZE: usize = size_of::<SlabDesc>();
/// Alignment of a descriptor.
pub(crate) const DESC_ALIGN: usize = align_of::<SlabDesc>();

/// Allocation state of an object, tracked in debug mode.
pub(crate) const STATE_FREE: u8 = 0x46; // 'F'
/// The object is handed out to a caller.
pub(crate) const STATE_ALLOCATED: u8 = 0x41; // 'A'

/// Which list of its cache a slab is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ListKind {
    /// Every object in use (by callers or per-CPU arrays).
    Full,
    /// Some objects in use, some free.
    Partial,
    /// No object in use.
    Empty,
    /// On no list (being built, being released, or a spare descriptor).
    Detached,
}

/// A slab descriptor, followed in memory by the free-object index and, in
/// debug mode, the state bytes (see the module documentation).
///
/// # Invariants
///
/// While the slab is live: `cache_id` is the owning cache's id and never
/// changes (a spare off-slab descriptor, reused by its cache, keeps it);
/// `s_mem` is the address of
/// slot 0 (`slab base + colour_offset(colour)`); `inuse <= objects`; index
/// entries `inuse..objects` are distinct indices of free objects, none of
/// which is in a per-CPU array or handed out; `list` says which list of the
/// cache the descriptor is linked on through `next`/`prev`.
#[repr(C)]
pub(crate) struct SlabDesc {
    cache_id: AtomicUsize,
    s_mem: AtomicUsize,
    next: *mut SlabDesc,
    prev: *mut SlabDesc,
    magic: u32,
    inuse: u32,
    colour: u16,
    list: ListKind,
}

/// A pointer to a slab descriptor and its trailing arrays.
///
/// Copyable and unchecked: every method that touches non-atomic fields is
/// `unsafe` and requires the caller to hold the lock of the owning cache's
/// node lists the slab is on (or to own the slab exclusively, while
/// building or releasing it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabPtr(NonNull<SlabDesc>);

impl SlabPtr {
    /// Wraps the descriptor at `desc`.
    pub(crate) fn new(desc: NonNull<u8>) -> Self {
        SlabPtr(desc.cast())
    }

    /// The descriptor's address.
    pub(crate) fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The descriptor's memory.
    pub(crate) fn as_bytes(self) -> NonNull<u8> {
        self.0.cast()
    }

    /// The raw descriptor pointer.
    pub(crate) fn as_ptr(self) -> *mut SlabDesc {
        self.0.as_ptr()
    }

    /// Initialises a descriptor for a fresh slab whose slot 0 is at `s_mem`:
    /// all objects free, index `0, 1, ..., n - 1`, states free.
    ///
    /// # Safety
    ///
    /// `self` points to `layout.desc_size()` writable bytes, aligned for a
    /// descriptor, that nobody else accesses. `keep_id` says the memory
    /// already holds a descriptor of cache `cache_id` (a spare), whose id
    /// stays.
    pub(crate) unsafe fn init(
        self,
        layout: &SlabLayout,
        cache_id: usize,
        s_mem: usize,
        colour: usize,
        keep_id: bool,
    ) {
        let desc = self.as_ptr();
        // SAFETY: the caller gives us the descriptor's memory; the atomic
        // fields are written atomically, or initialised before anyone can
        // know the address (fresh memory, `keep_id == false`).
        unsafe {
            if keep_id {
                debug_assert_eq!((*desc).cache_id.load(Ordering::Relaxed), cache_id);
                (*desc).s_mem.store(s_mem, Ordering::Relaxed);
            } else {
                ptr::addr_of_mut!((*desc).cache_id).write(AtomicUsize::new(cache_id));
                ptr::addr_of_mut!((*desc).s_mem).write(AtomicUsize::new(s_mem));
            }
            ptr::addr_of_mut!((*desc).next).write(ptr::null_mut());
            ptr::addr_of_mut!((*desc).prev).write(ptr::null_mut());
            ptr::addr_of_mut!((*desc).magic).write(SLAB_MAGIC);
            ptr::addr_of_mut!((*desc).inuse).write(0);
            ptr::addr_of_mut!((*desc).colour).write(colour as u16);
            ptr::addr_of_mut!((*desc).list).write(ListKind::Detached);
        }
        for index in 0..layout.objects() {
            // SAFETY: as above; `index < objects` stays inside the index.
            unsafe { self.set_index_entry(layout, index, index) };
        }
        if layout.track_state() {
            let states = self.states_ptr(layout);
            for index in 0..layout.objects() {
                // SAFETY: the state bytes are inside the descriptor's memory;
                // writing a fresh atomic is fine as no object of the slab has
                // been handed out yet.
                unsafe { states.add(index).write(AtomicU8::new(STATE_FREE)) };
            }
        }
    }

    /// The owning cache's id (readable without the lock).
    ///
    /// # Safety
    ///
    /// The descriptor memory is live (its slab is live, or it is a spare
    /// of a cache not yet destroyed).
    pub(crate) unsafe fn cache_id(self) -> usize {
        // SAFETY: the caller guarantees the memory is live; the field is
        // atomic, so racing writes are fine.
        unsafe { (*self.as_ptr()).cache_id.load(Ordering::Relaxed) }
    }

    /// Address of slot 0 (readable without the lock).
    ///
    /// # Safety
    ///
    /// As for [`SlabPtr::cache_id`].
    #[inline]
    pub(crate) unsafe fn s_mem(self) -> usize {
        // SAFETY: as in `cache_id`.
        unsafe { (*self.as_ptr()).s_mem.load(Ordering::Relaxed) }
    }

    /// Whether the descriptor carries the live-descriptor magic.
    ///
    /// # Safety
    ///
    /// Node lock held, or the slab owned exclusively.
    pub(crate) unsafe fn magic_ok(self) -> bool {
        // SAFETY: per the caller's guarantee nobody writes it concurrently.
        unsafe { (*self.as_ptr()).magic == SLAB_MAGIC }
    }

    /// Objects of the slab not free in it.
    ///
    /// # Safety
    ///
    /// Node lock held, or the slab owned exclusively.
    #[inline]
    pub(crate) unsafe fn inuse(self) -> usize {
        // SAFETY: as in `magic_ok`.
        unsafe { (*self.as_ptr()).inuse as usize }
    }

    /// The slab's colour.
    ///
    /// # Safety
    ///
    /// Node lock held, or the slab owned exclusively.
    pub(crate) unsafe fn colour(self) -> usize {
        // SAFETY: as in `magic_ok`.
        unsafe { usize::from((*self.as_ptr()).colour) }
    }

    /// The list the slab is on.
    ///
    /// # Safety
    ///
    /// Node lock held, or the slab owned exclusively.
    #[inline]
    pub(crate) unsafe fn list(self) -> ListKind {
        // SAFETY: as in `magic_ok`.
        unsafe { (*self.as_ptr()).list }
    }

    /// Marks the descriptor as no longer describing a live slab.
    ///
    /// # Safety
    ///
    /// Node lock held, or the slab owned exclusively.
    pub(crate) unsafe fn clear_magic(self) {
        // SAFETY: as in `magic_ok`.
        unsafe { (*self.as_ptr()).magic = 0 };
    }

    #[inline]
    fn index_ptr(self) -> *mut u8 {
        self.as_ptr().cast::<u8>().wrapping_add(DESC_HEADER_SIZE)
    }

    fn states_ptr(self, layout: &SlabLayout) -> *mut AtomicU8 {
        self.as_ptr()
            .cast::<u8>()
            .wrapping_add(layout.state_offset())
            .cast()
    }

    /// # Safety
    ///
    /// Node lock held or slab owned; `position < objects`.
    #[inline]
    unsafe fn index_entry(self, layout: &SlabLayout, position: usize) -> usize {
        let index = self.index_ptr();
        // SAFETY: the index has `objects` entries of `index_bytes` right
        // after the header; u16 entries are 2-aligned as the header size is
        // a multiple of the descriptor's alignment.
        unsafe {
            if layout.index_bytes() == 1 {
                usize::from(index.add(position).read())
            } else {
                usize::from(index.cast::<u16>().add(position).read())
            }
        }
    }

    /// # Safety
    ///
    /// Node lock held or slab owned; `position < objects`, and `object`
    /// fits the entry width (guaranteed by the layout).
    #[inline]
    unsafe fn set_index_entry(self, layout: &SlabLayout, position: usize, object: usize) {
        let index = self.index_ptr();
        // SAFETY: as in `index_entry`.
        unsafe {
            if layout.index_bytes() == 1 {
                index.add(position).write(object as u8);
            } else {
                index.cast::<u16>().add(position).write(object as u16);
            }
        }
    }

    /// Takes up to `max` free objects off the slab's index, calling
    /// `object(index)` for each in order; returns how many were taken.
    /// One update of `inuse` and one test of the index width for the whole
    /// run.
    ///
    /// # Safety
    ///
    /// Node lock held, or the slab owned exclusively.
    #[inline]
    pub(crate) unsafe fn take_many(
        self,
        layout: &SlabLayout,
        max: usize,
        mut object: impl FnMut(usize),
    ) -> usize {
        let desc = self.as_ptr();
        // SAFETY: per the caller's guarantee we have exclusive access to the
        // non-atomic fields and the index; positions `inuse..inuse + n` are
        // below `objects`, inside the index.
        unsafe {
            let inuse = (*desc).inuse as usize;
            let n = max.min(layout.objects().saturating_sub(inuse));
            let index = self.index_ptr();
            if layout.index_bytes() == 1 {
                for position in inuse..inuse + n {
                    object(usize::from(index.add(position).read()));
                }
            } else {
                let index = index.cast::<u16>();
                for position in inuse..inuse + n {
                    object(usize::from(index.add(position).read()));
                }
            }
            // `inuse + n <= objects`, which fits the field.
            (*desc).inuse += n as u32;
            n
        }
    }

    /// Gives object `object` back to the slab's index.
    ///
    /// # Safety
    ///
    /// Node lock held; `object < objects` is not free in the slab (it came
    /// from [`SlabPtr::take_many`] and was not given back since); `inuse > 0`.
    #[inline]
    pub(crate) unsafe fn put(self, layout: &SlabLayout, object: usize) {
        let desc = self.as_ptr();
        // SAFETY: as in `take`; `inuse > 0` so the position is in range.
        unsafe {
            debug_assert!((*desc).inuse > 0);
            (*desc).inuse -= 1;
            self.set_index_entry(layout, (*desc).inuse as usize, object);
        }
    }

    /// Whether object `object` is free in the slab's index (O(objects)).
    ///
    /// # Safety
    ///
    /// Node lock held.
    pub(crate) unsafe fn is_free_in_index(self, layout: &SlabLayout, object: usize) -> bool {
        // SAFETY: per the caller's guarantee.
        let inuse = unsafe { self.inuse() };
        // SAFETY: positions below `objects`; lock held.
        (inuse..layout.objects())
            .any(|position| unsafe { self.index_entry(layout, position) } == object)
    }

    /// The index entries of the free objects, for invariant checks.
    ///
    /// # Safety
    ///
    /// Node lock held.
    pub(crate) unsafe fn free_entry(self, layout: &SlabLayout, position: usize) -> usize {
        // SAFETY: per the caller's guarantee, with `position < objects`
        // checked by the caller.
        unsafe { self.index_entry(layout, position) }
    }

    /// Atomically moves object `object` from state `from` to state `to`
    /// (debug mode only); on failure returns the state found.
    ///
    /// # Safety
    ///
    /// The slab is live (it cannot be released during the call) and
    /// `object < objects`; the layout tracks state.
    pub(crate) unsafe fn change_state(
        self,
        layout: &SlabLayout,
        object: usize,
        from: u8,
        to: u8,
    ) -> Result<(), u8> {
        debug_assert!(layout.track_state() && object < layout.objects());
        // SAFETY: the state bytes were initialised by `init` and stay valid
        // while the slab is live; they are atomics, shared by design.
        let state = unsafe { &*self.states_ptr(layout).add(object) };
        state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
    }

    /// The state of object `object` (debug mode only).
    ///
    /// # Safety
    ///
    /// As for [`SlabPtr::change_state`].
    pub(crate) unsafe fn state(self, layout: &SlabLayout, object: usize) -> u8 {
        debug_assert!(layout.track_state() && object < layout.objects());
        // SAFETY: as in `change_state`.
        unsafe { (*self.states_ptr(layout).add(object)).load(Ordering::Acquire) }
    }
}

/// A doubly linked list of slab descriptors through their `next`/`prev`
/// fields.
///
/// # Invariants
///
/// `head` is null or the first of `len` descriptors linked through `next`,
/// with `prev` pointing back (null for the first); every one has `list ==
/// kind`.
pub(crate) struct SlabList {
    head: *mut SlabDesc,
    len: usize,
    kind: ListKind,
}

impl SlabList {
    /// An empty list of the given kind.
    pub(crate) const fn new(kind: ListKind) -> Self {
        SlabList {
            head: ptr::null_mut(),
            len: 0,
            kind,
        }
    }

    /// Number of slabs on the list.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first slab, if any.
    #[inline]
    pub(crate) fn first(&self) -> Option<SlabPtr> {
        NonNull::new(self.head).map(SlabPtr)
    }

    /// The slab after `slab` on its list.
    ///
    /// # Safety
    ///
    /// Node lock held, `slab` on a list.
    pub(crate) unsafe fn next(slab: SlabPtr) -> Option<SlabPtr> {
        // SAFETY: per the caller's guarantee.
        NonNull::new(unsafe { (*slab.as_ptr()).next }).map(SlabPtr)
    }

    /// Puts `slab` at the front.
    ///
    /// # Safety
    ///
    /// Node lock held (or list owned); `slab` is detached and live.
    #[inline]
    pub(crate) unsafe fn push_front(&mut self, slab: SlabPtr) {
        let desc = slab.as_ptr();
        // SAFETY: `slab` and the current head are live descriptors we have
        // exclusive access to.
        unsafe {
            debug_assert_eq!((*desc).list, ListKind::Detached);
            (*desc).prev = ptr::null_mut();
            (*desc).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = desc;
            }
            (*desc).list = self.kind;
        }
        // INVARIANT: linked at the front with its kind set.
        self.head = desc;
        self.len += 1;
    }

    /// Unlinks `slab`, which must be on this list.
    ///
    /// # Safety
    ///
    /// Node lock held (or list owned); `slab` is on this list.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, slab: SlabPtr) {
        let desc = slab.as_ptr();
        // SAFETY: `slab` and its neighbours are live descriptors on this
        // list, which we have exclusive access to.
        unsafe {
            debug_assert_eq!((*desc).list, self.kind);
            let (prev, next) = ((*desc).prev, (*desc).next);
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*desc).next = ptr::null_mut();
            (*desc).prev = ptr::null_mut();
            (*desc).list = ListKind::Detached;
        }
        // INVARIANT: unlinked, neighbours relinked.
        self.len -= 1;
    }

    /// Unlinks and returns the first slab.
    ///
    /// # Safety
    ///
    /// Node lock held (or list owned).
    #[inline]
    pub(crate) unsafe fn pop_front(&mut self) -> Option<SlabPtr> {
        let first = self.first()?;
        // SAFETY: `first` is on this list.
        unsafe { self.remove(first) };
        Some(first)
    }
}

/// What the owner word of a page allocator block says about the block.
///
/// rmm's slab layer is the only user of owner words besides the kernel
/// layer, which must leave the low two bits of its owner words zero (or
/// leave the word unset, 0). The two low bits give the kind:
///
/// - `01`: a slab; bits 2..12 hold the slab's colour, bits 12..15 the
///   memory node of its pages, the bits above the cache id. Nothing is
///   dereferenced to check an object against it, so the free fast path is
///   the same for on-slab and off-slab bookkeeping, and it learns the
///   object's node from the same word. An off-slab slab's descriptor is the
///   block's auxiliary word
///   ([`PageAllocator::block_aux`](crate::page_alloc::PageAllocator::block_aux)),
///   read only where the slab is known to be live.
/// - `11`: a page-order kmalloc block; bits 2..12 hold its order, the bits
///   from 15 the id of the kmalloc instance (the node bits are 0).
/// - `10` is not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OwnerTag {
    /// A slab.
    Slab {
        /// The cache's id.
        cache_id: usize,
        /// The slab's colour.
        colour: usize,
        /// The memory node of the slab's pages (below
        /// [`MAX_NODES`](crate::platform::MAX_NODES)).
        node: usize,
    },
    /// A block handed out by kmalloc for a large request.
    Large {
        /// The id of the kmalloc instance.
        owner_id: usize,
        /// The block's order.
        order: u32,
    },
    /// Anything else (untagged, or tagged by someone else).
    Other,
}

const KIND_MASK: usize = 0b11;
const KIND_SLAB: usize = 0b01;
const KIND_LARGE: usize = 0b11;
const PAYLOAD_SHIFT: u32 = 2;
const PAYLOAD_MASK: usize = (1 << 10) - 1;
const NODE_SHIFT: u32 = 12;
const NODE_MASK: usize = (1 << 3) - 1;
const ID_SHIFT: u32 = 15;

/// Largest id a cache or kmalloc instance can have in an owner word.
pub(crate) const MAX_OWNER_ID: usize = usize::MAX >> ID_SHIFT;

// Every colour a layout may use fits in an owner word.
const _: () = assert!(super::layout::MAX_COLOURS <= PAYLOAD_MASK + 1);
// Every node number fits in an owner word.
const _: () = assert!(MAX_NODES <= NODE_MASK + 1);

/// Reserves `count` consecutive owner ids of `pages` (for caches and
/// kmalloc instances), or `None` once ids run out.
pub(crate) fn reserve_owner_ids<P: Platform>(
    pages: &PageAllocator<P>,
    count: usize,
) -> Option<usize> {
    pages.reserve_owner_ids(count, MAX_OWNER_ID)
}

impl OwnerTag {
    /// The owner word for this tag.
    pub(crate) fn encode(self) -> usize {
        match self {
            OwnerTag::Slab {
                cache_id,
                colour,
                node,
            } => {
                debug_assert!(cache_id <= MAX_OWNER_ID && colour <= PAYLOAD_MASK);
                debug_assert!(node <= NODE_MASK);
                (cache_id << ID_SHIFT)
                    | ((node & NODE_MASK) << NODE_SHIFT)
                    | (colour << PAYLOAD_SHIFT)
                    | KIND_SLAB
            }
            OwnerTag::Large { owner_id, order } => {
                debug_assert!(owner_id <= MAX_OWNER_ID);
                (owner_id << ID_SHIFT) | ((order as usize) << PAYLOAD_SHIFT) | KIND_LARGE
            }
            OwnerTag::Other => 0,
        }
    }

    /// The owner word of a slab of cache `cache_id`, colour 0, node 0.
    pub(crate) fn slab_tag(cache_id: usize) -> usize {
        (cache_id << ID_SHIFT) | KIND_SLAB
    }

    /// The bits of a slab owner word that say the slab's pages are on
    /// `node`: a slab tag with them added is what
    /// [`OwnerTag::colour_if_tagged_on`] expects.
    pub(crate) fn node_field(node: usize) -> usize {
        (node & NODE_MASK) << NODE_SHIFT
    }

    /// The colour in `word` if it is `tag` (from [`OwnerTag::slab_tag`])
    /// with some colour, on any node: the slow paths' test, without a full
    /// decode.
    #[inline(always)]
    pub(crate) fn colour_if_tagged(word: usize, tag: usize) -> Option<usize> {
        let mask = !((PAYLOAD_MASK << PAYLOAD_SHIFT) | (NODE_MASK << NODE_SHIFT));
        (word & mask == tag).then_some((word >> PAYLOAD_SHIFT) & PAYLOAD_MASK)
    }

    /// The colour in `word` if it is `tag` with some colour, where `tag`
    /// is a slab tag with a node's bits ([`OwnerTag::node_field`]) added:
    /// the free fast path's test, which checks the cache and the node of
    /// the object with one comparison.
    #[inline(always)]
    pub(crate) fn colour_if_tagged_on(word: usize, tag: usize) -> Option<usize> {
        let mask = !(PAYLOAD_MASK << PAYLOAD_SHIFT);
        (word & mask == tag).then_some((word >> PAYLOAD_SHIFT) & PAYLOAD_MASK)
    }

    /// The node bits of a slab owner word (meaningless for other words).
    #[inline(always)]
    pub(crate) fn node_bits(word: usize) -> usize {
        (word >> NODE_SHIFT) & NODE_MASK
    }

    /// The bits of `word` that hold a cache or kmalloc id in slab and
    /// large-block tags (meaningless for other words): a guess that the
    /// fast paths confirm with [`OwnerTag::colour_if_tagged_on`].
    #[inline(always)]
    pub(crate) fn id_bits(word: usize) -> usize {
        word >> ID_SHIFT
    }

    /// Decodes an owner word.
    #[inline]
    pub(crate) fn decode(word: usize) -> OwnerTag {
        let payload = (word >> PAYLOAD_SHIFT) & PAYLOAD_MASK;
        match word & KIND_MASK {
            KIND_SLAB => OwnerTag::Slab {
                cache_id: word >> ID_SHIFT,
                colour: payload,
                node: Self::node_bits(word),
            },
            KIND_LARGE => OwnerTag::Large {
                owner_id: word >> ID_SHIFT,
                order: payload as u32,
            },
            _ => OwnerTag::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_tags_round_trip() {
        for tag in [
            OwnerTag::Slab {
                cache_id: 77,
                colour: 511,
                node: 0,
            },
            OwnerTag::Slab {
                cache_id: 78,
                colour: 1023,
                node: MAX_NODES - 1,
            },
            OwnerTag::Slab {
                cache_id: MAX_OWNER_ID,
                colour: 0,
                node: 3,
            },
            OwnerTag::Large {
                owner_id: 5,
                order: 10,
            },
        ] {
            assert_eq!(OwnerTag::decode(tag.encode()), tag);
        }
        assert_eq!(OwnerTag::decode(0), OwnerTag::Other);
        assert_eq!(OwnerTag::decode(0x1000), OwnerTag::Other);
        // A descriptor-like address (kind `10`) is nobody's tag.
        assert_eq!(OwnerTag::decode(0x1234_5678_9ab8 | 0b10), OwnerTag::Other);
    }

    #[test]
    fn tag_tests_see_the_node_as_asked() {
        let word = OwnerTag::Slab {
            cache_id: 9,
            colour: 5,
            node: 6,
        }
        .encode();
        let tag = OwnerTag::slab_tag(9);
        assert_eq!(OwnerTag::node_bits(word), 6);
        assert_eq!(OwnerTag::id_bits(word), 9);
        // Any node for the slow paths' test.
        assert_eq!(OwnerTag::colour_if_tagged(word, tag), Some(5));
        assert_eq!(
            OwnerTag::colour_if_tagged(word, OwnerTag::slab_tag(10)),
            None
        );
        // Exactly the node for the fast path's.
        let on_6 = tag | OwnerTag::node_field(6);
        assert_eq!(OwnerTag::colour_if_tagged_on(word, on_6), Some(5));
        assert_eq!(OwnerTag::colour_if_tagged_on(word, tag), None);
        assert_eq!(OwnerTag::colour_if_tagged_on(word, usize::MAX), None);
        // Large blocks have no node and keep their id.
        let large = OwnerTag::Large {
            owner_id: 9,
            order: 4,
        }
        .encode();
        assert_eq!(OwnerTag::id_bits(large), 9);
        assert_eq!(OwnerTag::colour_if_tagged(large, tag), None);
    }

    #[test]
    fn owner_ids_are_distinct() {
        let pages = PageAllocator::new(crate::host::HostPlatform::new(1)).unwrap();
        let a = reserve_owner_ids(&pages, 3).unwrap();
        let b = reserve_owner_ids(&pages, 1).unwrap();
        assert!(b >= a + 3);
        assert_eq!(pages.reserve_owner_ids(1, b), None, "ids run out");
    }
}
