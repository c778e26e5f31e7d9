//! The registry's sans-IO state machine on arbitrary scripts of connects, drops, requests
//! (structured and raw bytes), resumes, time and flushes: after every step its invariants
//! hold and every connection's frames decode with growing offsets (see
//! `parlor::registry::script`).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use parlor::registry::script::{small_limits, Op, World};

fuzz_target!(|bytes: &[u8]| {
    let mut input = Unstructured::new(bytes);
    let batch = bool::arbitrary(&mut input).unwrap_or(false);
    let mut world = World::new(small_limits(), batch);
    let mut done = Vec::new();
    // Arbitrary makes values from nothing once the bytes run out: stop there.
    while !input.is_empty() {
        let Ok(op) = Op::arbitrary(&mut input) else {
            break;
        };
        done.push(op.clone());
        if let Err(failure) = world.step(&op) {
            panic!("{failure}\nafter {done:#?}");
        }
    }
});
