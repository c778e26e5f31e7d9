//! Checks every `parlor-example` block of PROTOCOL.md against the codec, so the document cannot
//! drift from the code: valid frames decode, re-encode to the same bytes, and equal their JSON;
//! invalid frames get the documented error code and `ref`.

use parlor_protocol::{decode_client, decode_server, encode_client, encode_server, ErrorCode};
use rmpv::Value;

const DEPTH: usize = 32;

struct Example {
    direction: String,
    json: Option<String>,
    error: Option<String>,
    reference: Option<u64>,
    bytes: Vec<u8>,
}

fn examples() -> Vec<Example> {
    let doc = include_str!("../PROTOCOL.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```parlor-example" {
            continue;
        }
        let mut ex = Example {
            direction: String::new(),
            json: None,
            error: None,
            reference: None,
            bytes: Vec::new(),
        };
        let mut in_hex = false;
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            if in_hex {
                ex.bytes.extend(
                    line.split_whitespace()
                        .map(|h| u8::from_str_radix(h, 16).expect("hex byte")),
                );
            } else if let Some(v) = line.strip_prefix("direction: ") {
                ex.direction = v.into();
            } else if let Some(v) = line.strip_prefix("json: ") {
                ex.json = Some(v.into());
            } else if let Some(v) = line.strip_prefix("error: ") {
                ex.error = Some(v.into());
            } else if let Some(v) = line.strip_prefix("ref: ") {
                ex.reference = Some(v.parse().expect("ref"));
            } else if line == "hex:" {
                in_hex = true;
            } else {
                panic!("unexpected line in example: {line}");
            }
        }
        out.push(ex);
    }
    out
}

fn json_to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::from(n.as_f64().unwrap()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_value(v)))
                .collect(),
        ),
    }
}

#[test]
fn every_example_in_protocol_md_matches_the_codec() {
    let examples = examples();
    assert!(
        examples.len() >= 15,
        "found only {} examples",
        examples.len()
    );
    for ex in examples {
        let hex: String = ex.bytes.iter().map(|b| format!("{b:02x} ")).collect();
        match ex.direction.as_str() {
            "client" | "server" => {
                let reencoded = if ex.direction == "client" {
                    encode_client(
                        &decode_client(&ex.bytes, DEPTH).unwrap_or_else(|e| panic!("{hex}: {e}")),
                    )
                } else {
                    encode_server(
                        &decode_server(&ex.bytes, DEPTH).unwrap_or_else(|e| panic!("{hex}: {e}")),
                    )
                };
                assert_eq!(&reencoded[..], &ex.bytes[..], "re-encoding {hex}");
                let json: serde_json::Value =
                    serde_json::from_str(ex.json.as_deref().expect("json")).unwrap();
                let value = rmpv::decode::read_value(&mut &ex.bytes[..]).unwrap();
                assert_eq!(value, json_to_value(&json), "bytes and JSON differ: {hex}");
            }
            "client-invalid" => {
                let err = decode_client(&ex.bytes, DEPTH).expect_err("invalid example decoded");
                let code: ErrorCode =
                    serde_json::from_value(serde_json::Value::String(ex.error.clone().unwrap()))
                        .unwrap();
                assert_eq!((err.code, err.reference), (code, ex.reference), "{hex}");
            }
            other => panic!("unknown direction {other}"),
        }
    }
}
