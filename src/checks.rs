//! Input validation shared by every loss: shapes (free, from metadata) and values (one read
//! from the device). Each failure panics with a message that names the function, the
//! argument, what was expected and what came, following Burn's convention.

use burn::tensor::{Bool, Int, Tensor};

use crate::fused::BadValue;

/// Panics unless `input` and `target` have the same shape.
pub(crate) fn same_shape(function: &str, input: &[usize], target: &[usize]) {
    assert!(
        input == target,
        "{function}: target: expected the input's shape {input:?}, got {target:?}"
    );
}

/// Panics unless `smoothing` lies in `[0, 1]`.
pub(crate) fn label_smoothing(function: &str, smoothing: f64) {
    assert!(
        (0.0..=1.0).contains(&smoothing),
        "{function}: label_smoothing: expected a value in [0, 1], got {smoothing}"
    );
}

/// Panics unless the logit soft cap, when set, is positive and finite.
pub(crate) fn softcap(function: &str, cap: Option<f64>) {
    if let Some(cap) = cap {
        assert!(
            cap > 0.0 && cap.is_finite(),
            "{function}: softcap: expected a positive finite cap, got {cap}"
        );
    }
}

/// Panics unless the z-loss scale is non-negative and finite.
pub(crate) fn z_loss(function: &str, scale: f64) {
    assert!(
        scale >= 0.0 && scale.is_finite(),
        "{function}: z_loss: expected a non-negative finite scale, got {scale}"
    );
}

/// Panics unless the per-class `weight` has one entry per class.
pub(crate) fn class_weight(function: &str, weight: &Tensor<1>, classes: usize) {
    let got = weight.dims()[0];
    assert!(
        got == classes,
        "{function}: weight: expected one weight per class, shape [{classes}], got shape [{got}]"
    );
}

/// Panics unless a tensor of shape `from` broadcasts to exactly `to` (PyTorch's rules:
/// align from the right, each dimension equal or 1, no more dimensions than `to`).
pub(crate) fn broadcasts_to(function: &str, argument: &str, from: &[usize], to: &[usize]) {
    let fits = from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == t || f == 1);
    assert!(
        fits,
        "{function}: {argument}: expected a shape that broadcasts to the input's shape {to:?}, got {from:?}"
    );
}

/// Panics if any element of `bad` is true, naming the first offending element.
///
/// `describe` turns the flat index of the first offender into the message; it is only
/// called on failure, so the happy path costs one `any()` and one scalar read.
pub(crate) fn none_set<const D: usize>(
    bad: Tensor<D, Bool>,
    describe: impl FnOnce(usize) -> String,
) {
    let any_set = bad
        .clone()
        .any()
        .into_data()
        .iter::<bool>()
        .any(|flag| flag);
    if !any_set {
        return;
    }
    let flags = bad.into_data();
    let first = flags
        .iter::<bool>()
        .position(|flag| flag)
        .expect("any() reported a set element");
    panic!("{}", describe(first));
}

/// Panics unless every class index lies in `[0, classes)` or equals `ignore_index`.
///
/// This check is what stands between the user and a silent wrong loss: on wgpu an
/// out-of-range `gather` returns 0 instead of failing.
pub(crate) fn class_indices<const D: usize>(
    function: &str,
    target: &Tensor<D, Int>,
    classes: usize,
    ignore_index: i64,
) {
    let out_of_range = target
        .clone()
        .lower_elem(0)
        .bool_or(target.clone().greater_equal_elem(classes as i64))
        .bool_and(target.clone().not_equal_elem(ignore_index));
    none_set(out_of_range, |first| {
        let values = target.to_data().convert::<i64>();
        let value = values.as_slice::<i64>().expect("converted to i64")[first];
        class_index_message(
            function,
            classes,
            ignore_index,
            value,
            first,
            &target.dims(),
        )
    });
}

/// The message for a class index `value` outside `[0, classes)` at row-major `flat_index` of
/// a target of shape `shape`.
fn class_index_message(
    function: &str,
    classes: usize,
    ignore_index: i64,
    value: i64,
    flat_index: usize,
    shape: &[usize],
) -> String {
    let index = unravel(flat_index, shape);
    format!(
        "{function}: target: expected class indices in [0, {classes}) or ignore_index \
         ({ignore_index}), got {value} at index {index:?}"
    )
}

/// Panics unless every probability of BCE's `input` and every value of its `target` lies in
/// `[0, 1]`; NaN is refused in both, as PyTorch 2.15's `F.binary_cross_entropy` does. The
/// input is checked first.
pub(crate) fn probabilities<const D: usize>(function: &str, input: &Tensor<D>, target: &Tensor<D>) {
    let (bad_input, bad_target) = (outside_unit(input), outside_unit(target));
    // One reduction and one read from the device for both tensors; which one holds the bad
    // value is only looked up when there is one.
    let any_bad = bad_input
        .clone()
        .bool_or(bad_target.clone())
        .any()
        .into_data()
        .iter::<bool>()
        .any(|flag| flag);
    if any_bad {
        refuse_first(function, Probabilities::Input, input, bad_input);
        refuse_first(function, Probabilities::Target, target, bad_target);
    }
}

/// Which BCE argument holds a value outside `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probabilities {
    /// The predicted probabilities.
    Input,
    /// The (soft) labels.
    Target,
}

/// Where `values` lies outside `[0, 1]` or is NaN.
fn outside_unit<const D: usize>(values: &Tensor<D>) -> Tensor<D, Bool> {
    values
        .clone()
        .lower_elem(0.0)
        .bool_or(values.clone().greater_elem(1.0))
        .bool_or(values.clone().is_nan())
}

/// Panics naming the first element of `values` (BCE's `which`) that `bad` marks, if any.
fn refuse_first<const D: usize>(
    function: &str,
    which: Probabilities,
    values: &Tensor<D>,
    bad: Tensor<D, Bool>,
) {
    none_set(bad, |first| {
        let data = values.to_data().convert::<f64>();
        let value = data.as_slice::<f64>().expect("converted to f64")[first];
        probability_message(function, which, value, first, &values.dims())
    });
}

/// The message for a BCE `which` value outside `[0, 1]` at row-major `flat_index` of a tensor
/// of shape `shape`.
fn probability_message(
    function: &str,
    which: Probabilities,
    value: f64,
    flat_index: usize,
    shape: &[usize],
) -> String {
    let index = unravel(flat_index, shape);
    let (argument, what) = match which {
        Probabilities::Input => ("input", "probabilities"),
        Probabilities::Target => ("target", "values"),
    };
    format!("{function}: {argument}: expected {what} in [0, 1], got {value} at index {index:?}")
}

/// Panics with the loss's usual message for a value a fused kernel refused: a class index at
/// a flat index of a target of shape `target_dims`, or a BCE probability or target at a flat
/// index of a tensor of shape `input_dims`.
pub(crate) fn refuse(
    function: &str,
    bad: BadValue,
    target_dims: &[usize],
    input_dims: &[usize],
    classes: usize,
    ignore_index: i64,
) -> ! {
    let message = match bad {
        BadValue::ClassIndex { flat_index, value } => class_index_message(
            function,
            classes,
            ignore_index,
            value,
            flat_index,
            target_dims,
        ),
        BadValue::Probability { flat_index, value } => probability_message(
            function,
            Probabilities::Input,
            value,
            flat_index,
            input_dims,
        ),
        BadValue::Target { flat_index, value } => probability_message(
            function,
            Probabilities::Target,
            value,
            flat_index,
            input_dims,
        ),
    };
    panic!("{message}")
}

/// The multi-dimensional index of row-major flat index `flat` in `shape`.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &extent) in index.iter_mut().zip(shape).rev() {
        *slot = flat % extent;
        flat /= extent;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::unravel;

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(0, &[2, 3]), vec![0, 0]);
        assert_eq!(unravel(4, &[2, 3]), vec![1, 1]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
    }
}
