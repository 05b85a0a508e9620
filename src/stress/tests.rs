// SPDX-License-Identifier: GPL-2.0

//! Host tests of the stress model: whole runs on `std` threads standing in
//! for CPUs, and each check made to fire once on purpose.

extern crate std;

use super::*;
use crate::host::{HostLock, HostPlatform};
use crate::platform::LockClass;
use std::string::{String, ToString};
use std::thread;
use std::vec::Vec;

/// A page allocator, kmalloc, the stress caches and `threads` inboxes on a
/// host platform of `cpus` CPUs.
struct Bed {
    pages: PageAllocator<HostPlatform>,
    kmalloc: Kmalloc<HostPlatform>,
    caches: Vec<KmemCache<HostPlatform>>,
    inboxes: Vec<HostLock<Ring>>,
}

impl Bed {
    fn new(cpus: usize, threads: usize) -> Self {
        HostPlatform::set_this_cpu(0);
        let pages = PageAllocator::new(HostPlatform::new(cpus)).unwrap();
        let kmalloc = Kmalloc::new(&pages).unwrap();
        let caches = CACHE_SPECS
            .iter()
            .map(|spec| spec.create(&pages).unwrap())
            .collect();
        let inboxes = (0..threads)
            .map(|_| pages.platform().new_lock(Ring::new(), LockClass::Other))
            .collect::<Result<_, _>>()
            .unwrap();
        Bed {
            pages,
            kmalloc,
            caches,
            inboxes,
        }
    }

    fn shared(&self) -> Shared<'_, HostPlatform> {
        Shared::new(&self.pages, &self.kmalloc, &self.caches, &self.inboxes).unwrap()
    }

    /// The lines the stress test reported (not the caches' own).
    fn stress_reports(&self) -> Vec<String> {
        let reports = self.pages.platform().reports();
        reports
            .into_iter()
            .filter(|line| line.starts_with("stress: "))
            .collect()
    }

    /// Destroys everything; fails on a leak or a report.
    fn tear_down(mut self) {
        assert_eq!(destroy_caches(&self.pages, &self.caches), 0);
        self.kmalloc.destroy(&self.pages).unwrap();
        assert!(
            self.pages.platform().reports().is_empty(),
            "{:?}",
            self.pages.platform().reports()
        );
        self.pages.shrink();
        assert_eq!(self.pages.platform().pages_outstanding(), 0);
    }
}

/// Runs `threads` runners of `ops` operations in all on `bed`, thread `i`
/// on CPU `i % cpus`; returns the summary.
fn run(bed: &Bed, cpus: usize, ops: usize) -> Summary {
    let shared = bed.shared();
    let threads = shared.threads();
    let cells: Vec<CountsCell> = (0..threads.get()).map(|_| CountsCell::default()).collect();
    thread::scope(|scope| {
        for (id, cell) in cells.iter().enumerate() {
            let shared = &shared;
            scope.spawn(move || {
                HostPlatform::set_this_cpu(id % cpus);
                let mut held = [StressObject::EMPTY; HELD_MAX];
                let mut runner = Runner::new(shared, id, seed(42, id as u32), &mut held);
                runner.work(quota(ops, threads, id));
                runner.finish(thread::yield_now);
                assert_eq!(runner.held(), 0);
                cell.store(&runner.counts());
            });
        }
    });
    let mut summary = Summary::default();
    for cell in &cells {
        summary.add_thread(&cell.load());
    }
    assert!(bed
        .inboxes
        .iter()
        .all(|inbox| inbox.with(|ring| ring.is_empty())));
    summary
}

#[test]
fn threads_on_several_cpus_free_each_others_objects_cleanly() {
    let bed = Bed::new(3, 3);
    let summary = run(&bed, 3, 30_000);
    assert!(summary.counts.operations >= 30_000, "{summary}");
    assert_eq!(summary.cpus, 3);
    assert_eq!(
        (summary.counts.corruptions, summary.counts.failures),
        (0, 0)
    );
    assert!(summary.counts.cross_frees > 0, "{summary}");
    // Every source was used, and everything went back.
    for cache in &bed.caches {
        let stats = cache.stats();
        assert!(stats.allocs > 0, "{}", cache.name());
        assert_eq!(stats.allocs, stats.frees, "{}", cache.name());
        assert_eq!(stats.errors, 0, "{}", cache.name());
    }
    bed.tear_down();
}

#[test]
fn more_threads_than_cpus_still_hold_the_stamps() {
    let bed = Bed::new(2, 4);
    let summary = run(&bed, 2, 20_000);
    assert_eq!(summary.cpus, 4);
    assert_eq!(
        (summary.counts.corruptions, summary.counts.failures),
        (0, 0)
    );
    bed.tear_down();
}

#[test]
fn a_lone_thread_frees_what_it_would_hand_over() {
    let bed = Bed::new(1, 1);
    let summary = run(&bed, 1, 5_000);
    assert_eq!(summary.counts.cross_frees, 0);
    assert_eq!(summary.counts.corruptions, 0);
    assert!(summary.counts.operations >= 5_000);
    bed.tear_down();
}

#[test]
fn a_runner_without_room_frees_every_object_at_once() {
    let bed = Bed::new(1, 1);
    let shared = bed.shared();
    let mut runner = Runner::new(&shared, 0, 9, &mut []);
    runner.count_failure();
    runner.work(500);
    assert_eq!(runner.held(), 0);
    runner.finish(|| {});
    let counts = runner.counts();
    assert_eq!(counts.failures, 1);
    assert_eq!(counts.corruptions, 0);
    // Every allocation was followed by its free.
    assert_eq!(counts.operations % 2, 0);
    bed.tear_down();
}

#[test]
fn a_handed_over_object_is_a_cross_free_and_a_full_inbox_refuses() {
    let bed = Bed::new(2, 2);
    let shared = bed.shared();
    let mut held0 = [StressObject::EMPTY; INBOX_LEN + 1];
    let mut held1 = [StressObject::EMPTY; 1];
    let mut zero = Runner::new(&shared, 0, 1, &mut held0);
    for _ in 0..=INBOX_LEN {
        zero.alloc_with(0);
    }
    assert_eq!(zero.held(), INBOX_LEN + 1);
    for _ in 0..=INBOX_LEN {
        let object = zero.take_held(0).unwrap();
        zero.hand_over(object, 0);
    }
    // The inbox took 16; the 17th was freed at home.
    assert_eq!(zero.counts().operations, INBOX_LEN + 2);
    assert_eq!(zero.counts().cross_frees, 0);
    let mut one = Runner::new(&shared, 1, 2, &mut held1);
    let mut freed = 0;
    while one.free_from_inbox() {
        freed += 1;
    }
    assert_eq!(freed, INBOX_LEN);
    assert_eq!(one.counts().cross_frees, INBOX_LEN);
    assert_eq!(one.counts().corruptions, 0);
    bed.tear_down();
}

/// Allocates an object of `source` through `runner` and takes it back out
/// of its hands.
fn allocated(runner: &mut Runner<'_, HostPlatform>, source: u64) -> StressObject {
    runner.alloc_with(source);
    runner.take_held(0).unwrap()
}

#[test]
fn a_changed_stamp_is_reported_and_the_object_kept() {
    let bed = Bed::new(1, 1);
    let shared = bed.shared();
    let mut held = [StressObject::EMPTY; 4];
    let mut runner = Runner::new(&shared, 0, 1, &mut held);
    let object = allocated(&mut runner, 0);
    let word = object.addr() as *mut u64;
    // SAFETY: the runner allocated it from a 16-byte cache; nothing else
    // uses it.
    unsafe { word.write(0x1234) };
    runner.free(object);
    assert_eq!(runner.counts().corruptions, 1);
    let reports = bed.stress_reports();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].contains("stamp changed"), "{reports:?}");
    assert!(reports[0].contains("found 0x1234"), "{reports:?}");
    // Left allocated: destroying its cache now would find it.
    assert_eq!(bed.caches[0].stats().active, 1);
    let obj = NonNull::new(object.addr() as *mut u8).unwrap();
    // SAFETY: a live object of cache 0, freed once.
    unsafe { bed.caches[0].free(&bed.pages, obj) }.unwrap();
    bed.pages.platform().take_reports();
    bed.tear_down();
}

#[test]
fn an_object_out_of_its_constructed_state_is_reported() {
    // One CPU: the cache's array hands the object just freed out again.
    let bed = Bed::new(1, 1);
    let cache = &bed.caches[1];
    let obj = cache.alloc(&bed.pages, Gfp::KERNEL).unwrap();
    // SAFETY: a 96-byte object of ours.
    unsafe { obj.as_ptr().cast::<u64>().write(0) };
    // SAFETY: allocated above, freed once, not used again.
    unsafe { cache.free(&bed.pages, obj) }.unwrap();
    let shared = bed.shared();
    let mut held = [StressObject::EMPTY; 4];
    let mut runner = Runner::new(&shared, 0, 1, &mut held);
    let object = allocated(&mut runner, 1);
    assert_eq!(object.addr(), obj.as_ptr() as usize);
    assert_eq!(runner.counts().corruptions, 1);
    let reports = bed.stress_reports();
    assert!(
        reports[0].contains("object not in its constructed state"),
        "{reports:?}"
    );
    // The free puts the constructed state back.
    runner.free(object);
    assert_eq!(runner.counts().corruptions, 1);
    let again = allocated(&mut runner, 1);
    assert_eq!(again.addr(), object.addr());
    assert_eq!(runner.counts().corruptions, 1);
    runner.free(again);
    bed.pages.platform().take_reports();
    bed.tear_down();
}

#[test]
fn an_object_handed_out_while_stamped_live_is_reported() {
    let bed = Bed::new(1, 1);
    let shared = bed.shared();
    let mut held = [StressObject::EMPTY; 4];
    let mut runner = Runner::new(&shared, 0, 1, &mut held);
    let first = allocated(&mut runner, 0);
    // Freed behind the runner's back, stamp and all: the allocator hands
    // the object out again while its stamp says it is live.
    let obj = NonNull::new(first.addr() as *mut u8).unwrap();
    // SAFETY: a live object of cache 0, freed once; the runner no longer
    // holds it.
    unsafe { bed.caches[0].free(&bed.pages, obj) }.unwrap();
    let second = allocated(&mut runner, 0);
    assert_eq!(second.addr(), first.addr());
    assert_eq!(runner.counts().corruptions, 1);
    let reports = bed.stress_reports();
    assert!(
        reports[0].contains("object handed out while stamped live"),
        "{reports:?}"
    );
    runner.free(second);
    bed.pages.platform().take_reports();
    bed.tear_down();
}

#[test]
fn a_refused_free_is_reported_and_reports_stop_at_the_limit() {
    let bed = Bed::new(1, 1);
    let shared = bed.shared();
    let mut runner = Runner::new(&shared, 0, 1, &mut []);
    let mut foreign = [[0u64; 2]; REPORT_MAX + 2];
    for (seq, words) in foreign.iter_mut().enumerate() {
        // Not an object of any cache, stamped as if it were one.
        let object = StressObject::new(words.as_mut_ptr() as usize, 0, 0, seq as u64);
        *words = object.stamp();
        runner.free(object);
    }
    assert_eq!(runner.counts().corruptions, REPORT_MAX + 2);
    let reports = bed.stress_reports();
    assert_eq!(reports.len(), REPORT_MAX);
    assert!(reports.iter().all(|line| line.contains("free refused")));
    // The cache reported each refused free itself too.
    assert_eq!(bed.caches[0].stats().errors, REPORT_MAX + 2);
    bed.pages.platform().take_reports();
    bed.tear_down();
}

#[test]
fn shared_state_needs_empty_inboxes_and_every_cache() {
    let bed = Bed::new(1, 2);
    let (pages, kmalloc) = (&bed.pages, &bed.kmalloc);
    assert!(Shared::new(pages, kmalloc, &bed.caches, &[]).is_none());
    assert!(Shared::new(pages, kmalloc, &bed.caches[..3], &bed.inboxes).is_none());
    let shared = bed.shared();
    assert_eq!(shared.threads().get(), 2);
    let mut held = [StressObject::EMPTY; 1];
    let mut runner = Runner::new(&shared, 0, 1, &mut held);
    let object = allocated(&mut runner, 0);
    runner.hand_over(object, 0);
    assert!(Shared::new(pages, kmalloc, &bed.caches, &bed.inboxes).is_none());
    let mut other = Runner::new(&shared, 1, 1, &mut []);
    assert!(other.free_from_inbox());
    assert!(Shared::new(pages, kmalloc, &bed.caches, &bed.inboxes).is_some());
    bed.tear_down();
}

#[test]
fn summary_line_adds_threads_up() {
    let mut summary = Summary {
        elapsed_ns: 2_345_678_901,
        ..Summary::default()
    };
    let cell = CountsCell::default();
    let busy = Counts {
        operations: 600,
        cross_frees: 40,
        corruptions: 1,
        failures: 2,
    };
    cell.store(&busy);
    assert_eq!(cell.load(), busy);
    summary.add_thread(&cell.load());
    summary.add_thread(&Counts::default());
    summary.add_thread(&Counts {
        operations: 400,
        ..Counts::default()
    });
    assert_eq!(summary.cpus, 2);
    assert_eq!(
        summary.to_string(),
        "stress: 1000 operations on 2 CPUs in 2345 ms, 40 cross-CPU frees, 1 corruptions, 2 allocation failures"
    );
}
