use super::*;

fn path(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn set(keys: &[&str], value: impl Into<Value>) -> StateOp {
    StateOp::Set {
        path: path(keys),
        value: value.into(),
    }
}

fn delete(keys: &[&str]) -> StateOp {
    StateOp::Delete { path: path(keys) }
}

fn actual_len(doc: &Document) -> usize {
    rmp_serde::to_vec(doc).map(|v| v.len()).unwrap_or(0)
}

/// The document's values counted afresh from its encoding, independently of the code under
/// test: one per MessagePack value, containers, keys and elements included.
fn recount(doc: &Document) -> usize {
    fn count(value: &Value) -> usize {
        match value {
            Value::Array(items) => items.iter().fold(1, |n, item| n + count(item)),
            Value::Map(entries) => entries
                .iter()
                .fold(1, |n, (key, value)| n + count(key) + count(value)),
            _ => 1,
        }
    }
    let bytes = rmp_serde::to_vec(doc).expect("encode");
    count(&rmpv::decode::read_value(&mut &bytes[..]).expect("decode"))
}

const BIG: StateLimits = StateLimits {
    max_bytes: 1 << 20,
    max_values: 1 << 20,
};

fn bytes(max_bytes: usize) -> StateLimits {
    StateLimits { max_bytes, ..BIG }
}

#[test]
fn set_creates_maps_on_the_way_and_get_reads_back() {
    let mut doc = Document::new();
    doc.apply(&[set(&["grid", "3,4"], "red"), set(&["count"], 7)], BIG)
        .unwrap();
    assert_eq!(doc.get(&path(&["grid", "3,4"])), Some(Value::from("red")));
    assert_eq!(doc.get(&path(&["count"])), Some(Value::from(7)));
    assert_eq!(doc.encoded_len(), actual_len(&doc));
}

#[test]
fn a_set_map_value_can_be_entered_by_later_paths() {
    let mut doc = Document::new();
    let map = Value::Map(vec![(Value::from("a"), Value::from(1))]);
    doc.apply(&[set(&["m"], map), set(&["m", "b"], 2)], BIG)
        .unwrap();
    let expected = Value::Map(vec![
        (Value::from("a"), Value::from(1)),
        (Value::from("b"), Value::from(2)),
    ]);
    assert_eq!(doc.get(&path(&["m"])), Some(expected));
}

#[test]
fn a_path_through_a_value_fails_and_rolls_back_the_whole_batch() {
    let mut doc = Document::new();
    doc.apply(&[set(&["x"], 1)], BIG).unwrap();
    let before = doc.clone();
    let mut doc = before.clone();
    let err = doc
        .apply(&[set(&["y", "z"], 2), set(&["x", "deeper"], 3)], BIG)
        .unwrap_err();
    assert_eq!(
        err,
        StateError::ThroughValue {
            index: 1,
            key: "x".into()
        }
    );
    assert_eq!(doc, before);
    assert_eq!(doc.encoded_len(), actual_len(&doc));
}

#[test]
fn bad_path_lengths_are_refused() {
    let mut doc = Document::new();
    assert_eq!(
        doc.apply(&[delete(&[])], BIG),
        Err(StateError::BadPathLength { index: 0 })
    );
    let long: Vec<&str> = (0..=MAX_PATH_KEYS).map(|_| "k").collect();
    assert_eq!(
        doc.apply(&[set(&["ok"], 1), set(&long, 1)], BIG),
        Err(StateError::BadPathLength { index: 1 })
    );
    assert!(doc.is_empty());
}

#[test]
fn over_the_size_limit_nothing_changes() {
    let mut doc = Document::new();
    doc.apply(&[set(&["a"], "small")], bytes(64)).unwrap();
    let before = doc.clone();
    let err = doc
        .apply(&[delete(&["a"]), set(&["b"], "x".repeat(100))], bytes(64))
        .unwrap_err();
    assert!(matches!(err, StateError::TooLarge { max: 64, .. }));
    assert_eq!(doc, before);
    assert_eq!(doc.encoded_len(), actual_len(&doc));
}

#[test]
fn deleting_nothing_is_not_an_error() {
    let mut doc = Document::new();
    doc.apply(&[delete(&["nope"]), delete(&["a", "b"])], BIG)
        .unwrap();
    assert!(doc.is_empty());
    // Absent maps on the way, at any depth, are nothing there too.
    doc.apply(&[set(&["m", "k"], 1)], BIG).unwrap();
    let before = doc.clone();
    doc.apply(
        &[delete(&["m", "absent", "deeper"]), delete(&["m", "gone"])],
        BIG,
    )
    .unwrap();
    assert_eq!(doc, before);
}

#[test]
fn a_delete_through_a_value_fails_and_changes_nothing() {
    let mut doc = Document::new();
    let int_keyed = Value::Map(vec![(Value::from(1), Value::from("one"))]);
    doc.apply(
        &[
            set(&["x"], 1),
            set(&["x2"], 1),
            set(&["m", "k"], 2),
            set(&["ints"], int_keyed),
        ],
        BIG,
    )
    .unwrap();
    let before = doc.clone();
    for (through, key) in [
        (&["x", "y"][..], "x"),
        (&["m", "k", "z"][..], "k"),
        (&["x", "y", "z"][..], "x"),
        // A map whose keys are not all strings is a value: paths do not enter it.
        (&["ints", "1"][..], "ints"),
    ] {
        // An earlier op of the batch that applied is undone with it.
        let err = doc
            .apply(&[delete(&["x2"]), set(&["new"], 1), delete(through)], BIG)
            .unwrap_err();
        assert_eq!(
            err,
            StateError::ThroughValue {
                index: 2,
                key: key.into()
            },
            "{through:?}"
        );
        assert_eq!(doc, before);
        assert_eq!(doc.encoded_len(), actual_len(&doc));
    }
}

#[test]
fn tracked_size_equals_the_encoding_through_many_changes() {
    // A deterministic pseudo-random walk over sets and deletes, crossing the fixmap/map16 and
    // fixstr/str8 boundaries, with failing batches mixed in.
    let mut doc = Document::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let a = format!("k{}", next() % 40);
        let b = "v".repeat((next() % 40) as usize);
        let op = match next() % 4 {
            0 => delete(&[&a]),
            1 => set(&[&a, &b], next() % 1000),
            2 => set(&[&a], b.clone()),
            _ => delete(&[&a, &b]),
        };
        let _ = doc.apply(&[op], bytes(4096));
        assert_eq!(doc.encoded_len(), actual_len(&doc));
        assert!(doc.encoded_len() <= 4096);
    }
}

#[test]
fn equal_documents_encode_equally_and_round_trip() {
    let mut a = Document::new();
    a.apply(&[set(&["b"], 1), set(&["a"], 2)], BIG).unwrap();
    let mut b = Document::new();
    b.apply(&[set(&["a"], 2), set(&["b"], 1)], BIG).unwrap();
    let bytes = rmp_serde::to_vec(&a).unwrap();
    assert_eq!(bytes, rmp_serde::to_vec(&b).unwrap());
    let back: Document = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, a);
    assert!(rmp_serde::from_slice::<Document>(&rmp_serde::to_vec(&5).unwrap()).is_err());
}

#[test]
fn values_are_counted_as_protocol_md_defines() {
    let mut doc = Document::new();
    assert_eq!(doc.value_count(), 1, "the empty map");
    doc.apply(&[set(&["a"], Value::Array(vec![Value::Nil; 2]))], BIG)
        .unwrap();
    assert_eq!(doc.value_count(), 5, "{{\"a\": [nil, nil]}}");
    // A string or binary counts one whatever its length; a map with integer keys counts its
    // keys as a string-keyed one does.
    doc.apply(
        &[
            set(&["s"], "x".repeat(100)),
            set(
                &["ints"],
                Value::Map(vec![(Value::from(1), Value::Binary(vec![0; 50]))]),
            ),
            set(&["grid", "0,0"], 7),
        ],
        BIG,
    )
    .unwrap();
    // + "s" and its string (2), + "ints", its map, a key and a value (4), + "grid", its map,
    // "0,0" and 7 (4).
    assert_eq!(doc.value_count(), 5 + 2 + 4 + 4);
    assert_eq!(doc.value_count(), recount(&doc));
    let decoded: Document = rmp_serde::from_slice(&rmp_serde::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(decoded.value_count(), doc.value_count());
}

#[test]
fn over_the_value_limit_nothing_changes_and_the_limit_itself_is_allowed() {
    let limits = StateLimits {
        max_bytes: 1 << 20,
        max_values: 10,
    };
    let mut doc = Document::new();
    // 1 (root) + "a" + array + 7 nils = 10: exactly at the limit.
    doc.apply(&[set(&["a"], Value::Array(vec![Value::Nil; 7]))], limits)
        .unwrap();
    assert_eq!(doc.value_count(), 10);
    let before = doc.clone();
    for ops in [
        vec![set(&["b"], 1)],
        vec![set(&["a"], Value::Array(vec![Value::Nil; 8]))],
        // Freeing room first does not help a batch whose result is over.
        vec![
            delete(&["a"]),
            set(&["m", "n", "o", "p"], Value::Array(vec![Value::Nil; 3])),
        ],
    ] {
        let err = doc.apply(&ops, limits).unwrap_err();
        assert!(
            matches!(err, StateError::TooManyValues { max: 10, count } if count > 10),
            "{err:?}"
        );
        assert!(err.to_string().contains("max_state_values"), "{err}");
        assert_eq!(doc, before);
    }
    // Only the result counts: a batch may pass through more values and end within the limit.
    doc.apply(
        &[
            set(&["a"], Value::Array(vec![Value::Nil; 100])),
            set(&["a"], Value::Array(vec![Value::Nil; 7])),
        ],
        limits,
    )
    .unwrap();
    assert_eq!(doc, before);
}

#[test]
fn an_array_of_nils_within_the_bytes_is_refused_by_its_values() {
    // The attack: 65,000 nils are 65,003 bytes encoded, well under max_state_bytes,
    // and were 2.6 MB decoded.
    let limits = StateLimits {
        max_bytes: 262_144,
        max_values: 16_384,
    };
    let mut doc = Document::new();
    let err = doc
        .apply(
            &[set(&["a"], Value::Array(vec![Value::Nil; 65_000]))],
            limits,
        )
        .unwrap_err();
    assert_eq!(
        err,
        StateError::TooManyValues {
            count: 65_003,
            max: 16_384
        }
    );
    assert!(doc.is_empty());
    assert_eq!(doc.value_count(), 1);
}

mod props {
    //! The value count and encoded size kept by `Document` equal a recount after any sequence
    //! of batches, applied or refused.

    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> + Clone {
        // Few keys, so that paths meet, replace and go through one another; one long enough
        // to cross the fixstr boundary.
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string()),
            Just("k".repeat(40)),
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,40}".prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Binary),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                // String keys: a map the document can enter.
                proptest::collection::vec((key(), inner.clone()), 0..6).prop_map(|entries| {
                    Value::Map(
                        entries
                            .into_iter()
                            .map(|(k, v)| (Value::from(k), v))
                            .collect(),
                    )
                }),
                // Integer keys: a map kept whole as a value.
                proptest::collection::vec((any::<u8>(), inner), 1..4).prop_map(|entries| {
                    Value::Map(
                        entries
                            .into_iter()
                            .map(|(k, v)| (Value::from(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn op() -> impl Strategy<Value = StateOp> {
        let path = proptest::collection::vec(key(), 1..4);
        prop_oneof![
            (path.clone(), value()).prop_map(|(path, value)| StateOp::Set { path, value }),
            path.prop_map(|path| StateOp::Delete { path }),
        ]
    }

    proptest! {
        #[test]
        fn the_kept_count_and_size_equal_a_recount(
            batches in proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..30),
            max_values in 1usize..200,
            max_bytes in 1usize..2000,
        ) {
            let limits = StateLimits { max_bytes, max_values };
            let mut doc = Document::new();
            for ops in batches {
                let before = doc.clone();
                match doc.apply(&ops, limits) {
                    Ok(()) => {
                        prop_assert!(doc.value_count() <= max_values);
                        prop_assert!(doc.encoded_len() <= max_bytes);
                    }
                    Err(_) => prop_assert_eq!(&doc, &before),
                }
                prop_assert_eq!(doc.value_count(), recount(&doc));
                prop_assert_eq!(doc.encoded_len(), actual_len(&doc));
            }
        }
    }
}
