//! The reference suite of the kernel contract ([`Kernels`]), generic over the backend and run
//! on every implementation: `NdArray<f32>`, `NdArray<f64>`, `Flex`, the cube backend and the fusion
//! backend (the wgpu ones behind the crate's `ready` protocol: one `SKIPPED` line where no
//! adapter exists).
//!
//! Each case runs a forward and its backward on the backend, in the backend's float dtype,
//! and compares them with f64 references: the losses (per element or reduced), the saved
//! log-sum-exp and total weight, and the gradients against central differences of the
//! reference losses (but BCE's input gradient, PyTorch's formula, which is not the derivative
//! of its clamped forward at 0 and 1). Each case also runs the forward with the gradients
//! (`*_with_grad`) and scales them ([`Kernels::scale`]), on an input of its own and on one
//! shared with a clone, which must keep its values. Tolerances follow the dtype: f32
//! round-off, or f64's (bounded by the finite differences for gradients).

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Element, Tensor, TensorData, TensorPrimitive};

use super::kernels::{
    BadValue, BinaryArgs, BinaryKind, BinaryParams, ClassIndexArgs, ClassIndexKind,
    ClassIndexParams, ClassProbsArgs, ClassProbsParams, Kernels, LossAndGrads, Output, Periodic,
    Ran, Upstream,
};
use crate::pytorch::{BCE_GRAD_EPSILON, BCE_LOG_FLOOR};
use crate::reduction::Reduction;

/// The cube backend under test (`burn_wgpu`'s, f32).
#[cfg(feature = "fused-wgpu")]
pub(super) type CubeWgpu = burn_cubecl::CubeBackend<burn_wgpu::WgpuRuntime, f32, i32, u32>;

/// True when backend `B` runs here; otherwise one `SKIPPED wgpu::<test>` line (or a failure
/// under `BURN_XENT_REQUIRE_WGPU=1`), as every wgpu test of the crate does.
#[cfg(feature = "fused-wgpu")]
pub(super) fn ready<B: Backend>(test: &str) -> bool {
    use crate::availability::{REQUIRE_WGPU, required_by_env, run_or_skip};
    run_or_skip::<B>(
        &format!("wgpu::{test}"),
        &Default::default(),
        required_by_env(REQUIRE_WGPU),
    )
}

/// The guard of a CPU backend's tests, in `ready`'s form: it always runs.
#[cfg(feature = "fused-ndarray")]
#[allow(clippy::extra_unused_type_parameters)]
fn always<B: Backend>(_test: &str) -> bool {
    true
}

/// Central-difference step of the numeric gradients.
const STEP: f64 = 1e-5;

fn values(count: usize, seed: f64, scale: f64) -> Vec<f64> {
    (0..count)
        .map(|j| (j as f64 * 1.37 + seed).sin() * scale)
        .collect()
}

/// A float tensor of `B` holding `data` in `B`'s float dtype.
pub(super) fn float<B: Backend>(
    data: &[f64],
    shape: &[usize],
    device: &B::Device,
) -> FloatTensor<B> {
    let data = TensorData::new(data.to_vec(), shape.to_vec()).convert_dtype(float_dtype::<B>());
    B::float_from_data(data, device)
}

/// An int tensor of `B` holding `data` in `B`'s int dtype.
pub(super) fn int<B: Backend>(data: &[i64], shape: &[usize], device: &B::Device) -> IntTensor<B> {
    let dtype = <B::IntElem as Element>::dtype();
    B::int_from_data(
        TensorData::new(data.to_vec(), shape.to_vec()).convert_dtype(dtype),
        device,
    )
}

/// The shape and the values of a float tensor, as f64.
pub(super) fn read<B: Backend>(tensor: FloatTensor<B>) -> (Vec<usize>, Vec<f64>) {
    let data = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(tensor)).into_data();
    let shape = data.shape.to_vec();
    (shape, data.convert::<f64>().to_vec::<f64>().unwrap())
}

fn float_dtype<B: Backend>() -> DType {
    <B::FloatElem as Element>::dtype()
}

/// How close `B`'s results must come to the f64 references, relative to `max(|want|, 1)`:
/// `(values, numeric gradients)`. f32 round-off; in f64, the losses to round-off and the
/// gradients to the central differences' truncation and cancellation (about 1e-9).
fn tolerances<B: Backend>() -> (f64, f64) {
    match float_dtype::<B>() {
        DType::F64 => (1e-13, 1e-8),
        _ => (2e-5, 2e-5),
    }
}

/// Asserts `got` is within `tolerance` of `want` (relative to `max(|want|, 1)`), NaN where
/// `want` is NaN.
pub(super) fn assert_close(what: &str, got: &[f64], want: &[f64], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= tolerance * w.abs().max(1.0);
        assert!(
            ok,
            "{what}[{k}]: got {g}, want {w} (tolerance {tolerance})\n got {got:?}\nwant {want:?}"
        );
    }
}

/// The upstream gradient of a loss of `count` elements (`[1]` when reduced).
fn upstream(output: Output, count: usize) -> Vec<f64> {
    match output {
        Output::PerElement => values(count, 0.3, 1.0).iter().map(|v| v + 1.5).collect(),
        Output::Reduced(_) => vec![1.7],
    }
}

/// `Σ g_i loss_i`, or `g₀ × (reduced loss)`.
fn objective(output: Output, losses: &[f64], divisor: f64, g: &[f64]) -> f64 {
    match output {
        Output::PerElement => losses.iter().zip(g).map(|(l, g)| l * g).sum(),
        Output::Reduced(_) => g[0] * reduce(output, losses, divisor)[0],
    }
}

fn reduce(output: Output, losses: &[f64], divisor: f64) -> Vec<f64> {
    match output {
        Output::PerElement => losses.to_vec(),
        Output::Reduced(Reduction::Sum) => vec![losses.iter().sum()],
        Output::Reduced(Reduction::Mean) => vec![losses.iter().sum::<f64>() / divisor],
    }
}

/// Central differences of `f` at `x`.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|j| {
            let mut plus = x.to_vec();
            let mut minus = x.to_vec();
            plus[j] += STEP;
            minus[j] -= STEP;
            (f(&plus) - f(&minus)) / (2.0 * STEP)
        })
        .collect()
}

/// The log-sum-exp from its two saved halves (the maxima, then the logs of the sums).
fn joined(saved: Vec<f64>) -> Vec<f64> {
    let (max, log_sum) = saved.split_at(saved.len() / 2);
    max.iter().zip(log_sum).map(|(m, l)| m + l).collect()
}

fn log_sum_exps(x: &[f64], n: usize, c: usize, s: usize) -> Vec<f64> {
    (0..n * s)
        .map(|i| {
            let (b, p) = (i / s, i % s);
            let at = |k: usize| x[b * c * s + k * s + p];
            let m = (0..c).map(at).fold(f64::NEG_INFINITY, f64::max);
            m + (0..c).map(|k| (at(k) - m).exp()).sum::<f64>().ln()
        })
        .collect()
}

/// The class weights of a class case, when it has them.
fn class_weights(weighted: bool, c: usize) -> Option<Vec<f64>> {
    weighted.then(|| values(c, 2.0, 0.6).iter().map(|v| v + 1.0).collect())
}

/// The length of the upstream gradient of a loss of `count` elements.
fn grad_len(output: Output, count: usize) -> usize {
    match output {
        Output::PerElement => count,
        Output::Reduced(_) => 1,
    }
}

/// The result of a `*_with_grad` forward that the backend covers.
fn done<B: Backend, T>(ran: Ran<B, T>, what: &str) -> T {
    match ran {
        Ran::Done(done) => done,
        Ran::Refused(bad) => panic!("{what}: refused {bad:?}"),
        Ran::Uncovered(_) => panic!("{what}: not covered"),
    }
}

/// The two ways a `*_with_grad` forward gets its input: its own (`false`: the backend may
/// write the gradient over it) or shared with a clone the caller keeps (`true`: the clone
/// must keep its values).
const SHARED: [bool; 2] = [false, true];

/// A copy of `input` for a `*_with_grad` forward: a fresh tensor of `values` (its own
/// storage), and for a shared one the clone to check afterwards.
fn owned_input<B: Backend>(
    values: &[f64],
    shape: &[usize],
    shared: bool,
    device: &B::Device,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let input = float::<B>(values, shape, device);
    let keep = shared.then(|| input.clone());
    (input, keep)
}

/// Asserts that a shared input kept its `values`.
fn assert_kept<B: Backend>(keep: Option<FloatTensor<B>>, values: &[f64], tolerance: f64) {
    if let Some(keep) = keep {
        assert_close("shared input", &read::<B>(keep).1, values, tolerance);
    }
}

/// The gradient requests every backward is run with.
const WANTS: [[bool; 2]; 3] = [[true, true], [true, false], [false, true]];

/// A class-index case: `input` `[n, c, s]` (passed as `[n, c]` when `s == 1`).
struct ClassIndexCase {
    kind: ClassIndexKind,
    n: usize,
    c: usize,
    s: usize,
    targets: Vec<i64>,
    weighted: bool,
    ignore_index: i64,
    label_smoothing: f64,
    output: Output,
}

impl ClassIndexCase {
    /// The per-element losses and the total weight.
    fn losses(&self, x: &[f64]) -> (Vec<f64>, f64) {
        let (n, c, s) = (self.n, self.c, self.s);
        let w = class_weights(self.weighted, c).unwrap_or_else(|| vec![1.0; c]);
        let eps = self.label_smoothing;
        let lse = log_sum_exps(x, n, c, s);
        let mut total = 0.0;
        let losses = (0..n * s)
            .map(|i| {
                let t = self.targets[i];
                if t == self.ignore_index {
                    return 0.0;
                }
                let t = t as usize;
                let (b, p) = (i / s, i % s);
                let at = |k: usize| x[b * c * s + k * s + p];
                total += w[t];
                match self.kind {
                    ClassIndexKind::Nll => -w[t] * at(t),
                    ClassIndexKind::CrossEntropy => {
                        let smooth: f64 = (0..c).map(|k| w[k] * (lse[i] - at(k))).sum();
                        (1.0 - eps) * w[t] * (lse[i] - at(t)) + eps / c as f64 * smooth
                    }
                }
            })
            .collect();
        (losses, total)
    }

    fn params(&self) -> ClassIndexParams {
        ClassIndexParams {
            kind: self.kind,
            batch: self.n,
            classes: self.c,
            spatial: self.s,
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            output: self.output,
            check_values: false,
        }
    }
}

/// Runs a class-index case's forward and backward on `B` and compares them with the
/// references.
fn check_class_index<B: Kernels>(case: &ClassIndexCase, device: &B::Device) {
    let (tol, grad_tol) = tolerances::<B>();
    let (n, c, s) = (case.n, case.c, case.s);
    let x_values = values(n * c * s, 0.1, 3.0);
    let shape: Vec<usize> = if s == 1 { vec![n, c] } else { vec![n, c, s] };
    let input = float::<B>(&x_values, &shape, device);
    let target = int::<B>(&case.targets, &[n, s], device);
    let weight = class_weights(case.weighted, c).map(|w| float::<B>(&w, &[c], device));
    let params = case.params();
    let (loss, saved) = B::class_index_forward(ClassIndexArgs {
        input: &input,
        target: &target,
        weight: weight.as_ref(),
        params: &params,
    })
    .expect("covered")
    .expect("no bad value");

    let (losses, total) = case.losses(&x_values);
    let (loss_shape, got) = read::<B>(loss);
    assert_close("loss", &got, &reduce(case.output, &losses, total), tol);
    assert_eq!(loss_shape.iter().product::<usize>(), got.len());
    let total_weight = read::<B>(saved.total_weight.clone()).1;
    assert_close("total weight", &total_weight, &[total], tol);
    // A backend whose backward needs the log-sum-exp saves it (the CPU kernels' gradients come
    // from the forward, and they save nothing).
    if let (ClassIndexKind::CrossEntropy, Some(lse)) = (case.kind, saved.log_sum_exp.clone()) {
        let want = log_sum_exps(&x_values, n, c, s);
        assert_close("lse", &joined(read::<B>(lse).1), &want, tol);
    }

    let g = upstream(case.output, n * s);
    let grad = float::<B>(&g, &[grad_len(case.output, n * s)], device);
    let dx = B::class_index_backward(
        ClassIndexArgs {
            input: &input,
            target: &target,
            weight: weight.as_ref(),
            params: &params,
        },
        &saved,
        grad,
    );
    let (dx_shape, dx) = read::<B>(dx);
    assert_eq!(dx_shape, shape, "input gradient shape");
    let want = if total == 0.0 {
        vec![0.0; dx.len()]
    } else {
        numeric_grad(&x_values, |x| {
            objective(case.output, &case.losses(x).0, total, &g)
        })
    };
    assert_close("input gradient", &dx, &want, grad_tol);

    // The gradient from the forward, scaled by the backward's upstream gradient.
    let how = Upstream::of_class(case.output, c, s);
    for shared in SHARED {
        let (owned, keep) = owned_input::<B>(&x_values, &shape, shared, device);
        let (loss, unit) = done(
            B::class_index_with_grad(owned, &target, weight.as_ref(), &params),
            "class_index_with_grad",
        );
        let got = read::<B>(loss).1;
        assert_close(
            "loss with grad",
            &got,
            &reduce(case.output, &losses, total),
            tol,
        );
        let grad = float::<B>(&g, &[grad_len(case.output, n * s)], device);
        let (dx_shape, dx) = read::<B>(B::scale(unit, grad, how));
        assert_eq!(dx_shape, shape, "scaled input gradient shape");
        assert_close("scaled input gradient", &dx, &want, grad_tol);
        assert_kept::<B>(keep, &x_values, tol);
    }
}

/// A class-probability case.
struct ClassProbsCase {
    n: usize,
    c: usize,
    s: usize,
    weighted: bool,
    label_smoothing: f64,
    output: Output,
}

impl ClassProbsCase {
    fn losses(&self, x: &[f64], y: &[f64]) -> Vec<f64> {
        let (n, c, s) = (self.n, self.c, self.s);
        let w = class_weights(self.weighted, c).unwrap_or_else(|| vec![1.0; c]);
        let eps = self.label_smoothing;
        let lse = log_sum_exps(x, n, c, s);
        (0..n * s)
            .map(|i| {
                let (b, p) = (i / s, i % s);
                (0..c)
                    .map(|k| {
                        let at = b * c * s + k * s + p;
                        let q = (1.0 - eps) * y[at] + eps / c as f64;
                        w[k] * q * (lse[i] - x[at])
                    })
                    .sum()
            })
            .collect()
    }
}

/// Runs a class-probability case on `B` against the references.
fn check_class_probs<B: Kernels>(case: &ClassProbsCase, device: &B::Device) {
    let (tol, grad_tol) = tolerances::<B>();
    let (n, c, s) = (case.n, case.c, case.s);
    let x_values = values(n * c * s, 0.1, 3.0);
    // Rows of probabilities (any non-negative targets are accepted).
    let y_values: Vec<f64> = values(n * c * s, 0.9, 0.5)
        .iter()
        .map(|v| v + 0.5)
        .collect();
    let shape = vec![n, c, s];
    let input = float::<B>(&x_values, &shape, device);
    let target = float::<B>(&y_values, &shape, device);
    let weight = class_weights(case.weighted, c).map(|w| float::<B>(&w, &[c], device));
    let params = ClassProbsParams {
        batch: n,
        classes: c,
        spatial: s,
        label_smoothing: case.label_smoothing,
        output: case.output,
    };
    let (loss, lse) = B::class_probs_forward(ClassProbsArgs {
        input: &input,
        target: &target,
        weight: weight.as_ref(),
        params: &params,
    })
    .expect("covered");
    let count = (n * s) as f64;
    let losses = case.losses(&x_values, &y_values);
    let want = reduce(case.output, &losses, count);
    assert_close("loss", &read::<B>(loss).1, &want, tol);
    if let Some(lse) = lse.clone() {
        let want = log_sum_exps(&x_values, n, c, s);
        assert_close("lse", &joined(read::<B>(lse).1), &want, tol);
    }

    let g = upstream(case.output, n * s);
    for wants in WANTS {
        let grad = float::<B>(&g, &[grad_len(case.output, n * s)], device);
        let [dx, dy] = B::class_probs_backward(
            ClassProbsArgs {
                input: &input,
                target: &target,
                weight: weight.as_ref(),
                params: &params,
            },
            lse.as_ref(),
            grad,
            wants,
        );
        assert_eq!([dx.is_some(), dy.is_some()], wants);
        if let Some(dx) = dx {
            let want = numeric_grad(&x_values, |x| {
                objective(case.output, &case.losses(x, &y_values), count, &g)
            });
            let (dx_shape, dx) = read::<B>(dx);
            assert_eq!(dx_shape, shape);
            assert_close("input gradient", &dx, &want, grad_tol);
        }
        if let Some(dy) = dy {
            let want = numeric_grad(&y_values, |y| {
                objective(case.output, &case.losses(&x_values, y), count, &g)
            });
            assert_close("target gradient", &read::<B>(dy).1, &want, grad_tol);
        }
    }

    // The gradients from the forward, scaled by the backward's upstream gradient.
    let how = Upstream::of_class(case.output, c, s);
    let want_dx = numeric_grad(&x_values, |x| {
        objective(case.output, &case.losses(x, &y_values), count, &g)
    });
    let want_dy = numeric_grad(&y_values, |y| {
        objective(case.output, &case.losses(&x_values, y), count, &g)
    });
    for wants in WANTS {
        for shared in SHARED {
            let (owned, keep) = owned_input::<B>(&x_values, &shape, shared, device);
            let ran = B::class_probs_with_grad(owned, &target, weight.as_ref(), &params, wants);
            let (loss, grads): LossAndGrads<B> = done(ran, "class_probs_with_grad");
            assert_close("loss with grad", &read::<B>(loss).1, &want, tol);
            assert_eq!(grads.each_ref().map(Option::is_some), wants);
            let [dx, dy] = grads.map(|unit| {
                unit.map(|unit| {
                    let grad = float::<B>(&g, &[grad_len(case.output, n * s)], device);
                    read::<B>(B::scale(unit, grad, how))
                })
            });
            if let Some((dx_shape, dx)) = dx {
                assert_eq!(dx_shape, shape);
                assert_close("scaled input gradient", &dx, &want_dx, grad_tol);
            }
            if let Some((_, dy)) = dy {
                assert_close("scaled target gradient", &dy, &want_dy, grad_tol);
            }
            assert_kept::<B>(keep, &x_values, tol);
        }
    }
}

/// A binary case over `len` elements, with optional weight and positive weight periods.
struct BinaryCase {
    kind: BinaryKind,
    len: usize,
    weight_period: Option<usize>,
    pos_weight_period: Option<usize>,
    output: Output,
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// PyTorch's clamped logarithm of BCE.
fn clamped_ln(p: f64) -> f64 {
    p.ln().max(BCE_LOG_FLOOR)
}

impl BinaryCase {
    fn inputs(&self) -> Vec<f64> {
        match self.kind {
            BinaryKind::WithLogits => {
                let mut x = values(self.len, 0.4, 4.0);
                // Large magnitudes, where a naive log1p loses everything.
                x[0] = 30.0;
                x[1] = -30.0;
                x
            }
            BinaryKind::Probabilities => {
                let mut p: Vec<f64> = values(self.len, 0.4, 0.45)
                    .iter()
                    .map(|v| v + 0.5)
                    .collect();
                // PyTorch's clamped logs at the ends.
                p[0] = 0.0;
                p[1] = 1.0;
                p
            }
        }
    }

    fn targets(&self) -> Vec<f64> {
        let mut t: Vec<f64> = values(self.len, 1.1, 0.5).iter().map(|v| v + 0.5).collect();
        t[0] = 1.0;
        t[1] = 0.0;
        t
    }

    /// The weight (`seed` 2.5) or positive weight (3.5) of a period, when there is one.
    fn periodic(period: Option<usize>, seed: f64) -> Option<Vec<f64>> {
        period.map(|p| values(p, seed, 0.5).iter().map(|v| v + 1.0).collect())
    }

    /// The weight of each element (1 without).
    fn element_weights(&self) -> Vec<f64> {
        let w = Self::periodic(self.weight_period, 2.5);
        (0..self.len)
            .map(|i| w.as_ref().map_or(1.0, |w| w[i % w.len()]))
            .collect()
    }

    fn losses(&self, x: &[f64], t: &[f64]) -> Vec<f64> {
        let pw = Self::periodic(self.pos_weight_period, 3.5);
        let w = self.element_weights();
        (0..self.len)
            .map(|i| {
                let pw = pw.as_ref().map_or(1.0, |p| p[i % p.len()]);
                let (x, t) = (x[i], t[i]);
                w[i] * match self.kind {
                    BinaryKind::WithLogits => (1.0 - t) * softplus(x) + pw * t * softplus(-x),
                    BinaryKind::Probabilities => {
                        -(t * clamped_ln(x) + (1.0 - t) * clamped_ln(1.0 - x))
                    }
                }
            })
            .collect()
    }

    /// PyTorch's input gradient of BCE, `g w (p - t) / max(p (1 - p), ε)`.
    fn probability_grad(&self, x: &[f64], t: &[f64], g: &[f64]) -> Vec<f64> {
        let len = self.len as f64;
        let w = self.element_weights();
        (0..self.len)
            .map(|i| {
                let g = match self.output {
                    Output::PerElement => g[i],
                    Output::Reduced(Reduction::Sum) => g[0],
                    Output::Reduced(Reduction::Mean) => g[0] / len,
                };
                let (p, t) = (x[i], t[i]);
                g * w[i] * (p - t) / (p * (1.0 - p)).max(BCE_GRAD_EPSILON)
            })
            .collect()
    }
}

/// Runs a binary case on `B` against the references.
fn check_binary<B: Kernels>(case: &BinaryCase, device: &B::Device) {
    let (tol, grad_tol) = tolerances::<B>();
    let len = case.len;
    let x_values = case.inputs();
    let t_values = case.targets();
    let input = float::<B>(&x_values, &[len], device);
    let target = float::<B>(&t_values, &[len], device);
    let periodic = |period: Option<usize>, seed: f64| {
        BinaryCase::periodic(period, seed).map(|v| Periodic::<B> {
            values: float::<B>(&v, &[v.len()], device),
            period: v.len(),
        })
    };
    let weight = periodic(case.weight_period, 2.5);
    let pos_weight = periodic(case.pos_weight_period, 3.5);
    let params = BinaryParams {
        kind: case.kind,
        len,
        output: case.output,
        check_values: false,
    };
    let (weight, pos_weight) = (weight.as_ref(), pos_weight.as_ref());
    let loss = B::binary_forward(BinaryArgs {
        input: &input,
        target: &target,
        weight,
        pos_weight,
        params: &params,
    })
    .expect("covered")
    .expect("no bad value");
    let losses = case.losses(&x_values, &t_values);
    let want = reduce(case.output, &losses, len as f64);
    assert_close("loss", &read::<B>(loss).1, &want, tol);

    let g = upstream(case.output, len);
    let objective_of =
        |x: &[f64], t: &[f64]| objective(case.output, &case.losses(x, t), len as f64, &g);
    for wants in WANTS {
        let grad = float::<B>(&g, &[grad_len(case.output, len)], device);
        let [dx, dt] = B::binary_backward(
            BinaryArgs {
                input: &input,
                target: &target,
                weight,
                pos_weight,
                params: &params,
            },
            grad,
            wants,
        );
        assert_eq!([dx.is_some(), dt.is_some()], wants);
        if let Some(dx) = dx {
            let (want, tolerance) = match case.kind {
                BinaryKind::WithLogits => (
                    numeric_grad(&x_values, |x| objective_of(x, &t_values)),
                    grad_tol,
                ),
                BinaryKind::Probabilities => (case.probability_grad(&x_values, &t_values, &g), tol),
            };
            let (dx_shape, dx) = read::<B>(dx);
            assert_eq!(dx_shape, vec![len]);
            assert_close("input gradient", &dx, &want, tolerance);
        }
        if let Some(dt) = dt {
            let want = numeric_grad(&t_values, |t| objective_of(&x_values, t));
            assert_close("target gradient", &read::<B>(dt).1, &want, grad_tol);
        }
    }

    // The gradients from the forward, scaled by the backward's upstream gradient.
    let how = Upstream::of_binary(case.output);
    let (want_dx, dx_tolerance) = match case.kind {
        BinaryKind::WithLogits => (
            numeric_grad(&x_values, |x| objective_of(x, &t_values)),
            grad_tol,
        ),
        BinaryKind::Probabilities => (case.probability_grad(&x_values, &t_values, &g), tol),
    };
    let want_dt = numeric_grad(&t_values, |t| objective_of(&x_values, t));
    for wants in WANTS {
        for shared in SHARED {
            let (owned, keep) = owned_input::<B>(&x_values, &[len], shared, device);
            let ran = B::binary_with_grad(owned, &target, weight, pos_weight, &params, wants);
            let (loss, grads): LossAndGrads<B> = done(ran, "binary_with_grad");
            assert_close("loss with grad", &read::<B>(loss).1, &want, tol);
            assert_eq!(grads.each_ref().map(Option::is_some), wants);
            let [dx, dt] = grads.map(|unit| {
                unit.map(|unit| {
                    let grad = float::<B>(&g, &[grad_len(case.output, len)], device);
                    read::<B>(B::scale(unit, grad, how))
                })
            });
            if let Some((dx_shape, dx)) = dx {
                assert_eq!(dx_shape, vec![len]);
                assert_close("scaled input gradient", &dx, &want_dx, dx_tolerance);
            }
            if let Some((_, dt)) = dt {
                assert_close("scaled target gradient", &dt, &want_dt, grad_tol);
            }
            assert_kept::<B>(keep, &x_values, tol);
        }
    }
}

/// The values a backend refuses when asked to check them: `BadValue`s from a backend that
/// checks values in its kernels ([`Kernels::CHECKS_VALUES`]), `None` (not covered: the caller
/// checks, then takes the composite path) from one that does not.
fn check_refusals<B: Kernels>(device: &B::Device) {
    let input = float::<B>(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], &[2, 3], device);
    let target = int::<B>(&[2, 3], &[2, 1], device);
    let params = ClassIndexParams {
        kind: ClassIndexKind::CrossEntropy,
        batch: 2,
        classes: 3,
        spatial: 1,
        ignore_index: -100,
        label_smoothing: 0.0,
        output: Output::Reduced(Reduction::Mean),
        check_values: true,
    };
    let refused = B::class_index_forward(ClassIndexArgs {
        input: &input,
        target: &target,
        weight: None,
        params: &params,
    })
    .map(|r| r.err());
    let bad = BadValue::ClassIndex {
        flat_index: 1,
        value: 3,
    };
    assert_eq!(
        refused,
        B::CHECKS_VALUES.then_some(Some(bad)),
        "class index"
    );

    let valid = float::<B>(&[0.5, 0.5, 0.25], &[3], device);
    let probabilities = float::<B>(&[0.5, 1.5, 0.25], &[3], device);
    let targets = float::<B>(&[0.5, 0.5, -1.0], &[3], device);
    let params = BinaryParams {
        kind: BinaryKind::Probabilities,
        len: 3,
        output: Output::PerElement,
        check_values: true,
    };
    let bce = |input: &FloatTensor<B>, target: &FloatTensor<B>| {
        B::binary_forward(BinaryArgs {
            input,
            target,
            weight: None,
            pos_weight: None,
            params: &params,
        })
        .map(|r| r.err())
    };
    let bad = BadValue::Probability {
        flat_index: 1,
        value: 1.5,
    };
    let want = |bad| B::CHECKS_VALUES.then_some(Some(bad));
    assert_eq!(bce(&probabilities, &valid), want(bad), "probability");
    let bad = BadValue::Target {
        flat_index: 2,
        value: -1.0,
    };
    assert_eq!(bce(&valid, &targets), want(bad), "target");
}

const MEAN: Output = Output::Reduced(Reduction::Mean);
const SUM: Output = Output::Reduced(Reduction::Sum);

/// The class-index cases: `[4, 7]`, `[3, 300]` (one row per cube, three cubes), `[2, 3, 4]`,
/// `[2, 40, 3]` and `[3, 40, 20]`.
fn class_index_cases() -> Vec<ClassIndexCase> {
    use ClassIndexKind::{CrossEntropy, Nll};
    let small = |kind, targets: [i64; 4], weighted, ignore_index, eps, output| ClassIndexCase {
        kind,
        n: 4,
        c: 7,
        s: 1,
        targets: targets.to_vec(),
        weighted,
        ignore_index,
        label_smoothing: eps,
        output,
    };
    let spatial = |kind, weighted, eps, output| ClassIndexCase {
        kind,
        n: 2,
        c: 3,
        s: 4,
        targets: vec![0, 2, -100, 1, 1, 1, 0, 2],
        weighted,
        ignore_index: -100,
        label_smoothing: eps,
        output,
    };
    let per_element = Output::PerElement;
    vec![
        small(CrossEntropy, [3, -100, 6, 0], false, -100, 0.0, per_element),
        small(CrossEntropy, [3, 2, 6, 0], true, 2, 0.1, MEAN),
        small(CrossEntropy, [3, 1, 6, 0], true, -100, 0.0, SUM),
        small(CrossEntropy, [3, 1, 6, 0], false, -100, 0.25, MEAN),
        // Every target ignored: NaN mean, zero gradient.
        small(CrossEntropy, [5, 5, 5, 5], true, 5, 0.1, MEAN),
        ClassIndexCase {
            kind: CrossEntropy,
            n: 3,
            c: 300,
            s: 1,
            targets: vec![299, 0, 157],
            weighted: true,
            ignore_index: -100,
            label_smoothing: 0.05,
            output: MEAN,
        },
        spatial(CrossEntropy, true, 0.2, MEAN),
        // `S > 1` with many classes: 32 units per element.
        ClassIndexCase {
            kind: CrossEntropy,
            n: 2,
            c: 40,
            s: 3,
            targets: vec![39, -100, 0, 17, 5, 1],
            weighted: true,
            ignore_index: -100,
            label_smoothing: 0.1,
            output: per_element,
        },
        spatial(CrossEntropy, false, 0.0, per_element),
        // `S ≥ 16` with many classes: cubes along the spatial positions (8 units per
        // element), the last block with spare rows.
        ClassIndexCase {
            kind: CrossEntropy,
            n: 3,
            c: 40,
            s: 20,
            targets: (0..60)
                .map(|i| if i % 7 == 3 { -100 } else { i % 40 })
                .collect(),
            weighted: true,
            ignore_index: -100,
            label_smoothing: 0.1,
            output: MEAN,
        },
        small(Nll, [3, -100, 6, 0], true, -100, 0.0, MEAN),
        small(Nll, [3, 4, 6, 0], false, 4, 0.0, SUM),
        spatial(Nll, false, 0.0, per_element),
    ]
}

/// The class-probability cases.
fn class_probs_cases() -> Vec<ClassProbsCase> {
    let case = |n, c, s, weighted, label_smoothing, output| ClassProbsCase {
        n,
        c,
        s,
        weighted,
        label_smoothing,
        output,
    };
    vec![
        case(4, 7, 1, true, 0.1, Output::PerElement),
        case(2, 3, 4, false, 0.0, MEAN),
        case(4, 7, 1, false, 0.0, SUM),
        // Many classes: 32 units per row.
        case(3, 45, 2, true, 0.2, MEAN),
        // Many classes along 20 spatial positions: cubes along the positions, spare rows.
        case(3, 40, 20, true, 0.1, MEAN),
    ]
}

/// The binary cases (`L = 12`).
fn binary_cases() -> Vec<BinaryCase> {
    let case = |kind, weight_period, pos_weight_period, output| BinaryCase {
        kind,
        len: 12,
        weight_period,
        pos_weight_period,
        output,
    };
    use BinaryKind::{Probabilities, WithLogits};
    vec![
        case(WithLogits, Some(3), Some(4), Output::PerElement),
        case(WithLogits, None, None, MEAN),
        case(WithLogits, Some(12), Some(6), SUM),
        case(Probabilities, Some(4), None, MEAN),
        case(Probabilities, None, None, Output::PerElement),
        case(Probabilities, Some(6), None, SUM),
    ]
}

/// The suite's tests on one backend, in a module of their own: `$module::class_index`, …;
/// `$runs_here::<B>(test)` guards each (the wgpu backends' `ready`).
macro_rules! contract_suite {
    ($(#[$attr:meta])* $module:ident: $backend:ty, $runs_here:ident) => {
        $(#[$attr])*
        mod $module {
            use super::*;

            /// Runs `check` on every case when the backend runs here.
            fn run<B: Backend, C>(test: &str, cases: Vec<C>, check: fn(&C, &B::Device)) {
                let test = format!("{}::{test}", stringify!($module));
                if $runs_here::<B>(&test) {
                    let device = Default::default();
                    for case in &cases {
                        check(case, &device);
                    }
                }
            }

            #[test]
            fn class_index() {
                run::<$backend, _>("class_index", class_index_cases(), check_class_index::<$backend>);
            }

            #[test]
            fn class_probs() {
                run::<$backend, _>("class_probs", class_probs_cases(), check_class_probs::<$backend>);
            }

            #[test]
            fn binary() {
                run::<$backend, _>("binary", binary_cases(), check_binary::<$backend>);
            }

            #[test]
            fn refusals() {
                run::<$backend, _>("refusals", vec![()], |_, device| {
                    check_refusals::<$backend>(device)
                });
            }
        }
    };
}

contract_suite!(#[cfg(feature = "fused-ndarray")] ndarray_f32: burn_ndarray::NdArray<f32>, always);
contract_suite!(#[cfg(feature = "fused-ndarray")] ndarray_f64: burn_ndarray::NdArray<f64>, always);
contract_suite!(#[cfg(feature = "fused-flex")] flex: burn_flex::Flex, always);
contract_suite!(#[cfg(feature = "fused-wgpu")] cube: CubeWgpu, ready);
contract_suite!(#[cfg(feature = "fused-wgpu")] fusion: burn_wgpu::Wgpu, ready);
