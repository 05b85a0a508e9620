// SPDX-License-Identifier: GPL-2.0

//! Real threads hammering caches and kmalloc: allocations and frees on
//! several CPUs, objects handed between threads so that most frees are
//! remote, a thread shrinking and reading statistics meanwhile. Every object
//! is stamped with a unique number at both ends while held and checked
//! before it is freed, and a set of live addresses refuses duplicates, so
//! an object handed out twice is caught.

use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::kmalloc::Kmalloc;
use rmm_core::page_alloc::PageAllocator;
use rmm_core::slab::{DestroyError, KmemCache, SlabFlags};
use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;

const CPUS: usize = 3;
/// One more thread than CPUs: two threads share CPU 0's arrays.
const THREADS: usize = 4;
const OPS_PER_THREAD: usize = 100_000;
const MAX_HELD: usize = 400;

/// A small deterministic generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An object held by a test thread: where, of which allocator (cache index
/// or kmalloc), how big, and its stamp.
#[derive(Clone, Copy)]
struct Held {
    addr: usize,
    source: usize,
    size: usize,
    stamp: u64,
}

/// Live addresses, sharded to keep the threads from queueing on one lock.
struct LiveSet(Vec<Mutex<HashSet<usize>>>);

impl LiveSet {
    fn new() -> Self {
        LiveSet((0..64).map(|_| Mutex::new(HashSet::new())).collect())
    }

    fn shard(&self, addr: usize) -> &Mutex<HashSet<usize>> {
        &self.0[(addr >> 4) % self.0.len()]
    }

    fn insert(&self, addr: usize) {
        assert!(
            self.shard(addr).lock().unwrap().insert(addr),
            "{addr:#x} handed out while live"
        );
    }

    fn remove(&self, addr: usize) {
        assert!(
            self.shard(addr).lock().unwrap().remove(&addr),
            "{addr:#x} not live"
        );
    }
}

fn write_stamp(held: &Held) {
    let ptr = held.addr as *mut u8;
    // SAFETY: the thread holds the object, at least 16 bytes.
    unsafe {
        ptr.cast::<u64>().write_unaligned(held.stamp);
        ptr.add(held.size - 8)
            .cast::<u64>()
            .write_unaligned(!held.stamp);
    }
}

fn check_stamp(held: &Held) {
    let ptr = held.addr as *const u8;
    // SAFETY: as in `write_stamp`.
    let (head, tail) = unsafe {
        (
            ptr.cast::<u64>().read_unaligned(),
            ptr.add(held.size - 8).cast::<u64>().read_unaligned(),
        )
    };
    assert_eq!(
        (head, tail),
        (held.stamp, !held.stamp),
        "object {:#x} overwritten",
        held.addr
    );
}

/// What a worker thread does, for any allocator: `alloc(source, rng)`
/// returns a new object, `free` gives one back.
fn worker(
    thread: usize,
    live: &LiveSet,
    exchange: &Mutex<Vec<Held>>,
    stamps: &AtomicU64,
    alloc: impl Fn(&mut Rng) -> Held,
    free: impl Fn(Held),
) {
    HostPlatform::set_this_cpu(thread % CPUS);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((thread as u64 + 1) * 0x1234_5678));
    let mut held: Vec<Held> = Vec::new();
    let release = |held: Held| {
        check_stamp(&held);
        live.remove(held.addr);
        free(held);
    };
    for _ in 0..OPS_PER_THREAD {
        match rng.below(20) {
            0..=8 if held.len() < MAX_HELD => {
                let mut new = alloc(&mut rng);
                new.stamp = stamps.fetch_add(1, Ordering::Relaxed);
                live.insert(new.addr);
                write_stamp(&new);
                held.push(new);
            }
            0..=15 if !held.is_empty() => {
                let index = rng.below(held.len());
                release(held.swap_remove(index));
            }
            16..=17 if !held.is_empty() => {
                let index = rng.below(held.len());
                exchange.lock().unwrap().push(held.swap_remove(index));
            }
            _ => {
                // Take an object another thread (another CPU) allocated.
                if let Some(other) = exchange.lock().unwrap().pop() {
                    held.push(other);
                }
            }
        }
    }
    for object in held {
        release(object);
    }
}

#[test]
fn caches_hammered_from_many_cpus() {
    HostPlatform::set_this_cpu(0);
    let pages = PageAllocator::new(HostPlatform::new(CPUS)).unwrap();
    let specs = [
        (16, SlabFlags::NONE),
        (200, SlabFlags::HWCACHE_ALIGN),
        (1500, SlabFlags::NONE),
        (96, SlabFlags::DEBUG),
        (5000, SlabFlags::DEBUG),
    ];
    let caches: Vec<_> = specs
        .iter()
        .enumerate()
        .map(|(n, &(size, flags))| {
            KmemCache::create(&pages, &format!("hammer-{n}"), size, 0, flags, None).unwrap()
        })
        .collect();
    // One object per cache stays allocated throughout, so a destroy racing
    // with the workers must always be refused.
    let anchors: Vec<_> = caches
        .iter()
        .map(|cache| cache.alloc(&pages, Gfp::KERNEL).unwrap())
        .collect();
    let live = LiveSet::new();
    let exchange = Mutex::new(Vec::new());
    let stamps = AtomicU64::new(1);
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (pages, caches, live, exchange, stamps) =
                    (&pages, &caches, &live, &exchange, &stamps);
                scope.spawn(move || {
                    worker(
                        thread,
                        live,
                        exchange,
                        stamps,
                        |rng| {
                            let source = rng.below(caches.len());
                            let cache = &caches[source];
                            let ptr = cache.alloc(pages, Gfp::KERNEL).unwrap();
                            Held {
                                addr: ptr.as_ptr() as usize,
                                source,
                                size: cache.object_size(),
                                stamp: 0,
                            }
                        },
                        |held| {
                            let ptr = NonNull::new(held.addr as *mut u8).unwrap();
                            // SAFETY: a live object of this cache, freed once.
                            unsafe { caches[held.source].free(pages, ptr) }.unwrap();
                        },
                    )
                })
            })
            .collect();
        // Meanwhile: shrink, read statistics, try to destroy.
        let janitor = scope.spawn(|| {
            HostPlatform::set_this_cpu(1);
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) {
                for cache in &caches {
                    cache.shrink(&pages);
                    let info = cache.slabinfo();
                    assert!(info.active_objs <= info.num_objs);
                    assert_eq!(info.num_objs, info.num_slabs * info.objperslab);
                    assert!(matches!(
                        cache.destroy(&pages),
                        Err(DestroyError::Busy { .. })
                    ));
                    assert_eq!(cache.stats().errors, 0);
                }
                rounds += 1;
                thread::yield_now();
            }
            rounds
        });
        for worker in workers {
            worker.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        assert!(janitor.join().unwrap() > 0);
    });
    for object in exchange.into_inner().unwrap() {
        check_stamp(&object);
        let ptr = NonNull::new(object.addr as *mut u8).unwrap();
        // SAFETY: as above.
        unsafe { caches[object.source].free(&pages, ptr) }.unwrap();
    }
    for (cache, anchor) in caches.iter().zip(anchors) {
        // SAFETY: the anchor is a live object of this cache.
        unsafe { cache.free(&pages, anchor) }.unwrap();
        cache.check_invariants(&pages).unwrap();
        let stats = cache.stats();
        assert_eq!(stats.allocs, stats.frees, "{}", cache.name());
        assert_eq!((stats.active, stats.errors), (0, 0), "{}", cache.name());
        assert!(stats.allocs > 1000);
        // Remote frees happened: some CPU freed more than it allocated.
        assert!((0..CPUS).any(|cpu| {
            let one = cache.cpu_stats(cpu);
            one.frees > one.allocs
        }));
        cache.destroy(&pages).unwrap();
    }
    assert!(
        pages.platform().reports().is_empty(),
        "{:?}",
        pages.platform().reports()
    );
    pages.shrink();
    assert_eq!(pages.platform().pages_outstanding(), 0);
}

#[test]
fn kmalloc_hammered_from_many_cpus() {
    HostPlatform::set_this_cpu(0);
    let pages = PageAllocator::new(HostPlatform::new(CPUS)).unwrap();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    let live = LiveSet::new();
    let exchange = Mutex::new(Vec::new());
    let stamps = AtomicU64::new(1);
    thread::scope(|scope| {
        for thread in 0..THREADS {
            let (pages, kmalloc, live, exchange, stamps) =
                (&pages, &kmalloc, &live, &exchange, &stamps);
            scope.spawn(move || {
                worker(
                    thread,
                    live,
                    exchange,
                    stamps,
                    |rng| {
                        // Mostly small sizes, some page blocks.
                        let size = match rng.below(10) {
                            0 => 8193 + rng.below(40_000),
                            _ => 16 + rng.below(3000),
                        };
                        let ptr = kmalloc.kmalloc(pages, size, Gfp::KERNEL).unwrap();
                        assert!(kmalloc.ksize(pages, ptr.as_ptr()).unwrap() >= size);
                        Held {
                            addr: ptr.as_ptr() as usize,
                            source: 0,
                            size,
                            stamp: 0,
                        }
                    },
                    |held| {
                        let ptr = NonNull::new(held.addr as *mut u8).unwrap();
                        // SAFETY: live kmalloc memory, freed once.
                        unsafe { kmalloc.kfree(pages, ptr) }.unwrap();
                    },
                )
            });
        }
    });
    for object in exchange.into_inner().unwrap() {
        check_stamp(&object);
        let ptr = NonNull::new(object.addr as *mut u8).unwrap();
        // SAFETY: as above.
        unsafe { kmalloc.kfree(&pages, ptr) }.unwrap();
    }
    assert_eq!(kmalloc.large_blocks(), 0);
    assert_eq!(kmalloc.errors(), 0);
    for cache in kmalloc.caches() {
        cache.check_invariants(&pages).unwrap();
        assert_eq!(cache.stats().active, 0, "{}", cache.name());
    }
    assert!(pages.platform().reports().is_empty());
    kmalloc.destroy(&pages).unwrap();
    pages.shrink();
    assert_eq!(pages.platform().pages_outstanding(), 0);
}
