//! The session's WebSocket reader on arbitrary bytes, fed in arbitrary chunks: it must never
//! panic, never hold more than the limit plus one control frame (`MAX_BUFFERED_OVER_LIMIT`),
//! hand out only messages within the limit, and say nothing more once it has failed.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parlor::session::reader::{Message, MessageReader, MAX_BUFFERED_OVER_LIMIT};

#[derive(Arbitrary, Debug)]
struct Input {
    /// The message size limit, kept small so that limits are met often.
    max: u16,
    /// How many bytes each feed gives at most, in turn.
    chunks: Vec<u8>,
    bytes: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max % 4096);
    let mut reader = MessageReader::new(max);
    let mut rest = &input.bytes[..];
    let mut chunks = input.chunks.iter().map(|c| usize::from(*c).max(1)).cycle();
    let mut failed = false;
    loop {
        match reader.next_message() {
            Ok(Some(message)) => {
                assert!(!failed, "a message after the reader failed");
                if let Message::Binary(bytes) = &message {
                    assert!(bytes.len() <= max, "a message over the limit");
                }
            }
            Ok(None) => {
                if rest.is_empty() || failed {
                    return;
                }
                let n = reader.wants().min(rest.len()).min(chunks.next().unwrap_or(1));
                assert!(n > 0, "a reader that has not failed wants bytes");
                reader.feed(&rest[..n]);
                rest = &rest[n..];
                assert!(reader.buffered() <= max + MAX_BUFFERED_OVER_LIMIT);
            }
            Err(_) => {
                failed = true;
                assert_eq!(reader.wants(), 0);
            }
        }
    }
});
