// SPDX-License-Identifier: GPL-2.0

//! Loom model of the protocol that keeps the slab cache's per-CPU arrays
//! CPU-local: `RUSTFLAGS="--cfg loom" cargo test --lib --release cpu_local_model`.
//!
//! # What is modelled
//!
//! [`super::cpu_array::CpuArray`] has no lock: a CPU's array is touched only
//!
//! - (a) by that CPU, inside [`crate::platform::PerCpu::with_local`]
//!   (in the kernel: interrupts off, no lock), by `alloc` and `free`;
//! - (b) by [`crate::platform::Platform::on_each_cpu`], which in the kernel
//!   sends an IPI so that the *target CPU itself* runs the closure (SLAB's
//!   `on_each_cpu(do_drain)`, used by `shrink` and `destroy`) with
//!   interrupts off, so never in the middle of its own `with_local`;
//!   offline CPUs are skipped;
//! - (c) for an offline CPU, by the CPU-hotplug "dead" callback
//!   (`KmemCache::cpu_dead`), which runs on another CPU after the CPU has
//!   died and before it can come back (hotplug operations are serialised).
//!
//! The model checks that protocol, not the cache's code: it has its own
//! miniature array, slab lists and platform, each a few lines.
//!
//! - Each modelled CPU is a loom thread running a short program of
//!   operations. "alloc" pops from the CPU's array or, if it is empty,
//!   refills a batch from the depot (the cache's slab lists, under a loom
//!   mutex standing for the `SlabNode` lock); "free" pushes onto the array
//!   or, if it is full, flushes its oldest batch to the depot first. An
//!   operation is one `with_local` section: nothing else runs on that CPU
//!   during it ("interrupts off").
//! - Between operations ("interrupts on") the CPU polls its IPI mailbox and
//!   runs a pending request on its own array, then posts completion: that
//!   is the IPI handler, on the target CPU's own thread, so it can never
//!   overlap one of that CPU's operations. The mailbox is a loom mutex and
//!   condition variable standing for the `call_single_data` and its lock
//!   flag (released by the handler, acquired by the waiting sender). A CPU
//!   that stays online keeps answering its mailbox after its program, until
//!   the drainer is done with it (only so that its thread can end).
//! - A "drainer" thread plays `shrink`, i.e. `on_each_cpu(drain_array)`:
//!   under the hotplug lock it reads the online mask and queues a drain
//!   request for every online CPU, then waits for each to be answered. The
//!   kernel gives more than this: the caller of `on_each_cpu` keeps
//!   preemption off while it waits too, so no CPU can go down during the
//!   whole call. The model only assumes that reading the mask and queueing
//!   the IPIs are one step with respect to a CPU going down
//!   (`smp_call_function_many_cond` does both with preemption off, and
//!   `take_cpu_down` needs `stop_machine`), which lets it explore a CPU
//!   dying with a request queued.
//! - One CPU may go offline after its program, as `take_cpu_down` does on
//!   the dying CPU: under the hotplug lock it clears its online bit and
//!   flushes its queued IPIs (`smpcfd_dying_cpu`), then runs nothing more
//!   (its thread ends). The main thread plays the hotplug control thread:
//!   it waits for the CPU to be dead (joins its thread, as `cpuhp` waits
//!   for the dying CPU), then runs the dead callback under the hotplug
//!   lock (`cpus_write_lock` is held through the whole `cpu_down`), which
//!   empties the dead CPU's array into the depot directly. The other CPU
//!   and the drainer run on meanwhile.
//!
//! Every CPU's array lives in a `loom::cell::UnsafeCell`, so loom panics
//! ("Causality violation") on any two accesses to it that the protocol does
//! not order, in whatever interleaving they happen. The model also checks:
//!
//! - on every allocation and free, that no object is handed out twice
//!   (ghost flags, invisible to loom's scheduler);
//! - that no request is ever queued for a CPU that has gone offline, and
//!   that no CPU goes offline with a request queued (the sender would wait
//!   forever; in the kernel, a `csd` lock timeout). Both are assertions
//!   rather than a real wait because loom, on finding a deadlock, aborts
//!   the whole test binary instead of failing the test;
//! - at the end of every execution, that objects are conserved (each object
//!   is in exactly one place: an array, the depot or the hands of a CPU's
//!   caller), and that the arrays of offline CPUs are empty.
//!
//! Two deliberately broken variants, expected to panic, show that the model
//! can fail: a drainer that empties the other CPUs' arrays itself instead
//! of asking them through their mailboxes (caught by loom's `UnsafeCell`
//! tracking), and a dying CPU that does not flush its queued IPIs (caught
//! by the pending-request check). Mutations tried by hand and caught too:
//! queueing the requests after dropping the hotplug lock, running the dead
//! callback without waiting for the CPU to go offline, a drain that copies
//! the array without emptying it.
//!
//! Waits block on condition variables rather than spin: loom cannot bound
//! executions in which two threads spin waiting for each other.
//!
//! # What is not covered
//!
//! - The real `KmemCache`/`CpuArray` code, its slabs, counters, debug
//!   checks and statistics: the model is of the access protocol only. That
//!   `alloc`, `free`, `shrink`, `destroy` and `cpu_dead` confine themselves
//!   to `with_local`, `on_each_cpu` and the offline path has to be checked
//!   by reading them (and their `SAFETY` comments).
//! - That the kernel platform implements `with_local` and `on_each_cpu` as
//!   specified (interrupts really off, the online mask really honoured),
//!   and that a hotplug callback calls `cpu_dead`. The host's lock-based
//!   platform is not modelled either.
//! - Interrupt handlers that allocate or free (nested `alloc`/`free` in
//!   interrupt context): in the kernel they, like the IPI, can only run
//!   between `with_local` sections, but the model only ever delivers drain
//!   requests there.
//! - `destroy` (its counting pass and `retire`), the release of empty slabs
//!   by `shrink`, the statistics counters; a CPU coming back online; more
//!   than two CPUs, one drainer or one CPU going down; preemption beyond
//!   loom's bound of 3 (the `LOOM_MAX_PREEMPTIONS` environment variable
//!   overrides it).

extern crate std;

use loom::cell::UnsafeCell;
use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
use loom::thread;
use std::vec::Vec;

/// Modelled CPUs.
const CPUS: usize = 2;
/// Objects in the model, numbered `0..OBJECTS`.
const OBJECTS: usize = 4;
/// Array limit (SLAB's `limit`).
const LIMIT: usize = 2;
/// Objects moved at a time between an array and the depot (`batchcount`).
const BATCH: usize = 1;

/// The state of a CPU's IPI mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mail {
    /// No request.
    Idle,
    /// A drain request is queued.
    Drain,
    /// The CPU ran the request.
    Done,
    /// The drainer has collected the answer and is done with this CPU
    /// (model bookkeeping: it lets an idle CPU's thread end).
    Finished,
}

/// A CPU's IPI mailbox: the kernel's per-CPU `call_single_queue` and the
/// `call_single_data` lock flag its sender waits on.
struct Mailbox {
    mail: Mail,
    /// Set by the dying CPU once it has flushed its queue: from then on
    /// nothing may be queued for it (the kernel warns about IPIs to
    /// offline CPUs) and nothing queued will ever run.
    offline: bool,
}

/// One operation of a CPU's program, one `with_local` section each.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Allocate an object and keep it.
    Alloc,
    /// Free the most recently allocated object kept (nothing if none).
    Free,
}

/// How the model departs from the protocol, to show that it can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// The protocol as specified.
    Correct,
    /// The drainer empties online CPUs' arrays itself, from its own thread,
    /// instead of asking them through their mailboxes.
    RemoteTouch,
    /// A dying CPU goes offline without running its pending IPIs.
    NoFlushWhenDying,
}

/// One modelled CPU's per-CPU state.
struct Cpu {
    /// The array: free objects, the most recently freed last. Only the
    /// protocol's exclusive accesses may touch it; loom checks that.
    array: UnsafeCell<Vec<usize>>,
    /// The IPI mailbox.
    mailbox: Mutex<Mailbox>,
    /// Wakes whoever waits for the mailbox to change.
    kick: Condvar,
}

/// Everything the threads of one execution share.
struct Model {
    cpus: [Cpu; CPUS],
    /// Free objects outside the arrays: the cache's slab lists.
    depot: Mutex<Vec<usize>>,
    /// The online mask, under the lock standing for CPU-hotplug
    /// serialisation (`cpus_write_lock` on the hotplug side; preemption off
    /// in `on_each_cpu` on the IPI side).
    online: Mutex<[bool; CPUS]>,
    /// Ghost state, invisible to loom's scheduler (plain `std` atomics, all
    /// loom threads run on one OS thread): whether each object is in a
    /// caller's hands.
    handed_out: [std::sync::atomic::AtomicBool; OBJECTS],
    variant: Variant,
}

impl Model {
    fn new(depot: Vec<usize>, variant: Variant) -> Self {
        Model {
            cpus: core::array::from_fn(|_| Cpu {
                array: UnsafeCell::new(Vec::with_capacity(LIMIT)),
                mailbox: Mutex::new(Mailbox {
                    mail: Mail::Idle,
                    offline: false,
                }),
                kick: Condvar::new(),
            }),
            depot: Mutex::new(depot),
            online: Mutex::new([true; CPUS]),
            handed_out: core::array::from_fn(|_| std::sync::atomic::AtomicBool::new(false)),
            variant,
        }
    }

    /// Runs `f` on the array of `cpu`: the one way the model touches an
    /// array, so every access goes through loom's check.
    fn with_array<R>(&self, cpu: usize, f: impl FnOnce(&mut Vec<usize>) -> R) -> R {
        self.cpus[cpu].array.with_mut(|array| {
            // SAFETY: loom's `with_mut` has just checked that this access
            // is ordered after every other access to the cell (it panics
            // otherwise, which is the check this model exists for), and `f`
            // makes no loom call, so no other thread runs until it returns.
            f(unsafe { &mut *array })
        })
    }

    /// Records that a caller now holds `obj`.
    fn hand_out(&self, obj: usize) {
        let was = self.handed_out[obj].swap(true, std::sync::atomic::Ordering::Relaxed);
        assert!(!was, "object {obj} handed out twice");
    }

    /// Records that a caller gave `obj` back.
    fn take_back(&self, obj: usize) {
        let was = self.handed_out[obj].swap(false, std::sync::atomic::Ordering::Relaxed);
        assert!(was, "object {obj} freed but not handed out");
    }

    /// `alloc` on `cpu`, inside its `with_local` (`alloc_from_array`).
    fn alloc(&self, cpu: usize) -> Option<usize> {
        let obj = self.with_array(cpu, |array| array.pop()).or_else(|| {
            let mut depot = self.depot.lock().unwrap();
            let take = BATCH.min(depot.len());
            let start = depot.len() - take;
            self.with_array(cpu, |array| {
                array.extend(depot.drain(start..));
                array.pop()
            })
        });
        if let Some(obj) = obj {
            self.hand_out(obj);
        }
        obj
    }

    /// `free` on `cpu`, inside its `with_local` (`free_slow`'s flush).
    fn free(&self, cpu: usize, obj: usize) {
        self.take_back(obj);
        let pushed = self.with_array(cpu, |array| {
            let room = array.len() < LIMIT;
            if room {
                array.push(obj);
            }
            room
        });
        if !pushed {
            let mut depot = self.depot.lock().unwrap();
            self.with_array(cpu, |array| {
                let batch = BATCH.min(array.len());
                depot.extend(array.drain(..batch));
                array.push(obj);
            });
        }
    }

    /// Empties the array of `cpu` into the depot (`drain_array`); the
    /// caller has exclusive use of the array by one of the three ways.
    fn drain_array(&self, cpu: usize) {
        let mut depot = self.depot.lock().unwrap();
        self.with_array(cpu, |array| depot.append(array));
    }

    /// The IPI handler, run by `cpu` itself with interrupts off: a pending
    /// request runs on its own array.
    fn service_ipi(&self, cpu: usize) {
        self.handle_mail(cpu, &mut self.cpus[cpu].mailbox.lock().unwrap());
    }

    /// [`Model::service_ipi`] with the mailbox locked.
    fn handle_mail(&self, cpu: usize, mailbox: &mut MutexGuard<'_, Mailbox>) {
        if mailbox.mail == Mail::Drain {
            self.drain_array(cpu);
            mailbox.mail = Mail::Done;
            self.cpus[cpu].kick.notify_all();
        }
    }

    /// `on_each_cpu(drain_array)`, as `shrink` runs it.
    fn remote_drain(&self) {
        // Reading the online mask and queueing the requests are one step
        // with respect to CPUs going down.
        let targets = {
            let online = self.online.lock().unwrap();
            for cpu in (0..CPUS).filter(|&cpu| online[cpu]) {
                if self.variant == Variant::RemoteTouch {
                    // The bug: reaching into another CPU's array.
                    self.drain_array(cpu);
                } else {
                    let mut mailbox = self.cpus[cpu].mailbox.lock().unwrap();
                    assert!(!mailbox.offline, "IPI queued for offline cpu {cpu}");
                    mailbox.mail = Mail::Drain;
                    self.cpus[cpu].kick.notify_all();
                }
            }
            *online
        };
        // Wait for every request (the kernel spins on the `csd` lock flag).
        for cpu in (0..CPUS).filter(|&cpu| targets[cpu]) {
            let Cpu { mailbox, kick, .. } = &self.cpus[cpu];
            let mut mailbox = mailbox.lock().unwrap();
            while self.variant != Variant::RemoteTouch && mailbox.mail != Mail::Done {
                // What would otherwise be a wait without end (in the
                // kernel, a `csd` lock timeout).
                assert!(
                    !mailbox.offline,
                    "cpu {cpu} went offline with a request pending"
                );
                mailbox = kick.wait(mailbox).unwrap();
            }
            mailbox.mail = Mail::Finished;
            kick.notify_all();
        }
    }

    /// One CPU: its program, IPIs serviced between operations, then either
    /// going down or idling (servicing IPIs) until the drain is over.
    /// Returns the objects its callers still hold.
    fn run_cpu(
        &self,
        cpu: usize,
        program: &[Op],
        mut held: Vec<usize>,
        goes_down: bool,
    ) -> Vec<usize> {
        for (i, op) in program.iter().enumerate() {
            if i > 0 {
                self.service_ipi(cpu);
            }
            match op {
                Op::Alloc => held.extend(self.alloc(cpu)),
                Op::Free => {
                    if let Some(obj) = held.pop() {
                        self.free(cpu, obj);
                    }
                }
            }
        }
        if goes_down {
            // `take_cpu_down` on the dying CPU, under `stop_machine`.
            let mut online = self.online.lock().unwrap();
            online[cpu] = false;
            let mut mailbox = self.cpus[cpu].mailbox.lock().unwrap();
            if self.variant != Variant::NoFlushWhenDying {
                // `smpcfd_dying_cpu`: run what was queued before the online
                // bit was cleared.
                self.handle_mail(cpu, &mut mailbox);
            }
            mailbox.offline = true;
            self.cpus[cpu].kick.notify_all();
        } else {
            // Idle, but still answering IPIs, until the drainer is done
            // with this CPU (only so that the execution ends).
            let Cpu { mailbox, kick, .. } = &self.cpus[cpu];
            let mut mailbox = mailbox.lock().unwrap();
            loop {
                self.handle_mail(cpu, &mut mailbox);
                if mailbox.mail == Mail::Finished {
                    break;
                }
                mailbox = kick.wait(mailbox).unwrap();
            }
        }
        held
    }
}

/// One scenario: what each CPU starts with and runs, which CPU goes down.
#[derive(Clone, Copy)]
struct Scenario {
    /// Objects each CPU's callers hold at the start.
    held: [&'static [usize]; CPUS],
    /// Objects each CPU's array holds at the start (at most `LIMIT`).
    arrays: [&'static [usize]; CPUS],
    /// Each CPU's program.
    programs: [&'static [Op]; CPUS],
    /// The CPU that goes offline after its program, if any.
    goes_down: Option<usize>,
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Checks `scenario` under every interleaving loom explores.
fn check(scenario: Scenario, variant: Variant) {
    model(move || {
        // Objects in no array and in no caller's hands start in the depot.
        let depot: Vec<usize> = (0..OBJECTS)
            .filter(|obj| {
                !scenario
                    .held
                    .iter()
                    .chain(scenario.arrays.iter())
                    .any(|place| place.contains(obj))
            })
            .collect();
        let m = Arc::new(Model::new(depot, variant));
        for cpu in 0..CPUS {
            assert!(scenario.arrays[cpu].len() <= LIMIT);
            m.with_array(cpu, |array| array.extend_from_slice(scenario.arrays[cpu]));
            for &obj in scenario.held[cpu] {
                m.hand_out(obj);
            }
        }

        let cpu_threads: Vec<_> = (0..CPUS)
            .map(|cpu| {
                let m = m.clone();
                let goes_down = scenario.goes_down == Some(cpu);
                thread::spawn(move || {
                    m.run_cpu(
                        cpu,
                        scenario.programs[cpu],
                        scenario.held[cpu].to_vec(),
                        goes_down,
                    )
                })
            })
            .collect();
        let drainer = {
            let m = m.clone();
            thread::spawn(move || m.remote_drain())
        };

        // The hotplug control thread: waits for the CPU to be dead, then
        // runs the dead callback while the others go on.
        let mut held = Vec::new();
        let mut cpu_threads: Vec<_> = cpu_threads.into_iter().map(Some).collect();
        if let Some(dead) = scenario.goes_down {
            held.extend(cpu_threads[dead].take().unwrap().join().unwrap());
            let online = m.online.lock().unwrap();
            assert!(!online[dead]);
            // A request queued for a CPU that is now dead would never be
            // answered (the drainer checks this too, when it is woken).
            assert_ne!(
                m.cpus[dead].mailbox.lock().unwrap().mail,
                Mail::Drain,
                "cpu {dead} went offline with a request pending"
            );
            // `cpu_dead`: the CPU runs nothing and cannot come back while
            // the hotplug lock is held.
            m.drain_array(dead);
        }
        for handle in cpu_threads.into_iter().flatten() {
            held.extend(handle.join().unwrap());
        }
        drainer.join().unwrap();

        // Every thread has been joined: everything below is ordered after
        // all of their accesses.
        let online = *m.online.lock().unwrap();
        let mut everywhere = held.clone();
        for (obj, handed_out) in m.handed_out.iter().enumerate() {
            assert_eq!(
                handed_out.load(std::sync::atomic::Ordering::Relaxed),
                held.contains(&obj),
                "object {obj}: handed out and held disagree"
            );
        }
        everywhere.extend(m.depot.lock().unwrap().iter().copied());
        for (cpu, &is_online) in online.iter().enumerate() {
            let cached = m.with_array(cpu, |array| array.clone());
            assert!(cached.len() <= LIMIT, "cpu {cpu} array over its limit");
            if !is_online {
                assert!(
                    cached.is_empty(),
                    "offline cpu {cpu} still caches {cached:?}"
                );
            }
            everywhere.extend(cached);
        }
        everywhere.sort_unstable();
        assert_eq!(
            everywhere,
            (0..OBJECTS).collect::<Vec<_>>(),
            "objects lost or duplicated"
        );
    });
}

use Op::{Alloc, Free};

/// CPU 0 frees two objects into an array holding one (unless a drain came
/// first, the second free flushes a batch to the depot), then allocates and
/// frees again; CPU 1 empties its array by allocating, then allocates again
/// (refilling from the depot whatever CPU 0's flush or the drain put there,
/// or failing), then frees.
const BOTH_BUSY: Scenario = Scenario {
    held: [&[0, 1], &[]],
    arrays: [&[2], &[3]],
    programs: [&[Free, Free, Alloc, Free], &[Alloc, Alloc, Free]],
    goes_down: None,
};

/// Both CPUs online; the drain's requests land between any of their
/// operations.
#[test]
fn drain_between_operations_on_both_cpus() {
    check(BOTH_BUSY, Variant::Correct);
}

/// CPU 1 goes offline after its program, ending with objects in its array,
/// while the drain runs: its request is either not sent (CPU already out of
/// the online mask), or run before it dies, and the dead callback hands back
/// what is left.
#[test]
fn drain_racing_a_cpu_going_down() {
    check(
        Scenario {
            held: [&[0], &[1]],
            arrays: [&[], &[2]],
            programs: [&[Free, Alloc], &[Alloc, Free, Free]],
            goes_down: Some(1),
        },
        Variant::Correct,
    );
}

/// As [`drain_racing_a_cpu_going_down`] with CPU 0 going down while its
/// caller still holds an object (it moves with the task, not the CPU).
#[test]
fn drain_racing_the_other_cpu_going_down() {
    check(
        Scenario {
            held: [&[0, 1], &[3]],
            arrays: [&[2], &[]],
            programs: [&[Free, Alloc, Free], &[Free, Alloc]],
            goes_down: Some(0),
        },
        Variant::Correct,
    );
}

/// Broken: the drainer empties other CPUs' arrays itself. Loom reports the
/// unordered accesses to the `UnsafeCell`.
#[test]
#[should_panic(expected = "Causality violation")]
fn broken_remote_touch_is_caught() {
    check(BOTH_BUSY, Variant::RemoteTouch);
}

/// Broken: the dying CPU leaves a queued drain request unrun, so the
/// drainer would wait forever; the pending-request checks catch it.
#[test]
#[should_panic(expected = "went offline with a request pending")]
fn broken_dying_cpu_without_ipi_flush_is_caught() {
    check(
        Scenario {
            held: [&[], &[1]],
            arrays: [&[], &[2]],
            programs: [&[Alloc], &[Free]],
            goes_down: Some(1),
        },
        Variant::NoFlushWhenDying,
    );
}
