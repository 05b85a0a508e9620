// SPDX-License-Identifier: GPL-2.0

//! The periodic reaper: a kernel thread that wakes every `interval` and
//! calls a function, as SLAB's `cache_reap` ran from delayed work every two
//! seconds. The module's function ends a reap period of every cache
//! (`Rmm::reap_all`), so that slabs kept for a recent peak go back to the
//! page allocator once the peak is over.

use super::bindings;
use kernel::error::from_err_ptr;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;

/// What the thread runs and how often.
struct Job {
    interval_ms: c_uint,
    reap: fn(),
}

/// The thread function.
///
/// # Safety
///
/// `data` points to a `Job` that stays valid until `kthread_stop` of this
/// thread has returned.
unsafe extern "C" fn reaper_main(data: *mut c_void) -> c_int {
    // SAFETY: The caller guarantees that `data` is a live `Job`.
    let job = unsafe { &*data.cast::<Job>() };
    // SAFETY: `__msecs_to_jiffies` has no preconditions.
    let timeout = unsafe { bindings::__msecs_to_jiffies(job.interval_ms) };
    let timeout = timeout.min(c_int::MAX as _) as _;
    // SAFETY: Called from the kernel thread made by `Reaper::start`.
    while !unsafe { bindings::kthread_should_stop() } {
        // Interruptible: `kthread_stop` wakes the thread at once, and a stop
        // that comes between the test above and the sleep is not lost (it
        // sets TIF_NOTIFY_SIGNAL, so an interruptible sleep returns at
        // once).
        // SAFETY: A kernel thread may sleep.
        unsafe { bindings::schedule_timeout_interruptible(timeout) };
        // SAFETY: As above.
        if unsafe { bindings::kthread_should_stop() } {
            break;
        }
        (job.reap)();
    }
    0
}

/// A running reaper thread, stopped on drop.
///
/// # Invariants
///
/// `task` is a kernel thread running `reaper_main` on `*_job`, not stopped
/// yet; `_job` stays allocated (and unmoved, in its box) until it is.
pub(crate) struct Reaper {
    task: *mut bindings::task_struct,
    /// Only read by the thread.
    _job: KBox<Job>,
}

// SAFETY: The thread may be stopped from any thread; `job` is only read.
unsafe impl Send for Reaper {}
// SAFETY: `&Reaper` gives no access to anything.
unsafe impl Sync for Reaper {}

impl Reaper {
    /// Starts a thread named `rmm_reap` that calls `reap` every
    /// `interval_ms` milliseconds (in process context, where it may sleep).
    pub(crate) fn start(interval_ms: u32, reap: fn()) -> Result<Self> {
        let job = KBox::new(Job { interval_ms, reap }, GFP_KERNEL)?;
        let data = &*job as *const Job as *mut c_void;
        // SAFETY: `reaper_main` gets a `Job` that outlives the thread: the
        // box is kept in the `Reaper`, whose drop stops the thread first.
        // The name is a static NUL-terminated string without format.
        let task = unsafe {
            bindings::kthread_create_on_node(
                Some(reaper_main),
                data,
                bindings::NUMA_NO_NODE,
                kernel::c_str!("rmm_reap").as_char_ptr(),
            )
        };
        let task = from_err_ptr(task)?;
        // SAFETY: `task` was just made and not started or stopped yet.
        unsafe { bindings::wake_up_process(task) };
        // INVARIANT: the thread runs `reaper_main` on `*job`, kept here.
        Ok(Reaper { task, _job: job })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // SAFETY: The thread is alive until this call returns (type
        // invariant); afterwards nothing reads the job, freed after this.
        unsafe { bindings::kthread_stop(self.task) };
    }
}
