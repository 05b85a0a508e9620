// SPDX-License-Identifier: GPL-2.0

//! rmm: the kernel's memory allocators, rebuilt in Rust.
//!
//! The crate root of the kernel module. The allocator core (everything but
//! [`kernel_layer`]) is the same source that `cargo test` builds on the host
//! through `src/lib.rs`; this file only wires it to the kernel: module
//! parameters, the procfs files, load and unload.

use core::pin::Pin;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::alloc::{flags, KBox};
use kernel::error::Error;
use kernel::init::InPlaceInit;
use kernel::prelude::*;

pub mod areas;
pub mod bench;
pub mod buddy;
pub mod control;
pub mod gfp;
pub mod kmalloc;
pub mod page_alloc;
pub mod percpu_counter;
pub mod platform;
pub mod report;
pub mod slab;
pub mod state;
pub mod views;
pub mod vmalloc;

pub mod kernel_layer;

use kernel_layer::hotplug::CpuDeadCallback;
use kernel_layer::platform::KernelPlatform;
use kernel_layer::procfs::{ProcEntry, ProcShow, ProcWrite, SeqWriter};
use kernel_layer::reaper::Reaper;
use kernel_layer::shrinker::{Shrinker, SHRINK_STOP};
use kernel_layer::state_mutex::{StateMutex, StaticLockClass};
use state::Rmm;

module! {
    type: RmmModule,
    name: "rmm",
    author: "rmm developers",
    description: "The kernel's memory allocators (buddy, slab, per-CPU counters) rebuilt in Rust",
    license: "GPL",
}

crate::module_param!(
    DEMO,
    "demo",
    bool,
    param_ops_bool,
    "bool",
    true,
    "Run the slab experiment (cache rmm_student) at load (default: 1)"
);
crate::module_param!(
    BENCH,
    "bench",
    *mut kernel::ffi::c_char,
    param_ops_charp,
    "charp",
    null_mut(),
    "Benchmarks against the kernel's allocators to run at load: all, or cases pair,batch,kmalloc,pages,counter,ctor,parts,smp, and iters=N, reps=N (default: none)"
);
crate::module_param!(
    FAIL,
    "fail",
    u32,
    param_ops_uint,
    "uint",
    0,
    "Fail every N-th page request (new slabs, chunks, page-order blocks), as the control file's fail N; 0 never (default: 0)"
);
crate::module_param!(
    IRQTEST,
    "irqtest",
    u32,
    param_ops_uint,
    "uint",
    0,
    "Rounds of GFP_ATOMIC allocations and frees to run in interrupt context on every CPU at load (default: 0)"
);
crate::module_param!(
    STRESS,
    "stress",
    u32,
    param_ops_uint,
    "uint",
    0,
    "Random allocations and frees (about N in all), objects handed between CPUs, to run on every CPU at load (default: 0)"
);
crate::module_param!(
    DEBUG,
    "debug",
    bool,
    param_ops_bool,
    "bool",
    false,
    "Red zones, poisoning and free checks for every cache (default: 0)"
);

crate::module_param!(
    RESERVE,
    "reserve",
    *mut kernel::ffi::c_char,
    param_ops_charp,
    "charp",
    null_mut(),
    "Emergency reserve of the page allocator, below its min watermark, for GFP_ATOMIC: auto (its share of the kernel's min_free_kbytes) or KiB, 0 for none (default: auto)"
);

crate::module_param!(
    REAP_MS,
    "reap_ms",
    u32,
    param_ops_uint,
    "uint",
    2000,
    "Milliseconds between reaps, which give back empty slabs kept for a recent peak of use; 0 never (default: 2000)"
);

/// The module's state, shared with the procfs and shrinker callbacks.
/// Control commands and views may sleep (`cond_resched`, `GFP_KERNEL`),
/// hence a mutex; the shrinker only ever tries it.
type SharedState = StateMutex<Rmm<KernelPlatform>>;

static STATE_LOCK_CLASS: StaticLockClass = StaticLockClass::new();

/// Where the procfs and shrinker callbacks find the state. Set before the
/// first of them is registered and cleared after the last is unregistered
/// (`proc_remove` and `shrinker_free` wait for callbacks in progress), so a
/// callback always sees it set.
static STATE: AtomicPtr<SharedState> = AtomicPtr::new(null_mut());

/// Runs `f` on the module's state with its mutex held.
fn with_state<R>(f: impl FnOnce(&mut Rmm<KernelPlatform>) -> R) -> Result<R> {
    let state = STATE.load(Ordering::Acquire);
    if state.is_null() {
        return Err(ENODEV);
    }
    // SAFETY: `STATE` points into the pinned box that `RmmModule` owns, and
    // is cleared only after every procfs file is gone (see `STATE`).
    let state = unsafe { &*state };
    let mut guard = state.lock();
    Ok(f(&mut guard))
}

/// Runs `f` on the module's state if its mutex is free right now.
fn try_with_state<R>(f: impl FnOnce(&mut Rmm<KernelPlatform>) -> R) -> Option<R> {
    let state = STATE.load(Ordering::Acquire);
    if state.is_null() {
        return None;
    }
    // SAFETY: As in `with_state`.
    let state = unsafe { &*state };
    let mut guard = state.try_lock()?;
    Some(f(&mut guard))
}

/// The CPU-hotplug teardown: hands back what the offline CPU's arrays and
/// page list held. Waits for the state mutex: nothing that holds it waits
/// for CPU hotplug (IPIs to online CPUs need no hotplug lock).
///
/// # Safety
///
/// Only the kernel's hotplug code may call it, for a CPU that is dead.
unsafe extern "C" fn cpu_dead(cpu: kernel::ffi::c_uint) -> kernel::ffi::c_int {
    // SAFETY: the kernel calls this after `cpu` died and before it can come
    // back, so nothing else touches its per-CPU data.
    let _ = with_state(|rmm| unsafe { rmm.cpu_dead(cpu as usize) }).map(|back| {
        pr_info!(
            "cpu {} offline: {} objects and {} pages handed back
",
            cpu,
            back.objects,
            back.pages
        )
    });
    0
}

/// The reaper's pass: ends the reap period of every cache.
fn reap_caches() {
    // Unloading stops the reaper before the state goes away.
    let _ = with_state(|rmm| rmm.reap_all());
}

/// The shrinker's `count_objects`: pages rmm could give back now.
///
/// # Safety
///
/// Only the kernel's shrinker code may call it.
unsafe extern "C" fn shrinker_count(
    _shrinker: *mut kernel_layer::bindings::shrinker,
    _control: *mut kernel_layer::bindings::shrink_control,
) -> kernel::ffi::c_ulong {
    // Busy means a command is running, possibly in this very thread's
    // reclaim: report nothing rather than wait.
    try_with_state(|rmm| rmm.reclaimable_pages()).unwrap_or(0) as kernel::ffi::c_ulong
}

/// The shrinker's `scan_objects`: gives back every empty slab and free
/// chunk, and returns the pages released.
///
/// # Safety
///
/// Only the kernel's shrinker code may call it.
unsafe extern "C" fn shrinker_scan(
    _shrinker: *mut kernel_layer::bindings::shrinker,
    _control: *mut kernel_layer::bindings::shrink_control,
) -> kernel::ffi::c_ulong {
    match try_with_state(|rmm| rmm.shrink_all()) {
        Some(pages) => pages as kernel::ffi::c_ulong,
        None => SHRINK_STOP,
    }
}

/// `/proc/rmm_slabinfo`.
struct SlabInfoView;

impl ProcShow for SlabInfoView {
    fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
        with_state(|rmm| views::write_slabinfo(out, rmm)).unwrap_or(Ok(()))
    }
}

/// `/proc/rmm_buddyinfo`.
struct BuddyInfoView;

impl ProcShow for BuddyInfoView {
    fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
        with_state(|rmm| views::write_buddyinfo(out, rmm)).unwrap_or(Ok(()))
    }
}

/// `/proc/rmm_stats`.
struct StatsView;

impl ProcShow for StatsView {
    fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
        with_state(|rmm| views::write_stats(out, rmm)).unwrap_or(Ok(()))
    }
}

/// `/proc/rmm_vmallocinfo`.
struct VmallocInfoView;

impl ProcShow for VmallocInfoView {
    fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
        with_state(|rmm| views::write_vmallocinfo(out, rmm)).unwrap_or(Ok(()))
    }
}

/// `/proc/rmm_zoneinfo`.
struct ZoneInfoView;

impl ProcShow for ZoneInfoView {
    fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
        with_state(|rmm| views::write_zoneinfo(out, rmm)).unwrap_or(Ok(()))
    }
}

/// `/proc/rmm_frames`.
struct FramesView;

impl ProcShow for FramesView {
    fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
        with_state(|rmm| views::write_frames(out, rmm)).unwrap_or(Ok(()))
    }
}

/// `/proc/rmm_ctl`.
struct ControlFile;

impl ProcWrite for ControlFile {
    /// Room for many lines in one write; each line is still limited to
    /// `control::MAX_LINE` bytes.
    const MAX_WRITE: usize = 64 * 1024;

    fn write(input: &[u8]) -> Result {
        with_state(|rmm| rmm.execute(input))?.map_err(|e| Error::from_errno(-e.errno()))
    }
}

/// The module parameters, read once at load.
struct Params {
    demo: bool,
    debug: bool,
    fail: u32,
    irqtest: u32,
    stress: u32,
    reap_ms: u32,
    bench: *mut kernel::ffi::c_char,
    reserve: *mut kernel::ffi::c_char,
}

impl Params {
    fn read() -> Self {
        use core::ptr::addr_of;
        use kernel_layer::params::read;
        // SAFETY: The kernel writes the parameters before it calls `init`,
        // and their 0444 mode keeps sysfs from writing them afterwards, so
        // nothing writes them while they are read here.
        unsafe {
            Params {
                demo: read(addr_of!(DEMO)),
                debug: read(addr_of!(DEBUG)),
                fail: read(addr_of!(FAIL)),
                irqtest: read(addr_of!(IRQTEST)),
                stress: read(addr_of!(STRESS)),
                reap_ms: read(addr_of!(REAP_MS)),
                bench: read(addr_of!(BENCH)),
                reserve: read(addr_of!(RESERVE)),
            }
        }
    }
}

struct RmmModule {
    state: Pin<KBox<SharedState>>,
    /// The procfs files, removed first on unload.
    files: KVec<ProcEntry>,
    /// Unregistered first on unload.
    shrinker: Option<Shrinker>,
    /// Removed first on unload.
    hotplug: Option<CpuDeadCallback>,
    /// Stopped first on unload.
    reaper: Option<Reaper>,
}

impl kernel::Module for RmmModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let params = Params::read();
        let reserve = if params.reserve.is_null() {
            None
        } else {
            // SAFETY: The kernel's `charp` parser keeps the string until the
            // module is unloaded.
            let text = unsafe { kernel::str::CStr::from_char_ptr(params.reserve) };
            let reserve = page_alloc::Reserve::parse(text.as_bytes()).map_err(|error| {
                pr_err!("reserve={}: {}\n", text, error);
                EINVAL
            })?;
            Some(reserve)
        };
        // SAFETY: The kernel's `charp` parser keeps the string until the
        // module is unloaded.
        unsafe { kernel_layer::bench::run_if_asked(params.bench) };
        let rmm = Rmm::new(KernelPlatform::new(), params.debug).map_err(|_| ENOMEM)?;
        let state = KBox::pin_init(
            StateMutex::new(rmm, kernel::c_str!("rmm_state"), &STATE_LOCK_CLASS),
            flags::GFP_KERNEL,
        )?;
        let mut module = RmmModule {
            state,
            files: KVec::new(),
            shrinker: None,
            hotplug: None,
            reaper: None,
        };
        STATE.store(
            // The mutex stays pinned in its box until `drop`.
            &*module.state as *const SharedState as *mut SharedState,
            Ordering::Release,
        );
        if let Some(reserve) = reserve {
            with_state(|rmm| rmm.pages().set_reserve(reserve))?;
        }
        if params.fail > 0 {
            with_state(|rmm| rmm.set_fail_every(params.fail as usize))?;
        }
        if params.demo {
            // The experiment's failure is logged by it and does not stop
            // the module from loading.
            let _ = with_state(|rmm| rmm.run_demo());
        }
        if params.irqtest > 0 {
            let rounds = params.irqtest as usize;
            let result = with_state(|rmm| kernel_layer::irq_test::run(rmm, rounds))?;
            pr_info!(
                "irq test: {} allocation and free pairs in interrupt context on {} CPUs, {} failed\n",
                result.operations,
                result.cpus,
                result.failures
            );
            match result.reserve {
                Some(round) => pr_info!(
                    "irq test: reserve: {} pages taken with GFP_ATOMIC in interrupt context on {} CPUs until the pool ran dry, {} of them from the reserve below min {} in {} allocations, {} given back\n",
                    round.pages,
                    round.cpus,
                    round.reserve_pages,
                    round.min,
                    round.reserve_allocs,
                    round.freed
                ),
                None => pr_err!("irq test: reserve: no memory for the round\n"),
            }
        }
        if params.stress > 0 {
            let ops = params.stress as usize;
            with_state(|rmm| kernel_layer::stress::run(rmm, ops))??;
        }
        module.hotplug = Some(CpuDeadCallback::register(
            kernel::c_str!("rmm:dead"),
            cpu_dead,
        )?);
        module.create_files()?;
        module.shrinker = Some(Shrinker::register(
            kernel::c_str!("rmm"),
            shrinker_count,
            shrinker_scan,
        )?);
        if params.reap_ms > 0 {
            module.reaper = Some(Reaper::start(params.reap_ms, reap_caches)?);
        }
        let caches = with_state(|rmm| rmm.caches().count())?;
        pr_info!(
            "loaded: {} caches, debug={}, procfs rmm_slabinfo rmm_buddyinfo rmm_stats rmm_vmallocinfo rmm_zoneinfo rmm_frames rmm_ctl\n",
            caches,
            u8::from(params.debug)
        );
        Ok(module)
    }
}

impl RmmModule {
    fn create_files(&mut self) -> Result {
        use kernel::c_str;
        let files = [
            ProcEntry::view::<SlabInfoView>(c_str!("rmm_slabinfo"), 0o400)?,
            ProcEntry::view::<BuddyInfoView>(c_str!("rmm_buddyinfo"), 0o444)?,
            ProcEntry::view::<StatsView>(c_str!("rmm_stats"), 0o400)?,
            ProcEntry::view::<VmallocInfoView>(c_str!("rmm_vmallocinfo"), 0o400)?,
            ProcEntry::view::<ZoneInfoView>(c_str!("rmm_zoneinfo"), 0o444)?,
            ProcEntry::view::<FramesView>(c_str!("rmm_frames"), 0o400)?,
            ProcEntry::control::<ControlFile>(c_str!("rmm_ctl"), 0o200)?,
        ];
        self.files.reserve(files.len(), flags::GFP_KERNEL)?;
        for file in files {
            self.files.push(file, flags::GFP_KERNEL)?;
        }
        Ok(())
    }
}

impl Drop for RmmModule {
    fn drop(&mut self) {
        // No callback may run once the reaper, the hotplug state, the
        // shrinker and the files are gone...
        self.reaper = None;
        self.hotplug = None;
        self.shrinker = None;
        self.files = KVec::new();
        // ...so nobody else can reach the state any more.
        STATE.store(null_mut(), Ordering::Release);
        let summary = self.state.lock().teardown();
        pr_info!("unloaded: {}\n", summary);
    }
}
