// SPDX-License-Identifier: GPL-2.0

//! Kernel threads bound one to a CPU and started together: what the
//! benchmarks' multi-CPU runs and the stress test (`stress=N`) share.
//!
//! Every thread is made and bound first; only when all of them are running
//! does a common start signal let them begin, so that no thread gets a head
//! start while the others are still being created.

use super::bindings;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use kernel::alloc::{flags, KVec};
use kernel::error::from_err_ptr;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::str::CStr;

/// The share of the work one thread does.
pub(super) trait CpuWork: Sync {
    /// Runs once every thread of the run is up.
    fn run(&self);
}

/// The guest clock in nanoseconds (guest instructions under `-icount
/// shift=0,sleep=off`).
pub(super) fn now() -> i64 {
    // SAFETY: `ktime_get` has no preconditions.
    unsafe { bindings::ktime_get() }
}

/// The online CPUs, in order.
pub(super) fn online_cpus() -> Result<KVec<c_uint>> {
    // SAFETY: `nr_cpu_ids` is set during boot and never changes afterwards.
    let nr_cpus = unsafe { bindings::nr_cpu_ids };
    let mut cpus = KVec::new();
    for cpu in 0..nr_cpus {
        // SAFETY: Any CPU number below `nr_cpu_ids` may be asked about.
        if unsafe { bindings::rmm_cpu_online(cpu) } {
            cpus.push(cpu, flags::GFP_KERNEL)?;
        }
    }
    Ok(cpus)
}

/// A wait in a spin loop that lets anything else on this CPU run (the
/// kernels here are not preemptible).
pub(super) fn pause() {
    // SAFETY: Both may be called from any sleepable context, which is
    // where the benchmarks and the stress test run.
    unsafe {
        bindings::rmm_cond_resched();
        bindings::rmm_cpu_relax();
    }
}

/// The start and end handshake of one run.
struct Handshake {
    ready: AtomicUsize,
    go: AtomicBool,
    abort: AtomicBool,
    done: AtomicUsize,
}

/// What one thread is handed.
struct Thread<'a, W> {
    handshake: &'a Handshake,
    work: &'a W,
}

/// The thread function.
///
/// # Safety
///
/// `data` points to a `Thread<W>` that stays valid until `kthread_stop` of
/// this thread has returned.
unsafe extern "C" fn thread_main<W: CpuWork>(data: *mut c_void) -> c_int {
    // SAFETY: The caller guarantees that `data` is a live `Thread<W>`.
    let thread = unsafe { &*data.cast::<Thread<'_, W>>() };
    let handshake = thread.handshake;
    handshake.ready.fetch_add(1, Ordering::AcqRel);
    while !handshake.go.load(Ordering::Acquire) {
        pause();
    }
    if !handshake.abort.load(Ordering::Acquire) {
        thread.work.run();
    }
    handshake.done.fetch_add(1, Ordering::AcqRel);
    // `kthread_stop` needs the thread alive until it asks.
    // SAFETY: Called from a kernel thread made by `kthread_create_on_cpu`,
    // which may sleep.
    while !unsafe { bindings::kthread_should_stop() } {
        // SAFETY: As above.
        unsafe { bindings::msleep(1) };
    }
    0
}

/// Sleeps until `counter` reaches `target`.
fn wait_for(counter: &AtomicUsize, target: usize) {
    while counter.load(Ordering::Acquire) < target {
        // SAFETY: Runs in process context (module init).
        unsafe { bindings::msleep(1) };
    }
}

/// Runs `works[i]` on a kernel thread bound to `cpus[i]`, named
/// `name` (a format with one `%u`, the CPU), all started together, and waits
/// until every thread is stopped. Returns the nanoseconds from the start
/// signal to the last thread done. If a thread cannot be made, no work runs
/// and the result is `EAGAIN`.
pub(super) fn run_on_cpus<W: CpuWork>(
    works: &[W],
    cpus: &[c_uint],
    name: &'static CStr,
) -> Result<i64> {
    let handshake = Handshake {
        ready: AtomicUsize::new(0),
        go: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        done: AtomicUsize::new(0),
    };
    let mut threads = KVec::with_capacity(works.len(), flags::GFP_KERNEL)?;
    for work in works {
        threads.push(
            Thread {
                handshake: &handshake,
                work,
            },
            flags::GFP_KERNEL,
        )?;
    }
    let mut tasks = KVec::with_capacity(threads.len(), flags::GFP_KERNEL)?;
    // From here on `threads` does not change, so the pointers to its
    // elements stay valid until the threads are stopped below.
    for (thread, &cpu) in threads.iter().zip(cpus) {
        let data = thread as *const Thread<'_, W> as *mut c_void;
        // SAFETY: `thread_main::<W>` gets a `Thread<W>` that outlives the
        // kernel thread: every thread made here is stopped before this
        // function returns. `name` is a static format with one `%u`.
        let task = unsafe {
            bindings::kthread_create_on_cpu(Some(thread_main::<W>), data, cpu, name.as_char_ptr())
        };
        match from_err_ptr(task) {
            Ok(task) => {
                // Cannot fail: the capacity is there.
                if tasks.push(task, flags::GFP_KERNEL).is_err() {
                    handshake.abort.store(true, Ordering::Release);
                }
            }
            Err(_) => {
                handshake.abort.store(true, Ordering::Release);
                break;
            }
        }
    }
    for &task in tasks.iter() {
        // SAFETY: `task` is a thread made above and not yet stopped.
        unsafe { bindings::wake_up_process(task) };
    }
    wait_for(&handshake.ready, tasks.len());
    let start = now();
    handshake.go.store(true, Ordering::Release);
    wait_for(&handshake.done, tasks.len());
    let elapsed = now() - start;
    for &task in tasks.iter() {
        // SAFETY: `task` is a thread made above, alive until stopped here.
        unsafe { bindings::kthread_stop(task) };
    }
    if handshake.abort.load(Ordering::Acquire) {
        return Err(EAGAIN);
    }
    Ok(elapsed)
}
