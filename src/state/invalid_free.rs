// SPDX-License-Identifier: GPL-2.0

//! The control file's `invalid-free`: deliberate invalid frees that rmm
//! must detect.

use super::errors::{CtlErrorKind, Missed};
use crate::control::InvalidFree;
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::platform::Platform;
use crate::slab::{KmemCache, SlabFreeError};
use core::ptr::NonNull;

/// What [`invalid_free`] allocated for its test.
enum Borrowed<'a, P: Platform> {
    /// An object of that cache.
    Object(&'a KmemCache<P>, NonNull<u8>),
    /// An order-0 block of the page allocator.
    Block(NonNull<u8>),
    /// Nothing left to give back (the double free's object is free).
    Nothing,
}

/// Performs the invalid free `kind` on `cache` (the control file's
/// `invalid-free`, see the module documentation) and checks that the cache
/// refused it for the kind's reason and counted it. `other` is a live cache
/// other than `cache`, for `wrong-cache`. Returns the reason the cache gave.
///
/// Everything used is allocated here and given back properly once the
/// free was refused, so a detected invalid free leaves only the cache's
/// report line and `errors` count behind. If the free goes undetected, what
/// was allocated is leaked instead: the cache may hold on to it.
pub(super) fn invalid_free<P: Platform>(
    pages: &PageAllocator<P>,
    cache: &KmemCache<P>,
    other: &KmemCache<P>,
    kind: InvalidFree,
) -> Result<SlabFreeError, CtlErrorKind> {
    if kind == InvalidFree::Double && !cache.layout().track_state() {
        return Err(CtlErrorKind::NeedsDebug);
    }
    let no_memory = |_| CtlErrorKind::NoMemory;
    // What to free, the reason the cache must give, and what to give back
    // afterwards.
    let (bad, expected, borrowed) = match kind {
        InvalidFree::Interior => {
            let obj = cache.alloc(pages, Gfp::KERNEL).map_err(no_memory)?;
            // Strictly inside the object: at least 1, less than its size
            // (which is at most the slot stride) from its start.
            let inside = (cache.object_size() / 2).max(1);
            let Some(bad) = NonNull::new(obj.as_ptr().wrapping_add(inside)) else {
                // Not reachable: no object ends at the top of the address
                // space. Give it back and fail rather than panic.
                // SAFETY: `obj` was allocated from `cache` above and is used
                // by nothing else.
                let _ = unsafe { cache.free(pages, obj) };
                return Err(CtlErrorKind::NoMemory);
            };
            (
                bad,
                SlabFreeError::NotAnObject,
                Borrowed::Object(cache, obj),
            )
        }
        InvalidFree::Foreign => {
            let block = pages.alloc_pages(0, Gfp::KERNEL).map_err(no_memory)?;
            (block, SlabFreeError::NotFromCache, Borrowed::Block(block))
        }
        InvalidFree::WrongCache => {
            let obj = other.alloc(pages, Gfp::KERNEL).map_err(no_memory)?;
            (
                obj,
                SlabFreeError::NotFromCache,
                Borrowed::Object(other, obj),
            )
        }
        InvalidFree::Double => {
            let obj = cache.alloc(pages, Gfp::KERNEL).map_err(no_memory)?;
            // SAFETY: `obj` was allocated from `cache` above and is used by
            // nothing else; from now on only the double free below passes
            // it again.
            let _ = unsafe { cache.free(pages, obj) };
            (obj, SlabFreeError::DoubleFree, Borrowed::Nothing)
        }
    };
    let errors_before = cache.stats().errors;
    // SAFETY: `bad` is no allocated object of `cache`, which is live and
    // which nothing destroys meanwhile (the caller holds the state):
    // `interior` points inside an object, `foreign` to a page block,
    // `wrong-cache` to another cache's object; the `free` contract lets
    // such pointers be passed, to be refused. `double` passes an object
    // that is already free, which the contract allows in debug mode only
    // (checked above); and it is still free: every user of rmm's caches
    // goes through the state the caller holds, so nothing allocated it
    // again in between. Should the cache accept it all the same (the
    // regression this command exists to show), nothing here uses `bad` or
    // what it points into again: what was borrowed is not given back.
    let result = unsafe { cache.free(pages, bad) };
    let got = match result {
        Ok(()) => return Err(CtlErrorKind::Undetected(Missed::Accepted)),
        Err(got) => got,
    };
    match borrowed {
        // SAFETY: `obj` was allocated from `owner` above and is used by
        // nothing else; the cache refused the invalid free, so it does not
        // hold `obj` either.
        Borrowed::Object(owner, obj) => drop(unsafe { owner.free(pages, obj) }),
        // SAFETY: `block` was allocated at order 0 above and is used by
        // nothing else (the cache refused it).
        Borrowed::Block(block) => drop(unsafe { pages.free_pages(block, 0) }),
        Borrowed::Nothing => {}
    }
    if got != expected {
        return Err(CtlErrorKind::Undetected(Missed::WrongReason {
            got,
            expected,
        }));
    }
    if cache.stats().errors == errors_before {
        return Err(CtlErrorKind::Undetected(Missed::NotCounted));
    }
    Ok(got)
}
