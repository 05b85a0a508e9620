// SPDX-License-Identifier: GPL-2.0

//! Why a control command failed: the command, what it was about, the
//! reason, and the errno the write returns.

use super::MAX_USER_CACHES;
use crate::areas::AreaError;
use crate::control::{Command, ParseError, MAX_NAME};
use crate::platform::MAX_NODES;
use crate::slab::{CreateError, SlabFreeError};
use core::fmt;

// `CtlErrorKind::NoSuchNode` has a bit per node.
const _: () = assert!(MAX_NODES <= u8::BITS as usize);

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
    pub(super) fn of_line(line: &[u8]) -> Option<Verb> {
        let word = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|word| !word.is_empty())?;
        Verb::ALL
            .into_iter()
            .find(|verb| verb.as_str().as_bytes() == word)
    }

    /// What the command counts: objects or page blocks.
    pub(super) const fn unit(self) -> &'static str {
        match self {
            Verb::PageAlloc | Verb::PageFree => "blocks",
            _ => "objects",
        }
    }

    pub(super) fn of_command(command: &Command<'_>) -> Verb {
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
pub(super) struct NameBuf {
    bytes: [u8; MAX_NAME],
    len: usize,
}

impl NameBuf {
    pub(super) fn new(name: &str) -> Self {
        let len = name.len().min(MAX_NAME);
        let mut bytes = [0; MAX_NAME];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        NameBuf { bytes, len }
    }

    pub(super) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

/// What a failed command was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Subject {
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
    pub(super) fn of_command(command: &Command<'_>) -> Subject {
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
    /// [`Rmm::teardown`](super::Rmm::teardown) has run (`-ENODEV`).
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
    /// `node=N` named a node that does not exist or has no memory; nothing
    /// was done (`-EINVAL`).
    NoSuchNode {
        /// The node named.
        node: usize,
        /// The nodes with memory, one bit per node (bit `n`: node `n`).
        with_memory: u8,
    },
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
    pub(super) line: usize,
    verb: Option<Verb>,
    subject: Subject,
    kind: CtlErrorKind,
}

impl CtlError {
    pub(super) fn new(verb: Option<Verb>, subject: Subject, kind: CtlErrorKind) -> Self {
        CtlError {
            line: 1,
            verb,
            subject,
            kind,
        }
    }

    pub(super) fn for_command(command: &Command<'_>, kind: CtlErrorKind) -> Self {
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
    /// [`Rmm::run_demo`](super::Rmm::run_demo)).
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
            | CtlErrorKind::NoSuchNode { .. }
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
            CtlErrorKind::NoSuchNode { node, with_memory } => {
                write!(f, "no node {node} with memory (nodes with memory:")?;
                for n in (0..MAX_NODES).filter(|n| with_memory & (1 << n) != 0) {
                    write!(f, " {n}")?;
                }
                f.write_str(")")
            }
        }
    }
}
