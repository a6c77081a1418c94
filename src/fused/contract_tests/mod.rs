//! The reference suite of the kernel contract ([`Kernels`]), generic over the backend and run
//! on every implementation: `NdArray` and `Flex`, each in f32 and in f64, and `Cube` (wgpu with
//! fusion, f32; behind the crate's `ready` protocol: one `SKIPPED` line where no adapter
//! exists).
//!
//! Each case runs a forward and its backward on the backend, in the suite's float dtype,
//! and compares them with f64 references ([`cases`]): the losses (per element or reduced), the
//! saved log-sum-exp and total weight, and the gradients against central differences of the
//! reference losses (but BCE's input gradient, PyTorch's formula, which is not the derivative
//! of its clamped forward at 0 and 1). Each case also runs the forward with the gradients
//! (`*_with_grad`) and scales them ([`Kernels::scale`]), on an input of its own and on one
//! shared with a clone, which must keep its values. Tolerances follow the dtype: f32
//! round-off, or f64's (bounded by the finite differences for gradients).
//!
//! The tensors are made through Burn's public API on a device of the backend, in the suite's
//! dtype, and cross to the backend's primitives with [`Concrete`].

mod cases;

use burn::backend::TensorMetadata;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::{DType, Device, Int, Shape, Tensor, TensorData};

use super::concrete::Concrete;
use super::kernels::{
    BadValue, BinaryArgs, BinaryKind, BinaryParams, ClassIndexArgs, ClassIndexKind,
    ClassIndexParams, ClassProbsArgs, ClassProbsParams, Kernels, LossAndGrads, Output, Periodic,
    Ran, Upstream,
};
use crate::reduction::Reduction;
use cases::{
    BinaryCase, ClassIndexCase, ClassProbsCase, binary_cases, class_index_cases, class_probs_cases,
    class_weights, log_sum_exps, values,
};

/// Where a suite's tensors live: a device of the backend under test, and the float dtype they
/// are made in (integer tensors take the device's default integer dtype).
#[derive(Clone, Debug)]
pub(super) struct On {
    pub device: Device,
    pub dtype: DType,
}

impl On {
    /// Burn's wgpu device (the default adapter), f32.
    #[cfg(feature = "fused-wgpu")]
    pub(super) fn wgpu() -> Self {
        let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        Self {
            device,
            dtype: DType::F32,
        }
    }
}

/// True when the wgpu device ([`On::wgpu`]) runs here; otherwise one `SKIPPED wgpu::<test>`
/// line (or a failure under `BURN_XENT_REQUIRE_WGPU=1`), as every wgpu test of the crate does.
#[cfg(feature = "fused-wgpu")]
pub(super) fn ready(test: &str) -> bool {
    use crate::availability::{REQUIRE_WGPU, required_by_env, run_or_skip};
    run_or_skip(
        &format!("wgpu::{test}"),
        &On::wgpu().device,
        required_by_env(REQUIRE_WGPU),
    )
}

/// The guard of a CPU backend's tests, in `ready`'s form: it always runs.
#[cfg(any(feature = "fused-ndarray", feature = "fused-flex"))]
fn always(_test: &str) -> bool {
    true
}

/// Central-difference step of the numeric gradients.
const STEP: f64 = 1e-5;

/// A float primitive of `X` holding `data`, of `shape` (rank 1 to 3), in `on`'s float dtype.
pub(super) fn float<X: Concrete>(data: &[f64], shape: &[usize], on: &On) -> FloatTensor<X> {
    let data = TensorData::new(data.to_vec(), shape.to_vec());
    let options = (&on.device, on.dtype);
    let tensor = X::float(match shape.len() {
        1 => Tensor::<1>::from_data(data, options).into_dispatch(),
        2 => Tensor::<2>::from_data(data, options).into_dispatch(),
        3 => Tensor::<3>::from_data(data, options).into_dispatch(),
        rank => panic!("a suite tensor of rank {rank}"),
    })
    .expect("a float tensor of the backend");
    // The tolerances follow `on.dtype`: the suite must run in it.
    assert_eq!(tensor.dtype(), on.dtype, "the suite's float dtype");
    tensor
}

/// An int primitive of `X` holding `data`, of `shape` (rank 1 or 2), in the device's default
/// integer dtype.
pub(super) fn int<X: Concrete>(data: &[i64], shape: &[usize], on: &On) -> IntTensor<X> {
    let data = TensorData::new(data.to_vec(), shape.to_vec());
    let tensor = match shape.len() {
        1 => Tensor::<1, Int>::from_data(data, &on.device).into_dispatch(),
        2 => Tensor::<2, Int>::from_data(data, &on.device).into_dispatch(),
        rank => panic!("a suite target of rank {rank}"),
    };
    X::int(tensor).expect("an int tensor of the backend")
}

/// The shape and the values of a float primitive, as f64.
pub(super) fn read<X: Concrete>(tensor: FloatTensor<X>) -> (Vec<usize>, Vec<f64>) {
    let shape = tensor.shape().to_vec();
    let flat = X::float_reshape(tensor, Shape::new([shape.iter().product()]));
    let data = X::tensor::<1>(flat).into_data();
    (shape, data.try_into_vec_as::<f64>().unwrap())
}

/// How close results in `on`'s dtype must come to the f64 references, relative to
/// `max(|want|, 1)`: `(values, numeric gradients)`. f32 round-off; in f64, the losses to
/// round-off and the gradients to the central differences' truncation and cancellation
/// (about 1e-9).
fn tolerances(on: &On) -> (f64, f64) {
    match on.dtype {
        DType::F64 => (1e-13, 1e-8),
        _ => (2e-5, 2e-5),
    }
}

/// Asserts `got` is within `tolerance` of `want` (relative to `max(|want|, 1)`), NaN where
/// `want` is NaN, the same infinity where `want` is infinite.
pub(super) fn assert_close(what: &str, got: &[f64], want: &[f64], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok =
            (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tolerance * w.abs().max(1.0);
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

/// The length of the upstream gradient of a loss of `count` elements.
fn grad_len(output: Output, count: usize) -> usize {
    match output {
        Output::PerElement => count,
        Output::Reduced(_) => 1,
    }
}

/// The result of a `*_with_grad` forward that the backend covers.
fn done<X: Concrete, T>(ran: Ran<X, T>, what: &str) -> T {
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
fn owned_input<X: Concrete>(
    values: &[f64],
    shape: &[usize],
    shared: bool,
    on: &On,
) -> (FloatTensor<X>, Option<FloatTensor<X>>) {
    let input = float::<X>(values, shape, on);
    let keep = shared.then(|| input.clone());
    (input, keep)
}

/// Asserts that a shared input kept its `values`.
fn assert_kept<X: Concrete>(keep: Option<FloatTensor<X>>, values: &[f64], tolerance: f64) {
    if let Some(keep) = keep {
        assert_close("shared input", &read::<X>(keep).1, values, tolerance);
    }
}

/// The gradient requests every backward is run with.
const WANTS: [[bool; 2]; 3] = [[true, true], [true, false], [false, true]];

/// Runs a class-index case's forward and backward on `B` and compares them with the
/// references.
fn check_class_index<B: Kernels>(case: &ClassIndexCase, on: &On) {
    let (tol, grad_tol) = tolerances(on);
    let (n, c, s) = (case.n, case.c, case.s);
    let x_values = values(n * c * s, 0.1, 3.0);
    let shape: Vec<usize> = if s == 1 { vec![n, c] } else { vec![n, c, s] };
    let input = float::<B>(&x_values, &shape, on);
    let target = int::<B>(&case.targets, &[n, s], on);
    let weight = class_weights(case.weighted, c).map(|w| float::<B>(&w, &[c], on));
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
    let grad = float::<B>(&g, &[grad_len(case.output, n * s)], on);
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
        let (owned, keep) = owned_input::<B>(&x_values, &shape, shared, on);
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
        let grad = float::<B>(&g, &[grad_len(case.output, n * s)], on);
        let (dx_shape, dx) = read::<B>(B::scale(unit, grad, how));
        assert_eq!(dx_shape, shape, "scaled input gradient shape");
        assert_close("scaled input gradient", &dx, &want, grad_tol);
        assert_kept::<B>(keep, &x_values, tol);
    }
}

/// Runs a class-probability case on `B` against the references.
fn check_class_probs<B: Kernels>(case: &ClassProbsCase, on: &On) {
    let (tol, grad_tol) = tolerances(on);
    let (n, c, s) = (case.n, case.c, case.s);
    let x_values = values(n * c * s, 0.1, 3.0);
    // Rows of probabilities (any non-negative targets are accepted).
    let y_values: Vec<f64> = values(n * c * s, 0.9, 0.5)
        .iter()
        .map(|v| v + 0.5)
        .collect();
    let shape = vec![n, c, s];
    let input = float::<B>(&x_values, &shape, on);
    let target = float::<B>(&y_values, &shape, on);
    let weight = class_weights(case.weighted, c).map(|w| float::<B>(&w, &[c], on));
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
        let grad = float::<B>(&g, &[grad_len(case.output, n * s)], on);
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
            let (owned, keep) = owned_input::<B>(&x_values, &shape, shared, on);
            let ran = B::class_probs_with_grad(owned, &target, weight.as_ref(), &params, wants);
            let (loss, grads): LossAndGrads<B> = done(ran, "class_probs_with_grad");
            assert_close("loss with grad", &read::<B>(loss).1, &want, tol);
            assert_eq!(grads.each_ref().map(Option::is_some), wants);
            let [dx, dy] = grads.map(|unit| {
                unit.map(|unit| {
                    let grad = float::<B>(&g, &[grad_len(case.output, n * s)], on);
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

/// Runs a binary case on `B` against the references.
fn check_binary<B: Kernels>(case: &BinaryCase, on: &On) {
    let (tol, grad_tol) = tolerances(on);
    let len = case.len;
    let x_values = case.inputs();
    let t_values = case.targets();
    let input = float::<B>(&x_values, &[len], on);
    let target = float::<B>(&t_values, &[len], on);
    let periodic = |period: Option<usize>, seed: f64| {
        BinaryCase::periodic(period, seed).map(|v| Periodic::<B> {
            values: float::<B>(&v, &[v.len()], on),
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
    // The references, computed once for both passes below: the input gradient (PyTorch's
    // formula for BCE) and the target gradient (the loss's derivative, except BCE's, which
    // PyTorch takes unclamped).
    let (want_dx, dx_tolerance) = match case.kind {
        BinaryKind::WithLogits => (
            numeric_grad(&x_values, |x| objective_of(x, &t_values)),
            grad_tol,
        ),
        BinaryKind::Probabilities => (case.probability_grad(&x_values, &t_values, &g), tol),
    };
    let (want_dt, dt_tolerance) = match case.kind {
        BinaryKind::WithLogits => (
            numeric_grad(&t_values, |t| objective_of(&x_values, t)),
            grad_tol,
        ),
        BinaryKind::Probabilities => (case.probability_target_grad(&x_values, &g), tol),
    };
    for wants in WANTS {
        let grad = float::<B>(&g, &[grad_len(case.output, len)], on);
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
            let (dx_shape, dx) = read::<B>(dx);
            assert_eq!(dx_shape, vec![len]);
            assert_close("input gradient", &dx, &want_dx, dx_tolerance);
        }
        if let Some(dt) = dt {
            assert_close("target gradient", &read::<B>(dt).1, &want_dt, dt_tolerance);
        }
    }

    // The gradients from the forward, scaled by the backward's upstream gradient.
    let how = Upstream::of_binary(case.output);
    for wants in WANTS {
        for shared in SHARED {
            let (owned, keep) = owned_input::<B>(&x_values, &[len], shared, on);
            let ran = B::binary_with_grad(owned, &target, weight, pos_weight, &params, wants);
            let (loss, grads): LossAndGrads<B> = done(ran, "binary_with_grad");
            assert_close("loss with grad", &read::<B>(loss).1, &want, tol);
            assert_eq!(grads.each_ref().map(Option::is_some), wants);
            let [dx, dt] = grads.map(|unit| {
                unit.map(|unit| {
                    let grad = float::<B>(&g, &[grad_len(case.output, len)], on);
                    read::<B>(B::scale(unit, grad, how))
                })
            });
            if let Some((dx_shape, dx)) = dx {
                assert_eq!(dx_shape, vec![len]);
                assert_close("scaled input gradient", &dx, &want_dx, dx_tolerance);
            }
            if let Some((_, dt)) = dt {
                assert_close("scaled target gradient", &dt, &want_dt, dt_tolerance);
            }
            assert_kept::<B>(keep, &x_values, tol);
        }
    }
}

/// The values a backend refuses when asked to check them: `BadValue`s from a backend that
/// checks values in its kernels ([`Kernels::CHECKS_VALUES`]), `None` (not covered: the caller
/// checks, then takes the composite path) from one that does not.
fn check_refusals<B: Kernels>(on: &On) {
    let input = float::<B>(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], &[2, 3], on);
    let target = int::<B>(&[2, 3], &[2, 1], on);
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

    let valid = float::<B>(&[0.5, 0.5, 0.25], &[3], on);
    let probabilities = float::<B>(&[0.5, 1.5, 0.25], &[3], on);
    let targets = float::<B>(&[0.5, 0.5, -1.0], &[3], on);
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

/// The suite's tests on one backend, in a module of their own: `$module::class_index`, …, on
/// the tensors of `$on` (an [`On`]); `$runs_here(test)` guards each (the wgpu suite's
/// `ready`).
macro_rules! contract_suite {
    ($(#[$attr:meta])* $module:ident: $backend:ty, $on:expr, $runs_here:ident) => {
        $(#[$attr])*
        mod $module {
            use super::*;

            /// Runs `check` on every case when the backend runs here.
            fn run<C>(test: &str, cases: Vec<C>, check: fn(&C, &On)) {
                let test = format!("{}::{test}", stringify!($module));
                if $runs_here(&test) {
                    let on: On = $on;
                    for case in &cases {
                        check(case, &on);
                    }
                }
            }

            #[test]
            fn class_index() {
                run("class_index", class_index_cases(), check_class_index::<$backend>);
            }

            #[test]
            fn class_probs() {
                run("class_probs", class_probs_cases(), check_class_probs::<$backend>);
            }

            #[test]
            fn binary() {
                run("binary", binary_cases(), check_binary::<$backend>);
            }

            #[test]
            fn refusals() {
                run("refusals", vec![()], |_, on| check_refusals::<$backend>(on));
            }
        }
    };
}

/// A CPU device's tensors in `dtype`.
#[cfg(any(feature = "fused-ndarray", feature = "fused-flex"))]
fn cpu(device: Device, dtype: DType) -> On {
    On { device, dtype }
}

// burn-ndarray is deprecated in Burn 0.22 (in favour of Flex); the crate keeps its kernels
// while Burn ships it.
contract_suite!(
    #[cfg(feature = "fused-ndarray")]
    #[allow(deprecated)]
    ndarray_f32: burn::backend::NdArray, cpu(Device::ndarray(), DType::F32), always
);
contract_suite!(
    #[cfg(feature = "fused-ndarray")]
    #[allow(deprecated)]
    ndarray_f64: burn::backend::NdArray, cpu(Device::ndarray(), DType::F64), always
);
contract_suite!(
    #[cfg(feature = "fused-flex")]
    flex_f32: burn::backend::Flex, cpu(Device::flex(), DType::F32), always
);
contract_suite!(
    #[cfg(feature = "fused-flex")]
    flex_f64: burn::backend::Flex, cpu(Device::flex(), DType::F64), always
);
contract_suite!(#[cfg(feature = "fused-wgpu")] cube: burn::backend::Cube, On::wgpu(), ready);
