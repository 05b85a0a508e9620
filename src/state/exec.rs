// SPDX-License-Identifier: GPL-2.0

//! The control-file commands: parsing a write into lines and running each
//! (see the module documentation of [`super`] for what they do).

use super::errors::{CtlError, CtlErrorKind, Subject, Verb};
use super::held::{alloc_held, free_held, pattern_ctor, Held};
use super::invalid_free::invalid_free;
use super::user_caches::{MetaBox, UserCache};
use super::{Found, Rmm, MAX_USER_CACHES};
use crate::control::{self, Command, Count, CreateOptions, ParseError};
use crate::gfp::Gfp;
use crate::page_alloc::FailScope;
use crate::platform::{Platform, PAGE_SIZE};
use crate::ratelimit::Verdict;
use crate::slab::{Ctor, DestroyError, KmemCache, SlabFlags, MAX_OBJECT_SIZE};

impl<P: Platform> Rmm<P> {
    /// Runs the commands of one write, in order; see the module
    /// documentation. Stops at the first failing line and returns its error
    /// (after reporting it); earlier lines keep their effects.
    pub fn execute(&mut self, input: &[u8]) -> Result<(), CtlError> {
        for (index, line) in control::lines(input).enumerate() {
            let result = match control::parse_line(line, MAX_OBJECT_SIZE, PAGE_SIZE) {
                Ok(None) => Ok(()),
                Ok(Some(command)) => self.run(&command),
                Err(error) => Err(CtlError::new(
                    Verb::of_line(line),
                    Subject::None,
                    CtlErrorKind::Parse(error),
                )),
            };
            if let Err(mut error) = result {
                error.line = index + 1;
                self.report(&error);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Reports a failed command, rate-limited as the kernel limits
    /// messages users can trigger (10 lines per 5 seconds); every failure
    /// is counted ([`Rmm::ctl_errors`]).
    pub(super) fn report(&mut self, error: &CtlError) {
        let platform = self.pages.platform();
        match self.ctl_errors.check(platform.monotonic_ns()) {
            Verdict::Log { suppressed } => {
                if suppressed > 0 {
                    platform.report(format_args!(
                        "rmm_ctl: {suppressed} failed commands not logged (rate limit)"
                    ));
                }
                platform.report(format_args!("rmm_ctl: {error} (-{})", error.errno_name()));
            }
            Verdict::Drop => {}
        }
    }

    /// Runs one parsed command.
    fn run(&mut self, command: &Command<'_>) -> Result<(), CtlError> {
        let fail = |kind| CtlError::for_command(command, kind);
        if self.torn_down {
            return Err(fail(CtlErrorKind::ShutDown));
        }
        match *command {
            Command::Create {
                name,
                size,
                options,
            } => {
                let ctor: Option<Ctor> = if options.ctor {
                    Some(pattern_ctor)
                } else {
                    None
                };
                self.create_cache(name, size, options, ctor).map_err(fail)
            }
            Command::Alloc {
                name,
                count,
                gfp,
                node,
            } => {
                self.check_node(node).map_err(fail)?;
                let found = self.find(name).ok_or(fail(CtlErrorKind::UnknownCache))?;
                self.with_found(found, |pages, cache, held| {
                    if gfp.zeroed() && cache.has_ctor() {
                        return Err(CtlErrorKind::ZeroWithCtor);
                    }
                    alloc_held(pages, cache, held, count, gfp, node)
                })
                .unwrap_or(Err(CtlErrorKind::UnknownCache))
                .map_err(fail)
            }
            Command::Free { name, count } => {
                let found = self.find(name).ok_or(fail(CtlErrorKind::UnknownCache))?;
                let freed = self.with_found(found, |pages, cache, held| {
                    let wanted = match count {
                        Count::All => held.objects.len(),
                        Count::Some(wanted) if wanted <= held.objects.len() => wanted,
                        Count::Some(requested) => {
                            return Err(CtlErrorKind::NotEnoughHeld {
                                requested,
                                held: held.objects.len(),
                            })
                        }
                    };
                    Ok(free_held(pages, cache, held, wanted, "free"))
                });
                let freed = freed
                    .unwrap_or(Err(CtlErrorKind::UnknownCache))
                    .map_err(fail)?;
                self.corruptions += freed.corrupted;
                Ok(())
            }
            Command::Shrink { name } => {
                let found = self.find(name).ok_or(fail(CtlErrorKind::UnknownCache))?;
                let slabs = self
                    .with_found(found, |pages, cache, _| cache.shrink(pages))
                    .ok_or(fail(CtlErrorKind::UnknownCache))?;
                let returned = self.pages.shrink();
                self.platform().info(format_args!(
                    "rmm_ctl: shrink {name}: {slabs} slabs released, {returned} pages returned"
                ));
                Ok(())
            }
            Command::Destroy { name } => match self.find(name) {
                None => Err(fail(CtlErrorKind::UnknownCache)),
                Some(Found::Generic(_)) => Err(fail(CtlErrorKind::GenericCache)),
                Some(Found::User(index)) => self.destroy_user(index).map_err(fail),
            },
            Command::PageAlloc {
                order,
                count,
                gfp,
                node,
            } => {
                self.check_node(node).map_err(fail)?;
                self.alloc_blocks(order, count, gfp, node).map_err(fail)
            }
            Command::PageFree { order, count } => {
                let held = self.held_blocks(order);
                let wanted = match count {
                    Count::All => held,
                    Count::Some(wanted) if wanted <= held => wanted,
                    Count::Some(requested) => {
                        return Err(fail(CtlErrorKind::NotEnoughHeld { requested, held }))
                    }
                };
                self.free_blocks(order, wanted);
                Ok(())
            }
            Command::InvalidFree { name, kind } => {
                let entry = self.cache(name).ok_or(fail(CtlErrorKind::UnknownCache))?;
                // A generic cache other than NAME: where `wrong-cache` takes
                // its object from.
                let other = self
                    .kmalloc
                    .caches()
                    .find(|cache| cache.name() != name && !cache.is_destroyed())
                    .ok_or(fail(CtlErrorKind::UnknownCache))?;
                let detected = invalid_free(&self.pages, entry.cache, other, kind).map_err(fail)?;
                self.platform().info(format_args!(
                    "rmm_ctl: invalid-free {name} {}: detected: {detected}",
                    kind.as_str()
                ));
                Ok(())
            }
            Command::Fail { every, scope } => {
                self.pages.faults().set(every, scope);
                let what = match scope {
                    FailScope::All => "page request",
                    FailScope::Refill => "refill",
                };
                match every {
                    0 => self
                        .platform()
                        .info(format_args!("rmm_ctl: fail 0: fault injection off")),
                    every => self.platform().info(format_args!(
                        "rmm_ctl: fail {every}: one {what} in {every} fails"
                    )),
                }
                Ok(())
            }
            Command::Vmalloc { name, size } => {
                let pages = self
                    .areas
                    .vmalloc(&self.pages, name, size)
                    .map_err(|error| fail(CtlErrorKind::Area(error)))?;
                self.platform().info(format_args!(
                    "rmm_ctl: vmalloc {name}: {pages} pages mapped"
                ));
                Ok(())
            }
            Command::Vfree { name } => {
                let pages = self
                    .areas
                    .vfree(&self.pages, name)
                    .map_err(|error| fail(CtlErrorKind::Area(error)))?;
                self.platform().info(format_args!(
                    "rmm_ctl: vfree {name}: {pages} pages unmapped and freed"
                ));
                Ok(())
            }
            Command::Reserve { reserve } => {
                self.pages.set_reserve(reserve);
                let wm = self.pages.watermarks();
                self.platform().info(format_args!(
                    "rmm_ctl: reserve {reserve}: watermarks min {} low {} high {} pages",
                    wm.min, wm.low, wm.high
                ));
                Ok(())
            }
        }
    }

    /// Creates a user cache, the newest.
    pub(super) fn create_cache(
        &mut self,
        name: &str,
        size: usize,
        options: CreateOptions,
        ctor: Option<Ctor>,
    ) -> Result<(), CtlErrorKind> {
        if self.find(name).is_some() {
            return Err(CtlErrorKind::CacheExists);
        }
        if self.users.len() >= MAX_USER_CACHES {
            return Err(CtlErrorKind::TooManyCaches);
        }
        let mut flags = SlabFlags::NONE;
        if options.debug || self.debug_all {
            flags = flags | SlabFlags::DEBUG;
        }
        if options.hwcache {
            flags = flags | SlabFlags::HWCACHE_ALIGN;
        }
        let cache = KmemCache::create(&self.pages, name, size, options.align, flags, ctor)
            .map_err(CtlErrorKind::Create)?;
        let user = UserCache {
            cache,
            held: Held::new(options.ctor),
        };
        let platform = self.pages.platform();
        let boxed = match MetaBox::new(platform, user) {
            Ok(boxed) => boxed,
            Err(user) => {
                // A cache nothing has allocated from always destroys.
                let _ = user.cache.destroy(&self.pages);
                return Err(CtlErrorKind::NoMemory);
            }
        };
        // INVARIANT: a new, live, uniquely named cache, boxed with our
        // platform; there is room (checked above).
        self.users.push(boxed).map_err(|boxed| {
            // SAFETY: boxed just above with this platform.
            let user = unsafe { boxed.into_inner(platform) };
            let _ = user.cache.destroy(&self.pages);
            CtlErrorKind::TooManyCaches
        })
    }

    /// Destroys the user cache at `index` if it holds nothing, and takes it
    /// out of the table.
    fn destroy_user(&mut self, index: usize) -> Result<(), CtlErrorKind> {
        let user = self.users.get(index).ok_or(CtlErrorKind::UnknownCache)?;
        let held = user.held.objects.len();
        if held > 0 {
            return Err(CtlErrorKind::Busy { objects: held });
        }
        match user.cache.destroy(&self.pages) {
            Ok(()) => {}
            Err(DestroyError::Busy { active }) => {
                return Err(CtlErrorKind::Busy { objects: active })
            }
            // Only live caches are in the table; go on and take it out.
            Err(DestroyError::AlreadyDestroyed) => {}
        }
        self.remove_user(index);
        Ok(())
    }

    /// Takes the user cache at `index` (destroyed, holding nothing) out of
    /// the table and frees its record. Teardown also uses it for a cache
    /// that refused to be destroyed (reported): the cache's bookkeeping is
    /// then leaked.
    pub(super) fn remove_user(&mut self, index: usize) {
        // SAFETY: every user cache was added with our page allocator's
        // platform (type invariant).
        let user = unsafe { self.users.remove(self.pages.platform(), index) };
        drop(user);
    }

    /// Checks a command's `node=N`: `node` must be a node with memory
    /// (requests for other nodes fail in the page allocator anyway, but a
    /// wrong node number is the user's mistake, not a lack of memory).
    fn check_node(&self, node: Option<usize>) -> Result<(), CtlErrorKind> {
        match node {
            Some(node) if !self.pages.node_has_memory(node) => {
                let with_memory = (0..self.pages.nr_nodes())
                    .filter(|&n| self.pages.node_has_memory(n))
                    .fold(0u8, |mask, n| mask | 1 << n);
                Err(CtlErrorKind::NoSuchNode { node, with_memory })
            }
            _ => Ok(()),
        }
    }

    fn alloc_blocks(
        &mut self,
        order: u32,
        count: usize,
        gfp: Gfp,
        node: Option<usize>,
    ) -> Result<(), CtlErrorKind> {
        let Some(stack) = self.blocks.get_mut(order as usize) else {
            return Err(CtlErrorKind::Parse(ParseError::BadOrder));
        };
        let pages = &self.pages;
        stack.fill(
            pages.platform(),
            count,
            || match node {
                None => pages.alloc_pages(order, gfp).ok(),
                Some(node) => pages.alloc_pages_node(order, gfp, node).ok(),
            },
            |block| {
                // SAFETY: the block was just allocated at this order and
                // never handed to anyone.
                let _ = unsafe { pages.free_pages(block, order) };
            },
        )
    }

    /// Frees `count` held blocks of `order` (at most what is held); returns
    /// how many were freed.
    pub(super) fn free_blocks(&mut self, order: u32, count: usize) -> usize {
        let Some(stack) = self.blocks.get_mut(order as usize) else {
            return 0;
        };
        let pages = &self.pages;
        stack.drain(pages.platform(), count, |block| {
            // SAFETY: the block was allocated at this order by
            // `alloc_blocks` and only the stack knew it. A rejection is
            // reported by the page allocator itself.
            let _ = unsafe { pages.free_pages(block, order) };
        })
    }
}
