// SPDX-License-Identifier: GPL-2.0

//! Helpers shared by the host tests that drive [`Rmm`] through its control
//! commands (`tests/state.rs`, `tests/fault.rs`).

// Each test crate uses its own subset.
#![allow(dead_code)]

use rmm_core::host::SharedHostPlatform;
use rmm_core::state::{CtlError, Rmm};
use rmm_core::views::write_stats;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::str::FromStr;

/// The platform handle tests keep while the allocator owns another.
pub type Shared = SharedHostPlatform;

/// A fresh `Rmm` on `nr_cpus` CPUs and the test's handle to its platform.
pub fn new_rmm(nr_cpus: usize) -> (Shared, Rmm<Shared>) {
    let platform = Shared::new(nr_cpus);
    let rmm = Rmm::new(platform.clone(), false).expect("Rmm::new");
    (platform, rmm)
}

/// Runs control commands that must succeed.
pub fn run(rmm: &mut Rmm<Shared>, input: &str) {
    if let Err(error) = rmm.execute(input.as_bytes()) {
        panic!("{input:?} failed: {error}");
    }
}

/// Runs control commands that must fail, and returns the error.
pub fn run_err(rmm: &mut Rmm<Shared>, input: &str) -> CtlError {
    match rmm.execute(input.as_bytes()) {
        Ok(()) => panic!("{input:?} succeeded"),
        Err(error) => error,
    }
}

/// The `key=value` pairs of a stats line, after its leading word.
pub fn key_values<T: FromStr>(line: &str) -> BTreeMap<String, T>
where
    T::Err: Debug,
{
    line.split(' ')
        .skip(1)
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The stats, as `rmm_stats` shows them.
pub fn stats_text(rmm: &Rmm<Shared>) -> String {
    let mut out = String::new();
    write_stats(&mut out, rmm).unwrap();
    out
}

/// The `key=value` pairs of the `cache=NAME` line of the stats.
pub fn cache_stats(rmm: &Rmm<Shared>, name: &str) -> BTreeMap<String, usize> {
    let out = stats_text(rmm);
    let prefix = format!("cache={name} ");
    let line = out
        .lines()
        .find(|line| line.starts_with(&prefix) && !line.contains(" cpu="))
        .unwrap_or_else(|| panic!("no stats line for {name}"));
    key_values(line)
}
