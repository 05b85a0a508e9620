// SPDX-License-Identifier: GPL-2.0

//! Hiding kernel addresses in report lines, as `%p` does in `printk`.
//!
//! The allocator's reports name the object they are about (`{:p}`), which
//! on the host is what a test wants to see. In the kernel log, readable by
//! more than root on many systems, a raw kernel address helps an attacker
//! defeat address-space randomisation; the kernel's own `%p` therefore
//! prints a keyed hash instead. [`scrub_addresses`] does the same to a
//! formatted line: every `0x` followed by more than eight hex digits (a
//! kernel address; small numbers are left alone) becomes the hash of that
//! address, printed like the kernel's hashed pointers (`0x00000000` and
//! eight hex digits). The same address always gives the same hash within
//! a boot, so report lines about one object can still be matched up.

use core::fmt::{self, Write};

/// Hex digits after `0x` from which a number counts as an address.
const MIN_ADDRESS_DIGITS: usize = 9;

/// Writes `line` to `out` with every address replaced by `hash(address)`
/// truncated to 32 bits.
pub fn scrub_addresses(line: &str, out: &mut impl Write, hash: impl Fn(u64) -> u64) -> fmt::Result {
    let bytes = line.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if starts_word && bytes[i] == b'0' && bytes[i + 1] == b'x' {
            let digits = bytes[i + 2..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if (MIN_ADDRESS_DIGITS..=16).contains(&digits) {
                let text = &line[i + 2..i + 2 + digits];
                if let Ok(address) = u64::from_str_radix(text, 16) {
                    out.write_str(&line[copied..i])?;
                    write!(out, "0x00000000{:08x}", hash(address) as u32)?;
                    i += 2 + digits;
                    copied = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.write_str(&line[copied..])
}

/// A keyed 64-bit mix (the finaliser of SplitMix64 over `address ^ key`):
/// not a cryptographic hash, but without the key the output does not give
/// the address away, and the key is random per load.
pub fn hash_address(address: u64, key: u64) -> u64 {
    let mut z = (address ^ key).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fixed-size line buffer: what does not fit is cut, marked with `...`.
pub struct LineBuffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuffer {
            bytes: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// The text written so far (cut at a character boundary).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.bytes[..self.len]) {
            Ok(text) => text,
            // Only a cut in the middle of a character can get here.
            Err(e) => core::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Whether something did not fit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> Write for LineBuffer<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}
