// SPDX-License-Identifier: GPL-2.0

//! Tests of the buddy core on frame numbers alone (no page memory; chunk
//! metadata comes from the host platform's `alloc_meta`).

use proptest::prelude::*;
use rmm_core::buddy::{
    AddChunkError, BlockInfo, BuddyCore, ChunkMeta, EvictedChunk, FrameFreeError, RadixLeaf,
    CHUNK_FRAMES, LEAF_ENTRIES, MAX_ORDER, NR_ORDERS,
};
use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::platform::Platform;
use std::collections::BTreeMap;

/// A core plus the platform its memory comes from; destroys the core and
/// checks that no metadata leaked when dropped.
struct Core {
    core: BuddyCore,
    platform: HostPlatform,
}

impl Core {
    fn new(max_chunks: usize) -> Self {
        let platform = HostPlatform::new(1);
        let core = BuddyCore::new(&platform, max_chunks, Gfp::KERNEL).expect("table");
        Core { core, platform }
    }

    /// Adds a chunk, allocating metadata and radix leaves only when the
    /// core asks for them.
    fn add(&mut self, base_frame: usize) -> Result<(), AddChunkError> {
        let mut spare = None;
        let mut leaf = None;
        let mut result;
        loop {
            // SAFETY: spares come from this platform with the right layouts
            // and are initialised.
            result = unsafe { self.core.add_chunk(base_frame, &mut spare, &mut leaf) };
            match result {
                Err(AddChunkError::NeedMeta) if spare.is_none() => {
                    let mem = self
                        .platform
                        .alloc_meta(ChunkMeta::LAYOUT, Gfp::KERNEL)
                        .expect("meta");
                    // SAFETY: fresh allocation of the layout.
                    spare = Some(unsafe { ChunkMeta::init(mem) });
                }
                Err(AddChunkError::NeedLeaf) if leaf.is_none() => {
                    let mem = self
                        .platform
                        .alloc_meta(RadixLeaf::LAYOUT, Gfp::KERNEL)
                        .expect("leaf");
                    // SAFETY: fresh allocation of the layout.
                    leaf = Some(unsafe { RadixLeaf::init(mem) });
                }
                _ => break,
            }
        }
        if let Some(meta) = spare {
            // SAFETY: allocated above, not taken by the core.
            unsafe { self.platform.free_meta(meta.cast(), ChunkMeta::LAYOUT) };
        }
        if let Some(leaf) = leaf {
            // SAFETY: allocated above, not taken by the core.
            unsafe { self.platform.free_meta(leaf.cast(), RadixLeaf::LAYOUT) };
        }
        result
    }

    fn check(&self) {
        self.core.check_invariants().expect("core invariants");
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // SAFETY: same platform, all metadata from it, the core is not used
        // afterwards.
        unsafe { self.core.destroy(&self.platform) };
        assert_eq!(self.platform.meta_outstanding(), 0, "metadata leaked");
    }
}

const BASE: usize = 7 * CHUNK_FRAMES;

fn whole_chunks(count: usize) -> [usize; NR_ORDERS] {
    let mut expected = [0; NR_ORDERS];
    expected[MAX_ORDER as usize] = count;
    expected
}

#[test]
fn every_order_is_aligned_and_merges_back() {
    let mut c = Core::new(4);
    c.add(BASE).unwrap();
    for order in 0..=MAX_ORDER {
        let frame = c.core.alloc(order).expect("alloc");
        assert_eq!(frame % (1 << order), 0, "order {order} misaligned");
        assert!(frame >= BASE && frame + (1 << order) <= BASE + CHUNK_FRAMES);
        assert_eq!(
            c.core.block_of(frame + (1 << order) - 1),
            Some(BlockInfo {
                head: frame,
                order,
                free: false
            })
        );
        assert_eq!(c.core.free_frames(), CHUNK_FRAMES - (1 << order));
        c.check();
        c.core.free(frame, order).unwrap();
        c.check();
        assert_eq!(c.core.free_blocks(), whole_chunks(1));
    }
    assert_eq!(c.core.alloc(MAX_ORDER + 1), None);
}

#[test]
fn split_puts_one_half_on_every_lower_list() {
    let mut c = Core::new(4);
    c.add(BASE).unwrap();
    let frame = c.core.alloc(0).unwrap();
    assert_eq!(frame, BASE, "lowest half is kept");
    let mut expected = [1; NR_ORDERS];
    expected[MAX_ORDER as usize] = 0;
    assert_eq!(c.core.free_blocks(), expected);
    // The next order-3 block comes from the order-3 free half, not a split
    // of something larger.
    let order3 = c.core.alloc(3).unwrap();
    assert_eq!(order3, BASE + 8);
    expected[3] = 0;
    assert_eq!(c.core.free_blocks(), expected);
    c.check();
    c.core.free(frame, 0).unwrap();
    c.core.free(order3, 3).unwrap();
    assert_eq!(c.core.free_blocks(), whole_chunks(1));
}

#[test]
fn exhaustion_and_recovery_in_every_free_order() {
    let mut c = Core::new(4);
    c.add(BASE).unwrap();
    c.add(BASE + 5 * CHUNK_FRAMES).unwrap();
    let mut frames: Vec<usize> = (0..2 * CHUNK_FRAMES)
        .map(|_| c.core.alloc(0).expect("page"))
        .collect();
    assert_eq!(c.core.alloc(0), None);
    assert_eq!(c.core.free_frames(), 0);
    assert_eq!(c.core.free_blocks(), [0; NR_ORDERS]);
    let mut sorted = frames.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 2 * CHUNK_FRAMES, "a frame handed out twice");
    // Free in a scrambled order; everything must merge back.
    let len = frames.len();
    for i in 0..len {
        frames.swap(i, (i * 7919 + 13) % len);
    }
    for (i, frame) in frames.iter().enumerate() {
        c.core.free(*frame, 0).unwrap();
        if i.is_multiple_of(97) {
            c.check();
        }
    }
    c.check();
    assert_eq!(c.core.free_blocks(), whole_chunks(2));
    // Exhaust with the largest order, then recover one block.
    let a = c.core.alloc(MAX_ORDER).unwrap();
    let b = c.core.alloc(MAX_ORDER).unwrap();
    assert_eq!(c.core.alloc(0), None);
    c.core.free(b, MAX_ORDER).unwrap();
    assert!(c.core.alloc(5).is_some());
    c.core.free(a, MAX_ORDER).unwrap();
}

#[test]
fn invalid_frees_are_refused_and_change_nothing() {
    let mut c = Core::new(4);
    c.add(BASE).unwrap();
    let order2 = c.core.alloc(2).unwrap();
    let order0 = c.core.alloc(0).unwrap();
    let freed = c.core.alloc(1).unwrap();
    c.core.free(freed, 1).unwrap();
    let before = c.core.free_blocks();
    let blocks_before: Vec<_> = (BASE..BASE + 16).map(|f| c.core.block_of(f)).collect();
    let cases = [
        (BASE + CHUNK_FRAMES, 0, FrameFreeError::OutsideChunks),
        (BASE - 1, 0, FrameFreeError::OutsideChunks),
        (order2 + 1, 0, FrameFreeError::NotBlockHead),
        (order2 + 2, 1, FrameFreeError::NotBlockHead),
        (order2, 1, FrameFreeError::WrongOrder { actual: 2 }),
        (order2, 3, FrameFreeError::WrongOrder { actual: 2 }),
        (order0, 1, FrameFreeError::WrongOrder { actual: 0 }),
        (freed, 1, FrameFreeError::AlreadyFree),
        (BASE + 512, MAX_ORDER - 1, FrameFreeError::AlreadyFree),
        (BASE + 513, 0, FrameFreeError::AlreadyFree),
        (order2, MAX_ORDER + 1, FrameFreeError::BadOrder),
        (order2, u32::MAX, FrameFreeError::BadOrder),
    ];
    for (frame, order, expected) in cases {
        assert_eq!(
            c.core.free(frame, order),
            Err(expected),
            "free({frame}, {order})"
        );
        assert_eq!(c.core.free_blocks(), before);
        c.check();
    }
    let blocks_after: Vec<_> = (BASE..BASE + 16).map(|f| c.core.block_of(f)).collect();
    assert_eq!(blocks_before, blocks_after);
    // Double free after a valid free.
    c.core.free(order0, 0).unwrap();
    assert_eq!(c.core.free(order0, 0), Err(FrameFreeError::AlreadyFree));
    c.core.free(order2, 2).unwrap();
    assert_eq!(c.core.free(order2, 2), Err(FrameFreeError::AlreadyFree));
    assert_eq!(c.core.free_blocks(), whole_chunks(1));
    c.check();
}

/// The lookup-free entry points: `alloc_block` names the block's chunk
/// metadata, the one `free_in_chunk` takes back, and metadata of no chunk
/// of this core is refused without a change.
#[test]
fn alloc_block_names_its_chunk_and_free_in_chunk_checks_it() {
    let mut c = Core::new(4);
    c.add(BASE).unwrap();
    c.add(BASE + 3 * CHUNK_FRAMES).unwrap();
    let mut other = Core::new(1);
    other.add(BASE).unwrap();
    let foreign = other.core.alloc_block(0, 0).unwrap();
    let mut blocks = Vec::new();
    for order in 0..=MAX_ORDER {
        let block = c.core.alloc_block(order, 0).unwrap();
        let meta = c.core.table().lookup(block.frame).unwrap();
        assert!(std::ptr::eq(block.meta.as_ptr(), meta), "order {order}");
        assert_eq!(
            c.core.block_of(block.frame),
            Some(BlockInfo {
                head: block.frame,
                order,
                free: false
            })
        );
        blocks.push((block, order));
    }
    c.check();
    let before = c.core.free_blocks();
    let (first, _) = blocks[0];
    // SAFETY: the metadata of `other`'s live chunk, which outlives this use.
    let foreign_meta = unsafe { foreign.meta.as_ref() };
    let offset = first.frame % CHUNK_FRAMES;
    assert_eq!(
        c.core.free_in_chunk(foreign_meta, offset, 0),
        Err(FrameFreeError::OutsideChunks)
    );
    // SAFETY: the metadata of this core's live chunk.
    let meta = unsafe { first.meta.as_ref() };
    assert_eq!(
        c.core.free_in_chunk(meta, offset, 1),
        Err(FrameFreeError::WrongOrder { actual: 0 })
    );
    assert_eq!(
        c.core.free_in_chunk(meta, offset, MAX_ORDER + 1),
        Err(FrameFreeError::BadOrder)
    );
    assert_eq!(c.core.free_blocks(), before);
    for (block, order) in blocks {
        // SAFETY: as above.
        let meta = unsafe { block.meta.as_ref() };
        c.core
            .free_in_chunk(meta, block.frame % CHUNK_FRAMES, order)
            .unwrap();
        assert_eq!(
            c.core
                .free_in_chunk(meta, block.frame % CHUNK_FRAMES, order),
            Err(FrameFreeError::AlreadyFree)
        );
        c.check();
    }
    assert_eq!(c.core.free_blocks(), whole_chunks(2));
    other.core.free(foreign.frame, 0).unwrap();
}

#[test]
fn add_chunk_errors() {
    let mut c = Core::new(2);
    assert_eq!(c.add(BASE + 1), Err(AddChunkError::Misaligned));
    c.add(BASE).unwrap();
    assert_eq!(c.add(BASE), Err(AddChunkError::Duplicate));
    let (mut no_meta, mut no_leaf) = (None, None);
    // SAFETY: nothing offered.
    let result = unsafe {
        c.core
            .add_chunk(BASE + CHUNK_FRAMES, &mut no_meta, &mut no_leaf)
    };
    assert_eq!(result, Err(AddChunkError::NeedMeta));
    // A chunk in another 32 GiB range of addresses needs a leaf first.
    // SAFETY: nothing offered.
    let result = unsafe {
        c.core.add_chunk(
            BASE + LEAF_ENTRIES * CHUNK_FRAMES,
            &mut no_meta,
            &mut no_leaf,
        )
    };
    assert_eq!(result, Err(AddChunkError::NeedLeaf));
    c.add(BASE + CHUNK_FRAMES).unwrap();
    assert_eq!(
        c.add(BASE + 2 * CHUNK_FRAMES),
        Err(AddChunkError::TableFull)
    );
    assert_eq!(c.core.chunks(), 2);
    assert_eq!(c.core.total_frames(), 2 * CHUNK_FRAMES);
    c.check();
}

#[test]
fn take_free_chunk_only_takes_wholly_free_chunks_and_reuses_metadata() {
    let mut c = Core::new(2);
    c.add(BASE).unwrap();
    c.add(BASE + CHUNK_FRAMES).unwrap();
    let metas = c.platform.meta_outstanding();
    let page = c.core.alloc(0).unwrap();
    let busy_chunk = page - page % CHUNK_FRAMES;
    let taken = c.core.take_free_chunk().expect("one chunk is free");
    assert_ne!(taken, busy_chunk);
    assert_eq!(c.core.take_free_chunk(), None);
    assert!(c.core.table().lookup(taken).is_none());
    assert!(c.core.table().lookup(taken + CHUNK_FRAMES - 1).is_none());
    assert!(c.core.table().lookup(page).is_some());
    assert_eq!(c.core.free(taken, 0), Err(FrameFreeError::OutsideChunks));
    c.check();
    // A new chunk takes the tombstoned slot with its metadata.
    c.add(BASE + 40 * CHUNK_FRAMES).unwrap();
    assert_eq!(c.platform.meta_outstanding(), metas);
    c.check();
    c.core.free(page, 0).unwrap();
    assert_eq!(c.core.free_blocks(), whole_chunks(2));
    let mut left = vec![
        c.core.take_free_chunk().unwrap(),
        c.core.take_free_chunk().unwrap(),
    ];
    left.sort_unstable();
    assert_eq!(left, [busy_chunk, BASE + 40 * CHUNK_FRAMES]);
    assert_eq!(c.core.chunks(), 0);
    assert_eq!(c.core.free_blocks(), [0; NR_ORDERS]);
    c.check();
}

#[test]
fn evict_chunk_counts_allocated_frames() {
    let mut c = Core::new(4);
    c.add(BASE).unwrap();
    c.core.alloc(3).unwrap();
    c.core.alloc(0).unwrap();
    assert_eq!(
        c.core.evict_chunk(),
        Some(EvictedChunk {
            base_frame: BASE,
            allocated_frames: 9
        })
    );
    assert_eq!(c.core.evict_chunk(), None);
    assert_eq!(c.core.free_blocks(), [0; NR_ORDERS]);
    c.check();
    // The slot is reusable afterwards.
    c.add(BASE).unwrap();
    assert_eq!(c.core.free_blocks(), whole_chunks(1));
    c.check();
}

#[test]
fn chunk_table_survives_churn_with_colliding_chunks() {
    let mut c = Core::new(64);
    // Chunk numbers that are multiples of a power of two stress the hash.
    let bases: Vec<usize> = (1..=64).map(|i| (i << 16) * CHUNK_FRAMES).collect();
    for &base in &bases {
        c.add(base).unwrap();
    }
    for &base in &bases {
        assert!(c.core.table().lookup(base + 3).is_some());
        assert!(c.core.table().lookup(base + CHUNK_FRAMES).is_none());
    }
    c.check();
    for _ in 0..10 {
        // Take everything out and put a shifted set in, many times over.
        while c.core.take_free_chunk().is_some() {}
        assert_eq!(c.core.chunks(), 0);
        for &base in &bases {
            assert!(c.core.table().lookup(base).is_none());
        }
        for &base in &bases {
            c.add(base).unwrap();
        }
        c.check();
    }
    let mut seen = Vec::new();
    c.core.for_each_chunk(|base| seen.push(base));
    seen.sort_unstable();
    assert_eq!(seen, bases);
}

/// Free blocks the core must have for a given set of allocated blocks: the
/// maximal aligned free blocks (a free block whose parent has an allocated
/// frame), computed from the model alone.
fn expected_buddyinfo(chunks: &[usize], live: &BTreeMap<usize, u32>) -> [usize; NR_ORDERS] {
    fn walk(start: usize, order: u32, live: &BTreeMap<usize, u32>, out: &mut [usize; NR_ORDERS]) {
        let end = start + (1 << order);
        let overlapping = live
            .range(..end)
            .next_back()
            .filter(|(&head, &o)| head + (1 << o) > start);
        match overlapping {
            None => out[order as usize] += 1,
            Some((&head, &o)) if head == start && o == order => {}
            Some(_) => {
                walk(start, order - 1, live, out);
                walk(start + (1 << (order - 1)), order - 1, live, out);
            }
        }
    }
    let mut out = [0; NR_ORDERS];
    for &chunk in chunks {
        walk(chunk, MAX_ORDER, live, &mut out);
    }
    out
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32, bool),
    Free(usize),
    FreeWrong(usize, u32),
    AddChunk(usize),
    TakeFreeChunks,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..=MAX_ORDER, any::<bool>()).prop_map(|(o, b)| Op::Alloc(o, b)),
        // Small orders are the common case.
        4 => (0u32..4, any::<bool>()).prop_map(|(o, b)| Op::Alloc(o, b)),
        8 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 0..=MAX_ORDER + 1).prop_map(|(i, o)| Op::FreeWrong(i, o)),
        1 => (0usize..6).prop_map(Op::AddChunk),
        1 => Just(Op::TakeFreeChunks),
    ]
}

proptest! {
    #[test]
    fn model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut c = Core::new(4);
        let mut chunks: Vec<usize> = vec![3 * CHUNK_FRAMES, 14 * CHUNK_FRAMES];
        for &base in &chunks {
            prop_assert_eq!(c.add(base), Ok(()));
        }
        let mut live: BTreeMap<usize, u32> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Alloc(order, by_block) => {
                    let can = c.core.free_blocks()[order as usize..].iter().any(|&n| n > 0);
                    let got = if by_block {
                        c.core.alloc_block(order, 0).map(|block| {
                            let meta = c.core.table().lookup(block.frame);
                            assert!(meta.is_some_and(|meta| std::ptr::eq(meta, block.meta.as_ptr())));
                            block.frame
                        })
                    } else {
                        c.core.alloc(order)
                    };
                    match got {
                        Some(frame) => {
                            prop_assert!(can);
                            prop_assert_eq!(frame % (1 << order), 0);
                            let chunk = frame - frame % CHUNK_FRAMES;
                            prop_assert!(chunks.contains(&chunk));
                            prop_assert!(live.insert(frame, order).is_none());
                        }
                        None => prop_assert!(!can, "alloc failed with a block free"),
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let (&frame, &order) = live.iter().nth(i % live.len()).unwrap();
                    if i % 2 == 0 {
                        prop_assert_eq!(c.core.free(frame, order), Ok(()));
                    } else {
                        let meta: *const _ = c.core.table().lookup(frame).unwrap();
                        // SAFETY: metadata stays valid until the core is
                        // destroyed.
                        let meta = unsafe { &*meta };
                        prop_assert_eq!(c.core.free_in_chunk(meta, frame % CHUNK_FRAMES, order), Ok(()));
                    }
                    live.remove(&frame);
                }
                Op::Free(_) => {}
                Op::FreeWrong(i, order) => {
                    let before = c.core.free_blocks();
                    if let Some((&frame, &actual)) = live.iter().nth(i % live.len().max(1)) {
                        if order != actual {
                            prop_assert!(c.core.free(frame, order).is_err());
                        }
                        if actual > 0 {
                            prop_assert_eq!(
                                c.core.free(frame + 1, 0),
                                Err(FrameFreeError::NotBlockHead)
                            );
                        }
                    } else if let Some(&chunk) = chunks.first() {
                        prop_assert_eq!(c.core.free(chunk, 0), Err(FrameFreeError::AlreadyFree));
                    }
                    prop_assert_eq!(c.core.free_blocks(), before);
                }
                Op::AddChunk(n) => {
                    let base = (3 + n * 11) * CHUNK_FRAMES;
                    let result = c.add(base);
                    if chunks.contains(&base) {
                        prop_assert_eq!(result, Err(AddChunkError::Duplicate));
                    } else if chunks.len() == 4 {
                        prop_assert_eq!(result, Err(AddChunkError::TableFull));
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        chunks.push(base);
                    }
                }
                Op::TakeFreeChunks => {
                    while let Some(base) = c.core.take_free_chunk() {
                        prop_assert!(!live.keys().any(|&f| f - f % CHUNK_FRAMES == base));
                        let index = chunks.iter().position(|&b| b == base);
                        prop_assert!(index.is_some());
                        chunks.swap_remove(index.unwrap());
                    }
                    for &chunk in &chunks {
                        prop_assert!(live.keys().any(|&f| f - f % CHUNK_FRAMES == chunk));
                    }
                }
            }
            // Live blocks never overlap.
            let mut end = 0;
            for (&frame, &order) in &live {
                prop_assert!(frame >= end, "blocks overlap at {}", frame);
                end = frame + (1 << order);
            }
            // Free + allocated = total.
            let allocated: usize = live.values().map(|&o| 1usize << o).sum();
            prop_assert_eq!(c.core.free_frames() + allocated, chunks.len() * CHUNK_FRAMES);
            prop_assert_eq!(c.core.total_frames(), chunks.len() * CHUNK_FRAMES);
            // Alignment, merging, list and count consistency.
            prop_assert_eq!(c.core.check_invariants(), Ok(()));
            // The free blocks are exactly the maximal free aligned blocks.
            prop_assert_eq!(c.core.free_blocks(), expected_buddyinfo(&chunks, &live));
            for (&frame, &order) in live.iter().take(8) {
                prop_assert_eq!(
                    c.core.block_of(frame + (1 << order) - 1),
                    Some(BlockInfo { head: frame, order, free: false })
                );
            }
        }
    }
}

/// The directory is indexed by address bits, not hashed: chunks that share
/// the low 48 address bits but differ above alias in it, and the lookup must
/// still tell them apart; chunks far apart get leaves of their own.
#[test]
fn radix_directory_tells_aliases_apart() {
    let mut c = Core::new(4);
    // 2^36 frames = 2^48 bytes: the same directory position.
    let alias = BASE + (1usize << 36);
    c.add(BASE).unwrap();
    assert_eq!(c.core.table().leaves(), 1);
    assert!(c.core.table().lookup(BASE).is_some());
    assert!(c.core.table().lookup(alias).is_none());
    assert_eq!(c.core.block_of(alias), None);
    let far = BASE + 3 * LEAF_ENTRIES * CHUNK_FRAMES;
    c.add(far).unwrap();
    assert_eq!(c.core.table().leaves(), 2);
    assert!(c.core.table().lookup(far + 17).is_some());
    assert!(c.core.table().lookup(far + CHUNK_FRAMES).is_none());
    c.check();
}
