// SPDX-License-Identifier: GPL-2.0

//! rmm: the kernel's memory allocators, rebuilt in Rust.
//!
//! The crate root of the kernel module. The allocator core (everything but
//! [`kernel_layer`]) is the same source that `cargo test` builds on the host
//! through `src/lib.rs`; this file only wires it to the kernel: module
//! parameters, the procfs files, load and unload.

use kernel::alloc::{flags, KVec};
use kernel::error::Error;
use kernel::prelude::*;

pub mod address_hash;
pub mod areas;
pub mod bench_loops;
pub mod bench_remote;
pub mod bench_spec;
pub mod buddy;
pub mod control;
pub mod gfp;
pub mod kmalloc;
pub mod page_alloc;
pub mod percpu_counter;
pub mod platform;
pub mod ratelimit;
pub mod slab;
pub mod state;
pub mod stress;
pub mod views;
pub mod vmalloc;

pub mod kernel_layer;

use kernel_layer::hotplug::{CpuDead, CpuDeadCallback};
use kernel_layer::module_state::{try_with_state, with_state, ModuleState};
use kernel_layer::params::Params;
use kernel_layer::platform::KernelPlatform;
use kernel_layer::procfs::{ProcEntry, ProcShow, ProcWrite, SeqWriter};
use kernel_layer::reaper::Reaper;
use kernel_layer::shrinker::{Shrinker, ShrinkerOps};
use platform::OfflineCpu;
use state::Rmm;

module! {
    type: RmmModule,
    name: "rmm",
    author: "rmm developers",
    description: "The kernel's memory allocators (buddy, slab, per-CPU counters) rebuilt in Rust",
    license: "GPL",
}

/// The CPU-hotplug teardown: hands back what the offline CPU's arrays and
/// page lists held. Waits for the state mutex: nothing that holds it waits
/// for CPU hotplug (IPIs to online CPUs need no hotplug lock).
struct HandBack;

impl CpuDead for HandBack {
    fn cpu_dead(cpu: &OfflineCpu) {
        if let Ok(back) = with_state(|rmm| rmm.cpu_dead(cpu)) {
            pr_info!(
                "cpu {} offline: {} objects and {} pages handed back\n",
                cpu.number(),
                back.objects,
                back.pages
            );
        }
    }
}

/// The reaper's pass: ends the reap period of every cache.
fn reap_caches() {
    // Unloading stops the reaper before the state goes away.
    let _ = with_state(|rmm| rmm.reap_all());
}

/// The memory shrinker: empty slabs and free chunks back to the kernel.
struct Reclaim;

impl ShrinkerOps for Reclaim {
    /// Pages rmm could give back now. Busy means a command is running,
    /// possibly in this very thread's reclaim: report nothing rather than
    /// wait.
    fn count() -> usize {
        try_with_state(|rmm| rmm.reclaimable_pages()).unwrap_or(0)
    }

    /// Gives back every empty slab and free chunk.
    fn scan() -> Option<usize> {
        try_with_state(|rmm| rmm.shrink_all())
    }
}

/// The read-only views: each a type whose `show` formats the state with one
/// of [`views`]' writers, under the state's mutex (nothing if the module is
/// going away).
macro_rules! state_views {
    ($($(#[$doc:meta])* $view:ident => $write:path;)*) => {$(
        $(#[$doc])*
        struct $view;

        impl ProcShow for $view {
            fn show(out: &mut SeqWriter<'_>) -> core::fmt::Result {
                with_state(|rmm| $write(out, rmm)).unwrap_or(Ok(()))
            }
        }
    )*};
}

state_views! {
    /// `/proc/rmm_slabinfo`.
    SlabInfoView => views::write_slabinfo;
    /// `/proc/rmm_buddyinfo`.
    BuddyInfoView => views::write_buddyinfo;
    /// `/proc/rmm_stats`.
    StatsView => views::write_stats;
    /// `/proc/rmm_vmallocinfo`.
    VmallocInfoView => views::write_vmallocinfo;
    /// `/proc/rmm_zoneinfo`.
    ZoneInfoView => views::write_zoneinfo;
    /// `/proc/rmm_frames`.
    FramesView => views::write_frames;
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

struct RmmModule {
    /// Withdrawn and torn down last on unload.
    state: ModuleState,
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
        let reserve = match params.reserve {
            None => None,
            Some(text) => Some(
                page_alloc::Reserve::parse(text.as_bytes()).map_err(|error| {
                    pr_err!("reserve={}: {}\n", text, error);
                    EINVAL
                })?,
            ),
        };
        KernelPlatform::check_nodes()?;
        kernel_layer::bench::run_if_asked(params.bench);
        let rmm = Rmm::new(KernelPlatform::new(), params.debug).map_err(|_| ENOMEM)?;
        let mut module = RmmModule {
            state: ModuleState::publish(rmm)?,
            files: KVec::new(),
            shrinker: None,
            hotplug: None,
            reaper: None,
        };
        // From now on a CPU going down hands back what it holds, also
        // during the load-time runs below.
        module.hotplug = Some(CpuDeadCallback::register::<HandBack>(kernel::c_str!(
            "rmm:dead"
        ))?);
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
        module.create_files()?;
        module.shrinker = Some(Shrinker::register::<Reclaim>(kernel::c_str!("rmm"))?);
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
        // ...so nobody else reaches the state any more.
        let summary = self.state.withdraw_and_tear_down();
        pr_info!("unloaded: {}\n", summary);
    }
}
