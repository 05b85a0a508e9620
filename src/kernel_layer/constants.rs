// SPDX-License-Identifier: GPL-2.0

//! The core's restatements of kernel constants, checked at compile time
//! against the kernel the module is built for: the core builds on the host
//! too, where there are no kernel headers, so it keeps its own copies, and
//! this is where a kernel that disagrees stops the build.

use super::bindings;
use crate::kmalloc;
use crate::page_alloc;
use crate::platform;
use crate::slab;

const _: () = assert!(platform::PAGE_SHIFT == bindings::PAGE_SHIFT);
const _: () = assert!(platform::PAGE_SIZE == bindings::PAGE_SIZE);
const _: () = assert!(platform::CACHE_LINE_SIZE == bindings::L1_CACHE_BYTES as usize);
const _: () = assert!(platform::LOCAL_DISTANCE == bindings::LOCAL_DISTANCE);
const _: () = assert!(platform::REMOTE_DISTANCE == bindings::REMOTE_DISTANCE);
const _: () = assert!(page_alloc::MAX_ORDER == bindings::MAX_PAGE_ORDER);
// Per-CPU page lists up to the kernel's costly order, as its pcp lists.
const _: () = assert!(page_alloc::PCP_MAX_ORDER == bindings::PAGE_ALLOC_COSTLY_ORDER);
// Slabs up to the costly order, as SLUB's default `slub_max_order`.
const _: () = assert!(slab::SLAB_MAX_ORDER == bindings::PAGE_ALLOC_COSTLY_ORDER);
const _: () = assert!(kmalloc::KMALLOC_MAX_CACHE_SIZE == bindings::KMALLOC_MAX_CACHE_SIZE as usize);
