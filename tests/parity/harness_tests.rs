//! The harness's own rules: ranks, values not representable in f32, the summary line.

use super::common::TestBackend;
use super::fixture::{Case, parse};
use super::runner::{Run, run_case};
use super::{Report, f32_overflow, overflows_f32};
use burn::tensor::{DType, Device};
use serde_json::{Value, json};

/// The autodiff ndarray device the harness's own checks run on.
fn ndarray() -> Device {
    TestBackend::ndarray_f32().autodiff().device
}

/// The only case of a one-case file, which must be read.
fn case(case: Value) -> Case {
    let file = json!({"format": "xent-fixtures/1", "cases": [case]});
    let mut fixtures = parse(&file.to_string()).expect("the envelope is valid");
    fixtures.cases.remove(0).expect("the case is valid")
}

/// A BCE-with-logits case of the given shape (all ones), in f64. Its `expected` is a
/// placeholder the format requires: these tests never judge a run's values.
fn binary(shape: &[usize], pos_weight: Value) -> Case {
    let count: usize = shape.iter().product();
    case(json!({
        "name": "binary",
        "loss": "binary_cross_entropy_with_logits",
        "dtype": "f64",
        "input": {"shape": shape, "data": vec![1.0; count]},
        "target": {"shape": shape, "data": vec![1.0; count], "kind": "float"},
        "pos_weight": pos_weight,
        "reduction": "mean",
        "expected": {"loss": {"shape": [], "data": [0.3]}, "grad_input": null},
        "tolerance": {"rtol": 1e-10, "atol": 1e-12}
    }))
}

fn harness_error(run: Run) -> String {
    match run {
        Run::HarnessError(reason) => reason,
        other => panic!("expected a harness error, got {other:?}"),
    }
}

#[test]
fn a_rank_above_six_is_a_harness_error() {
    let run = run_case(&binary(&[1; 7], json!(null)), DType::F32, &ndarray());
    let reason = harness_error(run);
    assert!(
        reason.contains("input has rank 7") && reason.contains("not supported"),
        "{reason}"
    );
    let pos_weight = json!({"shape": vec![1; 7], "data": [2.0]});
    let run = run_case(&binary(&[2, 1], pos_weight), DType::F32, &ndarray());
    let reason = harness_error(run);
    assert!(reason.contains("pos_weight has rank 7"), "{reason}");
}

#[test]
fn rank_six_runs() {
    let run = run_case(
        &binary(&[1, 2, 1, 1, 2, 1], json!(null)),
        DType::F32,
        &ndarray(),
    );
    match run {
        Run::Ran(outcome) => {
            assert_eq!(outcome.loss_shape, [1]);
            assert_eq!(outcome.grad_shape, [1, 2, 1, 1, 2, 1]);
        }
        other => panic!("expected a run, got {other:?}"),
    }
}

#[test]
fn an_index_target_of_a_rank_pytorch_refuses_is_a_harness_error() {
    let case = case(json!({
        "name": "ce",
        "loss": "cross_entropy",
        "dtype": "f32",
        "input": {"shape": [2, 3], "data": vec![0.0; 6]},
        "target": {"shape": [2, 1], "data": [0, 1], "kind": "index"},
        "reduction": "mean",
        "expect_error": true,
        "tolerance": {"rtol": 1e-4, "atol": 1e-5}
    }));
    let reason = harness_error(run_case(&case, DType::F32, &ndarray()));
    assert!(reason.contains("index targets of rank 1 only"), "{reason}");
}

#[test]
fn finds_values_that_overflow_f32() {
    assert!(overflows_f32(1e200) && overflows_f32(-1e39));
    assert!(!overflows_f32(f64::from(f32::MAX)) && !overflows_f32(-3.0e38));
    assert!(!overflows_f32(f64::INFINITY) && !overflows_f32(f64::NAN));
    assert!(!overflows_f32(1e-300), "an underflow is not an overflow");

    assert_eq!(f32_overflow(&binary(&[2], json!(null))), None);
    let mut big = binary(&[2], json!({"shape": [2], "data": [1.0, 1e200]}));
    assert_eq!(f32_overflow(&big).as_deref(), Some("pos_weight[1] = 1e200"));
    big.pos_weight = None;
    big.expected.as_mut().unwrap().loss.data[0] = -5e38;
    assert_eq!(
        f32_overflow(&big).as_deref(),
        Some("expected.loss[0] = -5e38")
    );
}

#[test]
fn the_summary_counts_cases_not_representable_in_f32() {
    let mut report = Report {
        cases: 5,
        passed: 3,
        not_representable: vec!["a (input[0] = 1e200)".to_string()],
        ..Report::default()
    };
    assert_eq!(
        report.summary("wgpu fused"),
        "parity wgpu fused: 5 cases, 3 passed, 1 not representable in f32"
    );
    assert!(
        !report.all_passed(),
        "one case neither passed nor was counted"
    );
    report.passed = 4;
    assert!(report.all_passed());
    report.failures.push("FAILED x".to_string());
    assert!(!report.all_passed());
    let plain = Report {
        cases: 2,
        passed: 2,
        ..Report::default()
    };
    assert_eq!(
        plain.summary("ndarray composite"),
        "parity ndarray composite: 2 cases, 2 passed"
    );
    assert!(plain.all_passed());
}
