//! Struct-typed fields that accept a map and nothing else.
//!
//! serde's derive reads a struct from a map or from a positional array of its fields, and
//! MessagePack (rmp-serde), JSON (serde_json) and the buffering behind internally tagged enums
//! (`ClientFrame`, `StateOp`) all offer the array form: `options: [1]` would be a `RoomOptions`
//! with `max_members` 1. The protocol never uses positional arrays, so every struct-typed field
//! of a client frame, and the backend API's bodies, go through these helpers
//! (`#[serde(deserialize_with = ...)]`). They ask the deserializer for a map
//! (`deserialize_map`) and hand its entries to the type's own `Deserialize`, so an array, or
//! any other value, is refused as a wrong type (`invalid_field`) before anything reads it.
//! Fields that are maps by type (`Metadata`) or plain values need nothing: their own
//! `Deserialize` already asks for what they are.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Reads a `T` that must be written as a map.
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(MapVisitor(PhantomData))
}

/// Reads an array of `T`s, each of which must be written as a map.
pub fn vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(SeqVisitor(PhantomData))
}

struct MapVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for MapVisitor<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_map(self)
    }
}

struct SeqVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of maps")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // The hint comes from the peer: trust it only as far as a frame could hold.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(MapVisitor(PhantomData))? {
            items.push(item);
        }
        Ok(items)
    }
}
