//! Device helpers of every kernel family: the binary losses' logarithms, class weights and
//! targets, and the stand-in for `-inf` logits.

use cubecl::prelude::*;

use crate::pytorch::{BCE_GRAD_EPSILON, BCE_LOG_FLOOR};

/// [`BCE_LOG_FLOOR`] as a kernel constant (`F::new` takes an `f32`; -100 is exact).
const LOG_FLOOR: f32 = BCE_LOG_FLOOR as f32;

/// [`BCE_GRAD_EPSILON`] as a kernel constant: PyTorch's f32 1e-12, exactly.
pub(super) const GRAD_EPSILON: f32 = BCE_GRAD_EPSILON as f32;

/// `log(1 + exp(-|x|))`, accurate for large `|x|` (Goldberg's `log1p`: WGSL's `log1p` is
/// `log(1 + y)`, which rounds `y < 2⁻²⁴` away).
#[cube]
fn log1p_exp_neg_abs<F: Float>(x: F) -> F {
    let y = (-x.abs()).exp();
    let u = F::new(1.0) + y;
    let mut out = y;
    if u != F::new(1.0) {
        out = u.ln() * (y / (u - F::new(1.0)));
    }
    out
}

/// `softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`.
#[cube]
pub(super) fn softplus<F: Float>(x: F) -> F {
    x.max(F::new(0.0)) + log1p_exp_neg_abs::<F>(x)
}

/// `max(log(p), -100)`, PyTorch's clamped log of BCE ([`BCE_LOG_FLOOR`]), without evaluating
/// `log(0)` (undefined in SPIR-V and WGSL).
#[cube]
pub(super) fn clamped_ln<F: Float>(p: F) -> F {
    let floor = F::new(LOG_FLOOR);
    let mut out = floor;
    if p > F::new(0.0) {
        out = p.ln().max(floor);
    }
    out
}

/// The class of a target, or `classes` for an ignored one: an index outside `[0, C)` (as `u32`
/// a negative one is at least `2³¹`) or equal to `ignore` (`u32::MAX` when `ignore_index` lies
/// outside `[0, C)`, see `launch::ignore_u32`).
#[cube]
pub(super) fn target_class<I: Numeric>(t: I, classes: usize, ignore: u32) -> usize {
    let tu = u32::cast_from(t);
    let mut class = classes;
    if (tu as usize) < classes && tu != ignore {
        class = tu as usize;
    }
    class
}

/// The weight of class `class`: `weight[class]`, or 1 without class weights.
#[cube]
pub(super) fn class_weight<F: Float>(
    weight: &Tensor<F>,
    class: usize,
    #[comptime] weighted: bool,
) -> F {
    let mut w = F::new(1.0);
    if weighted {
        w = weight[class];
    }
    w
}

/// `x`, with `-inf` raised to `lowest` (the lowest finite value) and NaN kept (`max` would
/// drop it).
#[cube]
pub(super) fn finite_or_nan<F: Float>(x: F, lowest: F) -> F {
    let mut out = x;
    if x < lowest {
        out = lowest;
    }
    out
}
