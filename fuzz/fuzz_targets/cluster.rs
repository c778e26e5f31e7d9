//! The cluster engine (three nodes over an in-memory store that mirrors `store.lua`) driven by
//! arbitrary scripts: `parlor::cluster::sim::run_script` checks its invariants after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = parlor::cluster::sim::run_script(data) {
        panic!("{failure}");
    }
});
