//! Property tests of the registry state machine: random scripts (`registry::script`) of
//! connects, drops, requests, resumes, time and flushes, after each step of which the
//! invariants hold and every connection's frames decode with growing offsets.

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;

use crate::registry::script::{small_limits, Op, World};

/// Runs the script the bytes describe; the first failure, with the steps that led to it.
fn run(bytes: &[u8], batch_patches: bool) -> Result<(), String> {
    let mut input = Unstructured::new(bytes);
    let mut world = World::new(small_limits(), batch_patches);
    let mut done = Vec::new();
    // Arbitrary makes values from nothing once the bytes run out: stop there.
    while !input.is_empty() {
        let Ok(op) = Op::arbitrary(&mut input) else {
            break;
        };
        done.push(op.clone());
        world
            .step(&op)
            .map_err(|err| format!("{err}\nafter {done:#?}"))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_scripts_keep_every_invariant(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(failure) = run(&bytes, false) {
            prop_assert!(false, "{}", failure);
        }
    }

    #[test]
    fn random_scripts_keep_every_invariant_with_batched_patches(
        bytes in prop::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Err(failure) = run(&bytes, true) {
            prop_assert!(false, "{}", failure);
        }
    }
}
