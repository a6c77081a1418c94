//! The reader's side of "a field or value it does not understand is a failure".

use super::fixture::{Dtype, Loss, Reduction, Target, parse};
use serde_json::{Value, json};

/// A valid one-case file; tests edit it into invalid ones.
fn valid() -> Value {
    json!({
        "format": "xent-fixtures/1",
        "generator": "test",
        "cases": [{
            "name": "ce",
            "loss": "cross_entropy",
            "dtype": "f32",
            "input": {"shape": [2, 3], "data": [0.5, "nan", "-inf", 1, 2, "inf"]},
            "target": {"shape": [2], "data": [0, -100], "kind": "index"},
            "weight": null,
            "ignore_index": -100,
            "label_smoothing": 0.1,
            "reduction": "mean",
            "upstream": {"shape": [], "data": [2.0]},
            "expected": {
                "loss": {"shape": [], "data": [0.25]},
                "grad_input": null
            },
            "tolerance": {"rtol": 1e-4, "atol": 1e-5}
        }]
    })
}

/// The reason the file's only case is rejected; panics if it is accepted.
fn case_rejected(file: Value) -> String {
    let fixtures = parse(&file.to_string()).expect("the envelope is valid");
    assert_eq!(fixtures.cases.len(), 1);
    match &fixtures.cases[0] {
        Ok(case) => panic!("accepted a case it should reject: {case:?}"),
        Err(bad) => bad.reason.clone(),
    }
}

fn with_case(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut file = valid();
    edit(file["cases"][0].as_object_mut().unwrap());
    file
}

#[test]
fn accepts_the_valid_case() {
    let fixtures = parse(&valid().to_string()).unwrap();
    let case = fixtures.cases[0].as_ref().unwrap();
    assert_eq!(case.loss, Loss::CrossEntropy);
    assert_eq!(case.dtype, Dtype::F32);
    assert_eq!(case.reduction, Reduction::Mean);
    assert!(case.input.data[1].is_nan());
    assert_eq!(case.input.data[2], f64::NEG_INFINITY);
    assert_eq!(case.input.data[5], f64::INFINITY);
    assert!(matches!(&case.target, Target::Index(t) if t.data == [0, -100]));
    assert_eq!(case.upstream.as_ref().unwrap().shape, Vec::<usize>::new());
    assert!(!case.expect_error);
    assert_eq!(fixtures.generator.as_deref(), Some("test"));
}

#[test]
fn fills_in_the_defaults() {
    let file = with_case(|case| {
        for field in ["weight", "ignore_index", "label_smoothing", "upstream"] {
            case.remove(field);
        }
    });
    let fixtures = parse(&file.to_string()).unwrap();
    let case = fixtures.cases[0].as_ref().unwrap();
    assert_eq!(case.ignore_index, -100);
    assert_eq!(case.label_smoothing, 0.0);
    assert!(case.weight.is_none() && case.pos_weight.is_none() && case.upstream.is_none());
}

#[test]
fn rejects_a_bad_format_string() {
    for format in [json!("xent-fixtures/2"), json!("XENT-FIXTURES/1"), json!(1)] {
        let mut file = valid();
        file["format"] = format;
        let err = parse(&file.to_string()).unwrap_err();
        assert!(err.contains("format"), "{err}");
    }
    let mut file = valid();
    file.as_object_mut().unwrap().remove("format");
    assert!(parse(&file.to_string()).unwrap_err().contains("format"));
}

#[test]
fn rejects_an_unknown_field() {
    let mut file = valid();
    file["comment"] = json!("hi");
    assert!(parse(&file.to_string()).unwrap_err().contains("comment"));

    let reason = case_rejected(with_case(|case| {
        case.insert("reduce".into(), json!(true));
    }));
    assert!(reason.contains("reduce"), "{reason}");

    let reason = case_rejected(with_case(|case| {
        case["input"]["stride"] = json!([3, 1]);
    }));
    assert!(reason.contains("stride"), "{reason}");

    let reason = case_rejected(with_case(|case| {
        case["expected"]["grad_weight"] = json!(null);
    }));
    assert!(reason.contains("grad_weight"), "{reason}");

    let reason = case_rejected(with_case(|case| {
        case["tolerance"]["ulps"] = json!(4);
    }));
    assert!(reason.contains("ulps"), "{reason}");
}

#[test]
fn rejects_an_unknown_loss() {
    let reason = case_rejected(with_case(|case| {
        case["loss"] = json!("kl_div");
    }));
    assert!(reason.contains("kl_div"), "{reason}");
}

#[test]
fn rejects_an_unknown_dtype() {
    for dtype in ["f16", "bf16", "float32"] {
        let reason = case_rejected(with_case(|case| {
            case["dtype"] = json!(dtype);
        }));
        assert!(reason.contains(dtype), "{reason}");
    }
}

#[test]
fn rejects_an_unknown_reduction() {
    for reduction in ["batchmean", "elementwise_mean", "Mean"] {
        let reason = case_rejected(with_case(|case| {
            case["reduction"] = json!(reduction);
        }));
        assert!(reason.contains(reduction), "{reason}");
    }
}

#[test]
fn rejects_an_unknown_value() {
    let reason = case_rejected(with_case(|case| {
        case["input"]["data"][0] = json!("NaN");
    }));
    assert!(reason.contains("NaN"), "{reason}");
    let reason = case_rejected(with_case(|case| {
        case["target"]["kind"] = json!("probabilities");
    }));
    assert!(reason.contains("probabilities"), "{reason}");
    let reason = case_rejected(with_case(|case| {
        case["target"]["data"][0] = json!(1.5);
    }));
    assert!(reason.contains("target.data[0]"), "{reason}");
    let reason = case_rejected(with_case(|case| {
        case["input"]["data"] = json!([1.0, 2.0]);
    }));
    assert!(reason.contains("holds 6 values"), "{reason}");
    let reason = case_rejected(with_case(|case| {
        case.insert("expect_error".into(), json!("yes"));
    }));
    assert!(reason.contains("expect_error"), "{reason}");
}

#[test]
fn rejects_fields_that_do_not_apply() {
    let reason = case_rejected(with_case(|case| {
        case.insert(
            "pos_weight".into(),
            json!({"shape": [3], "data": [1, 2, 3]}),
        );
    }));
    assert!(reason.contains("pos_weight"), "{reason}");
    let reason = case_rejected(with_case(|case| {
        case["loss"] = json!("nll_loss");
    }));
    assert!(reason.contains("label_smoothing"), "{reason}");
    let reason = case_rejected(with_case(|case| {
        case.insert("expect_error".into(), json!(true));
    }));
    assert!(reason.contains("expected"), "{reason}");
    let reason = case_rejected(with_case(|case| {
        case.remove("expected");
    }));
    assert!(reason.contains("expected"), "{reason}");
}

/// A valid one-case BCE file.
fn valid_bce() -> Value {
    json!({
        "format": "xent-fixtures/1",
        "cases": [{
            "name": "bce",
            "loss": "binary_cross_entropy",
            "dtype": "f64",
            "input": {"shape": [2], "data": [0.25, 0.5]},
            "target": {"shape": [2], "data": [1, 0], "kind": "float"},
            "reduction": "sum",
            "expected": {
                "loss": {"shape": [], "data": [2.0]},
                "grad_input": null
            },
            "tolerance": {"rtol": 1e-10, "atol": 1e-12}
        }]
    })
}

/// `file` with its only case edited by `edit`.
fn edited(mut file: Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    edit(file["cases"][0].as_object_mut().unwrap());
    file
}

#[test]
fn accepts_the_default_of_a_field_that_does_not_apply() {
    for loss in ["binary_cross_entropy", "binary_cross_entropy_with_logits"] {
        let file = edited(valid_bce(), |case| {
            case["loss"] = json!(loss);
            case.insert("ignore_index".into(), json!(-100));
            case.insert("label_smoothing".into(), json!(0));
        });
        let fixtures = parse(&file.to_string()).unwrap();
        let case = fixtures.cases[0].as_ref().unwrap();
        assert_eq!((case.ignore_index, case.label_smoothing), (-100, 0.0));
        let file = edited(valid_bce(), |case| {
            case["loss"] = json!(loss);
            case.insert("label_smoothing".into(), json!(0.0));
            case.insert("pos_weight".into(), json!(null));
        });
        let fixtures = parse(&file.to_string()).unwrap();
        assert!(fixtures.cases[0].as_ref().unwrap().pos_weight.is_none());
    }
    // `pos_weight: null` on the class losses, `label_smoothing: 0` on NLL.
    let fixtures = parse(
        &with_case(|case| {
            case.insert("pos_weight".into(), json!(null));
        })
        .to_string(),
    )
    .unwrap();
    assert!(fixtures.cases[0].as_ref().unwrap().pos_weight.is_none());
    let fixtures = parse(
        &with_case(|case| {
            case["loss"] = json!("nll_loss");
            case["label_smoothing"] = json!(0.0);
            case.insert("pos_weight".into(), json!(null));
        })
        .to_string(),
    )
    .unwrap();
    let case = fixtures.cases[0].as_ref().unwrap();
    assert_eq!(case.loss, Loss::Nll);
    assert_eq!(case.label_smoothing, 0.0);
}

#[test]
fn rejects_another_value_of_a_field_that_does_not_apply() {
    for (field, value) in [
        ("ignore_index", json!(3)),
        ("ignore_index", json!(-1)),
        ("label_smoothing", json!(0.1)),
        ("pos_weight", json!({"shape": [2], "data": [1, 2]})),
    ] {
        let reason = case_rejected(edited(valid_bce(), |case| {
            case.insert(field.into(), value.clone());
        }));
        assert!(reason.starts_with(field), "{field}: {reason}");
    }
    let reason = case_rejected(edited(valid_bce(), |case| {
        case["loss"] = json!("binary_cross_entropy_with_logits");
        case.insert("label_smoothing".into(), json!(0.2));
    }));
    assert!(reason.starts_with("label_smoothing"), "{reason}");
    // The valid BCE file itself is accepted, so the rejections above are the fields'.
    assert!(parse(&valid_bce().to_string()).unwrap().cases[0].is_ok());
}

#[test]
fn rejects_a_duplicate_name() {
    let mut file = valid();
    let case = file["cases"][0].clone();
    file["cases"].as_array_mut().unwrap().push(case);
    let fixtures = parse(&file.to_string()).unwrap();
    assert!(fixtures.cases[0].is_ok());
    assert!(
        fixtures.cases[1]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("unique")
    );
}

#[test]
fn nan_matches_only_nan_and_infinity_only_itself() {
    let tolerance = super::Tolerance {
        rtol: 1e-4,
        atol: 1e-5,
    };
    assert!(super::matches(f64::NAN, f64::NAN, tolerance));
    assert!(!super::matches(0.0, f64::NAN, tolerance));
    assert!(!super::matches(f64::NAN, 0.0, tolerance));
    assert!(super::matches(f64::INFINITY, f64::INFINITY, tolerance));
    assert!(!super::matches(f64::NEG_INFINITY, f64::INFINITY, tolerance));
    assert!(!super::matches(1e300, f64::INFINITY, tolerance));
    assert!(!super::matches(f64::INFINITY, 1e300, tolerance));
    assert!(super::matches(1.0001, 1.0, tolerance));
    assert!(!super::matches(1.001, 1.0, tolerance));
}
