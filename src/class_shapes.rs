//! PyTorch's shape rules for inputs whose class dimension is 1 (cross-entropy and NLL): an
//! unbatched `[C]`, a batch `[N, C]`, or K-dimensional `[N, C, d1, …, dk]`.

/// `(N, C, S)` of an input of shape `[C]`, `[N, C]` or `[N, C, d1, …, dk]`.
pub(crate) fn class_dims(dims: &[usize]) -> (usize, usize, usize) {
    match dims.len() {
        1 => (1, dims[0], 1),
        _ => (dims[0], dims[1], dims[2..].iter().product()),
    }
}

/// The shape PyTorch expects of a class-index target for an input of shape `input`:
/// `[N, d1, …, dk]`, or `[1]` (Burn's stand-in for PyTorch's scalar) for an unbatched `[C]`.
pub(crate) fn index_target_shape(input: &[usize]) -> Vec<usize> {
    match input.len() {
        1 => vec![1],
        _ => [&input[..1], &input[2..]].concat(),
    }
}

/// Panics unless `target` has the shape [`index_target_shape`] gives for `input`.
pub(crate) fn check_index_target(function: &str, input: &[usize], target: &[usize]) {
    let expected = index_target_shape(input);
    assert!(
        target == expected.as_slice(),
        "{function}: target: expected shape {expected:?} for an input of shape {input:?} \
         (class dimension {}), got {target:?}",
        if input.len() == 1 { 0 } else { 1 }
    );
}

/// Panics unless the output rank `DO` can hold the per-element loss of an input of rank `D`.
pub(crate) fn check_output_rank<const D: usize, const DO: usize>(function: &str) {
    let expected = if D == 1 { 1 } else { D - 1 };
    assert!(
        DO == expected,
        "{function}: output: expected rank {expected} for an input of rank {D} (the input's \
         shape without the class dimension), got rank {DO}"
    );
}
