// SPDX-License-Identifier: GPL-2.0

//! The module's state, where the kernel's callbacks find it.
//!
//! procfs, the shrinker, the hotplug teardown and the reaper thread call
//! into the module with no argument that leads to its state, so the state
//! is published in a static while the module is loaded. [`ModuleState`]
//! owns it and publishes it; [`with_state`] and [`try_with_state`] reach it
//! from anywhere. Withdrawing waits until no caller is between finding the
//! state and being done with it, so the state is never freed under one.

use super::bindings;
use super::platform::KernelPlatform;
use super::state_mutex::{StateMutex, StaticLockClass};
use crate::state::{Rmm, TeardownSummary};
use core::pin::Pin;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use kernel::alloc::{flags, KBox};
use kernel::init::InPlaceInit;
use kernel::prelude::*;

/// The state behind its sleeping mutex. Commands and views may sleep
/// (`cond_resched`, `GFP_KERNEL`), hence a mutex; the shrinker only ever
/// tries it.
type Shared = StateMutex<Rmm<KernelPlatform>>;

static STATE_LOCK_CLASS: StaticLockClass = StaticLockClass::new();

/// The published state, or null.
static PUBLISHED: AtomicPtr<Shared> = AtomicPtr::new(null_mut());
/// Callers between loading [`PUBLISHED`] and being done with what it
/// pointed to.
static USERS: AtomicUsize = AtomicUsize::new(0);

/// The module's state, published while this value lives.
///
/// # Invariants
///
/// While `published`, [`PUBLISHED`] points to `*state`; otherwise it does
/// not. At most one `ModuleState` exists (the module's).
pub(crate) struct ModuleState {
    state: Pin<KBox<Shared>>,
    published: bool,
}

impl ModuleState {
    /// Puts `rmm` behind its mutex and publishes it. Fails with `EBUSY` if
    /// a state is published already.
    pub(crate) fn publish(rmm: Rmm<KernelPlatform>) -> Result<Self> {
        let state = KBox::pin_init(
            StateMutex::new(rmm, kernel::c_str!("rmm_state"), &STATE_LOCK_CLASS),
            flags::GFP_KERNEL,
        )?;
        // The mutex stays pinned in its box until `drop`.
        let ptr = &*state as *const Shared as *mut Shared;
        PUBLISHED
            .compare_exchange(null_mut(), ptr, Ordering::SeqCst, Ordering::SeqCst)
            .map_err(|_| EBUSY)?;
        // INVARIANT: published just above.
        Ok(ModuleState {
            state,
            published: true,
        })
    }

    /// Withdraws the state, waits until no caller uses it, and tears it
    /// down (every object, cache and chunk back). Call it once every
    /// callback that could reach the state is gone.
    ///
    /// CPU hotplug is held off meanwhile (`cpus_read_lock`): the hotplug
    /// teardown can no longer reach the state, so a CPU going down now
    /// would keep its objects, and the caches could not be destroyed.
    pub(crate) fn withdraw_and_tear_down(&mut self) -> TeardownSummary {
        self.withdraw();
        // SAFETY: unloading runs in process context, which may sleep; the
        // lock is released below. The hotplug teardown takes the state
        // mutex under the hotplug lock too, so the order is the same.
        unsafe { bindings::cpus_read_lock() };
        let summary = self.state.lock().teardown();
        // SAFETY: taken above.
        unsafe { bindings::cpus_read_unlock() };
        summary
    }

    fn withdraw(&mut self) {
        if !self.published {
            return;
        }
        PUBLISHED.store(null_mut(), Ordering::SeqCst);
        // A caller counted in `USERS` may still hold the pointer; one that
        // joins from now on finds null. Callers hold the mutex for at most
        // one command.
        while USERS.load(Ordering::SeqCst) != 0 {
            // SAFETY: unloading runs in process context, which may sleep.
            unsafe { bindings::msleep(1) };
        }
        // INVARIANT: no longer published.
        self.published = false;
    }
}

impl Drop for ModuleState {
    fn drop(&mut self) {
        // Nobody may use the state once its box goes.
        self.withdraw();
    }
}

/// Runs `f` on the published state, if any: `lock` takes its mutex.
fn with_published<R>(lock: impl FnOnce(&Shared) -> Option<R>) -> Option<R> {
    USERS.fetch_add(1, Ordering::SeqCst);
    let ptr = PUBLISHED.load(Ordering::SeqCst);
    // SAFETY: a non-null pointer was published by `ModuleState::publish`
    // from its pinned box; `withdraw` clears it and then waits until no
    // caller is counted in `USERS`, which this one joined before loading
    // the pointer (all `SeqCst`), so the box outlives this use.
    let result = unsafe { ptr.as_ref() }.and_then(lock);
    USERS.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Runs `f` on the module's state with its mutex held; `ENODEV` if the
/// module is not (or no longer) serving.
pub(crate) fn with_state<R>(f: impl FnOnce(&mut Rmm<KernelPlatform>) -> R) -> Result<R> {
    with_published(|shared| Some(f(&mut shared.lock()))).ok_or(ENODEV)
}

/// Runs `f` on the module's state if its mutex is free right now.
pub(crate) fn try_with_state<R>(f: impl FnOnce(&mut Rmm<KernelPlatform>) -> R) -> Option<R> {
    with_published(|shared| shared.try_lock().map(|mut guard| f(&mut guard)))
}
