// SPDX-License-Identifier: GPL-2.0

//! The `/proc/rmm_ctl` grammar: what parses, to what, and every rejection.

use proptest::prelude::*;
use rmm_core::control::{
    lines, parse_line, valid_name, Command, Count, CreateOptions, InvalidFree, ParseError,
    MAX_COUNT, MAX_FAIL_EVERY,
};
use rmm_core::gfp::Gfp;
use rmm_core::page_alloc::{FailScope, Reserve};
use rmm_core::vmalloc::MAX_VMALLOC_SIZE;

const MAX_SIZE: usize = 1 << 20;
const PAGE: usize = 4096;

fn parse(line: &str) -> Result<Option<Command<'_>>, ParseError> {
    parse_line(line.as_bytes(), MAX_SIZE, PAGE)
}

#[test]
fn every_command_parses() {
    assert_eq!(
        parse("create student 40 align=8 ctor debug hwcache"),
        Ok(Some(Command::Create {
            name: "student",
            size: 40,
            options: CreateOptions {
                align: 8,
                ctor: true,
                debug: true,
                hwcache: true
            }
        }))
    );
    assert_eq!(
        parse("create a.b-c_9 1"),
        Ok(Some(Command::Create {
            name: "a.b-c_9",
            size: 1,
            options: CreateOptions::default()
        }))
    );
    assert_eq!(
        parse("alloc kmalloc-64 10"),
        Ok(Some(Command::Alloc {
            name: "kmalloc-64",
            count: 10,
            gfp: Gfp::KERNEL,
            node: None
        }))
    );
    assert_eq!(
        parse("free x all"),
        Ok(Some(Command::Free {
            name: "x",
            count: Count::All
        }))
    );
    assert_eq!(
        parse("free x 3"),
        Ok(Some(Command::Free {
            name: "x",
            count: Count::Some(3)
        }))
    );
    assert_eq!(parse("shrink x"), Ok(Some(Command::Shrink { name: "x" })));
    assert_eq!(parse("destroy x"), Ok(Some(Command::Destroy { name: "x" })));
    assert_eq!(
        parse("page-alloc 10 2"),
        Ok(Some(Command::PageAlloc {
            order: 10,
            count: 2,
            gfp: Gfp::KERNEL,
            node: None
        }))
    );
    assert_eq!(
        parse("page-free 0 all"),
        Ok(Some(Command::PageFree {
            order: 0,
            count: Count::All
        }))
    );
    assert_eq!(
        parse("\t alloc   x\t5  "),
        Ok(Some(Command::Alloc {
            name: "x",
            count: 5,
            gfp: Gfp::KERNEL,
            node: None
        }))
    );
}

#[test]
fn blank_lines_are_nothing() {
    assert_eq!(parse(""), Ok(None));
    assert_eq!(parse("   \t "), Ok(None));
}

#[test]
fn every_rejection() {
    use ParseError::*;
    let cases: &[(&str, ParseError)] = &[
        ("frobnicate x", UnknownCommand),
        ("CREATE x 8", UnknownCommand),
        ("create", MissingArgument),
        ("create x", MissingArgument),
        ("alloc x", MissingArgument),
        ("page-alloc 3", MissingArgument),
        ("create x 8 bogus", UnexpectedArgument),
        ("shrink x y", UnexpectedArgument),
        ("alloc x 1 2", BadGfp),
        ("alloc x 1 atomic 2", UnexpectedArgument),
        ("create x/y 8", BadName),
        ("create abcdefghijklmnopqrstuvwxyz012345 8", BadName),
        ("alloc caf\u{e9} 1", NotText),
        ("create x 0", BadSize),
        ("create x 1048577", BadSize),
        ("create x -8", BadSize),
        ("create x 8 align=3", BadAlign),
        ("create x 8 align=8192", BadAlign),
        ("create x 8 align=0", BadAlign),
        ("create x 8 align=", BadAlign),
        ("alloc x 0", BadCount),
        ("alloc x 1048577", BadCount),
        ("alloc x -1", BadNumber),
        ("alloc x +1", BadNumber),
        ("alloc x 0x10", BadNumber),
        ("alloc x 99999999999999999999999999", BadNumber),
        ("free x some", BadNumber),
        ("page-alloc 11 1", BadOrder),
        ("page-alloc 4294967296 1", BadOrder),
        ("page-free -1 all", BadNumber),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line), Err(*want), "line {line:?}");
    }
    assert_eq!(parse_line(b"alloc x\0 1", MAX_SIZE, PAGE), Err(NotText));
    assert_eq!(parse_line(b"alloc x \x1b[1", MAX_SIZE, PAGE), Err(NotText));
    let long = format!("alloc x {}", "1".repeat(300));
    assert_eq!(parse(&long), Err(LineTooLong));
    // Exactly 256 bytes is accepted as far as length goes.
    let exact = format!("shrink {}", " ".repeat(256 - 8) + "x");
    assert_eq!(exact.len(), 256);
    assert_eq!(parse(&exact), Ok(Some(Command::Shrink { name: "x" })));
}

#[test]
fn counts_at_the_limits() {
    assert_eq!(
        parse(&format!("alloc x {MAX_COUNT}")),
        Ok(Some(Command::Alloc {
            name: "x",
            count: MAX_COUNT,
            gfp: Gfp::KERNEL,
            node: None
        }))
    );
    assert_eq!(
        parse("create x 1048576"),
        Ok(Some(Command::Create {
            name: "x",
            size: MAX_SIZE,
            options: CreateOptions::default()
        }))
    );
}

#[test]
fn fail_rates() {
    for (line, every) in [
        ("fail 0", 0),
        ("fail 1", 1),
        ("fail 7", 7),
        ("  fail\t0003 ", 3),
        ("fail 1000000", MAX_FAIL_EVERY),
    ] {
        assert_eq!(
            parse(line),
            Ok(Some(Command::Fail {
                every,
                scope: FailScope::All
            })),
            "line {line:?}"
        );
    }
    use ParseError::*;
    let cases: &[(&str, ParseError)] = &[
        ("fail", MissingArgument),
        ("fail 1 2", UnexpectedArgument),
        ("fail 1 all", UnexpectedArgument),
        ("fail 1000001", BadFailRate),
        ("fail 4294967296", BadFailRate),
        ("fail 18446744073709551615", BadFailRate),
        ("fail 18446744073709551616", BadNumber),
        ("fail -1", BadNumber),
        ("fail +1", BadNumber),
        ("fail all", BadNumber),
        ("fail 1e3", BadNumber),
        ("fail 0x10", BadNumber),
        ("FAIL 1", UnknownCommand),
        ("fails 1", UnknownCommand),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line), Err(*want), "line {line:?}");
    }
    assert_eq!(parse_line(b"fail 1\0", MAX_SIZE, PAGE), Err(NotText));
    assert_eq!(
        BadFailRate.to_string(),
        format!("fail rate must be 0 to {MAX_FAIL_EVERY}")
    );
}

#[test]
fn invalid_free_kinds() {
    for (word, kind) in [
        ("interior", InvalidFree::Interior),
        ("foreign", InvalidFree::Foreign),
        ("wrong-cache", InvalidFree::WrongCache),
        ("double", InvalidFree::Double),
    ] {
        assert_eq!(kind.as_str(), word);
        for line in [
            format!("invalid-free foo {word}"),
            format!("\t invalid-free  foo\t{word} "),
        ] {
            assert_eq!(
                parse(&line),
                Ok(Some(Command::InvalidFree { name: "foo", kind })),
                "line {line:?}"
            );
        }
    }
    assert_eq!(
        parse("invalid-free kmalloc-64 interior"),
        Ok(Some(Command::InvalidFree {
            name: "kmalloc-64",
            kind: InvalidFree::Interior
        }))
    );
    assert_eq!(InvalidFree::ALL.len(), 4);
    use ParseError::*;
    let cases: &[(&str, ParseError)] = &[
        ("invalid-free", MissingArgument),
        ("invalid-free foo", MissingArgument),
        ("invalid-free foo interior 1", UnexpectedArgument),
        ("invalid-free foo interior double", UnexpectedArgument),
        ("invalid-free foo Interior", BadFreeKind),
        ("invalid-free foo wrong_cache", BadFreeKind),
        ("invalid-free foo wrongcache", BadFreeKind),
        ("invalid-free foo double-free", BadFreeKind),
        ("invalid-free foo 1", BadFreeKind),
        ("invalid-free foo all", BadFreeKind),
        ("invalid-free bad/name interior", BadName),
        ("invalid-free interior", MissingArgument),
        ("invalid_free foo interior", UnknownCommand),
        ("invalidfree foo interior", UnknownCommand),
        ("INVALID-FREE foo interior", UnknownCommand),
        ("misfree foo interior", UnknownCommand),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line), Err(*want), "line {line:?}");
    }
    assert_eq!(
        parse_line(b"invalid-free foo double\0", MAX_SIZE, PAGE),
        Err(NotText)
    );
    assert_eq!(
        BadFreeKind.to_string(),
        "kind must be interior, foreign, wrong-cache or double"
    );
}

#[test]
fn allocation_flags() {
    for (word, gfp) in [
        ("kernel", Gfp::KERNEL),
        ("GFP_KERNEL", Gfp::KERNEL),
        ("atomic", Gfp::ATOMIC),
        ("GFP_ATOMIC", Gfp::ATOMIC),
        ("nowait", Gfp::NOWAIT),
        ("GFP_NOWAIT", Gfp::NOWAIT),
        ("zero", Gfp::KERNEL | Gfp::ZERO),
        ("__GFP_ZERO", Gfp::KERNEL | Gfp::ZERO),
        ("atomic|zero", Gfp::ATOMIC | Gfp::ZERO),
        ("zero|nowait", Gfp::NOWAIT | Gfp::ZERO),
        ("GFP_ATOMIC|__GFP_ZERO", Gfp::ATOMIC | Gfp::ZERO),
    ] {
        assert_eq!(
            parse(&format!("alloc x 3 {word}")),
            Ok(Some(Command::Alloc {
                name: "x",
                count: 3,
                gfp,
                node: None
            })),
            "{word}"
        );
        assert_eq!(
            parse(&format!("page-alloc 2 1\t{word} ")),
            Ok(Some(Command::PageAlloc {
                order: 2,
                count: 1,
                gfp,
                node: None
            })),
            "{word}"
        );
    }
    // The flags read as the kernel writes them.
    assert_eq!(
        (Gfp::ATOMIC | Gfp::ZERO).to_string(),
        "GFP_ATOMIC|__GFP_ZERO"
    );
    assert_eq!(Gfp::NOWAIT.to_string(), "GFP_NOWAIT");
    assert!(Gfp::ATOMIC.may_use_reserve() && !Gfp::ATOMIC.may_sleep());
    assert!(!Gfp::NOWAIT.may_use_reserve() && !Gfp::NOWAIT.may_sleep());
    assert!(!Gfp::KERNEL.may_use_reserve() && Gfp::KERNEL.may_sleep());
    use ParseError::*;
    for (line, want) in [
        ("alloc x 1 ATOMIC", BadGfp),
        ("alloc x 1 atomic|nowait", BadGfp),
        ("alloc x 1 kernel|kernel", BadGfp),
        ("alloc x 1 atomic|", BadGfp),
        ("alloc x 1 |zero", BadGfp),
        ("alloc x 1 atomic,zero", BadGfp),
        ("page-alloc 0 1 GFP_HIGHMEM", BadGfp),
        ("page-alloc 0 1 atomic zero", UnexpectedArgument),
        ("free x 1 atomic", UnexpectedArgument),
    ] {
        assert_eq!(parse(line), Err(want), "line {line:?}");
    }
}

#[test]
fn node_options() {
    // node=N after COUNT, before or after the flags word.
    for (line, gfp, node) in [
        ("page-alloc 3 2 node=1", Gfp::KERNEL, 1),
        ("page-alloc 3 2 atomic node=0", Gfp::ATOMIC, 0),
        (
            "page-alloc 3 2 node=7 nowait|zero",
            Gfp::NOWAIT | Gfp::ZERO,
            7,
        ),
        ("page-alloc 3 2\tnode=5 ", Gfp::KERNEL, 5),
        // Any number parses; whether the node exists is checked when the
        // command runs.
        ("page-alloc 3 2 node=4096", Gfp::KERNEL, 4096),
        ("page-alloc 3 2 node=007", Gfp::KERNEL, 7),
    ] {
        assert_eq!(
            parse(line),
            Ok(Some(Command::PageAlloc {
                order: 3,
                count: 2,
                gfp,
                node: Some(node)
            })),
            "line {line:?}"
        );
    }
    assert_eq!(
        parse("alloc kmalloc-64 10 node=1"),
        Ok(Some(Command::Alloc {
            name: "kmalloc-64",
            count: 10,
            gfp: Gfp::KERNEL,
            node: Some(1)
        }))
    );
    assert_eq!(
        parse("alloc x 1 node=0 atomic|zero"),
        Ok(Some(Command::Alloc {
            name: "x",
            count: 1,
            gfp: Gfp::ATOMIC | Gfp::ZERO,
            node: Some(0)
        }))
    );
    use ParseError::*;
    for (line, want) in [
        ("page-alloc 0 1 node=x", BadNode),
        ("page-alloc 0 1 node=", BadNode),
        ("page-alloc 0 1 node=-1", BadNode),
        ("page-alloc 0 1 node=+1", BadNode),
        ("page-alloc 0 1 node=0x1", BadNode),
        ("page-alloc 0 1 node=99999999999999999999999999", BadNode),
        ("alloc x 1 node=one", BadNode),
        ("page-alloc 0 1 node=0 node=1", UnexpectedArgument),
        ("page-alloc 0 1 node=0 atomic zero", UnexpectedArgument),
        ("page-alloc 0 1 atomic node=0 kernel", UnexpectedArgument),
        ("alloc x 1 node=1 node=1", UnexpectedArgument),
        // Only alloc and page-alloc take a node; the word must be
        // lower-case `node=`.
        ("page-free 0 1 node=0", UnexpectedArgument),
        ("free x 1 node=0", UnexpectedArgument),
        ("vmalloc v 4K node=0", UnexpectedArgument),
        ("page-alloc 0 1 NODE=0", BadGfp),
        ("page-alloc 0 1 node:0", BadGfp),
        ("page-alloc 0 node=0", BadNumber),
    ] {
        assert_eq!(parse(line), Err(want), "line {line:?}");
    }
    assert_eq!(
        BadNode.to_string(),
        "node must be node=N, N a decimal node number"
    );
}

#[test]
fn vmalloc_sizes_and_names() {
    for (word, size) in [
        ("1", 1),
        ("4096", 4096),
        ("5000", 5000),
        ("16k", 16 << 10),
        ("16K", 16 << 10),
        ("64M", 64 << 20),
        ("64m", 64 << 20),
        ("1G", 1 << 30),
        ("1048576K", 1 << 30),
    ] {
        assert_eq!(
            parse(&format!("vmalloc buf {word}")),
            Ok(Some(Command::Vmalloc { name: "buf", size })),
            "{word}"
        );
    }
    assert_eq!(MAX_VMALLOC_SIZE, 1 << 30);
    assert_eq!(parse("vfree buf"), Ok(Some(Command::Vfree { name: "buf" })));
    use ParseError::*;
    for (line, want) in [
        ("vmalloc", MissingArgument),
        ("vmalloc buf", MissingArgument),
        ("vfree", MissingArgument),
        ("vmalloc buf 0", BadVmallocSize),
        ("vmalloc buf 0K", BadVmallocSize),
        ("vmalloc buf 1073741825", BadVmallocSize),
        ("vmalloc buf 2G", BadVmallocSize),
        ("vmalloc buf 1025M", BadVmallocSize),
        ("vmalloc buf K", BadVmallocSize),
        ("vmalloc buf 4T", BadVmallocSize),
        ("vmalloc buf 4KB", BadVmallocSize),
        ("vmalloc buf -4", BadVmallocSize),
        ("vmalloc buf 99999999999999999999G", BadVmallocSize),
        ("vmalloc buf 18014398509481984K", BadVmallocSize),
        ("vmalloc b/f 4096", BadName),
        ("vmalloc buf 4096 zero", UnexpectedArgument),
        ("vfree buf now", UnexpectedArgument),
        ("vfree b:f", BadName),
        ("VMALLOC buf 1", UnknownCommand),
    ] {
        assert_eq!(parse(line), Err(want), "line {line:?}");
    }
}

#[test]
fn reserve_settings_and_fail_scopes() {
    assert_eq!(
        parse("reserve auto"),
        Ok(Some(Command::Reserve {
            reserve: Reserve::Auto
        }))
    );
    assert_eq!(
        parse("reserve 1024"),
        Ok(Some(Command::Reserve {
            reserve: Reserve::Kbytes(1024)
        }))
    );
    assert_eq!(
        parse("fail 1 refill"),
        Ok(Some(Command::Fail {
            every: 1,
            scope: FailScope::Refill
        }))
    );
    use ParseError::*;
    for (line, want) in [
        ("reserve", MissingArgument),
        ("reserve AUTO", BadReserve),
        ("reserve -1", BadReserve),
        ("reserve 262145", BadReserve),
        ("reserve 1M", BadReserve),
        ("reserve auto 1", UnexpectedArgument),
        ("fail 1 refill 2", UnexpectedArgument),
        ("fail 1 refills", UnexpectedArgument),
    ] {
        assert_eq!(parse(line), Err(want), "line {line:?}");
    }
}

#[test]
fn names() {
    assert!(valid_name("a"));
    assert!(valid_name(&"n".repeat(31)));
    assert!(!valid_name(&"n".repeat(32)));
    assert!(!valid_name(""));
    assert!(!valid_name("a b"));
    assert!(!valid_name("a:b"));
}

#[test]
fn writes_split_into_lines() {
    let got: Vec<&[u8]> = lines(b"a\nb\n\nc").collect();
    assert_eq!(got, vec![&b"a"[..], b"b", b"", b"c"]);
    let got: Vec<&[u8]> = lines(b"one\n").collect();
    assert_eq!(got, vec![&b"one"[..]]);
    assert_eq!(lines(b"").count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Nothing a user writes makes the parser panic, and whatever it
    /// accepts is within the documented limits.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for line in lines(&bytes) {
            if let Ok(Some(cmd)) = parse_line(line, MAX_SIZE, PAGE) {
                prop_assert!(line.len() <= 256);
                match cmd {
                    Command::Create { name, size, options } => {
                        prop_assert!(valid_name(name));
                        prop_assert!((1..=MAX_SIZE).contains(&size));
                        prop_assert!(options.align == 0 || (options.align.is_power_of_two() && options.align <= PAGE));
                    }
                    Command::Alloc { name, count, .. } => {
                        prop_assert!(valid_name(name));
                        prop_assert!((1..=MAX_COUNT).contains(&count));
                    }
                    Command::PageAlloc { order, count, .. } => {
                        prop_assert!(order <= 10);
                        prop_assert!((1..=MAX_COUNT).contains(&count));
                    }
                    Command::Fail { every, .. } => prop_assert!(every <= MAX_FAIL_EVERY),
                    Command::Vmalloc { name, size } => {
                        prop_assert!(valid_name(name));
                        prop_assert!((1..=MAX_VMALLOC_SIZE).contains(&size));
                    }
                    Command::Vfree { name } => prop_assert!(valid_name(name)),
                    Command::InvalidFree { name, kind } => {
                        prop_assert!(valid_name(name));
                        prop_assert!(InvalidFree::ALL.contains(&kind));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Well-formed commands built from parts parse back to those parts.
    #[test]
    fn generated_commands_round_trip(
        name in "[A-Za-z0-9_.-]{1,31}",
        count in 1usize..=MAX_COUNT,
        order in 0u32..=10,
        every in 0usize..=MAX_FAIL_EVERY,
        kind in proptest::sample::select(InvalidFree::ALL.to_vec()),
    ) {
        let line = format!("alloc {name} {count}");
        prop_assert_eq!(parse(&line), Ok(Some(Command::Alloc { name: &name, count, gfp: Gfp::KERNEL, node: None })));
        let line = format!("page-alloc {order} {count} atomic|zero");
        prop_assert_eq!(parse(&line), Ok(Some(Command::PageAlloc { order, count, gfp: Gfp::ATOMIC | Gfp::ZERO, node: None })));
        let node = order as usize % 8;
        let line = format!("page-alloc {order} {count} node={node}");
        prop_assert_eq!(parse(&line), Ok(Some(Command::PageAlloc { order, count, gfp: Gfp::KERNEL, node: Some(node) })));
        let line = format!("alloc {name} {count} node={node} nowait");
        prop_assert_eq!(parse(&line), Ok(Some(Command::Alloc { name: &name, count, gfp: Gfp::NOWAIT, node: Some(node) })));
        let line = format!("fail {every}");
        prop_assert_eq!(parse(&line), Ok(Some(Command::Fail { every, scope: FailScope::All })));
        let line = format!("fail {every} refill");
        prop_assert_eq!(parse(&line), Ok(Some(Command::Fail { every, scope: FailScope::Refill })));
        let line = format!("vmalloc {name} {count}K");
        prop_assert_eq!(parse(&line), Ok(Some(Command::Vmalloc { name: &name, size: count << 10 })));
        let line = format!("vfree {name}");
        prop_assert_eq!(parse(&line), Ok(Some(Command::Vfree { name: &name })));
        let line = format!("invalid-free {name} {}", kind.as_str());
        prop_assert_eq!(parse(&line), Ok(Some(Command::InvalidFree { name: &name, kind })));
    }
}
