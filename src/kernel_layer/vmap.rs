// SPDX-License-Identifier: GPL-2.0

//! The kernel's mapping service for rmm's vmalloc ([`crate::vmalloc`]):
//! `vmap` and `vunmap`, and the frame numbers the views show.
//!
//! `vmap` wants an array of `struct page` pointers; rmm's pages are known
//! by their addresses in the kernel's direct map, so each is converted
//! (`virt_to_page`, a C helper over the whole array) into a temporary
//! array: on the stack for small areas, from `kvmalloc` otherwise. `vmap`
//! does not keep the array (no `VM_MAP_PUT_PAGES`): the area's pages stay
//! rmm's, and `vunmap` only removes the mapping. `vmap` reserves a guard
//! page after the range, as `vmalloc` does, and records the helper
//! `rmm_vmap` as the area's caller in `/proc/vmallocinfo`.

use super::bindings;
use core::ptr::{null_mut, NonNull};
use kernel::alloc::{flags, KVVec};

/// Areas of at most this many pages are converted in an array on the
/// stack (512 bytes) rather than in a temporary allocation.
const STACK_PAGES: usize = 64;

/// Maps `pages` (direct-map addresses of pages) in order into one range
/// of the vmalloc space; `None` if the kernel cannot.
///
/// Must be called where sleeping is allowed (`vmap` may sleep).
pub(super) fn map_pages(pages: &[NonNull<u8>]) -> Option<NonNull<u8>> {
    if pages.is_empty() {
        return None;
    }
    if pages.len() <= STACK_PAGES {
        let mut array = [null_mut::<bindings::page>(); STACK_PAGES];
        map_with(pages, &mut array[..pages.len()])
    } else {
        let mut array = KVVec::from_elem(null_mut(), pages.len(), flags::GFP_KERNEL).ok()?;
        map_with(pages, &mut array)
    }
}

/// [`map_pages`] with `array`, as long as `pages`, for the page pointers.
fn map_with(pages: &[NonNull<u8>], array: &mut [*mut bindings::page]) -> Option<NonNull<u8>> {
    let count = u32::try_from(pages.len()).ok()?;
    if array.len() != pages.len() {
        return None;
    }
    // SAFETY: `array` has room for `count` pointers and `pages` holds
    // `count` addresses (`NonNull<u8>` has the layout of a `void *`), each
    // the direct-map address of a page of rmm's pool (taken from the
    // kernel's page allocator), for which `virt_to_page` is valid.
    unsafe { bindings::rmm_virt_to_pages(array.as_mut_ptr(), pages.as_ptr().cast(), count) };
    // SAFETY: `array` holds `count` valid `struct page` pointers; `vmap`
    // only reads it (no `VM_MAP_PUT_PAGES`), and may sleep, which the
    // caller allows.
    let addr = unsafe { bindings::rmm_vmap(array.as_mut_ptr(), count) };
    NonNull::new(addr.cast())
}

/// Removes a mapping made by [`map_pages`].
///
/// # Safety
///
/// `addr` came from [`map_pages`], is still mapped, and nothing uses the
/// mapping afterwards; the caller may sleep.
pub(super) unsafe fn unmap_pages(addr: NonNull<u8>) {
    // SAFETY: per the caller, a live `vmap` area nothing uses; `vunmap`
    // may sleep, which the caller allows.
    unsafe { bindings::vunmap(addr.as_ptr().cast()) };
}

/// The frame number of the page at `page`, a direct-map address.
pub(super) fn page_frame(page: NonNull<u8>) -> usize {
    // SAFETY: a direct-map address of a page (the platform contract), for
    // which `virt_to_page` is valid.
    unsafe { bindings::rmm_virt_to_pfn(page.as_ptr().cast()) as usize }
}

/// The frame number mapped at `addr` in a `vmap` area (a page-table walk);
/// `None` if nothing is mapped there.
pub(super) fn mapped_frame(addr: NonNull<u8>) -> Option<usize> {
    // SAFETY: `vmalloc_to_pfn` accepts any address of the vmalloc space
    // and returns 0 where no page is mapped.
    let pfn = unsafe { bindings::vmalloc_to_pfn(addr.as_ptr().cast()) };
    (pfn != 0).then_some(pfn as usize)
}
