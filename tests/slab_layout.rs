// SPDX-License-Identifier: GPL-2.0

//! The slab layout arithmetic, checked for every object size up to
//! `MAX_OBJECT_SIZE` and every alignment, against an independent
//! formulation of the rules (binary search for the most objects that fit,
//! the SLAB order search, the SLAB alignment rule).

use rmm_core::page_alloc::MAX_ORDER;
use rmm_core::platform::{CACHE_LINE_SIZE, PAGE_SIZE};
use rmm_core::slab::{
    cpucache_limit, LayoutError, SlabFlags, SlabLayout, DESC_HEADER_SIZE, MAX_COLOURS,
    MAX_OBJECT_SIZE, MIN_ALIGN, MIN_OBJECTS_PER_SLAB, OFF_SLAB_MIN_SIZE, RED_ZONE_AFTER,
    SLAB_MAX_ORDER,
};
use std::thread;

const DESC_ALIGN: usize = std::mem::align_of::<usize>();

/// 0 (default) and every power of two up to a page.
fn alignments() -> impl Iterator<Item = usize> + Clone {
    std::iter::once(0).chain((0..=PAGE_SIZE.trailing_zeros()).map(|shift| 1usize << shift))
}

/// Rounds up to a power of two (with a mask: divisions dominate the run
/// time of these sweeps).
fn round_up(value: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    (value + align - 1) & !(align - 1)
}

fn aligned(value: usize, align: usize) -> bool {
    value & (align - 1) == 0
}

/// Bookkeeping bytes for `objects` objects with `index_bytes` per index
/// entry and `state_bytes` per state entry.
fn bookkeeping(objects: usize, index_bytes: usize, state_bytes: usize) -> usize {
    round_up(
        DESC_HEADER_SIZE + objects * (index_bytes + state_bytes),
        DESC_ALIGN,
    )
}

fn fits_on_slab(
    objects: usize,
    stride: usize,
    index_bytes: usize,
    state: usize,
    slab: usize,
) -> bool {
    objects * stride + bookkeeping(objects, index_bytes, state) <= slab
}

/// The most objects that fit on-slab with `index_bytes`, by binary search.
fn most_on_slab(stride: usize, index_bytes: usize, state: usize, slab: usize) -> usize {
    let (mut low, mut high) = (0, slab / stride);
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits_on_slab(mid, stride, index_bytes, state, slab) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low
}

/// (objects, index bytes, leftover) the documented rules give for a slab
/// of `slab` bytes.
fn expected_estimate(
    stride: usize,
    on_slab: bool,
    state: usize,
    slab: usize,
) -> (usize, usize, usize) {
    if !on_slab {
        let objects = slab / stride;
        let index_bytes = if objects <= 256 { 1 } else { 2 };
        return (objects, index_bytes, slab - objects * stride);
    }
    let with_bytes = most_on_slab(stride, 1, state, slab);
    let (objects, index_bytes) = if with_bytes <= 256 {
        (with_bytes, 1)
    } else {
        let with_shorts = most_on_slab(stride, 2, state, slab);
        if with_shorts <= 256 {
            (256, 1)
        } else {
            (with_shorts, 2)
        }
    };
    let leftover = slab - objects * stride - bookkeeping(objects, index_bytes, state);
    (objects, index_bytes, leftover)
}

/// Checks one layout against every rule; panics with the case on failure.
fn check(size: usize, align: usize, flags: SlabFlags) -> SlabLayout {
    let layout = SlabLayout::compute(size, align, flags)
        .unwrap_or_else(|error| panic!("size {size} align {align} {flags:?}: {error:?}"));
    let case = || format!("size {size} align {align} {flags:?}: {layout:?}");

    // Alignment: requested, a word, and the SLAB cache-line rule.
    let mut wanted_align = align.max(MIN_ALIGN);
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        wanted_align = wanted_align.max(size.next_power_of_two().min(CACHE_LINE_SIZE));
    }
    assert_eq!(layout.align(), wanted_align, "{}", case());
    assert!(layout.align().is_power_of_two(), "{}", case());
    assert_eq!(layout.object_size(), size, "{}", case());

    // Slots: objects aligned and inside their slot, red zones where asked.
    let stride = layout.stride();
    assert!(aligned(stride, layout.align()), "{}", case());
    assert!(aligned(layout.obj_offset(), layout.align()), "{}", case());
    assert!(layout.obj_offset() + size <= stride, "{}", case());
    if flags.contains(SlabFlags::RED_ZONE) {
        assert!(layout.red_zone(), "{}", case());
        assert!(layout.obj_offset() >= RED_ZONE_AFTER, "{}", case());
        assert!(
            stride - layout.obj_offset() - size >= RED_ZONE_AFTER,
            "{}",
            case()
        );
        // Nothing wasted beyond what alignment forces.
        assert!(
            stride - layout.obj_offset() - size < RED_ZONE_AFTER + layout.align(),
            "{}",
            case()
        );
    } else {
        assert!(!layout.red_zone(), "{}", case());
        assert_eq!(layout.obj_offset(), 0, "{}", case());
        assert_eq!(stride, round_up(size, layout.align()), "{}", case());
    }
    assert_eq!(layout.track_state(), flags.debug(), "{}", case());
    assert_eq!(layout.on_slab(), stride < OFF_SLAB_MIN_SIZE, "{}", case());

    // The slab: at least one object, exact count, bookkeeping in place.
    let slab = layout.slab_bytes();
    assert!(layout.order() <= MAX_ORDER, "{}", case());
    assert_eq!(slab, PAGE_SIZE << layout.order(), "{}", case());
    assert_eq!(layout.pages_per_slab(), 1 << layout.order(), "{}", case());
    let objects = layout.objects();
    assert!(objects >= 1, "{}", case());
    let state = usize::from(flags.debug());
    let index_bytes = layout.index_bytes();
    assert!(index_bytes == 1 || index_bytes == 2, "{}", case());
    assert!(index_bytes == 2 || objects <= 256, "{}", case());
    assert_eq!(
        layout.desc_size(),
        bookkeeping(objects, index_bytes, state),
        "{}",
        case()
    );
    assert_eq!(
        layout.state_offset(),
        DESC_HEADER_SIZE + objects * index_bytes,
        "{}",
        case()
    );
    let objects_limit = if layout.on_slab() {
        assert_eq!(
            layout.desc_offset() + layout.desc_size(),
            slab,
            "{}",
            case()
        );
        assert!(aligned(layout.desc_offset(), DESC_ALIGN), "{}", case());
        assert!(
            fits_on_slab(objects, stride, index_bytes, state, slab),
            "{}",
            case()
        );
        // No room for one more object, with either index width.
        assert!(
            objects + 1 > 256 || !fits_on_slab(objects + 1, stride, 1, state, slab),
            "{}",
            case()
        );
        assert!(
            !fits_on_slab(objects + 1, stride, 2, state, slab),
            "{}",
            case()
        );
        layout.desc_offset()
    } else {
        assert_eq!(objects, slab / stride, "{}", case());
        slab
    };
    assert_eq!(
        layout.leftover(),
        objects_limit - objects * stride,
        "{}",
        case()
    );

    // Colouring: every colour keeps objects aligned and clear of the
    // bookkeeping.
    assert_eq!(
        layout.colour_off(),
        CACHE_LINE_SIZE.max(layout.align()),
        "{}",
        case()
    );
    assert_eq!(
        layout.colours(),
        (layout.leftover() / layout.colour_off()).min(MAX_COLOURS),
        "{}",
        case()
    );
    let last_colour = layout.colour_cycle() - 1;
    assert!(layout.colour_cycle() >= 1, "{}", case());
    for colour in [0, last_colour] {
        assert!(layout.objects_end(colour) <= objects_limit, "{}", case());
        for index in [0, objects - 1] {
            let offset = layout.object_offset(colour, index);
            assert!(aligned(offset, layout.align()), "{}", case());
            assert!(offset + size <= objects_limit, "{}", case());
        }
    }

    // The order: SLAB's search, recomputed.
    // The smallest order holding one object: a page for on-slab slots
    // (under 512 bytes), else the first block at least a slot long.
    let min_order = if layout.on_slab() {
        0
    } else {
        stride
            .div_ceil(PAGE_SIZE)
            .next_power_of_two()
            .trailing_zeros()
    };
    assert!(expected_estimate(stride, layout.on_slab(), state, PAGE_SIZE << min_order).0 > 0);
    assert!(
        min_order == 0
            || expected_estimate(
                stride,
                layout.on_slab(),
                state,
                PAGE_SIZE << (min_order - 1)
            )
            .0 == 0
    );
    assert!(layout.order() >= min_order, "{}", case());
    for order in min_order..layout.order() {
        let (objects, _, leftover) =
            expected_estimate(stride, layout.on_slab(), state, PAGE_SIZE << order);
        assert!(
            order < SLAB_MAX_ORDER
                && (leftover * 8 > PAGE_SIZE << order || objects < MIN_OBJECTS_PER_SLAB),
            "order {order} should have been chosen: {}",
            case()
        );
    }
    let (expected_objects, expected_index, expected_leftover) =
        expected_estimate(stride, layout.on_slab(), state, slab);
    assert_eq!(
        (objects, index_bytes, layout.leftover()),
        (expected_objects, expected_index, expected_leftover),
        "{}",
        case()
    );
    assert!(
        layout.leftover() * 8 <= slab || layout.order() >= SLAB_MAX_ORDER,
        "waste rule: {}",
        case()
    );
    assert!(
        objects >= MIN_OBJECTS_PER_SLAB || layout.order() >= SLAB_MAX_ORDER,
        "fewest-objects rule: {}",
        case()
    );
    layout
}

/// Runs `check` for every size in `sizes`, every alignment and each of
/// `flag_sets`, on two threads.
fn check_all(
    sizes: &[std::ops::RangeInclusive<usize>],
    step: usize,
    flag_sets: &[SlabFlags],
) -> usize {
    let threads = 2;
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    let mut checked = 0;
                    for range in sizes {
                        for size in range.clone().step_by(step).skip(worker).step_by(threads) {
                            for align in alignments() {
                                for &flags in flag_sets {
                                    check(size, align, flags);
                                    checked += 1;
                                }
                            }
                        }
                    }
                    checked
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    })
}

#[test]
fn every_size_and_alignment_without_debug() {
    let checked = check_all(&[1..=MAX_OBJECT_SIZE], 1, &[SlabFlags::NONE]);
    assert_eq!(checked, MAX_OBJECT_SIZE * 14);
}

#[test]
fn every_size_and_alignment_with_debug() {
    let checked = check_all(&[1..=MAX_OBJECT_SIZE], 1, &[SlabFlags::DEBUG]);
    assert_eq!(checked, MAX_OBJECT_SIZE * 14);
}

#[test]
fn other_flag_combinations() {
    let flag_sets = [
        SlabFlags::HWCACHE_ALIGN,
        SlabFlags::HWCACHE_ALIGN | SlabFlags::DEBUG,
        SlabFlags::RED_ZONE,
        SlabFlags::POISON,
    ];
    // Every size where the alignment rules differ (up to two pages), then a
    // sample of larger sizes.
    let checked = check_all(&[1..=2 * PAGE_SIZE], 1, &flag_sets)
        + check_all(&[2 * PAGE_SIZE + 1..=MAX_OBJECT_SIZE], 61, &flag_sets);
    assert!(checked > 8192 * 14 * 4);
}

#[test]
fn hwcache_align_is_the_halved_cache_line() {
    for size in 1..=4 * CACHE_LINE_SIZE {
        let with_flag = SlabLayout::compute(size, 0, SlabFlags::HWCACHE_ALIGN).unwrap();
        let line = match size {
            1..=8 => 8,
            9..=16 => 16,
            17..=32 => 32,
            _ => 64,
        };
        assert_eq!(with_flag.align(), line, "size {size}");
        // The same layout as asking for that alignment explicitly.
        assert_eq!(
            with_flag,
            SlabLayout::compute(size, line, SlabFlags::NONE).unwrap()
        );
    }
}

/// Objects of every slab of a few layouts enumerated one by one: disjoint,
/// inside the slab, clear of on-slab bookkeeping, red zones inside slots.
#[test]
fn objects_enumerated_never_overlap() {
    for flags in [SlabFlags::NONE, SlabFlags::DEBUG] {
        for size in (1..=3 * PAGE_SIZE).step_by(7) {
            for align in [0, 64, 512, PAGE_SIZE] {
                let layout = SlabLayout::compute(size, align, flags).unwrap();
                let limit = if layout.on_slab() {
                    layout.desc_offset()
                } else {
                    layout.slab_bytes()
                };
                for colour in 0..layout.colour_cycle().min(4) {
                    let mut previous_end = layout.colour_offset(colour);
                    for index in 0..layout.objects() {
                        let slot = layout.colour_offset(colour) + index * layout.stride();
                        let object = layout.object_offset(colour, index);
                        assert!(slot >= previous_end, "slots overlap: {layout:?}");
                        assert_eq!(object, slot + layout.obj_offset());
                        assert_eq!(object % layout.align(), 0);
                        previous_end = slot + layout.stride();
                        assert!(object + size <= previous_end);
                        assert!(previous_end <= limit, "past the slab: {layout:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn known_layouts() {
    let plain = |size| SlabLayout::compute(size, 0, SlabFlags::NONE).unwrap();
    // Tiny objects: one page, bookkeeping inside, two-byte index.
    let tiny = plain(8);
    assert_eq!(
        (tiny.order(), tiny.on_slab(), tiny.index_bytes()),
        (0, true, 2)
    );
    assert_eq!(tiny.objects(), (PAGE_SIZE - DESC_HEADER_SIZE) / 10);
    // 256 bytes: 15 objects in a page, enough.
    assert_eq!(plain(256).order(), 0);
    // 2048 bytes: two per page; order 2 is the first with 8 objects.
    let pair_per_page = plain(2048);
    assert_eq!((pair_per_page.order(), pair_per_page.objects()), (2, 8));
    // 3000 bytes: order 0 wastes 27%, order 1 27%, order 2 8% but holds
    // only 5 objects; order 3 holds 10 and wastes 8%.
    let mid = plain(3000);
    assert_eq!((mid.order(), mid.objects(), mid.on_slab()), (3, 10, false));
    assert_eq!(mid.leftover(), 8 * PAGE_SIZE - 30000);
    assert_eq!(mid.colours(), (8 * PAGE_SIZE - 30000) / 64);
    // 7000 bytes: still 14% waste at order 3, the highest the waste rule
    // may reach.
    let capped = plain(7000);
    assert_eq!((capped.order(), capped.objects()), (3, 4));
    assert!(capped.leftover() * 8 > capped.slab_bytes());
    // Page-sized objects: 8 per slab of order 3, no waste; two pages: the
    // order cap leaves 4.
    let page = SlabLayout::compute(PAGE_SIZE, PAGE_SIZE, SlabFlags::NONE).unwrap();
    assert_eq!((page.order(), page.objects(), page.leftover()), (3, 8, 0));
    let two_pages = plain(2 * PAGE_SIZE);
    assert_eq!((two_pages.order(), two_pages.objects()), (3, 4));
    // Above 8 pages: the smallest order that holds one object.
    let large = plain(40_000);
    assert_eq!((large.order(), large.objects()), (4, 1));
    // The largest object, with red zones and page alignment, still fits.
    let largest = SlabLayout::compute(MAX_OBJECT_SIZE, PAGE_SIZE, SlabFlags::DEBUG).unwrap();
    assert_eq!((largest.order(), largest.objects()), (9, 1));
    // The off-slab threshold is on the stride.
    assert!(plain(OFF_SLAB_MIN_SIZE - 8).on_slab());
    assert!(!plain(OFF_SLAB_MIN_SIZE).on_slab());
    // Red zones count: 496 bytes plus two 8-byte zones make a 512-byte slot.
    assert!(plain(496).on_slab());
    assert!(!SlabLayout::compute(496, 0, SlabFlags::DEBUG)
        .unwrap()
        .on_slab());
}

#[test]
fn invalid_requests_are_refused() {
    assert_eq!(
        SlabLayout::compute(0, 0, SlabFlags::NONE),
        Err(LayoutError::InvalidSize)
    );
    assert_eq!(
        SlabLayout::compute(MAX_OBJECT_SIZE + 1, 0, SlabFlags::NONE),
        Err(LayoutError::InvalidSize)
    );
    assert_eq!(
        SlabLayout::compute(usize::MAX, 0, SlabFlags::DEBUG),
        Err(LayoutError::InvalidSize)
    );
    for align in [3, 12, 2 * PAGE_SIZE, usize::MAX] {
        assert_eq!(
            SlabLayout::compute(64, align, SlabFlags::NONE),
            Err(LayoutError::InvalidAlign),
            "align {align}"
        );
    }
}

#[test]
fn cpu_array_limits_follow_enable_cpucache() {
    for (stride, limit) in [
        (8, 120),
        (256, 120),
        (257, 54),
        (1024, 54),
        (1025, 24),
        (PAGE_SIZE, 24),
        (PAGE_SIZE + 1, 8),
        (131_072, 8),
        (131_073, 1),
        (MAX_OBJECT_SIZE, 1),
    ] {
        assert_eq!(cpucache_limit(stride), limit, "stride {stride}");
    }
}
