//! Shared room state: a document of nested string-keyed maps with MessagePack values at the
//! leaves, the operations that change it (`set` and `delete` at a path), and how a batch of them
//! applies. The server applies batches authoritatively; clients apply the same batches, in the
//! same order, to their mirrors, so everyone converges on the same document.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Value;

/// Longest path an operation may name, in keys.
pub const MAX_PATH_KEYS: usize = 16;

/// One change to a room's state document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateOp {
    /// Puts `value` at `path`, creating missing maps on the way.
    Set { path: Vec<String>, value: Value },
    /// Removes whatever is at `path`; nothing there (the key or a map on the way absent) is
    /// not an error, but a path through a value that is not a map is, as for `set`.
    Delete { path: Vec<String> },
}

impl StateOp {
    pub fn path(&self) -> &[String] {
        match self {
            Self::Set { path, .. } | Self::Delete { path } => path,
        }
    }
}

/// The bounds a document must stay within after every batch. The encoded size alone does
/// not bound memory: a nil is one byte encoded but a whole `Value` (40 bytes) decoded, so
/// the number of values is bounded as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLimits {
    /// Most bytes the document may take encoded as MessagePack (`max_state_bytes`).
    pub max_bytes: usize,
    /// Most MessagePack values the document may hold, as `Document::value_count` counts them
    /// (`max_state_values`).
    pub max_values: usize,
}

impl StateLimits {
    /// No bounds: for mirrors that follow a server which has already checked them.
    pub const UNBOUNDED: Self = Self {
        max_bytes: usize::MAX,
        max_values: usize::MAX,
    };
}

/// Why a batch of operations was refused. The document is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("operation {index}: a path has 1 to {MAX_PATH_KEYS} keys")]
    BadPathLength { index: usize },
    #[error("operation {index}: {key:?} is a value, not a map, so the path cannot go through it")]
    ThroughValue { index: usize, key: String },
    #[error("the state would be {size} bytes encoded, over max_state_bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("the state would hold {count} MessagePack values, over max_state_values ({max})")]
    TooManyValues { count: usize, max: usize },
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Map(BTreeMap<String, Node>),
    Value(Value),
}

/// A state document. The root is always a map. It serializes as a MessagePack map with its
/// keys in sorted order, so two equal documents encode to the same bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    root: BTreeMap<String, Node>,
    /// Bytes of the document's MessagePack encoding, kept up to date by every change.
    encoded_len: usize,
    /// Values below the root (`value_count` less the root map itself), kept up to date by
    /// every change, so that `Default` is the empty document.
    values: usize,
}

/// What undoes one applied operation.
enum Undo {
    Nothing,
    /// Put this node back at this path (it was replaced or deleted).
    Restore(Vec<String>, Node),
    /// Remove what is at this path (it was created).
    Remove(Vec<String>),
}

impl Document {
    pub fn new() -> Self {
        Self {
            root: BTreeMap::new(),
            encoded_len: 1,
            values: 0,
        }
    }

    /// Bytes this document takes encoded as MessagePack.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len.max(1)
    }

    /// MessagePack values in this document's encoding: every value counts one, whether a
    /// scalar (nil, boolean, number, string, binary, extension: one each, whatever their
    /// length), an array or a map (one for itself, plus what it holds); every element of an
    /// array, and every key and every value of a map, counts as a value in its own right.
    /// The empty document (one empty map) is 1; `{"a": [nil, nil]}` is 5. What a room's state
    /// costs in memory follows this count, which is why `max_state_values` bounds it.
    pub fn value_count(&self) -> usize {
        1 + self.values
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// The value at `path`, converted back to a MessagePack value (maps included).
    pub fn get(&self, path: &[String]) -> Option<Value> {
        let (last, parents) = path.split_last()?;
        let mut map = &self.root;
        for key in parents {
            match map.get(key)? {
                Node::Map(child) => map = child,
                Node::Value(_) => return None,
            }
        }
        map.get(last).map(Node::to_value)
    }

    /// The whole document as one MessagePack map value.
    pub fn to_value(&self) -> Value {
        map_to_value(&self.root)
    }

    /// Applies `ops` in order, all or nothing: if any operation is invalid, or the result
    /// would be outside `limits`, the document is left exactly as it was. Only the result is
    /// bounded: a batch may pass through a larger document on the way.
    pub fn apply(&mut self, ops: &[StateOp], limits: StateLimits) -> Result<(), StateError> {
        let mut undo = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            match self.apply_one(index, op) {
                Ok(step) => undo.push(step),
                Err(err) => {
                    self.rollback(undo);
                    return Err(err);
                }
            }
        }
        let over = if self.encoded_len() > limits.max_bytes {
            Some(StateError::TooLarge {
                size: self.encoded_len(),
                max: limits.max_bytes,
            })
        } else if self.value_count() > limits.max_values {
            Some(StateError::TooManyValues {
                count: self.value_count(),
                max: limits.max_values,
            })
        } else {
            None
        };
        match over {
            Some(err) => {
                self.rollback(undo);
                Err(err)
            }
            None => Ok(()),
        }
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Nothing => {}
                Undo::Restore(path, node) => {
                    // The path led to a map when the operation ran, and every later operation
                    // has been undone, so it does again.
                    let _ = self.put(&path, node);
                }
                Undo::Remove(path) => {
                    // The operation created what is at the path, so it leads through maps.
                    let _ = self.take(&path);
                }
            }
        }
    }

    fn apply_one(&mut self, index: usize, op: &StateOp) -> Result<Undo, StateError> {
        let path = op.path();
        if path.is_empty() || path.len() > MAX_PATH_KEYS {
            return Err(StateError::BadPathLength { index });
        }
        match op {
            StateOp::Set { value, .. } => {
                let created = self.missing_prefix(path);
                let old = self
                    .put(path, Node::from_value(value.clone()))
                    .map_err(|key| StateError::ThroughValue { index, key })?;
                Ok(match (created, old) {
                    (Some(depth), _) => Undo::Remove(path[..=depth].to_vec()),
                    (None, Some(old)) => Undo::Restore(path.to_vec(), old),
                    (None, None) => Undo::Remove(path.to_vec()),
                })
            }
            StateOp::Delete { .. } => match self.take(path) {
                Ok(Some(old)) => Ok(Undo::Restore(path.to_vec(), old)),
                Ok(None) => Ok(Undo::Nothing),
                Err(key) => Err(StateError::ThroughValue { index, key }),
            },
        }
    }

    /// The index of the first map on `path` (excluding its last key) that does not exist yet.
    fn missing_prefix(&self, path: &[String]) -> Option<usize> {
        let mut map = &self.root;
        for (depth, key) in path[..path.len() - 1].iter().enumerate() {
            match map.get(key) {
                Some(Node::Map(child)) => map = child,
                Some(Node::Value(_)) => return None,
                None => return Some(depth),
            }
        }
        None
    }

    /// Puts `node` at `path`, creating missing maps; returns what was there. Fails with the
    /// offending key when the path runs through a value.
    fn put(&mut self, path: &[String], node: Node) -> Result<Option<Node>, String> {
        let Some((last, parents)) = path.split_last() else {
            return Ok(None);
        };
        let mut growth: isize = 0;
        // Values below the root: a created map adds its key and itself.
        let mut values: isize = 0;
        let mut map = &mut self.root;
        for key in parents {
            if !map.contains_key(key) {
                growth += header_delta(map.len(), map.len() + 1) + str_len(key) as isize + 1;
                values += 2;
                map.insert(key.clone(), Node::Map(BTreeMap::new()));
            }
            match map.get_mut(key) {
                Some(Node::Map(child)) => map = child,
                _ => {
                    // Only reachable when the key holds a value (missing keys were just made
                    // maps); nothing was created on the way, since a created map is empty.
                    return Err(key.clone());
                }
            }
        }
        let new_len = node.encoded_len();
        let new_values = node.value_count() as isize;
        let before = map.len();
        let old = map.insert(last.clone(), node);
        match &old {
            Some(old) => {
                growth += new_len as isize - old.encoded_len() as isize;
                values += new_values - old.value_count() as isize;
            }
            None => {
                growth += header_delta(before, before + 1) + (str_len(last) + new_len) as isize;
                values += 1 + new_values;
            }
        }
        self.encoded_len = (self.encoded_len() as isize + growth) as usize;
        self.values = (self.values as isize + values) as usize;
        Ok(old)
    }

    /// Removes and returns what is at `path`, if anything: a missing key on the way means
    /// nothing is there. Fails with the offending key when the path runs through a value, as
    /// `put` does, so that `set` and `delete` read paths alike.
    fn take(&mut self, path: &[String]) -> Result<Option<Node>, String> {
        let Some((last, parents)) = path.split_last() else {
            return Ok(None);
        };
        let mut map = &mut self.root;
        for key in parents {
            match map.get_mut(key) {
                Some(Node::Map(child)) => map = child,
                Some(Node::Value(_)) => return Err(key.clone()),
                None => return Ok(None),
            }
        }
        let before = map.len();
        let Some(old) = map.remove(last) else {
            return Ok(None);
        };
        let shrink =
            header_delta(before, before - 1) - (str_len(last) + old.encoded_len()) as isize;
        self.encoded_len = (self.encoded_len() as isize + shrink) as usize;
        // The key and what it held.
        self.values = self.values.saturating_sub(1 + old.value_count());
        Ok(Some(old))
    }
}

impl Node {
    /// Maps whose keys are all strings become `Map` nodes (so paths can go into them); anything
    /// else is kept whole as a value.
    fn from_value(value: Value) -> Node {
        match value {
            Value::Map(entries) if entries.iter().all(|(k, _)| k.is_str()) => Node::Map(
                entries
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        Value::String(s) => s.into_str().map(|s| (s, Node::from_value(v))),
                        _ => None,
                    })
                    .collect(),
            ),
            other => Node::Value(other),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Node::Map(map) => map_to_value(map),
            Node::Value(value) => value.clone(),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Node::Map(map) => map_len(map),
            Node::Value(value) => value_len(value),
        }
    }

    /// MessagePack values in this node's encoding (see `Document::value_count`).
    fn value_count(&self) -> usize {
        match self {
            Node::Map(map) => 1 + entries_count(map),
            Node::Value(value) => value_count(value),
        }
    }
}

/// Values inside a map of nodes: each key and what it holds.
fn entries_count(map: &BTreeMap<String, Node>) -> usize {
    map.values().map(|node| 1 + node.value_count()).sum()
}

/// Values in `value`'s encoding. The recursion is as deep as the value, which decoding
/// bounded (`max_depth`).
fn value_count(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(value_count).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| value_count(k) + value_count(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

fn map_len(map: &BTreeMap<String, Node>) -> usize {
    header_len(map.len())
        + map
            .iter()
            .map(|(k, v)| str_len(k) + v.encoded_len())
            .sum::<usize>()
}

fn map_to_value(map: &BTreeMap<String, Node>) -> Value {
    Value::Map(
        map.iter()
            .map(|(k, v)| (Value::from(k.as_str()), v.to_value()))
            .collect(),
    )
}

/// Bytes of a MessagePack map header for `len` entries.
fn header_len(len: usize) -> usize {
    match len {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

fn header_delta(before: usize, after: usize) -> isize {
    header_len(after) as isize - header_len(before) as isize
}

/// Bytes of a MessagePack string.
fn str_len(s: &str) -> usize {
    let n = s.len();
    n + match n {
        0..=31 => 1,
        32..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

fn value_len(value: &Value) -> usize {
    crate::codec::encoded_len(value)
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Map(map) => serialize_map(map, serializer),
            Node::Value(value) => value.serialize(serializer),
        }
    }
}

fn serialize_map<S: Serializer>(
    map: &BTreeMap<String, Node>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for (key, node) in map {
        out.serialize_entry(key, node)?;
    }
    out.end()
}

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_map(&self.root, serializer)
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Node::from_value(Value::deserialize(deserializer)?) {
            Node::Map(root) => Ok(Document {
                encoded_len: map_len(&root),
                values: entries_count(&root),
                root,
            }),
            Node::Value(_) => Err(D::Error::custom(
                "a state document is a map with string keys",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
