use proptest::prelude::*;

use super::*;

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// Feeds `input` to a reader as it asks for it, collecting what it hands out.
fn read_all(max: usize, input: &[u8]) -> Vec<Result<Message, ReadError>> {
    let mut reader = MessageReader::new(max);
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        match reader.next_message() {
            Ok(Some(message)) => out.push(Ok(message)),
            Err(err) => {
                out.push(Err(err));
                return out;
            }
            Ok(None) => {
                if rest.is_empty() {
                    return out;
                }
                let n = reader.wants().min(rest.len());
                assert!(n > 0, "a reader that is not failed wants bytes");
                reader.feed(&rest[..n]);
                rest = &rest[n..];
                assert!(reader.buffered() <= max + MAX_BUFFERED_OVER_LIMIT);
            }
        }
    }
}

#[test]
fn whole_messages_of_each_kind() {
    let mut input = frame(true, 0x2, b"\x81\xa4type");
    input.extend(frame(true, 0x9, b"hi"));
    input.extend(frame(true, 0xa, b""));
    input.extend(frame(true, 0x1, "héllo".as_bytes()));
    input.extend(frame(true, 0x8, &[0x03, 0xe8, b'b', b'y', b'e']));
    let got = read_all(1024, &input);
    assert_eq!(
        got,
        vec![
            Ok(Message::Binary(Bytes::from_static(b"\x81\xa4type"))),
            Ok(Message::Ping(Bytes::from_static(b"hi"))),
            Ok(Message::Pong),
            Ok(Message::Text(6)),
            Ok(Message::Close(Some(CloseReason {
                code: 1000.into(),
                description: Some("bye".into()),
            }))),
        ]
    );
}

#[test]
fn a_huge_declared_length_fails_at_the_header() {
    // The header of issue 12: a binary frame declaring 2^40 bytes.
    let mut reader = MessageReader::new(65_536);
    let header = [0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_eq!(reader.next_message(), Ok(None));
    assert_eq!(reader.wants(), 2);
    reader.feed(&header[..2]);
    assert_eq!(reader.next_message(), Ok(None));
    assert_eq!(
        reader.wants(),
        12,
        "it asks for the rest of the header only"
    );
    reader.feed(&header[2..]);
    assert_eq!(
        reader.next_message(),
        Err(ReadError::TooBig { max: 65_536 })
    );
    assert_eq!(reader.wants(), 0, "a failed reader wants nothing more");
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn fragments_are_reassembled_and_bounded_as_a_whole() {
    let mut input = frame(false, 0x2, b"ab");
    input.extend(frame(true, 0x9, b"")); // control frames may come between fragments
    input.extend(frame(false, 0x0, b"cd"));
    input.extend(frame(true, 0x0, b"ef"));
    assert_eq!(
        read_all(6, &input),
        vec![
            Ok(Message::Ping(Bytes::new())),
            Ok(Message::Binary(Bytes::from_static(b"abcdef"))),
        ]
    );
    let mut input = frame(false, 0x2, b"abcd");
    input.extend(frame(true, 0x0, b"efg"));
    assert_eq!(read_all(6, &input), vec![Err(ReadError::TooBig { max: 6 })]);
}

#[test]
fn framing_errors_close_with_their_codes() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // reserved bits
        (
            {
                let mut f = frame(true, 0x2, b"x");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        // unknown opcode
        (frame(true, 0x3, b"x"), 1002),
        // unmasked
        (vec![0x82, 0x01, b'x'], 1002),
        // a fragmented ping
        (frame(false, 0x9, b"x"), 1002),
        // a ping over 125 bytes
        (frame(true, 0x9, &[0u8; 126]), 1002),
        // a close code no client may send
        (frame(true, 0x8, &999u16.to_be_bytes()), 1002),
        (frame(true, 0x8, &1005u16.to_be_bytes()), 1002),
        // a one-byte close payload
        (frame(true, 0x8, &[3]), 1002),
        // text that is not UTF-8
        (frame(true, 0x1, &[0xff, 0xfe]), 1007),
        // a close reason that is not UTF-8
        (frame(true, 0x8, &[0x03, 0xe8, 0xc3]), 1007),
        // a continuation with no message started
        (frame(true, 0x0, b"x"), 1002),
        // a new message inside a fragmented one
        (
            [frame(false, 0x2, b"a"), frame(true, 0x2, b"b")].concat(),
            1002,
        ),
    ];
    for (input, code) in cases {
        let got = read_all(1024, &input);
        match got.last() {
            Some(Err(err)) => assert_eq!(err.close_code(), code, "{input:02x?}: {err}"),
            other => panic!("{input:02x?} gave {other:?}"),
        }
    }
}

#[test]
fn text_split_inside_a_character_is_whole_again() {
    let bytes = "é".as_bytes();
    let mut input = frame(false, 0x1, &bytes[..1]);
    input.extend(frame(true, 0x0, &bytes[1..]));
    assert_eq!(read_all(1024, &input), vec![Ok(Message::Text(2))]);
}

proptest! {
    /// However the bytes arrive, the same messages come out, and never more than one frame
    /// (plus the fragments so far) is held.
    #[test]
    fn chunking_does_not_change_what_is_read(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8),
        cuts in prop::collection::vec(1usize..64, 1..64),
    ) {
        let input: Vec<u8> = payloads.iter().flat_map(|p| frame(true, 0x2, p)).collect();
        let whole = read_all(256, &input);
        let mut reader = MessageReader::new(256);
        let mut got = Vec::new();
        let mut rest = &input[..];
        let mut cut = cuts.iter().cycle();
        loop {
            match reader.next_message() {
                Ok(Some(m)) => got.push(Ok(m)),
                Err(e) => { got.push(Err(e)); break; }
                Ok(None) if rest.is_empty() => break,
                Ok(None) => {
                    let n = reader.wants().min(rest.len()).min(*cut.next().unwrap());
                    reader.feed(&rest[..n]);
                    rest = &rest[n..];
                    prop_assert!(reader.buffered() <= 256 + MAX_BUFFERED_OVER_LIMIT);
                }
            }
        }
        prop_assert_eq!(got, whole);
    }
}

#[test]
fn a_control_frame_between_fragments_at_the_limit_is_the_most_ever_held() {
    // Found by fuzzing: a ping may come between the fragments of a message already at the
    // limit, so the bound is the limit plus one whole control frame, not plus a header.
    let mut input = frame(false, 0x2, &[7; 64]);
    input.extend(frame(true, 0x9, &[1; 125]));
    input.extend(frame(true, 0x0, b""));
    assert_eq!(
        read_all(64, &input),
        vec![
            Ok(Message::Ping(Bytes::from(vec![1; 125]))),
            Ok(Message::Binary(Bytes::from(vec![7; 64]))),
        ]
    );
}
