// SPDX-License-Identifier: GPL-2.0

//! Report lines reach the kernel log without raw kernel addresses.

use core::fmt::Write;
use rmm_core::address_hash::{hash_address, scrub_addresses, LineBuffer};

fn scrub(line: &str) -> String {
    let mut out = String::new();
    scrub_addresses(line, &mut out, |a| hash_address(a, 0x1234_5678_9abc_def0)).unwrap();
    out
}

#[test]
fn kernel_addresses_are_hashed() {
    let line = "cache foo: double free of 0xffff888003a1c040 (object 3)";
    let out = scrub(line);
    assert!(!out.contains("ffff888003a1c040"), "{out}");
    let hashed = hash_address(0xffff_8880_03a1_c040, 0x1234_5678_9abc_def0) as u32;
    assert_eq!(
        out,
        format!("cache foo: double free of 0x00000000{hashed:08x} (object 3)")
    );
}

#[test]
fn the_same_address_hashes_the_same_and_others_differ() {
    let out = scrub("0xffff888003a1c040 and 0xffff888003a1c040 but 0xffff888003a1c080");
    let words: Vec<&str> = out.split(' ').collect();
    assert_eq!(words[0], words[2]);
    assert_ne!(words[0], words[4]);
}

#[test]
fn small_numbers_and_words_are_left_alone() {
    for line in [
        "order 3, size 0x1000, mask 0xff",
        "name x0xffff888003a1c040",
        "trailing 0x",
        "",
        "0x12345678",
    ] {
        assert_eq!(scrub(line), line);
    }
    // Nine digits and more count as an address, at the very start too.
    assert_ne!(scrub("0x123456789"), "0x123456789");
}

#[test]
fn line_buffer_cuts_long_lines() {
    let mut buf = LineBuffer::<8>::new();
    write!(buf, "abcdefghij").unwrap();
    assert_eq!(buf.as_str(), "abcdefgh");
    assert!(buf.truncated());
    let mut buf = LineBuffer::<4>::new();
    write!(buf, "ab\u{e9}\u{e9}").unwrap();
    assert_eq!(buf.as_str(), "ab\u{e9}");
}
