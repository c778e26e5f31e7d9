//! WebSocket framing, byte by byte: a raw TCP client that writes frames no WebSocket library
//! would, and reads the server's frames until its close.

use parlor_client::protocol::close;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame with raw first byte `first` (FIN, RSV and opcode).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
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

/// Opens a WebSocket by hand, returning the socket after the 101.
async fn open(node: &parlor::BackgroundNode) -> TcpStream {
    let mut socket = TcpStream::connect(node.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        node.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}

/// How the server ended the connection.
#[derive(Debug, PartialEq)]
enum Ending {
    /// A close frame: its code and reason.
    Close(u16, String),
    /// The connection ended (or was reset) without one.
    NoClose(String),
}

/// Reads server frames (unmasked) until a close frame or the end of the connection.
async fn ending(socket: &mut tokio::net::tcp::OwnedReadHalf) -> Ending {
    let mut buf = Vec::new();
    loop {
        // A whole frame in `buf`?
        if buf.len() >= 2 {
            let (opcode, len7) = (buf[0] & 0x0f, usize::from(buf[1] & 0x7f));
            let (header, len) = match len7 {
                126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
                127 if buf.len() >= 10 => (
                    10,
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                ),
                126 | 127 => (usize::MAX, 0),
                n => (2, n),
            };
            if header != usize::MAX && buf.len() >= header + len {
                let payload = buf[header..header + len].to_vec();
                buf.drain(..header + len);
                if opcode == 0x8 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    return Ending::Close(code, String::from_utf8_lossy(&payload[2..]).into());
                }
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) => return Ending::NoClose("end of stream".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) => return Ending::NoClose(err.to_string()),
        }
    }
}

/// Sends `bytes` and returns how the server ends the connection.
async fn ending_after(bytes: &[u8]) -> Ending {
    let node = start(test_config());
    let socket = open(&node).await;
    let (mut read, mut write) = socket.into_split();
    write.write_all(bytes).await.unwrap();
    within(5, "the server to end the connection", ending(&mut read)).await
}

fn close_code(ending: &Ending) -> u16 {
    match ending {
        Ending::Close(code, _) => *code,
        Ending::NoClose(why) => panic!("no close frame: {why}"),
    }
}

#[tokio::test]
async fn a_header_declaring_a_huge_payload_closes_with_1009_while_the_client_keeps_sending() {
    // Issue 12: `82 ff 00 00 01 00 00 00 00 00` declares 2^40 bytes. The server must close at
    // the header, not buffer what follows; and the client, which keeps sending, must see the
    // close frame rather than a reset.
    let node = start(test_config());
    let socket = open(&node).await;
    let (mut read, mut write) = socket.into_split();
    let mut header = vec![0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0];
    header.extend_from_slice(&MASK);
    write.write_all(&header).await.unwrap();
    let flood = tokio::spawn(async move {
        let junk = vec![0x5a; 64 * 1024];
        let mut sent = 0usize;
        // 64 MiB at most, which the server must not have wanted.
        while sent < 64 << 20 {
            if write.write_all(&junk).await.is_err() {
                break;
            }
            sent += junk.len();
        }
        sent
    });
    let ending = within(5, "the close", ending(&mut read)).await;
    assert_eq!(close_code(&ending), close::MESSAGE_TOO_BIG, "{ending:?}");
    flood.abort();
}

#[tokio::test]
async fn invalid_framing_closes_with_1002() {
    let reserved_bits = frame(0x82 | 0x40, b"\x80");
    assert_eq!(
        close_code(&ending_after(&reserved_bits).await),
        close::PROTOCOL_ERROR
    );

    let random = [0x13, 0x99, 0x04, 0xff, 0x00, 0x42, 0x77, 0x01];
    assert_eq!(
        close_code(&ending_after(&random).await),
        close::PROTOCOL_ERROR
    );

    // A fragmented ping (once logged at ERROR by actix-http, once per frame).
    let fragmented_ping = frame(0x09, b"hi");
    assert_eq!(
        close_code(&ending_after(&fragmented_ping).await),
        close::PROTOCOL_ERROR
    );
}

#[tokio::test]
async fn a_close_code_no_client_may_send_is_named_in_the_1002() {
    let ending = ending_after(&frame(0x88, &999u16.to_be_bytes())).await;
    match ending {
        Ending::Close(code, reason) => {
            assert_eq!(code, close::PROTOCOL_ERROR);
            assert!(reason.contains("999"), "{reason:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn text_that_is_not_utf8_closes_with_1007() {
    let ending = ending_after(&frame(0x81, &[0xc3, 0x28])).await;
    assert_eq!(close_code(&ending), close::INVALID_PAYLOAD);
}

#[tokio::test]
async fn a_clients_close_is_answered_with_1000() {
    let ending = ending_after(&frame(0x88, &1000u16.to_be_bytes())).await;
    assert_eq!(close_code(&ending), close::NORMAL);
}
