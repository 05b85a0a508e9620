// SPDX-License-Identifier: GPL-2.0

//! Where everything goes in a slab: the pure arithmetic of a cache's layout.
//!
//! [`SlabLayout::compute`] turns an object size, an alignment and the cache
//! flags into the slab order, the objects per slab, the stride, where the
//! bookkeeping lives and how many colours the leftover space allows. It
//! touches no memory, so tests can run it for every size and alignment.
//!
//! The rules are those of the kernel's SLAB allocator (`mm/slab.c`,
//! `calculate_slab_order` and `cache_estimate`), with the choices rmm makes
//! spelled out on the constants below.

use super::descriptor::{DESC_ALIGN, DESC_HEADER_SIZE};
use crate::page_alloc::MAX_ORDER;
use crate::platform::{CACHE_LINE_SIZE, PAGE_SIZE};
use core::fmt;
use core::mem::size_of;
use core::num::NonZeroUsize;
use core::ops::BitOr;

/// Largest object a slab cache accepts: 1 MiB.
///
/// With red zones and page alignment such an object needs a slab of order 9
/// (2 MiB), still below the page allocator's [`MAX_ORDER`], so every size up
/// to this one gets at least one object per slab.
pub const MAX_OBJECT_SIZE: usize = 1 << 20;

/// Highest slab order the waste rule may push a cache to: 3 (32 KiB slabs).
///
/// The order search starts at the smallest order that holds one object and
/// moves up while more than 1/8 of the slab would be wasted or fewer than
/// [`MIN_OBJECTS_PER_SLAB`] objects fit, but not beyond this order. SLAB stopped at `slab_max_order`, 1 on machines with more than
/// 32 MiB; rmm takes 3, the kernel's `PAGE_ALLOC_COSTLY_ORDER` and SLUB's
/// default `slub_max_order`: blocks up to order 3 are what the page allocator
/// promises to find without heroics, and with order 1 an object of 3000 bytes
/// would waste over half of every slab. Objects larger than 8 pages get the
/// smallest order that holds one of them, whatever it wastes, exactly as in
/// SLAB.
pub const SLAB_MAX_ORDER: u32 = 3;

/// Fewest objects a slab should hold: the order search moves up while fewer
/// fit, up to [`SLAB_MAX_ORDER`] (SLUB's `slub_min_objects` rule, which asks
/// for 4 * (log2(CPUs) + 2), 8 on one CPU). SLAB took the smallest order
/// that holds one object, so a slab of 2048-byte objects held two and a
/// batch of frees emptied and rebuilt slabs at nearly every other object.
pub const MIN_OBJECTS_PER_SLAB: usize = 8;

/// Slots of this size or more keep their slab's bookkeeping outside the slab
/// (SLAB's `OFF_SLAB` threshold of `PAGE_SIZE / 8`).
///
/// Below it the descriptor and the free-object index cost less than one
/// object per slab; above it they would often cost a whole object (or a whole
/// page for one-object slabs), while an allocation from
/// [`crate::platform::Platform::alloc_meta`] costs a few dozen bytes.
pub const OFF_SLAB_MIN_SIZE: usize = PAGE_SIZE / 8;

/// Most colours a cache cycles through (the leftover space of an on-slab
/// slab of at most [`SLAB_MAX_ORDER`] never allows more than 512).
pub const MAX_COLOURS: usize = 1 << 10;

/// Alignment every object gets at least: a machine word, as SLAB's
/// `ARCH_SLAB_MINALIGN` rounded up to `sizeof(void *)`.
pub const MIN_ALIGN: usize = size_of::<usize>();

/// Size of the red zone after an object (at least; it also covers the padding
/// up to the next slot).
pub const RED_ZONE_AFTER: usize = size_of::<u64>();

/// Largest number of objects a slab can have while its free-object index
/// uses one byte per object.
const BYTE_INDEX_LIMIT: usize = 1 << 8;

/// Flags given to a cache at creation.
///
/// Flags combine with `|`: `SlabFlags::HWCACHE_ALIGN | SlabFlags::DEBUG`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabFlags(u32);

impl SlabFlags {
    const HWCACHE_ALIGN_BIT: u32 = 1 << 0;
    const RED_ZONE_BIT: u32 = 1 << 1;
    const POISON_BIT: u32 = 1 << 2;

    /// No flags.
    pub const NONE: SlabFlags = SlabFlags(0);
    /// Align objects to the hardware cache line (`SLAB_HWCACHE_ALIGN`);
    /// small objects get half, a quarter, ... of a line while two of them
    /// fit in that, as in SLAB.
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(Self::HWCACHE_ALIGN_BIT);
    /// Surround every object with red zones, checked on free and on
    /// allocation (`SLAB_RED_ZONE`). Turns on allocation-state tracking.
    pub const RED_ZONE: SlabFlags = SlabFlags(Self::RED_ZONE_BIT);
    /// Fill free objects with a poison pattern, checked when they are handed
    /// out again (`SLAB_POISON`). Ignored for caches with a constructor (see
    /// the module documentation of [`crate::slab`]). Turns on
    /// allocation-state tracking.
    pub const POISON: SlabFlags = SlabFlags(Self::POISON_BIT);
    /// Full debugging: red zones, poisoning and allocation-state tracking
    /// (double and invalid frees).
    pub const DEBUG: SlabFlags = SlabFlags(Self::RED_ZONE_BIT | Self::POISON_BIT);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: SlabFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any debugging flag is set (so allocation state is tracked).
    pub const fn debug(self) -> bool {
        self.0 & (Self::RED_ZONE_BIT | Self::POISON_BIT) != 0
    }
}

impl BitOr for SlabFlags {
    type Output = SlabFlags;

    fn bitor(self, rhs: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | rhs.0)
    }
}

/// Why [`SlabLayout::compute`] refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The object size is 0 or above [`MAX_OBJECT_SIZE`].
    InvalidSize,
    /// The alignment is not 0 or a power of two of at most `PAGE_SIZE`.
    InvalidAlign,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::InvalidSize => {
                write!(f, "object size must be 1..={MAX_OBJECT_SIZE} bytes")
            }
            LayoutError::InvalidAlign => {
                f.write_str("alignment must be 0 or a power of two up to the page size")
            }
        }
    }
}

/// The layout of the slabs of one cache.
///
/// A slab is a block of `2^order` pages. Its objects sit in slots of
/// `stride` bytes, the first slot `colour * colour_off` bytes into the slab
/// for the slab's colour. Inside a slot the object starts `obj_offset` bytes
/// in (the red zone before it, in debug mode); the rest of the slot after the
/// object is padding or the red zone after it.
///
/// The slab's bookkeeping, a descriptor followed by the free-object index
/// (one `u8` or `u16` per object) and, in debug mode, one state byte per
/// object, is `desc_size` bytes. On-slab it is the last `desc_size` bytes of
/// the slab (at `desc_offset`, the same for every colour); off-slab it comes
/// from [`crate::platform::Platform::alloc_meta`].
///
/// ```text
///  on-slab, colour k:
///  | k * colour_off | slot 0 | slot 1 | ... | slot n-1 | rest of leftover | descriptor + index |
///  off-slab, colour k:
///  | k * colour_off | slot 0 | ... | slot n-1 | rest of leftover |     descriptor + index elsewhere
///  a slot in debug mode:
///  | red zone (obj_offset) | object (object_size) | red zone up to stride |
/// ```
///
/// # Invariants
///
/// Established by [`SlabLayout::compute`]: `objects >= 1`;
/// `obj_offset + object_size <= stride`; `stride` and `obj_offset` are
/// multiples of `align`, itself a power of two with
/// `MIN_ALIGN <= align <= PAGE_SIZE`; `colour_off` is a multiple of `align`;
/// `objects * stride + leftover + (on_slab ? desc_size : 0)` equals the slab
/// size; `(colours.max(1) - 1) * colour_off <= leftover`; an on-slab
/// `desc_offset` is a multiple of the descriptor's alignment; `index_bytes`
/// is 1 only if `objects <= 256`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabLayout {
    object_size: usize,
    align: usize,
    stride: usize,
    obj_offset: usize,
    red_zone: bool,
    track_state: bool,
    order: u32,
    objects: usize,
    on_slab: bool,
    index_bytes: usize,
    desc_offset: usize,
    desc_size: usize,
    leftover: usize,
    colour_off: usize,
    colours: usize,
}

/// Objects, bookkeeping bytes and leftover of one candidate slab size.
struct Estimate {
    objects: usize,
    index_bytes: usize,
    desc_size: usize,
    leftover: usize,
}

fn round_up(value: usize, align: usize) -> usize {
    (value + align - 1) & !(align - 1)
}

/// Bytes of bookkeeping for `objects` objects: descriptor header, index and
/// state bytes, rounded so that an on-slab descriptor at the end of the slab
/// stays aligned.
fn desc_size(objects: usize, index_bytes: usize, state_bytes: usize) -> usize {
    round_up(
        DESC_HEADER_SIZE + objects * (index_bytes + state_bytes),
        DESC_ALIGN,
    )
}

/// SLAB's `cache_estimate`: how many slots of `stride` bytes fit in a slab of
/// `slab_bytes`, with the bookkeeping inside the slab or not.
fn estimate(slab_bytes: usize, stride: usize, on_slab: bool, state_bytes: usize) -> Estimate {
    if !on_slab {
        let objects = slab_bytes.checked_div(stride).unwrap_or(0);
        let index_bytes = if objects <= BYTE_INDEX_LIMIT { 1 } else { 2 };
        return Estimate {
            objects,
            index_bytes,
            desc_size: desc_size(objects, index_bytes, state_bytes),
            leftover: slab_bytes - objects * stride,
        };
    }
    let fits = |objects: usize, index_bytes: usize| {
        objects * stride + desc_size(objects, index_bytes, state_bytes) <= slab_bytes
    };
    // The most objects that fit with an index of `index_bytes` per object.
    let most = |index_bytes: usize| {
        let Some(room) = slab_bytes.checked_sub(DESC_HEADER_SIZE) else {
            return 0;
        };
        // Ignoring the rounding of the bookkeeping this is exact, and the
        // rounding costs at most one object.
        // (`checked_div`: no division-by-zero panic path, which the 6.12
        // objtool would not recognise as ending the function.)
        let mut objects = room
            .checked_div(stride + index_bytes + state_bytes)
            .unwrap_or(0);
        while objects > 0 && !fits(objects, index_bytes) {
            objects -= 1;
        }
        objects
    };
    let with_bytes = most(1);
    let (objects, index_bytes) = if with_bytes <= BYTE_INDEX_LIMIT {
        (with_bytes, 1)
    } else {
        let with_shorts = most(2);
        if with_shorts <= BYTE_INDEX_LIMIT {
            // A one-byte index capped at 256 objects still beats two-byte
            // entries; 256 fit with one-byte entries since more did.
            (BYTE_INDEX_LIMIT, 1)
        } else {
            (with_shorts, 2)
        }
    };
    let desc_size = desc_size(objects, index_bytes, state_bytes);
    Estimate {
        objects,
        index_bytes,
        desc_size,
        leftover: slab_bytes - objects * stride - desc_size,
    }
}

/// SLAB's `calculate_alignment`: the requested alignment, raised to the
/// cache line (halved while the object fits twice) for `HWCACHE_ALIGN`, and
/// to a machine word.
fn object_align(size: usize, align: usize, flags: SlabFlags) -> usize {
    let mut align = align.max(MIN_ALIGN);
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut line_align = CACHE_LINE_SIZE;
        while size <= line_align / 2 {
            line_align /= 2;
        }
        align = align.max(line_align);
    }
    align
}

impl SlabLayout {
    /// Computes the layout of a cache of `size`-byte objects aligned to
    /// `align` (0: the default, a machine word) with `flags`.
    ///
    /// The slab order is the smallest order holding at least one object,
    /// raised while more than 1/8 of the slab is left over or fewer than
    /// [`MIN_OBJECTS_PER_SLAB`] objects fit, and the order is below
    /// [`SLAB_MAX_ORDER`]. Slots below [`OFF_SLAB_MIN_SIZE`] keep the
    /// bookkeeping in the slab, larger ones outside.
    pub fn compute(size: usize, align: usize, flags: SlabFlags) -> Result<SlabLayout, LayoutError> {
        if size == 0 || size > MAX_OBJECT_SIZE {
            return Err(LayoutError::InvalidSize);
        }
        if align != 0 && (!align.is_power_of_two() || align > PAGE_SIZE) {
            return Err(LayoutError::InvalidAlign);
        }
        let align = object_align(size, align, flags);
        let red_zone = flags.contains(SlabFlags::RED_ZONE);
        let track_state = flags.debug();
        // The red zone before the object is a whole alignment unit so the
        // object stays aligned; the one after is at least a word and takes
        // the padding too.
        let (obj_offset, stride) = if red_zone {
            (align, round_up(align + size + RED_ZONE_AFTER, align))
        } else {
            (0, round_up(size, align))
        };
        let on_slab = stride < OFF_SLAB_MIN_SIZE;
        let state_bytes = usize::from(track_state);

        // No smaller block can hold a slot.
        let first_order = stride
            .div_ceil(PAGE_SIZE)
            .next_power_of_two()
            .trailing_zeros();
        let mut chosen = None;
        for order in first_order..=MAX_ORDER {
            let slab_bytes = PAGE_SIZE << order;
            let estimate = estimate(slab_bytes, stride, on_slab, state_bytes);
            if estimate.objects == 0 {
                continue;
            }
            let wasteful = estimate.leftover * 8 > slab_bytes;
            let few = estimate.objects < MIN_OBJECTS_PER_SLAB;
            chosen = Some((order, estimate));
            if order >= SLAB_MAX_ORDER || !(wasteful || few) {
                break;
            }
        }
        // Every size up to MAX_OBJECT_SIZE fits in a block of MAX_ORDER.
        let Some((order, estimate)) = chosen else {
            return Err(LayoutError::InvalidSize);
        };
        // SLAB: colour_off is the cache line, or the alignment if larger, so
        // that colouring keeps objects aligned.
        let colour_off = CACHE_LINE_SIZE.max(align);
        let colours = (estimate.leftover / colour_off).min(MAX_COLOURS);
        let slab_bytes = PAGE_SIZE << order;
        // INVARIANT: see the checks above and `estimate`.
        Ok(SlabLayout {
            object_size: size,
            align,
            stride,
            obj_offset,
            red_zone,
            track_state,
            order,
            objects: estimate.objects,
            on_slab,
            index_bytes: estimate.index_bytes,
            desc_offset: if on_slab {
                slab_bytes - estimate.desc_size
            } else {
                0
            },
            desc_size: estimate.desc_size,
            leftover: estimate.leftover,
            colour_off,
            colours,
        })
    }

    /// The object size asked for.
    pub const fn object_size(&self) -> usize {
        self.object_size
    }

    /// Alignment of every object (at least the requested one and a word).
    pub const fn align(&self) -> usize {
        self.align
    }

    /// Distance between the starts of neighbouring objects; `objsize` in
    /// `/proc/slabinfo`.
    pub const fn stride(&self) -> usize {
        self.stride
    }

    /// [`SlabLayout::stride`] as a non-zero number, for divisions that need
    /// no division-by-zero check (strides are never zero).
    pub const fn stride_non_zero(&self) -> NonZeroUsize {
        match NonZeroUsize::new(self.stride) {
            Some(stride) => stride,
            None => NonZeroUsize::MIN,
        }
    }

    /// Offset of the object in its slot (the size of the red zone before it).
    pub const fn obj_offset(&self) -> usize {
        self.obj_offset
    }

    /// Whether objects have red zones.
    pub const fn red_zone(&self) -> bool {
        self.red_zone
    }

    /// Whether the allocation state of every object is tracked (debug mode).
    pub const fn track_state(&self) -> bool {
        self.track_state
    }

    /// Slab order: a slab is `2^order` pages.
    pub const fn order(&self) -> u32 {
        self.order
    }

    /// Pages per slab.
    pub const fn pages_per_slab(&self) -> usize {
        1 << self.order
    }

    /// Bytes per slab.
    pub const fn slab_bytes(&self) -> usize {
        PAGE_SIZE << self.order
    }

    /// Objects per slab.
    pub const fn objects(&self) -> usize {
        self.objects
    }

    /// Whether the bookkeeping is inside the slab.
    pub const fn on_slab(&self) -> bool {
        self.on_slab
    }

    /// Bytes per entry of the free-object index: 1 or 2.
    pub const fn index_bytes(&self) -> usize {
        self.index_bytes
    }

    /// Offset of the descriptor in the slab if on-slab, else 0.
    pub const fn desc_offset(&self) -> usize {
        self.desc_offset
    }

    /// Bytes of bookkeeping per slab: descriptor, free-object index and, in
    /// debug mode, the state bytes.
    pub const fn desc_size(&self) -> usize {
        self.desc_size
    }

    /// Offset of the free-object index from the start of the descriptor.
    pub const fn index_offset(&self) -> usize {
        DESC_HEADER_SIZE
    }

    /// Offset of the per-object state bytes from the start of the
    /// descriptor (meaningful in debug mode only).
    pub const fn state_offset(&self) -> usize {
        DESC_HEADER_SIZE + self.objects * self.index_bytes
    }

    /// Bytes of the slab used by neither objects nor bookkeeping.
    pub const fn leftover(&self) -> usize {
        self.leftover
    }

    /// Step between the colours (the cache line, or the alignment if larger).
    pub const fn colour_off(&self) -> usize {
        self.colour_off
    }

    /// SLAB's `colour`: `leftover / colour_off`. Successive slabs take the
    /// colours `0, 1, ..., colours - 1` in turn (only colour 0 if this is 0).
    pub const fn colours(&self) -> usize {
        self.colours
    }

    /// Number of distinct colours actually used: `colours`, at least 1.
    pub const fn colour_cycle(&self) -> usize {
        if self.colours == 0 {
            1
        } else {
            self.colours
        }
    }

    /// Offset of slot 0 in a slab of colour `colour`.
    pub const fn colour_offset(&self, colour: usize) -> usize {
        colour * self.colour_off
    }

    /// Offset of object `index` (the object itself, past any red zone) in a
    /// slab of colour `colour`.
    pub const fn object_offset(&self, colour: usize, index: usize) -> usize {
        self.colour_offset(colour) + index * self.stride + self.obj_offset
    }

    /// Offset in the slab of the first byte after the last slot, for colour
    /// `colour`.
    pub const fn objects_end(&self, colour: usize) -> usize {
        self.colour_offset(colour) + self.objects * self.stride
    }
}
