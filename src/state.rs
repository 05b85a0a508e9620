// SPDX-License-Identifier: GPL-2.0

//! The state of the rmm module, independent of the kernel: the page
//! allocator, the generic kmalloc caches, the caches created through the
//! control file, and the objects and page blocks the control file holds.
//!
//! The kernel layer keeps one [`Rmm`] behind a sleeping mutex and calls it
//! from the procfs callbacks: [`Rmm::execute`] for writes to `rmm_ctl`,
//! [`crate::views`] for the read-only files, [`Rmm::shrink_all`] and
//! [`Rmm::reclaimable_pages`] for the memory shrinker, [`Rmm::run_demo`] for
//! `demo=1` and [`Rmm::teardown`] on unload.
//!
//! # Control commands
//!
//! Each line of a write is one command (grammar in [`crate::control`]).
//! Lines run in order; the first failing line stops the write and its error
//! is the write's result. Lines before it keep their effect: a write is not
//! a transaction. Every failure is reported through
//! [`Platform::report`] as one line naming the command and the reason, e.g.
//! `rmm_ctl: destroy foo: 3 objects still allocated (-EBUSY)`.
//!
//! A failing command changes nothing, with one exception: `alloc` and
//! `page-alloc` running out of memory keep what they got (see below).
//!
//! - `create NAME SIZE [align=N] [ctor] [debug] [hwcache]` creates a cache.
//!   `-EEXIST` if a cache of that name exists (generic ones included),
//!   `-ENOSPC` if [`MAX_USER_CACHES`] caches exist already. `debug` turns on
//!   red zones and poisoning ([`SlabFlags::DEBUG`]; every cache gets them
//!   when the module runs with `debug=1`), `hwcache` aligns to cache lines,
//!   `ctor` installs [`pattern_ctor`].
//! - `alloc NAME COUNT` allocates COUNT objects and holds them. When memory
//!   runs out it fails with `-ENOMEM`, but the objects allocated before stay
//!   held (and counted in the views): the report says how many.
//! - `free NAME COUNT|all` frees held objects, most recently allocated
//!   first. Asking for more than are held is `-EINVAL` and frees nothing;
//!   `all` with nothing held succeeds. Objects of a `ctor` cache are checked
//!   against [`pattern_byte`] first: a mismatch is reported (at most
//!   [`CORRUPTION_REPORTS`] lines per command), counted in `corruptions`,
//!   and repaired by running the constructor again so that the cache gets
//!   back an object in constructed state; the free itself goes ahead and
//!   the command succeeds.
//! - `shrink NAME` empties the cache's per-CPU arrays, gives its empty slabs
//!   back to the page allocator, then shrinks the page allocator, which
//!   gives wholly free chunks back to the kernel; one info line tells how
//!   much went back.
//! - `destroy NAME` destroys a cache. `-EBUSY` while it has objects
//!   allocated, including the objects this module holds for the control
//!   file: free them first. The generic `kmalloc-*` caches live as long as
//!   the module: destroying one is `-EPERM`.
//! - `page-alloc ORDER COUNT` / `page-free ORDER COUNT|all`: the same for
//!   blocks of `2^ORDER` pages from the page allocator.
//! - `alloc` and `page-alloc` take an optional flag word (grammar in
//!   [`crate::control`]): `kernel` (the default), `atomic` (may not sleep,
//!   may take the page allocator's emergency reserve), `nowait` (may not
//!   sleep, stops at the `low` watermark), each optionally `|zero`. `zero`
//!   on a cache with a constructor is `-EINVAL` (zeroing would destroy the
//!   constructed state).
//! - `vmalloc NAME SIZE` / `vfree NAME`: a virtually contiguous area of
//!   SIZE bytes (`K`, `M`, `G` suffixes) built from order-0 pages of the
//!   page allocator, held under NAME; see [`crate::areas`] for the errors.
//! - `reserve auto|KB` sets the page allocator's emergency reserve (the
//!   `min` watermark): its share of the kernel's `min_free_kbytes`, or KB
//!   KiB (0: no reserve and no watermarks); the module's `reserve=`.
//! - `fail N [refill]` (N from 0 to 1000000) makes every N-th page request
//!   fail from now on, as if memory had run out ([`Rmm::set_fail_every`],
//!   the module's `fail=N`): the page requests are a cache's requests for a
//!   new slab, the page allocator's requests to the kernel for a new chunk
//!   (its refills), the blocks `page-alloc` asks for (and large `kmalloc`
//!   blocks), the pages of a vmalloc area and its mapping. With `refill`
//!   only the refills are numbered and failed. `fail 1` fails them all,
//!   `fail 0` turns it off. Allocations then fail with `-ENOMEM` as above;
//!   a slab whose pages were refused is not built, so no constructor runs
//!   for it. The rate and the failures injected show in `rmm_stats`
//!   (`fail_every`, `fail_refill`, `fail_requests`, `fail_injected`).
//! - `invalid-free NAME KIND` deliberately frees an invalid pointer into
//!   cache NAME, to show that rmm detects it (the `invalid_free` function):
//!   `interior` frees an address inside an object of NAME (half its size
//!   past its start, at least one byte), `foreign` the start of an order-0
//!   block of rmm's page allocator, `wrong-cache` an object of a generic
//!   `kmalloc-*` cache other than NAME, `double` an object of NAME that was
//!   just freed. The command allocates what it needs itself, frees it
//!   properly once the cache has refused the invalid free, and touches no
//!   held object: nothing leaks and nothing held changes. What it leaves is
//!   the cache's report line (`rmm slab NAME: free of ADDRESS: REASON`,
//!   from the cache's own free check), one more in the cache's `errors` in
//!   `rmm_stats`, one info line naming the kind and the reason, and what
//!   any allocation and free leave in the cache (a slab built, objects in
//!   the per-CPU array). Interior, foreign and wrong-cache frees are
//!   detected in every mode. A double free is detected only in a debug
//!   cache (`create ... debug` or `debug=1`): elsewhere it would corrupt
//!   the cache, as in the kernel without `slub_debug`, so `double` on a
//!   cache without debugging fails with `-EINVAL` and does nothing.
//!   `-ENOMEM` if what the command needs cannot be allocated (nothing is
//!   freed then). `-EIO` if the free was *not* detected as expected
//!   (accepted, refused for another reason, or not counted): a regression
//!   of the free checks. A cache that accepted the pointer cannot be
//!   trusted any more; what the command allocated for the test is then
//!   left allocated (leaked) rather than freed under it.
//!
//! Unknown caches are `-ENOENT`, malformed lines `-EINVAL`, and after
//! [`Rmm::teardown`] every command fails with `-ENODEV`.
//!
//! Long loops (`alloc 1048576 ...`) call [`Platform::cond_resched`] every
//! [`RESCHED_EVERY`] objects and allocate with [`Gfp::KERNEL`]: commands run
//! in process context with only a sleeping mutex held.

use crate::areas::{AreaError, VmAreas};
use crate::control::{self, Command, Count, CreateOptions, InvalidFree, ParseError, MAX_NAME};
use crate::gfp::Gfp;
use crate::kmalloc::{Kmalloc, KMALLOC_CACHES};
use crate::page_alloc::{FailScope, FaultStats, PageAllocator, MAX_ORDER};
use crate::platform::{AllocError, Platform, PAGE_SIZE};
use crate::slab::{
    CreateError, Ctor, DestroyError, KmemCache, SlabFlags, SlabFreeError, MAX_OBJECT_SIZE,
};
use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::size_of;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Most caches the control file may create (the demo's cache counts).
pub const MAX_USER_CACHES: usize = 64;

/// Objects (or blocks) between two [`Platform::cond_resched`] calls in the
/// long loops of `alloc`, `free`, `page-alloc`, `page-free` and teardown.
pub const RESCHED_EVERY: usize = 256;

/// Most corruption lines one command reports; further corrupted objects
/// are counted and summed up in one more line.
pub const CORRUPTION_REPORTS: usize = 4;

/// Number of block orders the control file can hold (0 to `MAX_ORDER`).
const NR_BLOCK_ORDERS: usize = MAX_ORDER as usize + 1;

/// Error numbers of [`CtlError::errno`], positive as in `errno.h`.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory: unknown cache.
    pub const ENOENT: i32 = 2;
    /// I/O error: an `invalid-free` went undetected.
    pub const EIO: i32 = 5;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists: cache name taken.
    pub const EEXIST: i32 = 17;
    /// No such device: the module is being unloaded.
    pub const ENODEV: i32 = 19;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device: too many caches.
    pub const ENOSPC: i32 = 28;
}

/// The byte at `offset` of an object constructed by [`pattern_ctor`].
pub const fn pattern_byte(offset: usize) -> u8 {
    0x5a ^ (offset as u8)
}

/// The constructor of `create ... ctor` caches: byte `i` of the object
/// becomes [`pattern_byte`]`(i)`.
pub fn pattern_ctor(obj: NonNull<u8>, size: usize) {
    for offset in 0..size {
        // SAFETY: the slab allocator passes an object of `size` bytes that
        // the constructor may write.
        unsafe { obj.as_ptr().add(offset).write(pattern_byte(offset)) };
    }
}

/// The first byte of the `size`-byte object at `obj` that differs from the
/// constructor's pattern: its offset and value.
///
/// # Safety
///
/// `obj` must point to `size` readable bytes.
unsafe fn pattern_mismatch(obj: *const u8, size: usize) -> Option<(usize, u8)> {
    (0..size).find_map(|offset| {
        // SAFETY: `offset < size`, readable per the caller's guarantee.
        let value = unsafe { obj.add(offset).read() };
        (value != pattern_byte(offset)).then_some((offset, value))
    })
}

/// A control command, as named in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `create`
    Create,
    /// `alloc`
    Alloc,
    /// `free`
    Free,
    /// `shrink`
    Shrink,
    /// `destroy`
    Destroy,
    /// `page-alloc`
    PageAlloc,
    /// `page-free`
    PageFree,
    /// `fail`
    Fail,
    /// `invalid-free`
    InvalidFree,
    /// `vmalloc`
    Vmalloc,
    /// `vfree`
    Vfree,
    /// `reserve`
    Reserve,
}

impl Verb {
    /// The command's word in the control file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Alloc => "alloc",
            Verb::Free => "free",
            Verb::Shrink => "shrink",
            Verb::Destroy => "destroy",
            Verb::PageAlloc => "page-alloc",
            Verb::PageFree => "page-free",
            Verb::Fail => "fail",
            Verb::InvalidFree => "invalid-free",
            Verb::Vmalloc => "vmalloc",
            Verb::Vfree => "vfree",
            Verb::Reserve => "reserve",
        }
    }

    const ALL: [Verb; 12] = [
        Verb::Create,
        Verb::Alloc,
        Verb::Free,
        Verb::Shrink,
        Verb::Destroy,
        Verb::PageAlloc,
        Verb::PageFree,
        Verb::Fail,
        Verb::InvalidFree,
        Verb::Vmalloc,
        Verb::Vfree,
        Verb::Reserve,
    ];

    /// The command a line starts with, if its first word is one.
    fn of_line(line: &[u8]) -> Option<Verb> {
        let word = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|word| !word.is_empty())?;
        Verb::ALL
            .into_iter()
            .find(|verb| verb.as_str().as_bytes() == word)
    }

    /// What the command counts: objects or page blocks.
    const fn unit(self) -> &'static str {
        match self {
            Verb::PageAlloc | Verb::PageFree => "blocks",
            _ => "objects",
        }
    }

    fn of_command(command: &Command<'_>) -> Verb {
        match command {
            Command::Create { .. } => Verb::Create,
            Command::Alloc { .. } => Verb::Alloc,
            Command::Free { .. } => Verb::Free,
            Command::Shrink { .. } => Verb::Shrink,
            Command::Destroy { .. } => Verb::Destroy,
            Command::PageAlloc { .. } => Verb::PageAlloc,
            Command::PageFree { .. } => Verb::PageFree,
            Command::Fail { .. } => Verb::Fail,
            Command::InvalidFree { .. } => Verb::InvalidFree,
            Command::Vmalloc { .. } => Verb::Vmalloc,
            Command::Vfree { .. } => Verb::Vfree,
            Command::Reserve { .. } => Verb::Reserve,
        }
    }
}

/// A cache name copied into an error (names are at most [`MAX_NAME`]
/// bytes, checked by the parser).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NameBuf {
    bytes: [u8; MAX_NAME],
    len: usize,
}

impl NameBuf {
    fn new(name: &str) -> Self {
        let len = name.len().min(MAX_NAME);
        let mut bytes = [0; MAX_NAME];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        NameBuf { bytes, len }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

/// What a failed command was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    /// Nothing known (a malformed line).
    None,
    /// A cache.
    Cache(NameBuf),
    /// Page blocks of an order.
    Order(u32),
    /// A vmalloc area.
    Area(NameBuf),
}

impl Subject {
    fn of_command(command: &Command<'_>) -> Subject {
        match *command {
            Command::Create { name, .. }
            | Command::Alloc { name, .. }
            | Command::Free { name, .. }
            | Command::Shrink { name }
            | Command::Destroy { name }
            | Command::InvalidFree { name, .. } => Subject::Cache(NameBuf::new(name)),
            Command::PageAlloc { order, .. } | Command::PageFree { order, .. } => {
                Subject::Order(order)
            }
            Command::Vmalloc { name, .. } | Command::Vfree { name } => {
                Subject::Area(NameBuf::new(name))
            }
            Command::Fail { .. } | Command::Reserve { .. } => Subject::None,
        }
    }
}

/// Why a control command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlErrorKind {
    /// The line is malformed (`-EINVAL`).
    Parse(ParseError),
    /// No cache has that name (`-ENOENT`).
    UnknownCache,
    /// A cache of that name exists, generic ones included (`-EEXIST`).
    CacheExists,
    /// [`MAX_USER_CACHES`] caches exist already (`-ENOSPC`).
    TooManyCaches,
    /// The slab allocator refused the cache (`-ENOMEM` for
    /// [`CreateError::NoMemory`], `-EINVAL` otherwise).
    Create(CreateError),
    /// Bookkeeping memory ran out before anything was done (`-ENOMEM`).
    NoMemory,
    /// Memory ran out after `done` of `requested` objects or blocks, which
    /// stay held (`-ENOMEM`).
    OutOfMemory {
        /// Objects or blocks allocated and kept.
        done: usize,
        /// Objects or blocks asked for.
        requested: usize,
    },
    /// The cache still has objects allocated (`-EBUSY`).
    Busy {
        /// Objects allocated (held by the control file or by others).
        objects: usize,
    },
    /// Generic `kmalloc-*` caches cannot be destroyed (`-EPERM`).
    GenericCache,
    /// `free`/`page-free` asked for more than is held; nothing was freed
    /// (`-EINVAL`).
    NotEnoughHeld {
        /// Objects or blocks asked for.
        requested: usize,
        /// Objects or blocks held.
        held: usize,
    },
    /// [`Rmm::teardown`] has run (`-ENODEV`).
    ShutDown,
    /// `invalid-free NAME double` on a cache without debugging, where a
    /// double free is not detected; nothing was done (`-EINVAL`).
    NeedsDebug,
    /// `invalid-free` was not detected as it should have been (`-EIO`).
    Undetected(Missed),
    /// `zero` asked of a cache with a constructor; nothing was done
    /// (`-EINVAL`).
    ZeroWithCtor,
    /// A `vmalloc` or `vfree` failed (its own error number).
    Area(AreaError),
}

/// How an `invalid-free` escaped detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// The cache accepted the free.
    Accepted,
    /// The cache refused it, but for another reason than the kind's.
    WrongReason {
        /// The reason the cache gave.
        got: SlabFreeError,
        /// The reason expected for the kind.
        expected: SlabFreeError,
    },
    /// The cache refused it but did not count it in its `errors`.
    NotCounted,
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missed::Accepted => f.write_str("not detected: the cache accepted the free"),
            Missed::WrongReason { got, expected } => {
                write!(f, "refused as \"{got}\", expected \"{expected}\"")
            }
            Missed::NotCounted => f.write_str("refused but not counted in errors"),
        }
    }
}

/// A failed control command: which line, which command, on what, and why.
///
/// Its `Display` names the command and the reason, e.g.
/// `destroy foo: 3 objects still allocated`; malformed lines whose first
/// word is no command are named by their line number (`line 2: unknown
/// command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtlError {
    line: usize,
    verb: Option<Verb>,
    subject: Subject,
    kind: CtlErrorKind,
}

impl CtlError {
    fn new(verb: Option<Verb>, subject: Subject, kind: CtlErrorKind) -> Self {
        CtlError {
            line: 1,
            verb,
            subject,
            kind,
        }
    }

    fn for_command(command: &Command<'_>, kind: CtlErrorKind) -> Self {
        Self::new(
            Some(Verb::of_command(command)),
            Subject::of_command(command),
            kind,
        )
    }

    /// Why the command failed.
    pub fn kind(&self) -> CtlErrorKind {
        self.kind
    }

    /// The failed command, if the line named one.
    pub fn verb(&self) -> Option<Verb> {
        self.verb
    }

    /// The number of the failed line in its write, from 1 (1 for
    /// [`Rmm::run_demo`]).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The cache the command named, if any.
    pub fn cache_name(&self) -> Option<&str> {
        match &self.subject {
            Subject::Cache(name) => Some(name.as_str()),
            _ => None,
        }
    }

    /// The error number, positive (the write returns its negation).
    pub fn errno(&self) -> i32 {
        match self.kind {
            CtlErrorKind::Parse(_)
            | CtlErrorKind::NotEnoughHeld { .. }
            | CtlErrorKind::NeedsDebug
            | CtlErrorKind::ZeroWithCtor
            | CtlErrorKind::Create(CreateError::InvalidName)
            | CtlErrorKind::Create(CreateError::Layout(_)) => errno::EINVAL,
            CtlErrorKind::UnknownCache => errno::ENOENT,
            CtlErrorKind::CacheExists => errno::EEXIST,
            CtlErrorKind::TooManyCaches => errno::ENOSPC,
            CtlErrorKind::Create(CreateError::NoMemory)
            | CtlErrorKind::NoMemory
            | CtlErrorKind::OutOfMemory { .. } => errno::ENOMEM,
            CtlErrorKind::Busy { .. } => errno::EBUSY,
            CtlErrorKind::GenericCache => errno::EPERM,
            CtlErrorKind::ShutDown => errno::ENODEV,
            CtlErrorKind::Undetected(_) => errno::EIO,
            CtlErrorKind::Area(error) => error.errno(),
        }
    }

    /// The symbolic name of [`CtlError::errno`], e.g. `"EBUSY"`.
    pub fn errno_name(&self) -> &'static str {
        match self.errno() {
            errno::EPERM => "EPERM",
            errno::ENOENT => "ENOENT",
            errno::EIO => "EIO",
            errno::ENOMEM => "ENOMEM",
            errno::EBUSY => "EBUSY",
            errno::EEXIST => "EEXIST",
            errno::ENODEV => "ENODEV",
            errno::ENOSPC => "ENOSPC",
            _ => "EINVAL",
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.verb {
            Some(verb) => f.write_str(verb.as_str())?,
            None => write!(f, "line {}", self.line)?,
        }
        match &self.subject {
            Subject::None => {}
            Subject::Cache(name) => write!(f, " {}", name.as_str())?,
            Subject::Order(order) => write!(f, " order {order}")?,
            Subject::Area(name) => write!(f, " {}", name.as_str())?,
        }
        f.write_str(": ")?;
        let unit = self.verb.map_or("objects", Verb::unit);
        match self.kind {
            CtlErrorKind::Parse(error) => write!(f, "{error}"),
            CtlErrorKind::UnknownCache => f.write_str("no such cache"),
            CtlErrorKind::CacheExists => f.write_str("a cache of that name exists"),
            CtlErrorKind::TooManyCaches => {
                write!(f, "too many caches (at most {MAX_USER_CACHES})")
            }
            CtlErrorKind::Create(error) => write!(f, "{error}"),
            CtlErrorKind::NoMemory => f.write_str("out of memory"),
            CtlErrorKind::OutOfMemory { done, requested } => write!(
                f,
                "out of memory after {done} of {requested} {unit}, {done} kept"
            ),
            CtlErrorKind::Busy { objects } => write!(f, "{objects} objects still allocated"),
            CtlErrorKind::GenericCache => f.write_str("generic kmalloc caches cannot be destroyed"),
            CtlErrorKind::NotEnoughHeld { requested, held } => {
                write!(f, "{requested} {unit} to free but only {held} held")
            }
            CtlErrorKind::ShutDown => f.write_str("rmm is unloading"),
            CtlErrorKind::NeedsDebug => f.write_str(
                "double frees are detected only in debug caches (create ... debug, or debug=1)",
            ),
            CtlErrorKind::Undetected(missed) => write!(f, "{missed}"),
            CtlErrorKind::ZeroWithCtor => {
                f.write_str("zeroing would destroy what the cache's constructor built")
            }
            CtlErrorKind::Area(error) => write!(f, "{error}"),
        }
    }
}

/// What [`Rmm::cpu_dead`] handed back from an offline CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuHandback {
    /// Objects from the CPU's per-CPU arrays, back in their slabs.
    pub objects: usize,
    /// Pages from the CPU's page list, back on the buddy lists.
    pub pages: usize,
}

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

/// Addresses per block of an [`AddrStack`]: a page of words, less the link.
const STACK_BLOCK_SLOTS: usize = PAGE_SIZE / size_of::<usize>() - 1;

/// One page-sized block of an [`AddrStack`].
#[repr(C)]
struct StackBlock {
    below: *mut StackBlock,
    slots: [usize; STACK_BLOCK_SLOTS],
}

/// A stack of addresses in page-sized blocks of bookkeeping memory.
///
/// Holding a million objects takes 8 MiB of addresses; one contiguous
/// array of that size is more than the kernel's `kmalloc` (behind
/// [`Platform::alloc_meta`]) can give, so the addresses go in a chain of
/// page-sized blocks instead, and no block is ever copied.
///
/// # Invariants
///
/// `top` is null or a [`StackBlock`] from `alloc_meta` with its layout,
/// whose first `top_len` slots (1 to `STACK_BLOCK_SLOTS`) are filled; every
/// block down its `below` chain is such a block with all slots filled; `len`
/// is the number of filled slots in all of them (0 exactly when `top` is
/// null).
struct AddrStack {
    top: *mut StackBlock,
    top_len: usize,
    len: usize,
}

// SAFETY: the stack owns its blocks; nothing else points to them.
unsafe impl Send for AddrStack {}
// SAFETY: shared access only reads the blocks.
unsafe impl Sync for AddrStack {}

impl AddrStack {
    const BLOCK_LAYOUT: Layout = Layout::new::<StackBlock>();

    const fn new() -> Self {
        // INVARIANT: empty.
        AddrStack {
            top: ptr::null_mut(),
            top_len: 0,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push<P: Platform>(&mut self, platform: &P, addr: usize) -> Result<(), AllocError> {
        if self.top.is_null() || self.top_len == STACK_BLOCK_SLOTS {
            let block = platform
                .alloc_meta(Self::BLOCK_LAYOUT, Gfp::KERNEL)
                .ok_or(AllocError)?
                .cast::<StackBlock>()
                .as_ptr();
            // SAFETY: fresh allocation with the block's layout; only the
            // link is initialised, slots are written before they are read.
            unsafe { ptr::addr_of_mut!((*block).below).write(self.top) };
            // INVARIANT: the old top was full (or null), the new one empty
            // until the write below.
            self.top = block;
            self.top_len = 0;
        }
        // SAFETY: `top` is a live block and `top_len < STACK_BLOCK_SLOTS`.
        unsafe { ptr::addr_of_mut!((*self.top).slots[self.top_len]).write(addr) };
        self.top_len += 1;
        self.len += 1;
        Ok(())
    }

    fn pop<P: Platform>(&mut self, platform: &P) -> Option<usize> {
        if self.top.is_null() {
            return None;
        }
        self.top_len -= 1;
        self.len -= 1;
        // SAFETY: by the invariants the top block is live and its slot
        // `top_len` (the old `top_len - 1`) is filled.
        let addr = unsafe { (*self.top).slots[self.top_len] };
        if self.top_len == 0 {
            let block = self.top;
            // SAFETY: the block is live; its link was initialised.
            self.top = unsafe { (*block).below };
            self.top_len = if self.top.is_null() {
                0
            } else {
                STACK_BLOCK_SLOTS
            };
            if let Some(block) = NonNull::new(block) {
                // SAFETY: the block came from `alloc_meta` with this layout
                // and is out of the chain.
                unsafe { platform.free_meta(block.cast(), Self::BLOCK_LAYOUT) };
            }
        }
        Some(addr)
    }

    /// The addresses, most recently pushed first.
    fn iter(&self) -> AddrIter<'_> {
        AddrIter {
            block: self.top,
            index: self.top_len,
            _stack: PhantomData,
        }
    }
}

impl Drop for AddrStack {
    fn drop(&mut self) {
        // The blocks can only go back through the platform, which the stack
        // does not keep: owners pop everything first.
        debug_assert!(self.top.is_null(), "AddrStack dropped while not empty");
    }
}

/// Iterator over an [`AddrStack`], top first.
struct AddrIter<'a> {
    block: *mut StackBlock,
    index: usize,
    _stack: PhantomData<&'a AddrStack>,
}

impl Iterator for AddrIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.block.is_null() {
            return None;
        }
        self.index -= 1;
        // SAFETY: the stack is borrowed, so its blocks are live; `index`
        // was below the block's filled slots.
        let addr = unsafe { (*self.block).slots[self.index] };
        if self.index == 0 {
            // SAFETY: as above.
            self.block = unsafe { (*self.block).below };
            self.index = STACK_BLOCK_SLOTS;
        }
        Some(addr)
    }
}

/// Objects held for the control file in one cache.
struct Held {
    objects: AddrStack,
    /// The cache has [`pattern_ctor`]: check objects before freeing them.
    pattern: bool,
    corruptions: usize,
}

impl Held {
    const fn new(pattern: bool) -> Self {
        Held {
            objects: AddrStack::new(),
            pattern,
            corruptions: 0,
        }
    }
}

/// A cache created through the control file, in bookkeeping memory, linked
/// into [`Rmm`]'s list.
struct UserCache<P: Platform> {
    cache: KmemCache<P>,
    held: Held,
    next: Option<UserCachePtr<P>>,
}

/// An owning pointer to a [`UserCache`] (see [`Rmm`]'s invariants).
struct UserCachePtr<P: Platform>(NonNull<UserCache<P>>);

impl<P: Platform> Clone for UserCachePtr<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Platform> Copy for UserCachePtr<P> {}

// SAFETY: the pointer owns its `UserCache`, which is `Send`: the cache is,
// and the held-object stack owns its blocks.
unsafe impl<P: Platform> Send for UserCachePtr<P> {}
// SAFETY: shared access through `&Rmm` only reads.
unsafe impl<P: Platform> Sync for UserCachePtr<P> {}

/// Moves `value` into bookkeeping memory; gives it back if there is none.
fn meta_box<P: Platform, T>(platform: &P, value: T) -> Result<NonNull<T>, T> {
    let Some(mem) = platform.alloc_meta(Layout::new::<T>(), Gfp::KERNEL) else {
        return Err(value);
    };
    let ptr = mem.cast::<T>();
    // SAFETY: fresh allocation with `T`'s layout.
    unsafe { ptr.as_ptr().write(value) };
    Ok(ptr)
}

/// Moves a value out of bookkeeping memory and frees the memory.
///
/// # Safety
///
/// `ptr` must come from [`meta_box`] with the same platform and `T`, and
/// must not be used afterwards.
unsafe fn meta_unbox<P: Platform, T>(platform: &P, ptr: NonNull<T>) -> T {
    // SAFETY: `meta_box` initialised the value; it is moved out once.
    let value = unsafe { ptr.as_ptr().read() };
    // SAFETY: allocated by `meta_box` with this layout, unused from now on.
    unsafe { platform.free_meta(ptr.cast(), Layout::new::<T>()) };
    value
}

/// A cache as the views see it.
pub struct CacheEntry<'a, P: Platform> {
    /// The cache.
    pub cache: &'a KmemCache<P>,
    /// Objects the control file holds in it.
    pub held: usize,
    /// Held objects found corrupted when freed through the control file.
    pub corruptions: usize,
    /// Whether it is a generic `kmalloc-*` cache.
    pub generic: bool,
}

impl<P: Platform> Clone for CacheEntry<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Platform> Copy for CacheEntry<'_, P> {}

/// A cache found by name.
enum Found<P: Platform> {
    Generic(usize),
    User(UserCachePtr<P>),
}

/// The state of the rmm module.
///
/// # Invariants
///
/// `user_head` starts a chain of `user_count` (at most
/// [`MAX_USER_CACHES`]) distinct `UserCache`s linked by `next`, each from
/// `meta_box` with `pages`' platform, owned by this value and referenced
/// from nowhere else; their caches are live (not destroyed) and their names
/// distinct from each other and from the generic caches' names.
/// `generic_held[i]` holds objects of the generic cache `i`, `blocks[o]`
/// blocks of order `o` from `pages`, `areas` vmalloc areas from `pages`.
/// After teardown (`torn_down`) the chain, every stack and `areas` are
/// empty and the generic caches destroyed.
pub struct Rmm<P: Platform> {
    kmalloc: Kmalloc<P>,
    areas: VmAreas<P>,
    generic_held: [Held; KMALLOC_CACHES],
    user_head: Option<UserCachePtr<P>>,
    user_count: usize,
    blocks: [AddrStack; NR_BLOCK_ORDERS],
    corruptions: usize,
    reaps: ReapStats,
    debug_all: bool,
    torn_down: bool,
    // Last: dropped after everything that came from it.
    pages: PageAllocator<P>,
}

/// What the reap passes ([`Rmm::reap_all`]) did since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReapStats {
    /// Passes run.
    pub passes: usize,
    /// Empty slabs they gave back.
    pub released: usize,
}

/// Outcome of freeing held objects of one cache.
#[derive(Default)]
struct Freed {
    objects: usize,
    corrupted: usize,
}

impl<P: Platform> Rmm<P> {
    /// Creates the page allocator and the generic caches. With `debug_all`
    /// (the module's `debug=1`) every cache, generic ones included, gets red
    /// zones and poisoning.
    pub fn new(platform: P, debug_all: bool) -> Result<Self, AllocError> {
        let pages = PageAllocator::new(platform)?;
        let flags = if debug_all {
            SlabFlags::DEBUG
        } else {
            SlabFlags::NONE
        };
        let kmalloc = Kmalloc::with_flags(&pages, flags).map_err(|_| AllocError)?;
        // INVARIANT: no user caches, nothing held.
        Ok(Rmm {
            kmalloc,
            areas: VmAreas::new(),
            generic_held: core::array::from_fn(|_| Held::new(false)),
            user_head: None,
            user_count: 0,
            blocks: core::array::from_fn(|_| AddrStack::new()),
            corruptions: 0,
            reaps: ReapStats::default(),
            debug_all,
            torn_down: false,
            pages,
        })
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        self.pages.platform()
    }

    /// The page allocator.
    pub fn pages(&self) -> &PageAllocator<P> {
        &self.pages
    }

    /// The generic caches.
    pub fn kmalloc(&self) -> &Kmalloc<P> {
        &self.kmalloc
    }

    /// The vmalloc areas the control file holds.
    pub fn areas(&self) -> &VmAreas<P> {
        &self.areas
    }

    /// Whether every cache is created with debugging (`debug=1`).
    pub fn debug_all(&self) -> bool {
        self.debug_all
    }

    /// Whether [`Rmm::teardown`] has run.
    pub fn is_torn_down(&self) -> bool {
        self.torn_down
    }

    /// Caches created through the control file (or the demo) and alive.
    pub fn user_caches(&self) -> usize {
        self.user_count
    }

    /// Held objects found corrupted so far, in all caches (destroyed ones
    /// included).
    pub fn corruptions(&self) -> usize {
        self.corruptions
    }

    /// Makes every `every`-th page request fail from now on, 0 for none
    /// (the control file's `fail N`, the module's `fail=N`; see the module
    /// documentation). Any value is accepted; the control file limits it to
    /// [`control::MAX_FAIL_EVERY`].
    pub fn set_fail_every(&self, every: usize) {
        self.pages.faults().set_every(every);
    }

    /// The fault injector's rate and counters.
    pub fn fault_stats(&self) -> FaultStats {
        self.pages.faults().stats()
    }

    /// Page blocks of `order` held for the control file.
    pub fn held_blocks(&self, order: u32) -> usize {
        self.blocks.get(order as usize).map_or(0, AddrStack::len)
    }

    /// Addresses of the page blocks of `order` held for the control file,
    /// most recently allocated first.
    pub fn held_block_addrs(&self, order: u32) -> impl Iterator<Item = usize> + '_ {
        self.blocks
            .get(order as usize)
            .into_iter()
            .flat_map(AddrStack::iter)
    }

    fn user_iter(&self) -> impl Iterator<Item = &UserCache<P>> + '_ {
        let mut next = self.user_head;
        core::iter::from_fn(move || {
            let ptr = next?;
            // SAFETY: by the invariants `ptr` is a live `UserCache` owned by
            // `self`, which is borrowed shared for the iterator's life.
            let user = unsafe { ptr.0.as_ref() };
            next = user.next;
            Some(user)
        })
    }

    fn generic(&self, index: usize) -> Option<&KmemCache<P>> {
        self.kmalloc.caches().nth(index)
    }

    /// Every live cache in `/proc/slabinfo` order: as in the kernel, which
    /// lists the most recently created cache first, the control file's
    /// caches newest first, then the generic caches largest first.
    pub fn caches(&self) -> impl Iterator<Item = CacheEntry<'_, P>> + '_ {
        let users = self.user_iter().map(|user| CacheEntry {
            cache: &user.cache,
            held: user.held.objects.len(),
            corruptions: user.held.corruptions,
            generic: false,
        });
        let generics = (0..KMALLOC_CACHES).rev().filter_map(move |index| {
            let cache = self.generic(index)?;
            let held = &self.generic_held[index];
            Some(CacheEntry {
                cache,
                held: held.objects.len(),
                corruptions: held.corruptions,
                generic: true,
            })
        });
        users
            .chain(generics)
            .filter(|entry| !entry.cache.is_destroyed())
    }

    /// The live cache named `name`.
    pub fn cache(&self, name: &str) -> Option<CacheEntry<'_, P>> {
        self.caches().find(|entry| entry.cache.name() == name)
    }

    /// Addresses of the objects held in cache `name`, most recently
    /// allocated first (the order `free` takes them in).
    pub fn held_objects(&self, name: &str) -> Option<impl Iterator<Item = usize> + '_> {
        let held = match self.find(name)? {
            Found::Generic(index) => &self.generic_held[index],
            // SAFETY: by the invariants the pointer is a live `UserCache`
            // owned by `self`, borrowed shared here.
            Found::User(ptr) => unsafe { &ptr.0.as_ref().held },
        };
        Some(held.objects.iter())
    }

    fn find(&self, name: &str) -> Option<Found<P>> {
        if self.torn_down {
            return None;
        }
        if let Some(index) = self.kmalloc.caches().position(|cache| cache.name() == name) {
            return Some(Found::Generic(index));
        }
        let mut next = self.user_head;
        while let Some(ptr) = next {
            // SAFETY: by the invariants `ptr` is a live `UserCache` of ours.
            let user = unsafe { ptr.0.as_ref() };
            if user.cache.name() == name {
                return Some(Found::User(ptr));
            }
            next = user.next;
        }
        None
    }

    /// Runs `f` on a found cache, its held objects and the page allocator
    /// (`None` only for a generic index out of range, which `find` never
    /// gives).
    fn with_found<R>(
        &mut self,
        found: Found<P>,
        f: impl FnOnce(&PageAllocator<P>, &KmemCache<P>, &mut Held) -> R,
    ) -> Option<R> {
        match found {
            Found::Generic(index) => {
                let cache = self.kmalloc.caches().nth(index)?;
                let held = self.generic_held.get_mut(index)?;
                Some(f(&self.pages, cache, held))
            }
            Found::User(ptr) => {
                // SAFETY: by the invariants `ptr` is a live `UserCache`
                // owned by `self`, which is borrowed exclusively, so no other
                // reference to it exists.
                let user = unsafe { &mut *ptr.0.as_ptr() };
                Some(f(&self.pages, &user.cache, &mut user.held))
            }
        }
    }

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

    fn report(&self, error: &CtlError) {
        self.platform()
            .report(format_args!("rmm_ctl: {error} (-{})", error.errno_name()));
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
            Command::Alloc { name, count, gfp } => {
                let found = self.find(name).ok_or(fail(CtlErrorKind::UnknownCache))?;
                self.with_found(found, |pages, cache, held| {
                    if gfp.zeroed() && cache.has_ctor() {
                        return Err(CtlErrorKind::ZeroWithCtor);
                    }
                    alloc_held(pages, cache, held, count, gfp)
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
                Some(Found::User(ptr)) => self.destroy_user(ptr).map_err(fail),
            },
            Command::PageAlloc { order, count, gfp } => {
                self.alloc_blocks(order, count, gfp).map_err(fail)
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

    /// Creates a user cache and puts it first in the list.
    fn create_cache(
        &mut self,
        name: &str,
        size: usize,
        options: CreateOptions,
        ctor: Option<Ctor>,
    ) -> Result<(), CtlErrorKind> {
        if self.find(name).is_some() {
            return Err(CtlErrorKind::CacheExists);
        }
        if self.user_count >= MAX_USER_CACHES {
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
            held: Held::new(ctor.is_some()),
            next: self.user_head,
        };
        match meta_box(self.platform(), user) {
            Ok(ptr) => {
                // INVARIANT: a new, live, uniquely named cache owned by us,
                // linked in front; the count stays within the limit.
                self.user_head = Some(UserCachePtr(ptr));
                self.user_count += 1;
                Ok(())
            }
            Err(user) => {
                // A cache nothing has allocated from always destroys.
                let _ = user.cache.destroy(&self.pages);
                Err(CtlErrorKind::NoMemory)
            }
        }
    }

    /// Destroys a user cache that holds nothing and takes it off the list.
    fn destroy_user(&mut self, target: UserCachePtr<P>) -> Result<(), CtlErrorKind> {
        // SAFETY: by the invariants the pointer is a live `UserCache` of ours.
        let user = unsafe { target.0.as_ref() };
        let held = user.held.objects.len();
        if held > 0 {
            return Err(CtlErrorKind::Busy { objects: held });
        }
        match user.cache.destroy(&self.pages) {
            Ok(()) => {}
            Err(DestroyError::Busy { active }) => {
                return Err(CtlErrorKind::Busy { objects: active })
            }
            // Live caches only are on the list; go on and unlink it.
            Err(DestroyError::AlreadyDestroyed) => {}
        }
        self.unlink_and_free(target);
        Ok(())
    }

    /// Takes a user cache (destroyed, holding nothing) off the list and
    /// frees its record. Teardown also uses it for a cache that refused to
    /// be destroyed (reported): the cache's bookkeeping is then leaked.
    fn unlink_and_free(&mut self, target: UserCachePtr<P>) {
        let mut link = &mut self.user_head;
        while let Some(ptr) = *link {
            if ptr.0 == target.0 {
                // SAFETY: `ptr` is a live `UserCache` of ours (invariants).
                *link = unsafe { ptr.0.as_ref().next };
                self.user_count -= 1;
                // SAFETY: the record came from `meta_box` with our platform
                // and is off the list, so nothing refers to it any more.
                let user = unsafe { meta_unbox(self.pages.platform(), ptr.0) };
                drop(user);
                return;
            }
            // SAFETY: `ptr` is a live `UserCache` of ours, and `self` is
            // borrowed exclusively, so its link may be changed.
            link = unsafe { &mut (*ptr.0.as_ptr()).next };
        }
    }

    fn alloc_blocks(&mut self, order: u32, count: usize, gfp: Gfp) -> Result<(), CtlErrorKind> {
        let Some(stack) = self.blocks.get_mut(order as usize) else {
            return Err(CtlErrorKind::Parse(ParseError::BadOrder));
        };
        let platform = self.pages.platform();
        for done in 0..count {
            if done > 0 && done % RESCHED_EVERY == 0 {
                platform.cond_resched();
            }
            let out_of_memory = CtlErrorKind::OutOfMemory {
                done,
                requested: count,
            };
            let block = self
                .pages
                .alloc_pages(order, gfp)
                .map_err(|_| out_of_memory)?;
            if stack.push(platform, block.as_ptr() as usize).is_err() {
                // SAFETY: the block was just allocated at this order and
                // never handed to anyone.
                let _ = unsafe { self.pages.free_pages(block, order) };
                return Err(out_of_memory);
            }
        }
        Ok(())
    }

    /// Frees `count` held blocks of `order` (at most what is held); returns
    /// how many were freed.
    fn free_blocks(&mut self, order: u32, count: usize) -> usize {
        let Some(stack) = self.blocks.get_mut(order as usize) else {
            return 0;
        };
        let platform = self.pages.platform();
        let mut freed = 0;
        while freed < count {
            let Some(addr) = stack.pop(platform) else {
                break;
            };
            if freed > 0 && freed % RESCHED_EVERY == 0 {
                platform.cond_resched();
            }
            if let Some(block) = NonNull::new(addr as *mut u8) {
                // SAFETY: the block was allocated at this order by
                // `alloc_blocks` and only the stack knew it.
                // A rejection is reported by the page allocator itself.
                let _ = unsafe { self.pages.free_pages(block, order) };
            }
            freed += 1;
        }
        freed
    }

    /// Hands back what CPU `cpu` held in every cache's per-CPU array and in
    /// the page allocator's per-CPU list, after it went offline.
    ///
    /// # Safety
    ///
    /// `cpu` is offline and stays so during the call, and nothing else uses
    /// its per-CPU data (the CPU-hotplug teardown of that CPU).
    pub unsafe fn cpu_dead(&mut self, cpu: usize) -> CpuHandback {
        let mut back = CpuHandback::default();
        for entry in self.caches() {
            // SAFETY: per the caller's guarantee.
            back.objects += unsafe { entry.cache.cpu_dead(&self.pages, cpu) };
        }
        // SAFETY: as above.
        back.pages = unsafe { self.pages.cpu_dead(cpu) };
        back
    }

    /// Shrinks every cache, then the page allocator; returns the pages the
    /// page allocator gave back to the platform (for a memory shrinker's
    /// `scan_objects`).
    pub fn shrink_all(&self) -> usize {
        if self.torn_down {
            return 0;
        }
        for entry in self.caches() {
            entry.cache.shrink(&self.pages);
        }
        self.pages.shrink()
    }

    /// One reap pass over every cache ([`KmemCache::reap`]), as the
    /// kernel module's reaper thread runs it periodically: empty slabs kept
    /// for a recent peak that is over go back to the page allocator.
    /// Returns the slabs released.
    pub fn reap_all(&mut self) -> usize {
        if self.torn_down {
            return 0;
        }
        let released = self
            .caches()
            .map(|entry| entry.cache.reap(&self.pages))
            .sum();
        self.reaps.passes += 1;
        self.reaps.released += released;
        released
    }

    /// The reap passes so far and the slabs they released.
    pub fn reap_stats(&self) -> ReapStats {
        self.reaps
    }

    /// An estimate of what [`Rmm::shrink_all`] could free, in pages (for a
    /// memory shrinker's `count_objects`): the pages of empty slabs of every
    /// cache plus the pages of wholly free chunks (free blocks of the
    /// largest order). Approximate: objects sitting in per-CPU arrays keep
    /// their slabs out of the count, pages on per-CPU page lists keep their
    /// chunk out, and an empty slab's pages go back to the platform only if
    /// they complete a free chunk.
    pub fn reclaimable_pages(&self) -> usize {
        if self.torn_down {
            return 0;
        }
        let empty_slab_pages: usize = self
            .caches()
            .map(|entry| {
                let info = entry.cache.slabinfo();
                (info.num_slabs - info.active_slabs) * info.pagesperslab
            })
            .sum();
        let free_chunks = self.pages.buddyinfo()[MAX_ORDER as usize];
        empty_slab_pages + (free_chunks << MAX_ORDER)
    }

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
        while let Some(ptr) = self.user_head {
            let freed = self.with_found(Found::User(ptr), |pages, cache, held| {
                let count = held.objects.len();
                free_held(pages, cache, held, count, "teardown")
            });
            let freed = freed.unwrap_or_default();
            summary.objects_freed += freed.objects;
            summary.corruptions += freed.corrupted;
            // SAFETY: by the invariants the pointer is a live `UserCache`.
            let cache = unsafe { &ptr.0.as_ref().cache };
            match cache.destroy(&self.pages) {
                Ok(()) => summary.caches_destroyed += 1,
                Err(error) => self
                    .platform()
                    .report(format_args!("teardown: cache {}: {error}", cache.name())),
            }
            self.unlink_and_free(ptr);
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

    /// The demo of `demo=1`: creates the cache `rmm_student` of [`Student`]
    /// records with a constructor that logs (rate-limited) that it runs,
    /// allocates two students, fills and logs them, and frees them. The
    /// cache stays (it shows in slabinfo) until unload. Lines go to
    /// [`Platform::info`]; an error is also reported like a control
    /// command's.
    pub fn run_demo(&mut self) -> Result<(), CtlError> {
        let result = self.demo();
        if let Err(error) = &result {
            self.report(error);
        }
        result
    }

    fn demo(&mut self) -> Result<(), CtlError> {
        let subject = Subject::Cache(NameBuf::new(DEMO_CACHE));
        let options = CreateOptions {
            align: core::mem::align_of::<Student>(),
            ..CreateOptions::default()
        };
        self.create_cache(
            DEMO_CACHE,
            size_of::<Student>(),
            options,
            Some(student_ctor),
        )
        .map_err(|kind| CtlError::new(Some(Verb::Create), subject, kind))?;
        let entry = self.cache(DEMO_CACHE).ok_or(CtlError::new(
            Some(Verb::Create),
            subject,
            CtlErrorKind::UnknownCache,
        ))?;
        let cache = entry.cache;
        let pages = &self.pages;
        let platform = pages.platform();
        let info = cache.slabinfo();
        platform.info(format_args!(
            "demo: created cache {DEMO_CACHE}: {} byte students in {} byte slots, {} per slab",
            cache.object_size(),
            info.objsize,
            info.objperslab
        ));
        let log = |args: fmt::Arguments<'_>| platform.info(args);
        let logger = DemoLogger { log: &log };
        let installed = logger.install();
        let first = cache.alloc(pages, Gfp::KERNEL);
        let second = cache.alloc(pages, Gfp::KERNEL);
        if installed {
            DemoLogger::uninstall();
        }
        let (first, second) = match (first, second) {
            (Ok(first), Ok(second)) => (first, second),
            (first, second) => {
                let mut done = 0;
                for student in [first, second].into_iter().flatten() {
                    done += 1;
                    // SAFETY: just allocated from this cache, still in
                    // constructed state, used by nothing else.
                    let _ = unsafe { cache.free(pages, student) };
                }
                return Err(CtlError::new(
                    Some(Verb::Alloc),
                    subject,
                    CtlErrorKind::OutOfMemory { done, requested: 2 },
                ));
            }
        };
        for (number, (obj, name)) in [(first, "alice"), (second, "bob")].into_iter().enumerate() {
            let student = obj.cast::<Student>().as_ptr();
            let mut record = Student::EMPTY;
            record.id = number as u32 + 1;
            record.name[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: the object is ours, `size_of::<Student>()` bytes
            // aligned for `Student` (the cache's alignment).
            unsafe { student.write(record) };
            // SAFETY: as above, just written.
            let record = unsafe { &*student };
            platform.info(format_args!(
                "student {}: id={} name={}",
                number + 1,
                record.id,
                record.name()
            ));
        }
        for obj in [first, second] {
            // Objects go back in constructed state, as the cache expects.
            // SAFETY: as above.
            unsafe { obj.cast::<Student>().as_ptr().write(Student::EMPTY) };
            // SAFETY: allocated above from this cache, not used afterwards.
            let _ = unsafe { cache.free(pages, obj) };
        }
        platform.info(format_args!(
            "demo: {} objects in the first slab, each constructed once ({} calls)",
            info.objperslab,
            cache.stats().ctor_calls
        ));
        platform.info(format_args!(
            "demo: freed both students; {DEMO_CACHE} stays until unload"
        ));
        Ok(())
    }
}

impl<P: Platform> Drop for Rmm<P> {
    fn drop(&mut self) {
        if !self.torn_down {
            let summary = self.teardown();
            self.platform().info(format_args!("teardown: {summary}"));
        }
    }
}

/// Allocates `count` objects into `held`; on running out, keeps what was
/// allocated and says how much.
fn alloc_held<P: Platform>(
    pages: &PageAllocator<P>,
    cache: &KmemCache<P>,
    held: &mut Held,
    count: usize,
    gfp: Gfp,
) -> Result<(), CtlErrorKind> {
    let platform = pages.platform();
    for done in 0..count {
        if done > 0 && done % RESCHED_EVERY == 0 {
            platform.cond_resched();
        }
        let out_of_memory = CtlErrorKind::OutOfMemory {
            done,
            requested: count,
        };
        let obj = cache.alloc(pages, gfp).map_err(|_| out_of_memory)?;
        if held.objects.push(platform, obj.as_ptr() as usize).is_err() {
            // SAFETY: the object was just allocated and never handed out.
            let _ = unsafe { cache.free(pages, obj) };
            return Err(out_of_memory);
        }
    }
    Ok(())
}

/// Frees the `count` most recently held objects (at most what is held),
/// checking the constructor pattern first; `what` names the operation in
/// corruption reports.
fn free_held<P: Platform>(
    pages: &PageAllocator<P>,
    cache: &KmemCache<P>,
    held: &mut Held,
    count: usize,
    what: &str,
) -> Freed {
    let platform = pages.platform();
    let size = cache.object_size();
    let mut freed = Freed::default();
    while freed.objects < count {
        let Some(addr) = held.objects.pop(platform) else {
            break;
        };
        if freed.objects > 0 && freed.objects % RESCHED_EVERY == 0 {
            platform.cond_resched();
        }
        freed.objects += 1;
        let Some(obj) = NonNull::new(addr as *mut u8) else {
            continue;
        };
        if held.pattern {
            // SAFETY: a held object of `size` bytes, allocated from `cache`
            // and not freed.
            if let Some((offset, value)) = unsafe { pattern_mismatch(obj.as_ptr(), size) } {
                freed.corrupted += 1;
                if freed.corrupted <= CORRUPTION_REPORTS {
                    platform.report(format_args!(
                        "rmm_ctl: {what} {}: object {addr:#x} corrupted: byte {offset} is {value:#04x}, expected {:#04x}",
                        cache.name(),
                        pattern_byte(offset)
                    ));
                }
                // Give the cache back an object in constructed state.
                pattern_ctor(obj, size);
            }
        }
        // SAFETY: the object was allocated from `cache` by `alloc_held` and
        // only the held stack knew it. A rejection is reported by the cache.
        let _ = unsafe { cache.free(pages, obj) };
    }
    if freed.corrupted > CORRUPTION_REPORTS {
        platform.report(format_args!(
            "rmm_ctl: {what} {}: {} more corrupted objects not listed",
            cache.name(),
            freed.corrupted - CORRUPTION_REPORTS
        ));
    }
    held.corruptions += freed.corrupted;
    freed
}

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
fn invalid_free<P: Platform>(
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

/// Name of the demo's cache.
pub const DEMO_CACHE: &str = "rmm_student";

/// The demo's record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Student {
    /// Student number; 0 in constructed state.
    pub id: u32,
    /// Name, NUL-padded; all NUL in constructed state.
    pub name: [u8; 16],
}

impl Student {
    /// The constructed state.
    pub const EMPTY: Student = Student {
        id: 0,
        name: [0; 16],
    };

    /// The name up to its first NUL.
    pub fn name(&self) -> &str {
        let len = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }
}

/// Calls of the demo's constructor since the module was loaded.
static STUDENT_CTOR_CALLS: AtomicUsize = AtomicUsize::new(0);

/// The demo constructor logs its first calls, then only calls whose number
/// is a power of two.
pub const DEMO_CTOR_LOG_FIRST: usize = 4;

/// Whether the demo constructor logs its call number `call` (from 1).
pub const fn demo_ctor_logs(call: usize) -> bool {
    call <= DEMO_CTOR_LOG_FIRST || call.is_power_of_two()
}

/// The demo's constructor: puts a [`Student`] in constructed state and logs
/// that it runs, rate-limited by [`demo_ctor_logs`].
fn student_ctor(obj: NonNull<u8>, _size: usize) {
    // SAFETY: the slab allocator passes an object of the `rmm_student`
    // cache: `size_of::<Student>()` bytes aligned for `Student`.
    unsafe { obj.cast::<Student>().as_ptr().write(Student::EMPTY) };
    let call = STUDENT_CTOR_CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    if demo_ctor_logs(call) {
        DemoLogger::log(format_args!(
            "demo: student constructor running (call {call})"
        ));
    }
}

/// Where the demo constructor's lines go.
///
/// A constructor is a plain `fn` and cannot reach the platform, so while
/// the demo allocates it publishes a logger in [`DEMO_LOGGER`]. Calls
/// outside that window (allocations through the control file later) are
/// counted but not logged. The logger lives on the demo's stack; a
/// constructor announces itself in [`DEMO_LOGGER_USERS`] before loading the
/// pointer, and [`DemoLogger::uninstall`] waits until no constructor uses
/// it before the demo's frame goes away.
struct DemoLogger<'a> {
    log: &'a (dyn Fn(fmt::Arguments<'_>) + Sync),
}

/// The published [`DemoLogger`], or null.
static DEMO_LOGGER: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());
/// Constructors between announcing themselves and being done with
/// [`DEMO_LOGGER`].
static DEMO_LOGGER_USERS: AtomicUsize = AtomicUsize::new(0);

impl DemoLogger<'_> {
    /// Publishes `self` unless another logger is published (another `Rmm`
    /// running its demo at the same time, on the host, whose logger then
    /// gets this demo's constructor lines too); returns whether it did. The caller must call [`DemoLogger::uninstall`] before `self`
    /// goes away if it did.
    fn install(&self) -> bool {
        let ptr = (self as *const Self).cast_mut().cast::<()>();
        DEMO_LOGGER
            .compare_exchange(ptr::null_mut(), ptr, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Withdraws the published logger and waits until no constructor uses
    /// it. Constructors run without locks in process context and log one
    /// line, so the wait is short.
    fn uninstall() {
        DEMO_LOGGER.store(ptr::null_mut(), Ordering::SeqCst);
        while DEMO_LOGGER_USERS.load(Ordering::SeqCst) != 0 {
            core::hint::spin_loop();
        }
    }

    /// Logs through the published logger, if any.
    fn log(args: fmt::Arguments<'_>) {
        DEMO_LOGGER_USERS.fetch_add(1, Ordering::SeqCst);
        let logger = DEMO_LOGGER.load(Ordering::SeqCst).cast::<DemoLogger<'_>>();
        if !logger.is_null() {
            // SAFETY: a non-null pointer was published by `install` from a
            // live `DemoLogger`; its owner cannot return from `uninstall`
            // (and drop it) while we are counted in `DEMO_LOGGER_USERS`,
            // which we joined before loading the pointer (all `SeqCst`).
            unsafe { ((*logger).log)(args) };
        }
        DEMO_LOGGER_USERS.fetch_sub(1, Ordering::SeqCst);
    }
}
