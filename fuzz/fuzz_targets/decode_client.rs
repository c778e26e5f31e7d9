//! The frame decoder on arbitrary bytes: it must never panic, and whatever it accepts must
//! encode again to bytes that decode to the same frame. The server decoder is fed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parlor_protocol::{decode_client, decode_server, encode_client, encode_server};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(frame) = decode_client(bytes, 32) {
        let again = decode_client(&encode_client(&frame), 32);
        assert_eq!(again.ok().as_ref(), Some(&frame), "client frame does not round-trip");
    }
    if let Ok(frame) = decode_server(bytes, 32) {
        let again = decode_server(&encode_server(&frame), 32);
        assert_eq!(again.ok().as_ref(), Some(&frame), "server frame does not round-trip");
    }
});
