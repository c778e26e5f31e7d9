//! Encoding frames to MessagePack and decoding them back, with every way a client frame can be
//! wrong mapped to one `ErrorCode`.

use std::io::{self, Cursor};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::{ClientFrame, ErrorCode, Ref, ServerFrame, Value};

/// Depth allowed while salvaging `type` and `ref` from a frame that failed to decode: deep
/// enough for any frame that is only too deep by a little, shallow enough to keep the recursion
/// of the salvage pass cheap and far from the stack's end.
const SALVAGE_DEPTH: usize = 128;

/// Why a client frame could not be decoded, and the `ref` it carried if that much was readable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub reference: Option<Ref>,
    pub message: String,
}

impl DecodeError {
    fn new(code: ErrorCode, reference: Option<Ref>, message: impl Into<String>) -> Self {
        Self {
            code,
            reference,
            message: message.into(),
        }
    }
}

/// Decodes one client frame. `max_depth` bounds how deeply arrays and maps may nest, counting
/// the frame's own map as 1.
pub fn decode_client(bytes: &[u8], max_depth: usize) -> Result<ClientFrame, DecodeError> {
    match decode_exact::<ClientFrame>(bytes, max_depth) {
        // serde also accepts a variant's index as its tag; the protocol names types by string.
        Ok(frame) if tag_is_string(bytes) => Ok(frame),
        // serde also reads a tagged enum from a positional array (the tag first); a frame is a
        // map.
        Ok(_) if !starts_with_map(bytes) => Err(not_a_map()),
        Ok(_) => Err(DecodeError::new(
            ErrorCode::InvalidField,
            None,
            "`type` must be a string",
        )),
        Err(err) => Err(classify(bytes, max_depth, err)),
    }
}

/// Whether the frame's `type` is a string. Frames whose first key is `type` (every encoder
/// here, and most clients) are answered from their first bytes; any other order pays a second
/// pass over the frame, which costs ~15% of decoding one.
fn tag_is_string(bytes: &[u8]) -> bool {
    let header = match bytes.first() {
        Some(0x80..=0x8f) => 1,
        Some(0xde) => 3,
        Some(0xdf) => 5,
        _ => return false,
    };
    match bytes.get(header..header + 6) {
        Some([0xa4, b't', b'y', b'p', b'e', marker]) => {
            matches!(marker, 0xa0..=0xbf | 0xd9..=0xdb)
        }
        _ => rmp_serde::from_slice::<TagIsString>(bytes).is_ok(),
    }
}

/// Reads only `type`, as a borrowed string, skipping every other field.
#[derive(Deserialize)]
struct TagIsString<'a> {
    #[serde(rename = "type", borrow)]
    _kind: &'a str,
}

/// Decodes one server frame (used by clients). Depth is bounded by `max_depth` as above.
pub fn decode_server(bytes: &[u8], max_depth: usize) -> Result<ServerFrame, DecodeError> {
    decode_exact::<ServerFrame>(bytes, max_depth).map_err(|err| classify(bytes, max_depth, err))
}

/// Encodes a server frame once; the returned buffer can be shared by any number of recipients.
pub fn encode_server(frame: &ServerFrame) -> Bytes {
    encode(frame)
}

/// Encodes a client frame.
pub fn encode_client(frame: &ClientFrame) -> Bytes {
    encode(frame)
}

/// Encodes a map of named fields as one frame, without checking it against any frame type:
/// for clients that build frames generically, and for tests of what the server does with
/// frames that are wrong.
pub fn encode_map(fields: &[(&str, Value)]) -> Bytes {
    let map = Value::Map(
        fields
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    );
    encode(&map)
}

/// Decodes any MessagePack document into `T` (the backend API's bodies), with the same depth
/// bound and errors as frames.
pub fn decode_value<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> Result<T, DecodeError> {
    decode_exact::<T>(bytes, max_depth).map_err(|err| classify(bytes, max_depth, err))
}

/// Encodes any value as MessagePack with named fields, as frames are (the backend API's
/// answers).
pub fn encode_value<T: Serialize>(value: &T) -> Bytes {
    encode(value)
}

pub(crate) fn encode<T: Serialize>(frame: &T) -> Bytes {
    let mut writer = BytesMut::with_capacity(128).writer();
    // Frames (and filters) are plain structs, enums, strings, integers and `Value`s, with
    // string keys only: writing them into memory cannot fail.
    if let Err(err) = rmp_serde::encode::write_named(&mut writer, frame) {
        unreachable!("encoding a frame into memory failed: {err}");
    }
    writer.into_inner().freeze()
}

/// Bytes `value` takes encoded as MessagePack (as frames are encoded), without encoding it
/// into memory.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing into a counter cannot fail.
    let _ = rmp_serde::encode::write_named(&mut counter, value);
    counter.0
}

enum Failure {
    Decode(rmp_serde::decode::Error),
    TrailingBytes(usize),
}

fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8], max_depth: usize) -> Result<T, Failure> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(bytes));
    // rmp-serde fails when its counter reaches zero on entering a container, so a limit of
    // `max_depth + 1` admits exactly `max_depth` levels.
    de.set_max_depth(max_depth.saturating_add(1));
    let value = T::deserialize(&mut de).map_err(Failure::Decode)?;
    let used = de.get_ref().position() as usize;
    if used != bytes.len() {
        return Err(Failure::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// Just the envelope of a frame: read to learn which request a bad frame was.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "ref", default)]
    reference: Option<Ref>,
}

fn classify(bytes: &[u8], max_depth: usize, failure: Failure) -> DecodeError {
    use rmp_serde::decode::Error as E;
    let err = match failure {
        Failure::TrailingBytes(n) => {
            return DecodeError::new(
                ErrorCode::Malformed,
                None,
                format!("{n} bytes follow the frame's MessagePack value"),
            )
        }
        Failure::Decode(err) => err,
    };
    // Only a map is a frame: serde would also read the envelope from a positional array
    // (`["dance", 5]`), which is `not_a_map` with no `ref`, whatever it holds.
    let salvaged = starts_with_map(bytes)
        .then(|| decode_exact::<Envelope>(bytes, max_depth.max(SALVAGE_DEPTH)).ok())
        .flatten();
    let reference = salvaged.as_ref().and_then(|e| e.reference);
    match err {
        E::DepthLimitExceeded => DecodeError::new(
            ErrorCode::TooDeep,
            reference,
            format!("arrays and maps nest deeper than {max_depth}"),
        ),
        E::InvalidMarkerRead(e) | E::InvalidDataRead(e)
            if e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            DecodeError::new(ErrorCode::Malformed, None, "truncated MessagePack value")
        }
        other => match salvaged {
            Some(envelope) if !ClientFrame::TYPES.contains(&envelope.kind.as_str()) => {
                DecodeError::new(
                    ErrorCode::UnknownType,
                    reference,
                    format!("unknown frame type {:?}", envelope.kind),
                )
            }
            Some(_) => DecodeError::new(ErrorCode::InvalidField, reference, other.to_string()),
            None if starts_with_map(bytes) => {
                DecodeError::new(ErrorCode::InvalidField, None, other.to_string())
            }
            None => match decode_exact::<serde::de::IgnoredAny>(bytes, max_depth) {
                Ok(_) => not_a_map(),
                Err(Failure::Decode(E::DepthLimitExceeded)) => DecodeError::new(
                    ErrorCode::TooDeep,
                    None,
                    format!("arrays and maps nest deeper than {max_depth}"),
                ),
                Err(_) => DecodeError::new(ErrorCode::Malformed, None, other.to_string()),
            },
        },
    }
}

fn not_a_map() -> DecodeError {
    DecodeError::new(
        ErrorCode::NotAMap,
        None,
        "a frame must be a MessagePack map with a string `type`",
    )
}

fn starts_with_map(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}
