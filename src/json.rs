//! JSON answers of the HTTP side. What they carry (room metadata, a room's state) is made of
//! MessagePack values, and MessagePack can say more than JSON: a map key may be nil, a
//! number, a binary, an array or a map. serde_json refuses such a key, so a plain
//! `serde_json::to_vec` of a room fails (and its `json!` macro panics). Here every body is
//! first encoded as the MessagePack answer would be, then written as JSON by `Json`, which
//! renders any MessagePack value: so a JSON answer cannot fail, and says what the MessagePack
//! answer says.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::ser::{Error as _, SerializeMap, SerializeSeq, SerializeTuple};
use serde::{Serialize, Serializer};

use parlor_protocol::{encode_value, Value};

/// Why a body could not be written as JSON. Not expected: the body is re-read from the
/// MessagePack the server itself just wrote, and `Json` renders every value.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("the answer's MessagePack could not be read back: {0}")]
    Reread(#[from] rmpv::decode::Error),
    #[error("the answer could not be written as JSON: {0}")]
    Write(#[from] serde_json::Error),
}

/// A MessagePack value written as JSON, whatever it holds:
///
/// - nil, booleans, integers, floats and strings as themselves (a float that is not finite as
///   `null`, as serde_json writes it);
/// - a binary, or a string that is not UTF-8, as an array of its byte values;
/// - an extension as `[type, [bytes...]]`;
/// - arrays and maps as arrays and objects, every entry of a map in order (so a key written
///   twice in the MessagePack is written twice here);
/// - a map key that is not a UTF-8 string as the JSON text of that key: nil is `"null"`, the
///   integer 1 is `"1"`, the array `[1, 2]` is `"[1,2]"`.
pub struct Json<'a>(pub &'a Value);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Nil => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Integer(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => serializer.serialize_u64(u),
                (None, Some(i)) => serializer.serialize_i64(i),
                // Every MessagePack integer fits u64 or i64.
                (None, None) => serializer.serialize_unit(),
            },
            Value::F32(f) => serializer.serialize_f32(*f),
            Value::F64(f) => serializer.serialize_f64(*f),
            Value::String(s) => match s.as_str() {
                Some(text) => serializer.serialize_str(text),
                None => bytes(serializer, s.as_bytes()),
            },
            Value::Binary(b) => bytes(serializer, b),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    match key.as_str() {
                        Some(text) => map.serialize_key(text)?,
                        None => {
                            let text =
                                serde_json::to_string(&Json(key)).map_err(S::Error::custom)?;
                            map.serialize_key(&text)?
                        }
                    }
                    map.serialize_value(&Json(value))?;
                }
                map.end()
            }
            Value::Ext(kind, data) => {
                let mut tuple = serializer.serialize_tuple(2)?;
                tuple.serialize_element(kind)?;
                tuple.serialize_element(&Bytes(data))?;
                tuple.end()
            }
        }
    }
}

/// Bytes as an array of numbers, which is how serde_json writes `serialize_bytes`.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bytes(serializer, self.0)
    }
}

fn bytes<S: Serializer>(serializer: S, bytes: &[u8]) -> Result<S::Ok, S::Error> {
    let mut seq = serializer.serialize_seq(Some(bytes.len()))?;
    for byte in bytes {
        seq.serialize_element(byte)?;
    }
    seq.end()
}

/// `body` as JSON text: the MessagePack the server would answer with, written by `Json`.
pub fn to_json<T: Serialize>(body: &T) -> Result<Vec<u8>, JsonError> {
    let packed = encode_value(body);
    // Deep enough for anything the server holds: frames and states nest at most
    // `limits.max_depth` (at most 100) levels, and an answer wraps them in a few more.
    let value = rmpv::decode::read_value_with_max_depth(&mut &packed[..], 1024)?;
    Ok(serde_json::to_vec(&Json(&value))?)
}

/// An answer with `status` and `body` as JSON. Should the body not be writable, the answer is
/// a 500 with the common error body instead: never a panic.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    match to_json(body) {
        Ok(text) => HttpResponse::build(status)
            .content_type("application/json")
            .body(text),
        Err(err) => {
            tracing::error!(%err, "cannot write an answer as JSON");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                err.to_string(),
            )
        }
    }
}

/// The body of every HTTP error answer: `{"error": code, "message": why}`. Only strings go
/// into it, so `json!` cannot fail here.
pub fn error_body(code: &str, message: String) -> serde_json::Value {
    serde_json::json!({ "error": code, "message": message })
}

/// An error answer with `status` and the common body.
pub fn error_response(status: StatusCode, code: &str, message: String) -> HttpResponse {
    HttpResponse::build(status).json(error_body(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &Value) -> String {
        serde_json::to_string(&Json(value)).expect("always writable")
    }

    #[test]
    fn keys_json_cannot_carry_are_written_as_their_json_text() {
        let map = Value::Map(vec![
            (Value::Nil, Value::from(1)),
            (Value::from(7), Value::from(2)),
            (Value::from(-3), Value::from(3)),
            (Value::from(true), Value::from(4)),
            (Value::Binary(vec![1, 2]), Value::from(5)),
            (
                Value::Array(vec![Value::from(1), Value::from("a")]),
                Value::from(6),
            ),
            (Value::Map(vec![(Value::Nil, Value::Nil)]), Value::from(7)),
            (Value::from("s"), Value::from(8)),
        ]);
        assert_eq!(
            json(&map),
            r#"{"null":1,"7":2,"-3":3,"true":4,"[1,2]":5,"[1,\"a\"]":6,"{\"null\":null}":7,"s":8}"#
        );
        // serde_json itself refuses such a map: what this module is for.
        assert!(serde_json::to_string(&map).is_err());
    }

    #[test]
    fn other_values_are_written_as_serde_json_writes_them() {
        let value = Value::Array(vec![
            Value::Nil,
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F32(1.5),
            Value::F64(f64::NAN),
            Value::from("é"),
            Value::Binary(vec![0, 255]),
            Value::Ext(5, vec![1, 2]),
            Value::Map(vec![
                (Value::from("k"), Value::from(1)),
                (Value::from("k"), Value::from(2)),
            ]),
        ]);
        assert_eq!(
            json(&value),
            r#"[null,18446744073709551615,-9223372036854775808,1.5,null,"é",[0,255],[5,[1,2]],{"k":1,"k":2}]"#
        );
        let plain = Value::Array(vec![
            Value::from(1),
            Value::Binary(vec![3]),
            Value::Ext(-1, vec![9]),
        ]);
        assert_eq!(json(&plain), serde_json::to_string(&plain).expect("plain"));
    }

    #[test]
    fn a_body_is_written_as_its_messagepack_reads() {
        #[derive(Serialize)]
        struct Body {
            name: &'static str,
            state: Value,
        }
        let body = Body {
            name: "r",
            state: Value::Map(vec![(
                Value::from("m"),
                Value::Map(vec![(Value::Nil, Value::from(1))]),
            )]),
        };
        let text = to_json(&body).expect("writable");
        assert_eq!(
            String::from_utf8_lossy(&text),
            r#"{"name":"r","state":{"m":{"null":1}}}"#
        );
    }
}
