// SPDX-License-Identifier: GPL-2.0

//! Unloading: everything freed, every cache destroyed, every chunk back.

use super::held::free_held;
use super::{Found, Rmm, NR_BLOCK_ORDERS};
use crate::kmalloc::KMALLOC_CACHES;
use crate::platform::Platform;
use core::fmt;

/// What [`Rmm::teardown`] did; its `Display` is one log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TeardownSummary {
    /// Held objects freed.
    pub objects_freed: usize,
    /// Held page blocks freed.
    pub blocks_freed: usize,
    /// Caches destroyed, generic ones included.
    pub caches_destroyed: usize,
    /// Pages the page allocator gave back to the platform at the end.
    pub pages_returned: usize,
    /// Held objects found corrupted while freeing them.
    pub corruptions: usize,
    /// vmalloc areas unmapped and freed.
    pub areas_freed: usize,
}

impl fmt::Display for TeardownSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "freed {} objects and {} page blocks, ",
            self.objects_freed, self.blocks_freed
        )?;
        if self.areas_freed > 0 {
            write!(f, "unmapped {} vmalloc areas, ", self.areas_freed)?;
        }
        write!(
            f,
            "destroyed {} caches, returned {} pages",
            self.caches_destroyed, self.pages_returned
        )?;
        if self.corruptions > 0 {
            write!(f, ", {} corrupted objects found", self.corruptions)?;
        }
        Ok(())
    }
}

impl<P: Platform> Rmm<P> {
    /// Frees everything for unloading: every held object (checked against
    /// the constructor pattern) and block, every user cache and the generic
    /// caches; then shrinks the page allocator so that every chunk goes back
    /// to the platform. Afterwards commands fail with `-ENODEV`, the views
    /// show no cache, and a second call does nothing. Problems (a cache
    /// that will not destroy) are reported.
    pub fn teardown(&mut self) -> TeardownSummary {
        let mut summary = TeardownSummary::default();
        if self.torn_down {
            return summary;
        }
        // Newest first, as they were created.
        while let Some(index) = self.users.len().checked_sub(1) {
            let freed = self.with_found(Found::User(index), |pages, cache, held| {
                let count = held.objects.len();
                free_held(pages, cache, held, count, "teardown")
            });
            let freed = freed.unwrap_or_default();
            summary.objects_freed += freed.objects;
            summary.corruptions += freed.corrupted;
            if let Some(user) = self.users.get(index) {
                match user.cache.destroy(&self.pages) {
                    Ok(()) => summary.caches_destroyed += 1,
                    Err(error) => self.platform().report(format_args!(
                        "teardown: cache {}: {error}",
                        user.cache.name()
                    )),
                }
            }
            self.remove_user(index);
        }
        for index in 0..KMALLOC_CACHES {
            let freed = self.with_found(Found::Generic(index), |pages, cache, held| {
                let count = held.objects.len();
                free_held(pages, cache, held, count, "teardown")
            });
            let freed = freed.unwrap_or_default();
            summary.objects_freed += freed.objects;
            summary.corruptions += freed.corrupted;
        }
        let live_generic = self
            .kmalloc
            .caches()
            .filter(|cache| !cache.is_destroyed())
            .count();
        match self.kmalloc.destroy(&self.pages) {
            Ok(()) => summary.caches_destroyed += live_generic,
            Err(error) => self
                .platform()
                .report(format_args!("teardown: generic caches: {error}")),
        }
        for order in 0..NR_BLOCK_ORDERS as u32 {
            let held = self.held_blocks(order);
            summary.blocks_freed += self.free_blocks(order, held);
        }
        summary.areas_freed = self.areas.free_all(&self.pages);
        summary.pages_returned = self.pages.shrink();
        self.corruptions += summary.corruptions;
        // INVARIANT: the list and every stack are empty, the generic caches
        // destroyed (or reported).
        self.torn_down = true;
        summary
    }
}
