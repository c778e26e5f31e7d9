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

const BIG: usize = 1 << 20;

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
    doc.apply(&[set(&["a"], "small")], 64).unwrap();
    let before = doc.clone();
    let err = doc
        .apply(&[delete(&["a"]), set(&["b"], "x".repeat(100))], 64)
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
        let _ = doc.apply(&[op], 4096);
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
