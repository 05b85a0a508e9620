// SPDX-License-Identifier: GPL-2.0

//! Pieces of rmm's fast paths alone (`parts`): each measured as one
//! out-of-line call in a loop (the `empty` `call` figure is the loop and
//! the call), logged as `case=part impl=NAME`.
//!
//! What the fast paths are made of now: the CPU-local section every object
//! array, page list and counter operation runs in (`with_local`), the page
//! owner word a free reads (`owner_word`), and a cache's whole free
//! validation (`contains`). Two older pieces stay for comparison: the
//! interrupt-safe spinlock round trip the fast paths took before they were
//! CPU-local, which the slow paths still take (`lock`), and the owner
//! lookup with its fallback to the block's head, which the slow paths and
//! `ksize` use (`block_owner`).

use super::objects::RmmCache;
use super::{log, timed, Pages};
use crate::bench_loops::Objects;
use crate::bench_spec::{Record, Selection};
use crate::kernel_layer::percpu::KernelPerCpu;
use crate::kernel_layer::platform::KernelPlatform;
use crate::platform::{Lock, LockClass, PerCpu, Platform};
use core::hint::black_box;
use kernel::prelude::*;

/// An empty CPU-local section that reads its slot: interrupts off, this
/// CPU's per-CPU base loaded `%gs`-relative, the slot read, interrupts back
/// on. Every object array, page list and counter fast path runs in one.
#[inline(never)]
fn part_with_local(percpu: &KernelPerCpu<u64>) -> u64 {
    percpu.with_local(|value| *value)
}

/// A lock and unlock of an interrupt-safe spinlock around an increment, as
/// rmm took one around every per-CPU array or page list operation before
/// they became CPU-local (the slow paths' list and buddy locks are still
/// such locks).
#[inline(never)]
fn part_lock(lock: &<KernelPlatform as Platform>::Lock<u64>) {
    lock.with(|value| *value = value.wrapping_add(1));
}

/// The owner word of an object's page, as the free fast path reads it
/// (radix directory root and leaf, chunk check, the word).
#[inline(never)]
fn part_owner_word(pages: &Pages, obj: *const u8) -> usize {
    pages.owner_word(obj)
}

/// The page owner lookup of the slow paths: the owner word, or for a page
/// without one the covering block's head.
#[inline(never)]
fn part_block_owner(pages: &Pages, obj: *const u8) -> Option<usize> {
    pages.block_owner(obj)
}

/// A cache's whole validation of a free outside debug mode (owner word,
/// tag compare, colour and slab base, offset range, reciprocal index).
#[inline(never)]
fn part_contains(cache: &RmmCache<'_>, obj: *const u8) -> bool {
    cache.cache.contains(cache.pages, obj)
}

/// Times `iters` calls of `body` and logs them as part `name`.
fn log_part(name: &str, iters: u32, mut body: impl FnMut()) -> Result {
    let ns = timed(|| {
        for _ in 0..iters {
            body();
        }
        true
    })?;
    log(Record::new("part", name, iters.into(), ns));
    Ok(())
}

/// What the pieces of rmm's fast paths cost alone.
pub(super) fn parts(selection: &Selection, pages: &Pages) -> Result {
    let iters = selection.pair_iters();
    let platform = pages.platform();
    let percpu = platform.new_percpu(|_| Ok(0u64)).map_err(|_| ENOMEM)?;
    log_part("with_local", iters, || {
        black_box(part_with_local(&percpu));
    })?;
    let lock = platform
        .new_lock(0u64, LockClass::Other)
        .map_err(|_| ENOMEM)?;
    log_part("lock", iters, || part_lock(&lock))?;
    let cache = RmmCache::new(pages, 64, None)?;
    let obj = cache.alloc().ok_or(ENOMEM)?;
    let result = log_part("owner_word", iters, || {
        black_box(part_owner_word(pages, black_box(obj.as_ptr())));
    })
    .and_then(|()| {
        log_part("block_owner", iters, || {
            black_box(part_block_owner(pages, black_box(obj.as_ptr())));
        })
    })
    .and_then(|()| {
        log_part("contains", iters, || {
            black_box(part_contains(&cache, black_box(obj.as_ptr())));
        })
    });
    // SAFETY: Allocated above, not used any more.
    unsafe { cache.free(obj) };
    result
}
