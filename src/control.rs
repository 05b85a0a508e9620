// SPDX-License-Identifier: GPL-2.0

//! The grammar of `/proc/rmm_ctl`: one command per line.
//!
//! ```text
//! create NAME SIZE [align=N] [ctor] [debug] [hwcache]
//! alloc NAME COUNT [FLAGS] [node=N] free NAME COUNT|all
//! shrink NAME                       destroy NAME
//! page-alloc ORDER COUNT [FLAGS] [node=N]
//! page-free ORDER COUNT|all
//! vmalloc NAME SIZE[K|M|G]          vfree NAME
//! reserve auto|KB
//! fail N [refill]
//! invalid-free NAME interior|foreign|wrong-cache|double
//! ```
//!
//! FLAGS is one word of `|`-separated allocation flags: at most one of
//! `kernel`, `atomic`, `nowait` (or `GFP_KERNEL`, `GFP_ATOMIC`,
//! `GFP_NOWAIT`), and `zero` (or `__GFP_ZERO`); the default is `kernel`.
//! `node=N` asks for memory of node N (the kernel's `alloc_pages_node`,
//! `kmem_cache_alloc_node`): N is a decimal node number, checked against
//! the nodes with memory when the command runs. FLAGS and `node=N` may
//! come in either order, each at most once.
//!
//! Parsing is pure and allocation-free so that the host tests can throw
//! anything at it; executing the commands is [`crate::state`]'s job.

use crate::gfp::Gfp;
use crate::page_alloc::{FailScope, Reserve};
use crate::vmalloc::MAX_VMALLOC_SIZE;
use core::fmt;

/// Longest accepted line, in bytes, without its newline.
pub const MAX_LINE: usize = 256;
/// Longest cache name, in bytes (the slab layer's limit).
pub const MAX_NAME: usize = crate::slab::MAX_NAME_LEN;
/// Largest COUNT one command may ask for; more is a malformed line.
pub const MAX_COUNT: usize = 1 << 20;
/// Largest page order a command may name (the buddy allocator's orders).
pub const MAX_PAGE_ORDER: u32 = crate::buddy::MAX_ORDER;
/// Largest N of `fail N`.
pub const MAX_FAIL_EVERY: usize = 1_000_000;

// The error messages below spell these limits out.
const _: () = assert!(MAX_LINE == 256 && MAX_NAME == 31 && MAX_COUNT == 1_048_576);
const _: () = assert!(MAX_PAGE_ORDER == 10);

/// How many of the held objects or blocks to free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// At most this many.
    Some(usize),
    /// Every one held.
    All,
}

/// What kind of invalid free `invalid-free` performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidFree {
    /// A pointer into the middle of an object of the cache (`interior`).
    Interior,
    /// The start of a block of rmm's page allocator, no slab at all
    /// (`foreign`).
    Foreign,
    /// An object of another cache (`wrong-cache`).
    WrongCache,
    /// An object of the cache that is already free (`double`).
    Double,
}

impl InvalidFree {
    /// Every kind, in the order the grammar lists them.
    pub const ALL: [InvalidFree; 4] = [
        InvalidFree::Interior,
        InvalidFree::Foreign,
        InvalidFree::WrongCache,
        InvalidFree::Double,
    ];

    /// The kind's word in the control file.
    pub const fn as_str(self) -> &'static str {
        match self {
            InvalidFree::Interior => "interior",
            InvalidFree::Foreign => "foreign",
            InvalidFree::WrongCache => "wrong-cache",
            InvalidFree::Double => "double",
        }
    }
}

/// Options of `create`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CreateOptions {
    /// Requested alignment (`align=N`), 0 when not given.
    pub align: usize,
    /// Install the pattern-writing constructor (`ctor`).
    pub ctor: bool,
    /// Red zones and poisoning for this cache (`debug`).
    pub debug: bool,
    /// Align objects to the hardware cache line (`hwcache`).
    pub hwcache: bool,
}

/// One parsed control command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `create NAME SIZE [options]`
    Create {
        /// The cache name.
        name: &'a str,
        /// Object size in bytes.
        size: usize,
        /// The options given.
        options: CreateOptions,
    },
    /// `alloc NAME COUNT [FLAGS] [node=N]`
    Alloc {
        /// The cache name.
        name: &'a str,
        /// Objects to allocate and hold.
        count: usize,
        /// The allocation flags (default [`Gfp::KERNEL`]).
        gfp: Gfp,
        /// The node the objects should come from (`node=N`), if named.
        node: Option<usize>,
    },
    /// `free NAME COUNT|all`
    Free {
        /// The cache name.
        name: &'a str,
        /// Held objects to free.
        count: Count,
    },
    /// `shrink NAME`
    Shrink {
        /// The cache name.
        name: &'a str,
    },
    /// `destroy NAME`
    Destroy {
        /// The cache name.
        name: &'a str,
    },
    /// `page-alloc ORDER COUNT [FLAGS] [node=N]`
    PageAlloc {
        /// Block order.
        order: u32,
        /// Blocks to allocate and hold.
        count: usize,
        /// The allocation flags (default [`Gfp::KERNEL`]).
        gfp: Gfp,
        /// The node the blocks should come from (`node=N`), if named.
        node: Option<usize>,
    },
    /// `page-free ORDER COUNT|all`
    PageFree {
        /// Block order.
        order: u32,
        /// Held blocks to free.
        count: Count,
    },
    /// `fail N [refill]`: fail every N-th page request (or refill), 0 for
    /// none.
    Fail {
        /// The rate N (0 to [`MAX_FAIL_EVERY`]).
        every: usize,
        /// Which requests are numbered and failed.
        scope: FailScope,
    },
    /// `vmalloc NAME SIZE`: a virtually contiguous area of SIZE bytes.
    Vmalloc {
        /// The area's name.
        name: &'a str,
        /// Bytes (suffixes applied), 1 to [`MAX_VMALLOC_SIZE`].
        size: usize,
    },
    /// `vfree NAME`
    Vfree {
        /// The area's name.
        name: &'a str,
    },
    /// `reserve auto|KB`: the size of the page allocator's emergency
    /// reserve.
    Reserve {
        /// The setting.
        reserve: Reserve,
    },
    /// `invalid-free NAME KIND`: a deliberate invalid free into a cache,
    /// which must be detected.
    InvalidFree {
        /// The cache name.
        name: &'a str,
        /// Which invalid free.
        kind: InvalidFree,
    },
}

/// Why a line is malformed. Every variant is reported as `-EINVAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The line is longer than [`MAX_LINE`] bytes.
    LineTooLong,
    /// The line is not printable ASCII (control characters, NUL, non-ASCII).
    NotText,
    /// The first word is not a command.
    UnknownCommand,
    /// A required argument is missing.
    MissingArgument,
    /// More arguments than the command takes, or an unknown option.
    UnexpectedArgument,
    /// A name that is not 1 to 31 characters of `A-Za-z0-9_.-`.
    BadName,
    /// A number that is not decimal digits or does not fit.
    BadNumber,
    /// A count of 0 or above [`MAX_COUNT`].
    BadCount,
    /// An order above [`MAX_PAGE_ORDER`].
    BadOrder,
    /// A size of 0 or above the largest object size.
    BadSize,
    /// An alignment that is not a power of two or is above the page size.
    BadAlign,
    /// A fault rate above [`MAX_FAIL_EVERY`].
    BadFailRate,
    /// An `invalid-free` kind that is not one of [`InvalidFree::ALL`].
    BadFreeKind,
    /// An allocation flag word that is not `|`-separated flag names, or
    /// names two of `kernel`, `atomic`, `nowait`.
    BadGfp,
    /// A vmalloc size that is not 1 to [`MAX_VMALLOC_SIZE`] bytes, with an
    /// optional `K`, `M` or `G` suffix.
    BadVmallocSize,
    /// A reserve that is not `auto` or 0 to
    /// [`crate::page_alloc::watermark::MAX_RESERVE_KB`].
    BadReserve,
    /// A `node=` option whose value is not a decimal number that fits.
    BadNode,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::LineTooLong => "line longer than 256 bytes",
            ParseError::NotText => "line is not printable text",
            ParseError::UnknownCommand => "unknown command",
            ParseError::MissingArgument => "missing argument",
            ParseError::UnexpectedArgument => "unexpected argument",
            ParseError::BadName => "name must be 1 to 31 characters of A-Za-z0-9_.-",
            ParseError::BadNumber => "not a decimal number that fits",
            ParseError::BadCount => "count must be 1 to 1048576",
            ParseError::BadOrder => "order must be 0 to 10",
            ParseError::BadSize => "size must be 1 to the largest object size",
            ParseError::BadAlign => "alignment must be a power of two up to the page size",
            ParseError::BadFailRate => "fail rate must be 0 to 1000000",
            ParseError::BadFreeKind => "kind must be interior, foreign, wrong-cache or double",
            ParseError::BadGfp => {
                "flags must be kernel, atomic or nowait, optionally |zero (or GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, __GFP_ZERO)"
            }
            ParseError::BadVmallocSize => {
                "vmalloc size must be 1 byte to 1024 MiB (suffix K, M or G)"
            }
            ParseError::BadReserve => "reserve must be auto or 0 to 262144 (KiB)",
            ParseError::BadNode => "node must be node=N, N a decimal node number",
        })
    }
}

/// Splits a write into lines; a final line without a newline counts.
pub fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = input.strip_suffix(b"\n").unwrap_or(input);
    let empty = input.is_empty();
    trimmed.split(|&b| b == b'\n').filter(move |_| !empty)
}

/// Checks a cache name: 1 to [`MAX_NAME`] characters of `A-Za-z0-9_.-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn parse_number(word: &str) -> Result<usize, ParseError> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber);
    }
    word.bytes().try_fold(0usize, |acc, b| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(b - b'0')))
            .ok_or(ParseError::BadNumber)
    })
}

fn parse_count(word: &str) -> Result<usize, ParseError> {
    match parse_number(word)? {
        0 => Err(ParseError::BadCount),
        n if n > MAX_COUNT => Err(ParseError::BadCount),
        n => Ok(n),
    }
}

fn parse_count_or_all(word: &str) -> Result<Count, ParseError> {
    if word == "all" {
        Ok(Count::All)
    } else {
        parse_count(word).map(Count::Some)
    }
}

fn parse_order(word: &str) -> Result<u32, ParseError> {
    match parse_number(word)? {
        n if n <= MAX_PAGE_ORDER as usize => Ok(n as u32),
        _ => Err(ParseError::BadOrder),
    }
}

fn parse_fail_every(word: &str) -> Result<usize, ParseError> {
    match parse_number(word)? {
        n if n <= MAX_FAIL_EVERY => Ok(n),
        _ => Err(ParseError::BadFailRate),
    }
}

fn parse_free_kind(word: &str) -> Result<InvalidFree, ParseError> {
    InvalidFree::ALL
        .into_iter()
        .find(|kind| kind.as_str() == word)
        .ok_or(ParseError::BadFreeKind)
}

/// Parses an allocation flag word (see the module documentation).
pub fn parse_gfp(word: &str) -> Result<Gfp, ParseError> {
    let mut base = None;
    let mut zero = false;
    for flag in word.split('|') {
        let named = match flag {
            "kernel" | "GFP_KERNEL" => Gfp::KERNEL,
            "atomic" | "GFP_ATOMIC" => Gfp::ATOMIC,
            "nowait" | "GFP_NOWAIT" => Gfp::NOWAIT,
            "zero" | "__GFP_ZERO" => {
                zero = true;
                continue;
            }
            _ => return Err(ParseError::BadGfp),
        };
        if base.replace(named).is_some() {
            return Err(ParseError::BadGfp);
        }
    }
    let gfp = base.unwrap_or(Gfp::KERNEL);
    Ok(if zero { gfp | Gfp::ZERO } else { gfp })
}

/// Parses a vmalloc size: decimal bytes, optionally with a binary suffix
/// `K`, `M` or `G` (either case), 1 to [`MAX_VMALLOC_SIZE`].
pub fn parse_vmalloc_size(word: &str) -> Result<usize, ParseError> {
    let (digits, unit) = if let Some(digits) = word.strip_suffix(['k', 'K']) {
        (digits, 1 << 10)
    } else if let Some(digits) = word.strip_suffix(['m', 'M']) {
        (digits, 1 << 20)
    } else if let Some(digits) = word.strip_suffix(['g', 'G']) {
        (digits, 1 << 30)
    } else {
        (word, 1)
    };
    let value = parse_number(digits).map_err(|_| ParseError::BadVmallocSize)?;
    let size = value.checked_mul(unit).ok_or(ParseError::BadVmallocSize)?;
    if size == 0 || size > MAX_VMALLOC_SIZE {
        return Err(ParseError::BadVmallocSize);
    }
    Ok(size)
}

/// Parses the words after COUNT of `alloc` and `page-alloc`: an optional
/// FLAGS word and an optional `node=N`, in either order, each at most once.
fn parse_alloc_options<'a>(
    words: impl Iterator<Item = &'a str>,
) -> Result<(Gfp, Option<usize>), ParseError> {
    let mut gfp = None;
    let mut node = None;
    for word in words {
        if let Some(value) = word.strip_prefix("node=") {
            let number = parse_number(value).map_err(|_| ParseError::BadNode)?;
            if node.replace(number).is_some() {
                return Err(ParseError::UnexpectedArgument);
            }
        } else if gfp.is_none() {
            gfp = Some(parse_gfp(word)?);
        } else {
            return Err(ParseError::UnexpectedArgument);
        }
    }
    Ok((gfp.unwrap_or(Gfp::KERNEL), node))
}

fn parse_name(word: &str) -> Result<&str, ParseError> {
    if valid_name(word) {
        Ok(word)
    } else {
        Err(ParseError::BadName)
    }
}

/// Parses one line (without its newline). Blank lines give `Ok(None)`.
///
/// `max_size` is the largest object size `create` accepts and `page_size`
/// the largest alignment.
pub fn parse_line(
    line: &[u8],
    max_size: usize,
    page_size: usize,
) -> Result<Option<Command<'_>>, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::LineTooLong);
    }
    // Tabs separate words like spaces; anything else outside printable
    // ASCII (NUL, escape sequences, UTF-8) is rejected outright.
    if !line
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(ParseError::NotText);
    }
    let text = core::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
    let mut words = text.split([' ', '\t']).filter(|w| !w.is_empty());
    let Some(verb) = words.next() else {
        return Ok(None);
    };
    let mut arg = || words.next().ok_or(ParseError::MissingArgument);
    let command = match verb {
        "create" => {
            let name = parse_name(arg()?)?;
            let size = parse_number(arg()?).map_err(|_| ParseError::BadSize)?;
            if size == 0 || size > max_size {
                return Err(ParseError::BadSize);
            }
            let mut options = CreateOptions::default();
            for word in words.by_ref() {
                match word {
                    "ctor" => options.ctor = true,
                    "debug" => options.debug = true,
                    "hwcache" => options.hwcache = true,
                    _ => {
                        let value = word
                            .strip_prefix("align=")
                            .ok_or(ParseError::UnexpectedArgument)?;
                        let align = parse_number(value).map_err(|_| ParseError::BadAlign)?;
                        if !align.is_power_of_two() || align > page_size {
                            return Err(ParseError::BadAlign);
                        }
                        options.align = align;
                    }
                }
            }
            Command::Create {
                name,
                size,
                options,
            }
        }
        "alloc" => {
            let name = parse_name(arg()?)?;
            let count = parse_count(arg()?)?;
            let (gfp, node) = parse_alloc_options(words.by_ref())?;
            Command::Alloc {
                name,
                count,
                gfp,
                node,
            }
        }
        "free" => Command::Free {
            name: parse_name(arg()?)?,
            count: parse_count_or_all(arg()?)?,
        },
        "shrink" => Command::Shrink {
            name: parse_name(arg()?)?,
        },
        "destroy" => Command::Destroy {
            name: parse_name(arg()?)?,
        },
        "page-alloc" => {
            let order = parse_order(arg()?)?;
            let count = parse_count(arg()?)?;
            let (gfp, node) = parse_alloc_options(words.by_ref())?;
            Command::PageAlloc {
                order,
                count,
                gfp,
                node,
            }
        }
        "page-free" => Command::PageFree {
            order: parse_order(arg()?)?,
            count: parse_count_or_all(arg()?)?,
        },
        "fail" => Command::Fail {
            every: parse_fail_every(arg()?)?,
            scope: match words.next() {
                None => FailScope::All,
                Some("refill") => FailScope::Refill,
                Some(_) => return Err(ParseError::UnexpectedArgument),
            },
        },
        "vmalloc" => Command::Vmalloc {
            name: parse_name(arg()?)?,
            size: parse_vmalloc_size(arg()?)?,
        },
        "vfree" => Command::Vfree {
            name: parse_name(arg()?)?,
        },
        "reserve" => Command::Reserve {
            reserve: Reserve::parse(arg()?.as_bytes()).map_err(|_| ParseError::BadReserve)?,
        },
        "invalid-free" => Command::InvalidFree {
            name: parse_name(arg()?)?,
            kind: parse_free_kind(arg()?)?,
        },
        _ => return Err(ParseError::UnknownCommand),
    };
    if words.next().is_some() {
        return Err(ParseError::UnexpectedArgument);
    }
    Ok(Some(command))
}
