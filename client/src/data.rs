//! Typed values in and out of frames: any `Serialize` becomes a MessagePack `Value` as frames
//! are encoded (structs as maps with named fields, so other languages read them by name), and
//! an event's `data` reads back as any `DeserializeOwned`.

use parlor_protocol::{DirectFrame, EventFrame, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ClientError, Result};

/// `value` as a MessagePack value, with struct fields named (as `parlor.js` and every frame
/// expect) rather than positional.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    // rmpv's own serializer writes structs as arrays; going through rmp-serde's named encoding
    // keeps field names, and `Value`s (extensions included) pass through unchanged.
    let bytes =
        rmp_serde::to_vec_named(value).map_err(|err| ClientError::Encode(err.to_string()))?;
    rmpv::decode::read_value(&mut bytes.as_slice())
        .map_err(|err| ClientError::Encode(err.to_string()))
}

/// `value` read as a `T` (a struct from a map by field names, or from an array by position).
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T> {
    let bytes = rmp_serde::to_vec(value).map_err(|err| ClientError::Data(err.to_string()))?;
    rmp_serde::from_slice(&bytes).map_err(|err| ClientError::Data(err.to_string()))
}

/// Frames that carry application `data`: read it as your own type.
///
/// ```
/// use parlor_client::TypedData;
/// # fn show(event: &parlor_client::protocol::EventFrame) -> Result<(), parlor_client::ClientError> {
/// #[derive(serde::Deserialize)]
/// struct Move { x: u32, y: u32 }
/// let Move { x, y } = event.data_as()?;
/// # let _ = (x, y); Ok(()) }
/// ```
pub trait TypedData {
    /// The frame's `data` as sent.
    fn data(&self) -> &Value;

    /// The frame's `data` as a `T`; `ClientError::Data` if it is not one.
    fn data_as<T: DeserializeOwned>(&self) -> Result<T> {
        from_value(self.data())
    }
}

impl TypedData for EventFrame {
    fn data(&self) -> &Value {
        &self.data
    }
}

impl TypedData for DirectFrame {
    fn data(&self) -> &Value {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Move {
        x: u32,
        label: String,
        tags: Vec<String>,
    }

    #[test]
    fn structs_travel_as_maps_with_named_fields_and_read_back() {
        let value = to_value(&Move {
            x: 3,
            label: "knight".into(),
            tags: vec!["fast".into()],
        })
        .expect("encodes");
        let Value::Map(entries) = &value else {
            panic!("a map, not {value:?}")
        };
        let keys: Vec<_> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["x", "label", "tags"]);
        let back: Move = from_value(&value).expect("decodes");
        assert_eq!(back.label, "knight");
    }

    #[test]
    fn values_pass_through_unchanged_and_a_wrong_type_is_a_data_error() {
        let ext = Value::Ext(5, vec![1, 2, 3]);
        assert_eq!(to_value(&ext).expect("ext"), ext);
        assert_eq!(to_value(&42).expect("int"), Value::from(42));
        let wrong = from_value::<Move>(&Value::from("not a move"));
        assert!(matches!(wrong, Err(ClientError::Data(_))), "{wrong:?}");
    }
}
