// SPDX-License-Identifier: GPL-2.0

//! What the stress test knows about each object it holds
//! ([`StressObject`]), the stamp it writes into the object's first two
//! words, and the inboxes ([`Ring`]) through which threads hand objects to
//! each other.
//!
//! A live object starts with its tag (thread number and sequence number),
//! then the tag mixed with [`STAMP_KEY`], so that stale or random memory
//! does not pass for a stamp. An object handed out twice at once shows up
//! as a stamp that changed under its holder, or as a new object that is
//! already stamped live.

/// Mixed into the second word of a live object's stamp.
pub const STAMP_KEY: u64 = 0x5354_5245_5353_2121;

/// What a free leaves in the second word of an object without constructor.
pub const FREED: u64 = 0x6b6b_f4ee_6b6b_f4ee;

/// The constructed state of the first two words of a constructor cache's
/// objects, restored before every free.
pub const CONSTRUCTED: u64 = 0xc7c7_c7c7_c7c7_c7c7;

/// Bits of a tag for the sequence number; the thread number is above.
pub const SEQ_BITS: u32 = 40;

/// Room in a thread's inbox (a power of two).
pub const INBOX_LEN: usize = 16;

const _: () = assert!(INBOX_LEN.is_power_of_two());

/// An object held by a stress thread or waiting in an inbox: where it is,
/// where it came from, and the tag of its stamp.
///
/// Only the stress threads make them, from objects they allocated: the
/// fields are private so that nothing else can pass an address off as one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressObject {
    addr: usize,
    source: usize,
    tag: u64,
}

impl StressObject {
    /// A placeholder for empty slots.
    pub const EMPTY: StressObject = StressObject {
        addr: 0,
        source: 0,
        tag: 0,
    };

    /// The record of the object at `addr` from `source`, allocated by
    /// thread `thread` as its `seq`-th (only the low [`SEQ_BITS`] bits of
    /// `seq` are kept).
    pub(crate) fn new(addr: usize, source: usize, thread: usize, seq: u64) -> Self {
        StressObject {
            addr,
            source,
            tag: ((thread as u64) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1)),
        }
    }

    /// The object's address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Where it came from: a stress cache index, or
    /// [`super::KMALLOC_SOURCE`].
    pub fn source(&self) -> usize {
        self.source
    }

    /// Its tag: thread number above [`SEQ_BITS`], sequence number below.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The thread that allocated it.
    pub fn thread(&self) -> usize {
        (self.tag >> SEQ_BITS) as usize
    }

    /// The first two words of the object while it is live.
    pub fn stamp(&self) -> [u64; 2] {
        [self.tag, self.tag ^ STAMP_KEY]
    }

    /// Whether `words`, read from the object, are its stamp.
    pub fn stamp_matches(&self, words: [u64; 2]) -> bool {
        words == self.stamp()
    }
}

/// Checks the first two words of an object just handed out by its
/// allocator: a constructor cache's object must be in its constructed
/// state, and no object may carry a live stamp (it would be someone
/// else's). Returns what is wrong.
pub fn check_fresh(words: [u64; 2], has_ctor: bool) -> Result<(), &'static str> {
    if has_ctor {
        if words != [CONSTRUCTED; 2] {
            return Err("object not in its constructed state");
        }
    } else if words[1] == words[0] ^ STAMP_KEY {
        return Err("object handed out while stamped live");
    }
    Ok(())
}

/// What the first two words of a live object (`words`, its stamp) become
/// before it is freed: the constructed state for a constructor cache's
/// object, otherwise the tag and [`FREED`], which no longer pass for a
/// live stamp.
pub fn wiped(words: [u64; 2], has_ctor: bool) -> [u64; 2] {
    if has_ctor {
        [CONSTRUCTED; 2]
    } else {
        [words[0], FREED]
    }
}

/// A thread's inbox: objects other threads handed over for it to free,
/// oldest first.
#[derive(Debug)]
pub struct Ring {
    slots: [StressObject; INBOX_LEN],
    head: usize,
    len: usize,
}

impl Ring {
    /// An empty inbox.
    pub fn new() -> Self {
        Ring {
            slots: [StressObject::EMPTY; INBOX_LEN],
            head: 0,
            len: 0,
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `object`; gives it back if the ring is full.
    pub(crate) fn push(&mut self, object: StressObject) -> Result<(), StressObject> {
        if self.len == INBOX_LEN {
            return Err(object);
        }
        let index = (self.head + self.len) & (INBOX_LEN - 1);
        self.slots[index] = object;
        self.len += 1;
        Ok(())
    }

    /// Takes the oldest object out.
    pub(crate) fn pop(&mut self) -> Option<StressObject> {
        if self.len == 0 {
            return None;
        }
        let object = self.slots[self.head];
        self.head = (self.head + 1) & (INBOX_LEN - 1);
        self.len -= 1;
        Some(object)
    }
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(n: usize) -> StressObject {
        StressObject::new(0x1000 + 16 * n, n % 5, n % 3, n as u64)
    }

    #[test]
    fn tags_carry_the_thread_above_the_sequence() {
        let obj = StressObject::new(0x1234, 2, 5, 77);
        assert_eq!(obj.addr(), 0x1234);
        assert_eq!(obj.source(), 2);
        assert_eq!(obj.tag(), (5 << SEQ_BITS) | 77);
        assert_eq!(obj.thread(), 5);
        // The sequence number wraps within its bits, never into the
        // thread's.
        let wrapped = StressObject::new(0, 0, 3, (1 << SEQ_BITS) + 9);
        assert_eq!(wrapped.thread(), 3);
        assert_eq!(wrapped.tag(), (3 << SEQ_BITS) | 9);
        let last = StressObject::new(0, 0, 1, u64::MAX);
        assert_eq!(last.thread(), 1);
        assert_eq!(last.tag() & ((1 << SEQ_BITS) - 1), (1 << SEQ_BITS) - 1);
    }

    #[test]
    fn a_stamp_matches_only_its_own_object() {
        let a = StressObject::new(0x40, 0, 1, 1);
        let b = StressObject::new(0x40, 0, 1, 2);
        let c = StressObject::new(0x40, 0, 2, 1);
        assert!(a.stamp_matches(a.stamp()));
        assert!(!a.stamp_matches(b.stamp()));
        assert!(!a.stamp_matches(c.stamp()));
        // Either word changed is a mismatch.
        let [first, second] = a.stamp();
        assert!(!a.stamp_matches([first ^ 1, second]));
        assert!(!a.stamp_matches([first, second ^ 1]));
        assert!(!a.stamp_matches(wiped(a.stamp(), false)));
        assert!(!a.stamp_matches(wiped(a.stamp(), true)));
    }

    #[test]
    fn fresh_objects_must_not_look_live_and_constructed_ones_must_be() {
        let live = StressObject::new(0x80, 1, 0, 3).stamp();
        assert_eq!(
            check_fresh(live, false),
            Err("object handed out while stamped live")
        );
        assert_eq!(check_fresh(wiped(live, false), false), Ok(()));
        assert_eq!(check_fresh([0, 0], false), Ok(()));
        assert_eq!(check_fresh([0xa5a5, 0x5a5a], false), Ok(()));
        assert_eq!(check_fresh(wiped(live, true), true), Ok(()));
        assert_eq!(check_fresh([CONSTRUCTED; 2], true), Ok(()));
        for words in [live, [CONSTRUCTED, 0], [0, CONSTRUCTED], [0, 0]] {
            assert_eq!(
                check_fresh(words, true),
                Err("object not in its constructed state")
            );
        }
    }

    #[test]
    fn ring_is_a_bounded_fifo_across_wrap_around() {
        let mut ring = Ring::new();
        assert!(ring.is_empty());
        assert_eq!(ring.pop(), None);
        let mut next_in = 0;
        let mut next_out = 0;
        // Fill, half drain, refill, several times: the head goes round.
        for _ in 0..5 {
            while ring.push(object(next_in)).is_ok() {
                next_in += 1;
            }
            assert_eq!(next_in - next_out, INBOX_LEN);
            assert_eq!(ring.push(object(999)), Err(object(999)));
            for _ in 0..INBOX_LEN / 2 + 1 {
                assert_eq!(ring.pop(), Some(object(next_out)));
                next_out += 1;
            }
        }
        while let Some(obj) = ring.pop() {
            assert_eq!(obj, object(next_out));
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
        assert!(ring.is_empty());
    }
}
