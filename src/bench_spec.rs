// SPDX-License-Identifier: GPL-2.0

//! What the benchmarks run and how they report, without the kernel.
//!
//! `insmod rmm.ko bench=...` runs rmm's allocators against the kernel's own
//! (SLUB, the page allocator, `percpu_counter`, `vmalloc`) in the same
//! loops ([`crate::bench_loops`]), at load (`kernel_layer::bench` holds the
//! kernel's sides, the clock and the log). This module says what to run and
//! how to report it, so the host tests check it: the grammar of the `bench`
//! parameter ([`Selection::parse`]), the sizes and iteration counts of every
//! case, and the result lines ([`Record`]) that `scripts/bench` reads back
//! from the kernel log.
//!
//! A result line is `rmm_bench: case=pair size=64 impl=rmm ops=100000
//! ns=11805000`: a case, optional parameters (`size`, `order`, `threads`,
//! `rep`, one extra count such as `ctor`), which implementation ran, how
//! many operations, and how long they took in guest nanoseconds (guest
//! instructions under `-icount shift=0`).

use core::fmt;

/// Marks every result line in the kernel log.
pub const PREFIX: &str = "rmm_bench:";

/// Object sizes of the object cases: the powers of two from 8 to 4096.
pub const OBJECT_SIZES: [usize; 10] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// Object sizes of the multi-CPU cases (a small, a medium and a large object).
pub const SMP_SIZES: [usize; 3] = [64, 512, 2048];

/// Object sizes of the constructor case.
pub const CTOR_SIZES: [usize; 3] = [64, 256, 1024];

/// Objects allocated before any is freed in a batch round.
pub const BATCH: usize = 1000;

/// Order-0 pages allocated before any is freed in a page batch round.
pub const PAGE_BATCH: usize = 64;

/// Highest page order measured (the kernel's `MAX_PAGE_ORDER` and rmm's
/// `MAX_ORDER`).
pub const MAX_BENCH_ORDER: u32 = 10;

/// Pages of the areas of the vmalloc case.
pub const VMALLOC_PAGES: [usize; 2] = [4, 64];

/// Base iteration count when the parameter names none.
pub const DEFAULT_ITERS: u32 = 100_000;

/// Repetitions of every multi-CPU measurement when the parameter names none.
pub const DEFAULT_REPS: u32 = 5;

/// Largest accepted `iters=` (a sanity bound: a run must end).
pub const MAX_ITERS: u32 = 10_000_000;

/// Largest accepted `reps=`.
pub const MAX_REPS: u32 = 100;

/// Warm-up operations before a timed loop (at most the timed count).
pub const WARMUP: u32 = 1_000;

/// A group of measurements selectable by name in the `bench` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Allocation and free pairs on a cache of one object size.
    Pair,
    /// [`BATCH`] allocations, then as many frees, on a cache.
    Batch,
    /// `kmalloc` and `kfree` pairs.
    Kmalloc,
    /// Page-block pairs per order, and batches of [`PAGE_BATCH`] pages.
    Pages,
    /// Per-CPU counter adds and exact sums.
    Counter,
    /// Every online CPU at once, and frees on another CPU (wall time).
    Smp,
    /// A cache with a constructor: constructor calls per allocation.
    Ctor,
    /// What pieces of rmm's fast paths cost alone (the CPU-local section,
    /// the page owner word, a cache's free validation; for comparison a
    /// lock round trip and the slow paths' owner lookup).
    Parts,
    /// `vmalloc` and `vfree` pairs of [`VMALLOC_PAGES`] pages.
    Vmalloc,
    /// The remote-free hand-off between two memory nodes: a CPU of node 0
    /// allocates, a CPU of another node frees (wall time; needs a machine
    /// with two nodes with CPUs).
    Numa,
}

/// Every case, in the order they run.
pub const CASES: [Case; 10] = [
    Case::Pair,
    Case::Batch,
    Case::Kmalloc,
    Case::Pages,
    Case::Counter,
    Case::Ctor,
    Case::Parts,
    Case::Vmalloc,
    Case::Smp,
    Case::Numa,
];

impl Case {
    /// The case's name in the `bench` parameter.
    pub const fn name(self) -> &'static str {
        match self {
            Case::Pair => "pair",
            Case::Batch => "batch",
            Case::Kmalloc => "kmalloc",
            Case::Pages => "pages",
            Case::Counter => "counter",
            Case::Smp => "smp",
            Case::Ctor => "ctor",
            Case::Parts => "parts",
            Case::Vmalloc => "vmalloc",
            Case::Numa => "numa",
        }
    }

    /// The case called `name`.
    pub fn from_name(name: &[u8]) -> Option<Case> {
        CASES
            .into_iter()
            .find(|case| case.name().as_bytes() == name)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// Why a `bench` parameter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A word that names no case and no setting.
    UnknownWord,
    /// `iters=` or `reps=` without a number in range.
    BadNumber,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::UnknownWord => {
                "unknown word (cases: all pair batch kmalloc pages counter ctor parts vmalloc smp numa; settings: iters=N reps=N)"
            }
            ParseError::BadNumber => "iters= takes 1 to 10000000, reps= 1 to 100",
        })
    }
}

/// What to run: a set of cases and the iteration counts.
///
/// Parsed from the `bench` parameter, a comma-separated list of case names
/// (or `all`) and settings: `bench=all`, `bench=pair,pages,iters=20000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    cases: u32,
    /// Base iteration count: operations per timed loop of the cheap cases
    /// (pairs, counters), scaled down for the dearer ones.
    pub iters: u32,
    /// Repetitions of every multi-CPU measurement.
    pub reps: u32,
}

/// `bytes` without leading and trailing ASCII white space (`<[u8]>::trim_ascii`
/// is newer than the kernel's minimum Rust, 1.78).
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !first.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !last.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Parses a decimal number in `1..=max`.
fn parse_number(digits: &[u8], max: u32) -> Result<u32, ParseError> {
    if digits.is_empty() {
        return Err(ParseError::BadNumber);
    }
    let mut value: u32 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(ParseError::BadNumber);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(digit - b'0')))
            .ok_or(ParseError::BadNumber)?;
    }
    if value == 0 || value > max {
        return Err(ParseError::BadNumber);
    }
    Ok(value)
}

impl Selection {
    /// Nothing selected, default counts.
    pub const NONE: Selection = Selection {
        cases: 0,
        iters: DEFAULT_ITERS,
        reps: DEFAULT_REPS,
    };

    /// Parses a `bench` parameter. Empty words (`pair,,batch`, a trailing
    /// newline) are ignored; an empty parameter selects nothing.
    pub fn parse(text: &[u8]) -> Result<Selection, ParseError> {
        let mut selection = Selection::NONE;
        for word in text.split(|&b| b == b',') {
            let word = trim(word);
            if word.is_empty() {
                continue;
            }
            if word == b"all" {
                for case in CASES {
                    selection.cases |= case.bit();
                }
            } else if let Some(digits) = word.strip_prefix(b"iters=") {
                selection.iters = parse_number(digits, MAX_ITERS)?;
            } else if let Some(digits) = word.strip_prefix(b"reps=") {
                selection.reps = parse_number(digits, MAX_REPS)?;
            } else {
                let case = Case::from_name(word).ok_or(ParseError::UnknownWord)?;
                selection.cases |= case.bit();
            }
        }
        Ok(selection)
    }

    /// Whether `case` is selected.
    pub fn contains(&self, case: Case) -> bool {
        self.cases & case.bit() != 0
    }

    /// Whether no case is selected.
    pub fn is_empty(&self) -> bool {
        self.cases == 0
    }

    /// The selected cases, in running order.
    pub fn cases(&self) -> impl Iterator<Item = Case> + '_ {
        CASES.into_iter().filter(|case| self.contains(*case))
    }

    /// Operations in a timed loop of pairs (objects, kmalloc, counters).
    pub fn pair_iters(&self) -> u32 {
        self.iters
    }

    /// Rounds of [`BATCH`] objects: a fifth of the pair operations (a round
    /// object costs about twice a pair).
    pub fn batch_rounds(&self) -> u32 {
        (self.iters / 5 / BATCH as u32).max(1)
    }

    /// Pairs of blocks of `order`: an eighth of the object pairs at order 0,
    /// halved every two orders (a block of order 10 costs about twenty times
    /// one of order 0), at least 50.
    pub fn page_iters(&self, order: u32) -> u32 {
        ((self.iters / 8) >> (order / 2).min(31)).max(50)
    }

    /// Rounds of [`PAGE_BATCH`] order-0 pages, as many pages as order-0 pairs.
    pub fn page_batch_rounds(&self) -> u32 {
        (self.page_iters(0) / PAGE_BATCH as u32).max(1)
    }

    /// vmalloc and vfree pairs of an area of `pages` pages: a fiftieth of
    /// the object pairs for 4 pages, fewer for more pages (an area costs
    /// tens of object pairs per page), at least 20.
    pub fn vmalloc_iters(&self, pages: usize) -> u32 {
        let scale = (pages / 4).clamp(1, 1 << 16) as u32;
        // No division by a variable that could panic: checked, never 0.
        (self.iters / 50).checked_div(scale).unwrap_or(0).max(20)
    }

    /// Exact sums of a counter: a hundredth of the adds.
    pub fn sum_iters(&self) -> u32 {
        (self.iters / 100).max(10)
    }

    /// Warm-up operations before a timed loop of `iters` operations.
    pub fn warmup(iters: u32) -> u32 {
        iters.min(WARMUP)
    }
}

/// One result line. Parameters that are `None` are left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The measurement, such as `pair` or `page_batch`.
    pub case: &'a str,
    /// Object size in bytes.
    pub size: Option<usize>,
    /// Page order.
    pub order: Option<u32>,
    /// Threads that ran at once (multi-CPU cases).
    pub threads: Option<usize>,
    /// Repetition number (multi-CPU cases).
    pub rep: Option<u32>,
    /// Which implementation ran: `rmm`, `kernel`, `atomic`, `loop`...
    pub implementation: &'a str,
    /// Operations timed.
    pub ops: u64,
    /// Guest nanoseconds they took.
    pub ns: i64,
    /// One more named count, such as constructor calls.
    pub extra: Option<(&'a str, u64)>,
}

impl<'a> Record<'a> {
    /// A record of `ops` operations of `implementation` in `ns` nanoseconds,
    /// with no parameters.
    pub fn new(case: &'a str, implementation: &'a str, ops: u64, ns: i64) -> Self {
        Record {
            case,
            size: None,
            order: None,
            threads: None,
            rep: None,
            implementation,
            ops,
            ns,
            extra: None,
        }
    }

    /// The same record for objects of `size` bytes.
    pub fn size(self, size: usize) -> Self {
        Record {
            size: Some(size),
            ..self
        }
    }

    /// The same record for blocks of `order`.
    pub fn order(self, order: u32) -> Self {
        Record {
            order: Some(order),
            ..self
        }
    }

    /// The same record for `threads` threads in repetition `rep`.
    pub fn parallel(self, threads: usize, rep: u32) -> Self {
        Record {
            threads: Some(threads),
            rep: Some(rep),
            ..self
        }
    }

    /// The same record with one more named count.
    pub fn extra(self, name: &'a str, value: u64) -> Self {
        Record {
            extra: Some((name, value)),
            ..self
        }
    }
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX} case={}", self.case)?;
        if let Some(size) = self.size {
            write!(f, " size={size}")?;
        }
        if let Some(order) = self.order {
            write!(f, " order={order}")?;
        }
        if let Some(threads) = self.threads {
            write!(f, " threads={threads}")?;
        }
        if let Some(rep) = self.rep {
            write!(f, " rep={rep}")?;
        }
        write!(
            f,
            " impl={} ops={} ns={}",
            self.implementation, self.ops, self.ns
        )?;
        if let Some((name, value)) = self.extra {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    /// A fixed-size `fmt::Write` target (no `alloc` in the core).
    struct Line {
        buf: [u8; 256],
        len: usize,
    }

    impl Write for Line {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            if end > self.buf.len() {
                return Err(fmt::Error);
            }
            self.buf[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    fn render(record: Record<'_>) -> Line {
        let mut line = Line {
            buf: [0; 256],
            len: 0,
        };
        write!(line, "{record}").unwrap();
        line
    }

    fn text(line: &Line) -> &str {
        core::str::from_utf8(&line.buf[..line.len]).unwrap()
    }

    #[test]
    fn all_selects_every_case_with_default_counts() {
        let selection = Selection::parse(b"all").unwrap();
        assert!(CASES.iter().all(|&case| selection.contains(case)));
        assert_eq!(selection.iters, DEFAULT_ITERS);
        assert_eq!(selection.reps, DEFAULT_REPS);
        assert_eq!(selection.cases().count(), CASES.len());
    }

    #[test]
    fn a_list_selects_only_its_cases_and_reads_settings() {
        let selection = Selection::parse(b"pair, pages,iters=2000,reps=3\n").unwrap();
        let chosen: [bool; 10] = CASES.map(|case| selection.contains(case));
        assert_eq!(
            chosen,
            [true, false, false, true, false, false, false, false, false, false]
        );
        assert_eq!(selection.iters, 2000);
        assert_eq!(selection.reps, 3);
        let mut order = selection.cases();
        assert_eq!(order.next(), Some(Case::Pair));
        assert_eq!(order.next(), Some(Case::Pages));
        assert_eq!(order.next(), None);
    }

    #[test]
    fn empty_parameter_selects_nothing() {
        for text in [&b""[..], b",", b" , \n", b"iters=10"] {
            assert!(Selection::parse(text).unwrap().is_empty());
        }
    }

    #[test]
    fn bad_words_and_numbers_are_refused() {
        assert_eq!(Selection::parse(b"pair,slab"), Err(ParseError::UnknownWord));
        assert_eq!(Selection::parse(b"PAIR"), Err(ParseError::UnknownWord));
        for text in [
            &b"iters="[..],
            b"iters=0",
            b"iters=-5",
            b"iters=10000001",
            b"iters=99999999999999",
            b"reps=101",
            b"reps=1x",
        ] {
            assert_eq!(Selection::parse(text), Err(ParseError::BadNumber));
        }
        assert_eq!(
            Selection::parse(b"iters=10000000").unwrap().iters,
            MAX_ITERS
        );
    }

    #[test]
    fn every_case_name_round_trips() {
        for case in CASES {
            assert_eq!(Case::from_name(case.name().as_bytes()), Some(case));
        }
        assert_eq!(Case::from_name(b"all"), None);
    }

    #[test]
    fn iteration_counts_scale_and_stay_positive() {
        let selection = Selection::parse(b"all,iters=100000").unwrap();
        assert_eq!(selection.pair_iters(), 100_000);
        assert_eq!(selection.batch_rounds(), 20);
        assert_eq!(selection.page_iters(0), 12_500);
        assert_eq!(selection.page_iters(1), 12_500);
        assert_eq!(selection.page_iters(2), 6_250);
        assert_eq!(selection.page_iters(10), 390);
        assert_eq!(selection.page_batch_rounds(), 195);
        assert_eq!(selection.sum_iters(), 1_000);
        assert_eq!(selection.vmalloc_iters(4), 2_000);
        assert_eq!(selection.vmalloc_iters(64), 125);
        let tiny = Selection::parse(b"all,iters=1").unwrap();
        assert_eq!(tiny.batch_rounds(), 1);
        assert_eq!(tiny.page_iters(MAX_BENCH_ORDER), 50);
        assert_eq!(tiny.page_batch_rounds(), 1);
        assert_eq!(tiny.sum_iters(), 10);
        assert_eq!(tiny.vmalloc_iters(64), 20);
        assert_eq!(Selection::warmup(1), 1);
        assert_eq!(Selection::warmup(100_000), WARMUP);
        // Orders are non-increasing in cost share.
        for order in 1..=MAX_BENCH_ORDER {
            assert!(selection.page_iters(order) <= selection.page_iters(order - 1));
        }
    }

    #[test]
    fn records_render_as_key_value_lines() {
        let line = render(Record::new("pair", "rmm", 100_000, 11_805_000).size(64));
        assert_eq!(
            text(&line),
            "rmm_bench: case=pair size=64 impl=rmm ops=100000 ns=11805000"
        );
        let line = render(
            Record::new("smp_remote", "kernel", 5, -1)
                .order(3)
                .parallel(2, 4)
                .extra("ctor", 7),
        );
        assert_eq!(
            text(&line),
            "rmm_bench: case=smp_remote order=3 threads=2 rep=4 impl=kernel ops=5 ns=-1 ctor=7"
        );
    }

    #[test]
    fn sizes_are_the_powers_of_two_from_8_to_4096() {
        for (i, size) in OBJECT_SIZES.into_iter().enumerate() {
            assert_eq!(size, 8 << i);
        }
        assert!(SMP_SIZES.iter().all(|s| OBJECT_SIZES.contains(s)));
        assert!(CTOR_SIZES.iter().all(|s| OBJECT_SIZES.contains(s)));
    }
}
