// SPDX-License-Identifier: GPL-2.0

//! The control file's named vmalloc areas: `vmalloc NAME SIZE` and
//! `vfree NAME`.
//!
//! [`VmAreas`] keeps the areas the control file made, each under its name
//! (the same rules as cache names: 1 to 31 characters of `A-Za-z0-9_.-`;
//! areas and caches have separate names), in address order as
//! `/proc/vmallocinfo` lists them, at most [`MAX_AREAS`]. The executor
//! functions ([`VmAreas::vmalloc`], [`VmAreas::vfree`]) are called by
//! [`crate::state::Rmm::execute`]; their errors ([`AreaError`]) carry their
//! error numbers:
//!
//! - `vmalloc NAME SIZE`: `-EEXIST` if an area of that name exists,
//!   `-ENOSPC` with [`MAX_AREAS`] areas, `-ENOMEM` if the pages, the
//!   bookkeeping or the mapping cannot be had (nothing is kept then);
//! - `vfree NAME`: `-ENOENT` if there is no area of that name.
//!
//! [`VmAreas::free_all`] frees every area at unload.

use crate::control::MAX_NAME;
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::platform::Platform;
use crate::vmalloc::{self, VmArea, VmallocError};
use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Most areas the control file may hold at once.
pub const MAX_AREAS: usize = 64;

/// Why a `vmalloc` or `vfree` command failed. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaError {
    /// An area of that name exists (`-EEXIST`).
    Exists,
    /// No area has that name (`-ENOENT`).
    Unknown,
    /// [`MAX_AREAS`] areas exist already (`-ENOSPC`).
    TooMany,
    /// No bookkeeping memory for the area's record (`-ENOMEM`).
    NoMemory,
    /// vmalloc failed (`-ENOMEM`, or `-EINVAL` for a bad request).
    Vmalloc(VmallocError),
}

impl AreaError {
    /// The error number, positive.
    pub fn errno(&self) -> i32 {
        use crate::state::errno;
        match self {
            AreaError::Exists => errno::EEXIST,
            AreaError::Unknown => errno::ENOENT,
            AreaError::TooMany => errno::ENOSPC,
            AreaError::Vmalloc(VmallocError::BadRequest) => errno::EINVAL,
            AreaError::NoMemory | AreaError::Vmalloc(_) => errno::ENOMEM,
        }
    }
}

impl fmt::Display for AreaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AreaError::Exists => f.write_str("an area of that name exists"),
            AreaError::Unknown => f.write_str("no such area"),
            AreaError::TooMany => write!(f, "too many areas (at most {MAX_AREAS})"),
            AreaError::NoMemory => f.write_str("out of memory"),
            AreaError::Vmalloc(error) => write!(f, "{error}"),
        }
    }
}

/// What the control file's areas did since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AreaStats {
    /// Areas held now.
    pub areas: usize,
    /// Pages in them.
    pub pages: usize,
    /// Successful `vmalloc` commands.
    pub vmallocs: u64,
    /// Successful `vfree` commands (and areas freed at unload).
    pub vfrees: u64,
    /// `vmalloc` commands that failed for lack of memory or mapping.
    pub failures: u64,
}

/// An area's name (checked by the parser: at most [`MAX_NAME`] bytes).
#[derive(Clone, Copy)]
struct AreaName {
    bytes: [u8; MAX_NAME],
    len: usize,
}

impl AreaName {
    fn new(name: &str) -> Self {
        let len = name.len().min(MAX_NAME);
        let mut bytes = [0; MAX_NAME];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        AreaName { bytes, len }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

/// One named area in bookkeeping memory, linked into [`VmAreas`]' list.
struct AreaNode {
    name: AreaName,
    area: VmArea,
    next: Option<NonNull<AreaNode>>,
}

/// The named areas of the control file.
///
/// # Invariants
///
/// `head` starts a chain of `count` (at most [`MAX_AREAS`]) distinct
/// `AreaNode`s linked by `next`, each from `alloc_meta` of the platform of
/// the page allocator the areas came from, with `AreaNode`'s layout, owned
/// by this value and referenced from nowhere else, in increasing order of
/// address; their names are distinct; `pages` is the sum of their pages.
pub struct VmAreas<P: Platform> {
    head: Option<NonNull<AreaNode>>,
    count: usize,
    pages: usize,
    vmallocs: u64,
    vfrees: u64,
    failures: u64,
    _platform: PhantomData<P>,
}

// SAFETY: the list owns its nodes, which own their areas (`Send`).
unsafe impl<P: Platform> Send for VmAreas<P> {}
// SAFETY: shared access only reads the nodes.
unsafe impl<P: Platform> Sync for VmAreas<P> {}

impl<P: Platform> Default for VmAreas<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Platform> VmAreas<P> {
    const NODE_LAYOUT: Layout = Layout::new::<AreaNode>();

    /// No areas.
    pub const fn new() -> Self {
        // INVARIANT: an empty list.
        VmAreas {
            head: None,
            count: 0,
            pages: 0,
            vmallocs: 0,
            vfrees: 0,
            failures: 0,
            _platform: PhantomData,
        }
    }

    fn nodes(&self) -> impl Iterator<Item = &AreaNode> + '_ {
        let mut next = self.head;
        core::iter::from_fn(move || {
            let node = next?;
            // SAFETY: by the invariants `node` is a live node owned by
            // `self`, which is borrowed shared for the iterator's life.
            let node = unsafe { node.as_ref() };
            next = node.next;
            Some(node)
        })
    }

    /// The areas with their names, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &VmArea)> + '_ {
        self.nodes().map(|node| (node.name.as_str(), &node.area))
    }

    /// The area named `name`.
    pub fn get(&self, name: &str) -> Option<&VmArea> {
        self.iter()
            .find(|(found, _)| *found == name)
            .map(|(_, area)| area)
    }

    /// Counters of the control file's areas.
    pub fn stats(&self) -> AreaStats {
        AreaStats {
            areas: self.count,
            pages: self.pages,
            vmallocs: self.vmallocs,
            vfrees: self.vfrees,
            failures: self.failures,
        }
    }

    /// `vmalloc NAME SIZE`: allocates an area of `size` bytes from `pages`
    /// with `GFP_KERNEL` and keeps it as `name`. Returns its pages.
    pub fn vmalloc(
        &mut self,
        pages: &PageAllocator<P>,
        name: &str,
        size: usize,
    ) -> Result<usize, AreaError> {
        if self.get(name).is_some() {
            return Err(AreaError::Exists);
        }
        if self.count >= MAX_AREAS {
            return Err(AreaError::TooMany);
        }
        let platform = pages.platform();
        let node = platform
            .alloc_meta(Self::NODE_LAYOUT, Gfp::KERNEL)
            .ok_or(AreaError::NoMemory)?
            .cast::<AreaNode>();
        let area = match vmalloc::vmalloc(pages, size, Gfp::KERNEL) {
            Ok(area) => area,
            Err(error) => {
                // SAFETY: allocated above with this layout, never used.
                unsafe { platform.free_meta(node.cast(), Self::NODE_LAYOUT) };
                if error != VmallocError::BadRequest {
                    self.failures += 1;
                }
                return Err(AreaError::Vmalloc(error));
            }
        };
        let nr_pages = area.nr_pages();
        let addr = area.addr();
        // Find the link after which the new node keeps the address order.
        let mut link = &mut self.head;
        while let Some(next) = *link {
            // SAFETY: a live node of ours (invariants), and `self` is
            // borrowed exclusively, so its link may be changed.
            let next = unsafe { &mut *next.as_ptr() };
            if next.area.addr() > addr {
                break;
            }
            link = &mut next.next;
        }
        // SAFETY: a fresh allocation with the node's layout.
        unsafe {
            node.as_ptr().write(AreaNode {
                name: AreaName::new(name),
                area,
                next: *link,
            })
        };
        // INVARIANT: a new node with a new name, linked in address order;
        // the count stays within the limit and `pages` follows.
        *link = Some(node);
        self.count += 1;
        self.pages += nr_pages;
        self.vmallocs += 1;
        Ok(nr_pages)
    }

    /// `vfree NAME`: unmaps and frees the area `name`. Returns its pages.
    pub fn vfree(&mut self, pages: &PageAllocator<P>, name: &str) -> Result<usize, AreaError> {
        let mut link = &mut self.head;
        while let Some(node) = *link {
            // SAFETY: a live node of ours (invariants).
            let found = unsafe { node.as_ref() }.name.as_str() == name;
            if found {
                // SAFETY: as above.
                *link = unsafe { node.as_ref() }.next;
                return Ok(self.release(pages, node));
            }
            // SAFETY: a live node of ours, and `self` is borrowed
            // exclusively, so its link may be changed.
            link = unsafe { &mut (*node.as_ptr()).next };
        }
        Err(AreaError::Unknown)
    }

    /// Frees a node already taken off the list, and its area; returns the
    /// area's pages.
    fn release(&mut self, pages: &PageAllocator<P>, node: NonNull<AreaNode>) -> usize {
        // SAFETY: the node was a live node of ours from `alloc_meta` with
        // its layout, off the list now: moved out once, then freed.
        let AreaNode { area, .. } = unsafe { node.as_ptr().read() };
        // SAFETY: as above.
        unsafe { pages.platform().free_meta(node.cast(), Self::NODE_LAYOUT) };
        let nr_pages = area.nr_pages();
        // SAFETY: the area came from `vmalloc` with `pages` (the allocator
        // every area of this list comes from), and only the node knew it:
        // nothing uses its memory.
        unsafe { vmalloc::vfree(pages, area) };
        // INVARIANT: the node is off the list.
        self.count -= 1;
        self.pages -= nr_pages;
        self.vfrees += 1;
        nr_pages
    }

    /// Frees every area (at unload); returns how many there were.
    pub fn free_all(&mut self, pages: &PageAllocator<P>) -> usize {
        let mut freed = 0;
        while let Some(node) = self.head {
            // SAFETY: a live node of ours (invariants).
            self.head = unsafe { node.as_ref() }.next;
            self.release(pages, node);
            freed += 1;
        }
        freed
    }
}

impl<P: Platform> Drop for VmAreas<P> {
    fn drop(&mut self) {
        // The areas can only go back through their page allocator, which
        // the list does not keep: owners call `free_all` first.
        debug_assert!(self.head.is_none(), "VmAreas dropped with areas held");
    }
}
