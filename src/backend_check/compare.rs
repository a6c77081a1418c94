//! The comparison of two runs, tensor by tensor and element by element: the agreement rule,
//! NaN/inf mismatches counted apart, missing tensors and shape mismatches.

use super::run::{HostTensor, Run};
use super::{BackendCheckConfig, ElementDiff, Outcome, Side, Subject, TensorComparison, Tolerance};
use crate::checks::unravel;

/// Compares one tensor of both runs.
fn compare(
    subject: Subject,
    reference: Option<&HostTensor>,
    value: Option<&HostTensor>,
    config: &BackendCheckConfig,
) -> TensorComparison {
    let mut comparison = TensorComparison {
        subject,
        outcome: Outcome::Compared,
        shape: Vec::new(),
        reference_dtype: reference.map(|r| r.dtype),
        dtype: value.map(|v| v.dtype),
        tolerance: Tolerance {
            rtol: 0.0,
            atol: 0.0,
        },
        compared: 0,
        failed: 0,
        nonfinite_mismatches: 0,
        worst: None,
        first_nonfinite_mismatch: None,
    };
    let (reference, value) = match (reference, value) {
        (None, None) => {
            comparison.outcome = Outcome::AbsentOnBoth;
            return comparison;
        }
        (None, Some(v)) => {
            comparison.outcome = Outcome::Missing {
                on: Side::Reference,
                shape: v.shape.clone(),
            };
            return comparison;
        }
        (Some(r), None) => {
            comparison.outcome = Outcome::Missing {
                on: Side::Checked,
                shape: r.shape.clone(),
            };
            return comparison;
        }
        (Some(r), Some(v)) => (r, v),
    };
    comparison.tolerance = config.tolerance(reference.dtype, value.dtype);
    if reference.shape != value.shape {
        comparison.outcome = Outcome::ShapeMismatch {
            reference: reference.shape.clone(),
            checked: value.shape.clone(),
        };
        return comparison;
    }
    comparison.shape = reference.shape.clone();
    let tolerance = comparison.tolerance;
    for (k, (&r, &v)) in reference.values.iter().zip(&value.values).enumerate() {
        comparison.compared += 1;
        let diff = || ElementDiff {
            index: unravel(k, &reference.shape),
            flat_index: k,
            reference: r,
            value: v,
            abs_error: (v - r).abs(),
            tolerance: tolerance.allowed(r),
        };
        if !(r.is_finite() && v.is_finite()) {
            let same = if r.is_nan() || v.is_nan() {
                r.is_nan() && v.is_nan() && config.equal_nan
            } else {
                r == v
            };
            if !same {
                comparison.nonfinite_mismatches += 1;
                if comparison.first_nonfinite_mismatch.is_none() {
                    comparison.first_nonfinite_mismatch = Some(diff());
                }
            }
            continue;
        }
        let element = diff();
        if element.abs_error > element.tolerance {
            comparison.failed += 1;
        }
        if comparison
            .worst
            .as_ref()
            .is_none_or(|worst| element.ratio() > worst.ratio())
        {
            comparison.worst = Some(element);
        }
    }
    comparison
}

/// Compares every output of both runs (the reference's in order, then any only the checked
/// backend gave) and the gradient of every float input.
pub(super) fn compare_runs(
    reference: &Run,
    checked: &Run,
    config: &BackendCheckConfig,
) -> Vec<TensorComparison> {
    let mut tensors = Vec::new();
    let find = |run: &'_ Run, name: &str| -> Option<HostTensor> {
        run.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    };
    for (name, tensor) in &reference.outputs {
        let other = find(checked, name);
        tensors.push(compare(
            Subject::Output(name.clone()),
            Some(tensor),
            other.as_ref(),
            config,
        ));
    }
    for (name, tensor) in &checked.outputs {
        if find(reference, name).is_none() {
            tensors.push(compare(
                Subject::Output(name.clone()),
                None,
                Some(tensor),
                config,
            ));
        }
    }
    for ((name, r), (_, c)) in reference.gradients.iter().zip(&checked.gradients) {
        tensors.push(compare(
            Subject::Gradient(name.clone()),
            r.as_ref(),
            c.as_ref(),
            config,
        ));
    }
    tensors
}

#[cfg(test)]
mod tests {
    use burn::tensor::DType;

    use super::*;

    fn host(values: &[f64], dtype: DType) -> HostTensor {
        HostTensor {
            shape: vec![values.len()],
            dtype,
            values: values.to_vec(),
        }
    }

    #[test]
    fn nonfinite_values_are_counted_apart() {
        let config = BackendCheckConfig::new();
        let r = host(&[1.0, f64::NAN, f64::INFINITY, 2.0, f64::NAN], DType::F64);
        let v = host(&[1.0, f64::NAN, f64::INFINITY, 2.5, 3.0], DType::F32);
        let c = compare(Subject::Output("y".into()), Some(&r), Some(&v), &config);
        assert_eq!((c.compared, c.failed, c.nonfinite_mismatches), (5, 1, 1));
        assert_eq!(c.worst.as_ref().unwrap().index, vec![3]);
        assert_eq!(c.first_nonfinite_mismatch.as_ref().unwrap().index, vec![4]);
        assert!(!c.passed());
        let strict = config.with_equal_nan(false);
        let c = compare(Subject::Output("y".into()), Some(&r), Some(&r), &strict);
        assert_eq!(c.nonfinite_mismatches, 2);
    }

    #[test]
    fn missing_and_absent_gradients() {
        let config = BackendCheckConfig::new();
        let g = host(&[1.0], DType::F32);
        let both = compare(Subject::Gradient("x".into()), None, None, &config);
        assert!(both.passed());
        let one = compare(Subject::Gradient("x".into()), Some(&g), None, &config);
        assert_eq!(
            one.outcome,
            Outcome::Missing {
                on: Side::Checked,
                shape: vec![1]
            }
        );
        assert!(!one.passed());
    }
}
