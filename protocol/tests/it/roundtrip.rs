//! Property tests: JSON ⇄ model ⇄ token round trips and fold stability.

use proptest::prelude::*;
use protocol::anychain::{fold, from_json_str, to_json_pretty, to_token, Dict, Limits, Value};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Number),
        any::<i64>().prop_map(|i| Value::Number(i as f64)),
        any::<String>().prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        proptest::collection::vec(any::<u8>(), 0..70).prop_map(Value::Hash),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Box),
    ]
}

/// Keys without `_` (so no tag look-alikes), with commas and characters
/// around `,` to exercise the sort, and array-index-like keys.
fn key() -> impl Strategy<Value = String> {
    prop_oneof!["[a-c,+ !-]{0,4}", "[0-9]{1,3}", "\\PC{0,3}"]
        .prop_filter("not special", |k| !k.contains('_') && k != "toString")
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec((key(), inner), 0..6).prop_map(|entries| {
                let mut d = Dict::new();
                for (k, v) in entries {
                    d.insert(k, v);
                }
                Value::Dict(d)
            }),
        ]
    })
}

fn limits() -> Limits {
    Limits::default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn token_round_trip(v in value()) {
        let token = to_token(&v);
        let back = from_json_str(&token, &limits()).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(to_token(&back), token);
    }

    #[test]
    fn pretty_json_round_trip(v in value()) {
        let back = from_json_str(&to_json_pretty(&v), &limits()).unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn fold_is_stable_through_tokens(v in value()) {
        let back = from_json_str(&to_token(&v), &limits()).unwrap();
        prop_assert_eq!(fold(&back).unwrap(), fold(&v).unwrap());
    }

    #[test]
    fn dict_fold_ignores_insertion_order_without_comma_keys(
        entries in proptest::collection::btree_map("[a-z+ !-]{0,4}", leaf(), 0..8)
    ) {
        let forward: Dict = entries.iter().fold(Dict::new(), |d, (k, v)| d.with(k.clone(), v.clone()));
        let backward: Dict = entries.iter().rev().fold(Dict::new(), |d, (k, v)| d.with(k.clone(), v.clone()));
        prop_assert_eq!(fold(&Value::Dict(forward)).unwrap(), fold(&Value::Dict(backward)).unwrap());
    }

    #[test]
    fn merkle_substitution_of_containers(v in value()) {
        // Replacing a value by its fold leaves every enclosing fold unchanged
        // (keys without commas, so the entry order cannot move).
        let outer = Dict::new().with("x", v.clone()).with("y", Value::Null);
        let sub = fold(&v).unwrap().into_value();
        let replaced = Dict::new().with("x", sub).with("y", Value::Null);
        prop_assert_eq!(fold(&Value::Dict(outer)).unwrap(), fold(&Value::Dict(replaced)).unwrap());
        let in_list = Value::List(vec![v.clone()]);
        let replaced_list = Value::List(vec![fold(&v).unwrap().into_value()]);
        prop_assert_eq!(fold(&in_list).unwrap(), fold(&replaced_list).unwrap());
    }

    #[test]
    fn decoder_never_panics(text in "\\PC{0,64}") {
        let _ = from_json_str(&text, &limits());
    }
}
