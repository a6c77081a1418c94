//! `linear_cross_entropy` against its definition, `cross_entropy(linear(hidden, weight, bias),
//! target)` computed by Burn's generic operations and the composite cross-entropy on
//! `Autodiff<NdArray<f64>>`: values and the gradients of `hidden`, `weight` and `bias`, over
//! options, reductions, ignored rows and chunk sizes, on both paths and both backends; f64
//! gradchecks; the bad-input messages; the soft cap and z-loss of plain `cross_entropy`
//! against their formulas; `mean_denominator`; and one training step with a `Linear` head of
//! V = 32,000 classes, fused against composite.
//!
//! Shapes: `N = 12` rows, `D = 16`, `V = 37` classes (not a multiple of any vector width);
//! chunks of 1, 4 (dividing N), 5 (not dividing) and the default. On wgpu one shape only
//! (each new shape costs kernel compilations).

mod common;

use burn::module::Module;
use burn::module::Param;
use burn::nn::Linear;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use burn_xent::gradcheck::{GradcheckConfig, assert_gradcheck};
use burn_xent::*;
use common::{
    NdArrayAd, NdArrayAd64, Stream, WgpuAd, assert_close, assert_panics_with, float, int, values,
    wgpu_ready,
};

/// Two tests of the generic `$test`: on `Autodiff<NdArray<f32>>`, and on `Autodiff<Wgpu>` when
/// an adapter exists (`SKIPPED` otherwise). `$test` runs both paths itself where it compares
/// them (`matrix_tests!` would run it once per path).
macro_rules! on_both_backends {
    ($ndarray:ident, $wgpu:ident, $test:ident) => {
        #[test]
        fn $ndarray() {
            $test::<NdArrayAd>(&Default::default());
        }

        #[test]
        fn $wgpu() {
            if wgpu_ready(stringify!($wgpu)) {
                $test::<WgpuAd>(&Default::default());
            }
        }
    };
}

const N: usize = 12;
const D: usize = 16;
const V: usize = 37;

/// Host inputs of one case.
#[derive(Clone)]
struct Data {
    rows: usize,
    width: usize,
    classes: usize,
    hidden: Vec<f64>,
    weight: Vec<f64>,
    bias: Vec<f64>,
    target: Vec<i64>,
    class_weight: Vec<f64>,
}

impl Data {
    /// Random inputs; every fourth target is `ignore_index`.
    fn new(rows: usize, width: usize, classes: usize, ignore_index: i64, seed: u64) -> Self {
        let mut s = Stream::new(seed);
        let mut target = s.classes(rows, classes);
        for t in target.iter_mut().step_by(4) {
            *t = ignore_index;
        }
        Self {
            rows,
            width,
            classes,
            hidden: s.normals(rows * width, 1.0),
            weight: s.normals(width * classes, 0.6),
            bias: s.normals(classes, 0.5),
            target,
            class_weight: s.uniforms(classes, 0.5, 2.0),
        }
    }
}

/// The options of one case.
#[derive(Clone, Copy, Debug)]
struct Setup {
    bias: bool,
    class_weight: bool,
    ignore_index: i64,
    smoothing: f64,
    softcap: Option<f64>,
    z_loss: f64,
}

const PLAIN: Setup = Setup {
    bias: true,
    class_weight: false,
    ignore_index: -100,
    smoothing: 0.0,
    softcap: None,
    z_loss: 0.0,
};

/// The option sets every comparison runs.
fn setups() -> Vec<Setup> {
    vec![
        PLAIN,
        Setup {
            bias: false,
            ..PLAIN
        },
        Setup {
            class_weight: true,
            ignore_index: 3,
            smoothing: 0.1,
            ..PLAIN
        },
        Setup {
            softcap: Some(2.5),
            ..PLAIN
        },
        Setup {
            z_loss: 0.01,
            class_weight: true,
            ..PLAIN
        },
        Setup {
            bias: true,
            class_weight: true,
            ignore_index: 3,
            smoothing: 0.2,
            softcap: Some(3.0),
            z_loss: 0.05,
        },
    ]
}

/// A reduction, or PyTorch's `none` (backpropagated with a fixed per-row upstream gradient).
#[derive(Clone, Copy, Debug)]
enum Mode {
    Reduced(Reduction),
    PerRow,
}

const MODES: [Mode; 3] = [
    Mode::Reduced(Reduction::Mean),
    Mode::Reduced(Reduction::Sum),
    Mode::PerRow,
];

/// The loss's value and the gradients of hidden, weight and bias.
struct Evaluation {
    value: Vec<f64>,
    grads: [Option<Vec<f64>>; 3],
}

/// The tensors of a case on `B`, tracked.
struct Inputs<B: AutodiffBackend> {
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    target: Tensor<B, 1, Int>,
    class_weight: Option<Tensor<B, 1>>,
}

impl<B: AutodiffBackend> Inputs<B> {
    fn new(data: &Data, setup: Setup, device: &B::Device) -> Self {
        Self {
            hidden: float::<B, 2>(&data.hidden, [data.rows, data.width], device).require_grad(),
            weight: float::<B, 2>(&data.weight, [data.width, data.classes], device).require_grad(),
            bias: setup
                .bias
                .then(|| float::<B, 1>(&data.bias, [data.classes], device).require_grad()),
            target: int(&data.target, [data.rows], device),
            class_weight: setup
                .class_weight
                .then(|| float(&data.class_weight, [data.classes], device)),
        }
    }

    /// Backpropagates `loss` (per row: weighted by a fixed upstream gradient) and reads the
    /// value and the three gradients.
    fn evaluate(&self, loss: Tensor<B, 1>, mode: Mode) -> Evaluation {
        let value = values(loss.clone());
        let objective = match mode {
            Mode::Reduced(_) => loss,
            Mode::PerRow => {
                let rows = loss.dims()[0];
                let upstream: Vec<f64> = (0..rows).map(|i| 0.5 + (i % 3) as f64).collect();
                (loss * float::<B, 1>(&upstream, [rows], &self.hidden.device())).sum()
            }
        };
        let grads = objective.backward();
        let grad = |t: &Tensor<B, 2>| t.grad(&grads).map(values);
        Evaluation {
            value,
            grads: [
                grad(&self.hidden),
                grad(&self.weight),
                self.bias.as_ref().and_then(|b| b.grad(&grads).map(values)),
            ],
        }
    }
}

fn options<B: AutodiffBackend>(
    setup: Setup,
    inputs: &Inputs<B>,
    chunk: Option<usize>,
) -> LinearCrossEntropyOptions<B> {
    LinearCrossEntropyOptions {
        class_weight: inputs.class_weight.clone(),
        ignore_index: setup.ignore_index,
        label_smoothing: setup.smoothing,
        softcap: setup.softcap,
        z_loss: setup.z_loss,
        chunk_size: chunk,
        check_values: true,
    }
}

/// `linear_cross_entropy` (or its `none` form) on `B`, on the thread's current path.
fn linear<B: AutodiffBackend>(
    data: &Data,
    setup: Setup,
    mode: Mode,
    chunk: Option<usize>,
    device: &B::Device,
) -> Evaluation {
    let x = Inputs::<B>::new(data, setup, device);
    let options = options(setup, &x, chunk);
    let (h, w, b, t) = (
        x.hidden.clone(),
        x.weight.clone(),
        x.bias.clone(),
        x.target.clone(),
    );
    let loss = match mode {
        Mode::Reduced(reduction) => linear_cross_entropy(h, w, b, t, reduction, &options),
        Mode::PerRow => linear_cross_entropy_no_reduction(h, w, b, t, &options),
    };
    x.evaluate(loss, mode)
}

/// The definition: `cross_entropy(hidden · weight + bias, target)` by Burn's generic
/// operations and the composite cross-entropy, on `Autodiff<NdArray<f64>>`.
fn reference(data: &Data, setup: Setup, mode: Mode) -> Evaluation {
    let device = Default::default();
    let x = Inputs::<NdArrayAd64>::new(data, setup, &device);
    let logits = x.hidden.clone().matmul(x.weight.clone());
    let logits = match &x.bias {
        Some(bias) => logits + bias.clone().unsqueeze(),
        None => logits,
    };
    let options = CrossEntropyOptions {
        weight: x.class_weight.clone(),
        ignore_index: setup.ignore_index,
        label_smoothing: setup.smoothing,
        softcap: setup.softcap,
        z_loss: setup.z_loss,
        check_values: true,
    };
    let loss = with_loss_path(LossPath::Composite, || match mode {
        Mode::Reduced(reduction) => cross_entropy(logits, x.target.clone(), reduction, &options),
        Mode::PerRow => cross_entropy_no_reduction(logits, x.target.clone(), &options),
    });
    x.evaluate(loss, mode)
}

/// A `Linear` layer `[d_in, d_out]` with a bias, initialised as `LinearConfig` does
/// (uniform in `±1/√d_in`) but in `B`'s own dtype: `LinearConfig::init` takes the device's
/// default dtype, which in this process (f32 and f64 tests share `NdArrayDevice`) depends on
/// which test ran first.
fn linear_layer<B: burn::tensor::backend::Backend>(
    d_in: usize,
    d_out: usize,
    seed: u64,
    device: &B::Device,
) -> Linear<B> {
    let mut s = Stream::new(seed);
    let k = 1.0 / (d_in as f64).sqrt();
    Linear {
        weight: Param::from_tensor(float(
            &s.uniforms(d_in * d_out, -k, k),
            [d_in, d_out],
            device,
        )),
        bias: Some(Param::from_tensor(float(
            &s.uniforms(d_out, -k, k),
            [d_out],
            device,
        ))),
    }
}

/// Asserts `got` equals `want` within `k` units of f32 round-off times each result's scale.
#[track_caller]
fn assert_matches(got: &Evaluation, want: &Evaluation, rtol: f64, context: &str) {
    let compare = |got: &[f64], want: &[f64], what: &str| {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
        assert_close(got, want, rtol, rtol * scale, &format!("{context}: {what}"));
    };
    compare(&got.value, &want.value, "value");
    for (i, name) in ["hidden", "weight", "bias"].iter().enumerate() {
        match (&got.grads[i], &want.grads[i]) {
            (Some(g), Some(w)) => compare(g, w, &format!("grad {name}")),
            (None, None) => {}
            (g, w) => panic!(
                "{context}: grad {name}: got {}, want {}",
                g.is_some(),
                w.is_some()
            ),
        }
    }
}

/// Every option set, reduction and chunk size on `B` and the thread's path, against the
/// definition.
fn equals_definition<B: AutodiffBackend>(device: &B::Device, chunks: &[Option<usize>]) {
    for (i, setup) in setups().into_iter().enumerate() {
        let data = Data::new(N, D, V, setup.ignore_index, 7 + i as u64);
        for mode in MODES {
            let want = reference(&data, setup, mode);
            for &chunk in chunks {
                let got = linear::<B>(&data, setup, mode, chunk, device);
                let context = format!("{setup:?}, {mode:?}, chunk {chunk:?}");
                assert_matches(&got, &want, 2e-5, &context);
            }
        }
    }
}

const CHUNKS: [Option<usize>; 4] = [Some(1), Some(4), Some(5), None];

#[test]
fn ndarray_fused_equals_definition() {
    with_loss_path(LossPath::Fused, || {
        equals_definition::<NdArrayAd>(&Default::default(), &CHUNKS)
    });
}

#[test]
fn ndarray_composite_equals_definition() {
    with_loss_path(LossPath::Composite, || {
        equals_definition::<NdArrayAd>(&Default::default(), &[None])
    });
}

#[test]
fn ndarray_f64_fused_equals_definition_closely() {
    with_loss_path(LossPath::Fused, || {
        for (i, setup) in setups().into_iter().enumerate() {
            let data = Data::new(N, D, V, setup.ignore_index, 70 + i as u64);
            for mode in MODES {
                let want = reference(&data, setup, mode);
                let got = linear::<NdArrayAd64>(&data, setup, mode, Some(5), &Default::default());
                assert_matches(&got, &want, 1e-12, &format!("{setup:?}, {mode:?}"));
            }
        }
    });
}

#[test]
fn wgpu_fused_equals_definition() {
    if wgpu_ready("wgpu_fused_equals_definition") {
        with_loss_path(LossPath::Fused, || {
            equals_definition::<WgpuAd>(&Default::default(), &[Some(5)])
        });
    }
}

#[test]
fn wgpu_composite_equals_definition() {
    if wgpu_ready("wgpu_composite_equals_definition") {
        with_loss_path(LossPath::Composite, || {
            equals_definition::<WgpuAd>(&Default::default(), &[None])
        });
    }
}

/// `[B, T, D]` hidden states with `[B, T]` targets give the rows' loss, and the per-row loss
/// comes back as `[B, T]`.
#[test]
fn batched_hidden_is_flattened_into_rows() {
    let device = Default::default();
    let data = Data::new(N, D, V, -100, 3);
    let x = Inputs::<NdArrayAd>::new(&data, PLAIN, &device);
    let options = LinearCrossEntropyOptions::new().with_chunk_size(5);
    let flat = linear_cross_entropy(
        x.hidden.clone(),
        x.weight.clone(),
        x.bias.clone(),
        x.target.clone(),
        Reduction::Mean,
        &options,
    );
    let batched = linear_cross_entropy(
        x.hidden.clone().reshape([3, 4, D]),
        x.weight.clone(),
        x.bias.clone(),
        x.target.clone().reshape([3, 4]),
        Reduction::Mean,
        &options,
    );
    assert_close(&values(batched), &values(flat), 0.0, 0.0, "batched mean");
    let rows = linear_cross_entropy_no_reduction(
        x.hidden.clone().reshape([3, 4, D]),
        x.weight.clone(),
        x.bias.clone(),
        x.target.clone().reshape([3, 4]),
        &options,
    );
    assert_eq!(rows.dims(), [3, 4]);
}

/// Without autodiff (the inner backend) the fused forward gives the same value.
#[test]
fn inner_backend_forward_equals_definition() {
    type Inner = burn_ndarray::NdArray<f32>;
    let device = Default::default();
    for (i, setup) in setups().into_iter().enumerate() {
        let data = Data::new(N, D, V, setup.ignore_index, 30 + i as u64);
        for mode in MODES {
            let want = reference(&data, setup, mode);
            let options = LinearCrossEntropyOptions::<Inner> {
                class_weight: setup
                    .class_weight
                    .then(|| float(&data.class_weight, [V], &device)),
                ignore_index: setup.ignore_index,
                label_smoothing: setup.smoothing,
                softcap: setup.softcap,
                z_loss: setup.z_loss,
                chunk_size: Some(5),
                check_values: true,
            };
            let h = float::<Inner, 2>(&data.hidden, [N, D], &device);
            let w = float::<Inner, 2>(&data.weight, [D, V], &device);
            let b = setup
                .bias
                .then(|| float::<Inner, 1>(&data.bias, [V], &device));
            let t = int::<Inner, 1>(&data.target, [N], &device);
            let got = with_loss_path(LossPath::Fused, || match mode {
                Mode::Reduced(reduction) => {
                    values(linear_cross_entropy(h, w, b, t, reduction, &options))
                }
                Mode::PerRow => values(linear_cross_entropy_no_reduction(h, w, b, t, &options)),
            });
            let scale = want.value.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
            assert_close(
                &got,
                &want.value,
                2e-5,
                2e-5 * scale,
                &format!("{setup:?} {mode:?}"),
            );
        }
    }
}

/// Only the tensors that require a gradient get one; none tracked, the loss still comes.
#[test]
fn gradients_only_for_tracked_inputs() {
    let device = Default::default();
    let data = Data::new(N, D, V, -100, 5);
    for path in [LossPath::Fused, LossPath::Composite] {
        with_loss_path(path, || {
            let hidden = float::<NdArrayAd, 2>(&data.hidden, [N, D], &device);
            let weight = float::<NdArrayAd, 2>(&data.weight, [D, V], &device).require_grad();
            let bias = float::<NdArrayAd, 1>(&data.bias, [V], &device);
            let target = int(&data.target, [N], &device);
            let options = LinearCrossEntropyOptions::new().with_chunk_size(5);
            let loss = linear_cross_entropy(
                hidden.clone(),
                weight.clone(),
                Some(bias.clone()),
                target.clone(),
                Reduction::Mean,
                &options,
            );
            let grads = loss.backward();
            assert!(hidden.grad(&grads).is_none(), "{path:?}");
            assert!(bias.grad(&grads).is_none(), "{path:?}");
            assert!(weight.grad(&grads).is_some(), "{path:?}");
            let untracked = linear_cross_entropy(
                hidden,
                weight.detach(),
                Some(bias),
                target,
                Reduction::Sum,
                &options,
            );
            assert!(values(untracked)[0].is_finite());
        });
    }
}

/// A batch whose targets are all ignored: PyTorch's NaN mean with zero gradients, and 0 sum.
#[test]
fn all_ignored_rows() {
    let mut data = Data::new(N, D, V, -100, 9);
    data.target = vec![-100; N];
    let setup = Setup {
        z_loss: 0.01,
        softcap: Some(3.0),
        ..PLAIN
    };
    with_loss_path(LossPath::Fused, || {
        let mean = linear::<NdArrayAd>(
            &data,
            setup,
            Mode::Reduced(Reduction::Mean),
            Some(5),
            &Default::default(),
        );
        assert!(mean.value[0].is_nan());
        for grad in mean.grads.iter().flatten() {
            assert!(grad.iter().all(|&g| g == 0.0), "{grad:?}");
        }
        let sum = linear::<NdArrayAd>(
            &data,
            setup,
            Mode::Reduced(Reduction::Sum),
            Some(5),
            &Default::default(),
        );
        assert_eq!(sum.value, vec![0.0]);
    });
}

/// The gradients of hidden, weight and bias against central differences, in f64, on the fused
/// path, chunk sizes dividing N and not, every reduction, with and without the soft cap and
/// z-loss.
#[test]
fn gradcheck_f64_fused() {
    let device = Default::default();
    let (rows, width, classes) = (6, 3, 7);
    let setups = [
        PLAIN,
        Setup {
            class_weight: true,
            ignore_index: 2,
            smoothing: 0.1,
            softcap: Some(2.0),
            z_loss: 0.05,
            bias: true,
        },
    ];
    for setup in setups {
        let data = Data::new(rows, width, classes, setup.ignore_index, 11);
        for chunk in [2, 4] {
            for mode in MODES {
                let inputs = [
                    float::<NdArrayAd64, 2>(&data.hidden, [rows, width], &device),
                    float::<NdArrayAd64, 2>(&data.weight, [width, classes], &device),
                    float::<NdArrayAd64, 2>(&data.bias, [1, classes], &device),
                ];
                let target = int::<NdArrayAd64, 1>(&data.target, [rows], &device);
                let options = LinearCrossEntropyOptions::<NdArrayAd64> {
                    class_weight: setup
                        .class_weight
                        .then(|| float(&data.class_weight, [classes], &device)),
                    ..LinearCrossEntropyOptions::new()
                        .with_ignore_index(setup.ignore_index)
                        .with_label_smoothing(setup.smoothing)
                        .with_z_loss(setup.z_loss)
                        .with_chunk_size(chunk)
                };
                let options = match setup.softcap {
                    Some(cap) => options.with_softcap(cap),
                    None => options,
                };
                with_loss_path(LossPath::Fused, || {
                    assert_gradcheck(
                        |xs| {
                            let bias = Some(xs[2].clone().reshape([classes]));
                            let (h, w, t) = (xs[0].clone(), xs[1].clone(), target.clone());
                            match mode {
                                Mode::Reduced(r) => {
                                    linear_cross_entropy(h, w, bias, t, r, &options)
                                }
                                Mode::PerRow => {
                                    linear_cross_entropy_no_reduction(h, w, bias, t, &options)
                                }
                            }
                        },
                        &inputs,
                        &GradcheckConfig::new(),
                    );
                });
            }
        }
    }
}

on_both_backends!(
    ndarray_bad_input_is_refused,
    wgpu_bad_input_is_refused,
    bad_input_is_refused
);

/// Every bad argument is refused with a message naming the function, the argument, what was
/// expected and what came, on both paths.
fn bad_input_is_refused<B: AutodiffBackend>(device: &B::Device) {
    let h = || Tensor::<B, 2>::zeros([4, 3], device);
    let w = || Tensor::<B, 2>::zeros([3, 5], device);
    let t = || int::<B, 1>(&[0, 1, 2, 4], [4], device);
    let o = LinearCrossEntropyOptions::<B>::new;
    let mean = Reduction::Mean;
    for path in [LossPath::Fused, LossPath::Composite] {
        with_loss_path(path, || {
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        h(),
                        Tensor::<B, 2>::zeros([4, 5], device),
                        None,
                        t(),
                        mean,
                        &o(),
                    )
                },
                &[
                    "linear_cross_entropy: weight: expected shape [3, V]",
                    "got [4, 5]",
                ],
            );
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        h(),
                        w(),
                        Some(Tensor::zeros([4], device)),
                        t(),
                        mean,
                        &o(),
                    )
                },
                &["linear_cross_entropy: bias: expected shape [5]", "got [4]"],
            );
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        h(),
                        w(),
                        None,
                        int::<B, 1>(&[0, 1, 2], [3], device),
                        mean,
                        &o(),
                    )
                },
                &[
                    "linear_cross_entropy: target: expected shape [4]",
                    "got [3]",
                ],
            );
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        h(),
                        w(),
                        None,
                        int::<B, 1>(&[0, 1, 5, 2], [4], device),
                        mean,
                        &o(),
                    )
                },
                &[
                    "linear_cross_entropy: target: expected class indices in [0, 5)",
                    "got 5 at index [2]",
                ],
            );
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        h(),
                        w(),
                        None,
                        t(),
                        mean,
                        &o().with_class_weight(Tensor::ones([4], device)),
                    )
                },
                &[
                    "linear_cross_entropy: class_weight: expected one weight per class, shape [5]",
                    "got shape [4]",
                ],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_softcap(0.0)),
                &["linear_cross_entropy: softcap: expected a positive finite cap, got 0"],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_z_loss(-1.0)),
                &["linear_cross_entropy: z_loss: expected a non-negative finite scale, got -1"],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_label_smoothing(1.5)),
                &["linear_cross_entropy: label_smoothing: expected a value in [0, 1], got 1.5"],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_chunk_size(0)),
                &["linear_cross_entropy: chunk_size: expected at least 1 row per chunk, got 0"],
            );
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        Tensor::<B, 3>::zeros([2, 2, 3], device),
                        w(),
                        None,
                        t(),
                        mean,
                        &o(),
                    )
                },
                &[
                    "linear_cross_entropy: target: expected shape [2, 2]",
                    "got [4]",
                ],
            );
        });
    }
    assert_panics_with(
        || {
            cross_entropy(
                h(),
                int::<B, 1>(&[0, 1, 2, 0], [4], device),
                mean,
                &CrossEntropyOptions::new().with_softcap(-1.0),
            )
        },
        &["cross_entropy: softcap: expected a positive finite cap, got -1"],
    );
    assert_panics_with(
        || {
            cross_entropy(
                h(),
                int::<B, 1>(&[0, 1, 2, 0], [4], device),
                mean,
                &CrossEntropyOptions::new().with_z_loss(f64::NAN),
            )
        },
        &["cross_entropy: z_loss: expected a non-negative finite scale, got NaN"],
    );
}

/// The module and the `Linear` helper give the function's numbers.
#[test]
fn module_and_layer_helper_equal_the_function() {
    let device = Default::default();
    type B = NdArrayAd;
    let layer: Linear<B> = linear_layer(D, V, 41, &device);
    let data = Data::new(N, D, V, -100, 13);
    let hidden = float::<B, 2>(&data.hidden, [N, D], &device);
    let target = int::<B, 1>(&data.target, [N], &device);
    let module = LinearCrossEntropyLossConfig::new()
        .with_label_smoothing(0.1)
        .with_z_loss(1e-3)
        .with_chunk_size(Some(5))
        .init::<B>(&device);
    let options = module.options();
    let function = linear_cross_entropy(
        hidden.clone(),
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        target.clone(),
        Reduction::Mean,
        &options,
    );
    let from_module = module.forward_layer(&layer, hidden.clone(), target.clone(), Reduction::Mean);
    let helper = linear_layer_cross_entropy(
        &layer,
        hidden.clone(),
        target.clone(),
        Reduction::Mean,
        &options,
    );
    let with_z = module.forward_with_z_loss(
        hidden.clone(),
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        target.clone(),
        Reduction::Mean,
    );
    let want = values(function);
    assert_eq!(values(from_module), want);
    assert_eq!(values(helper), want);
    assert_eq!(values(with_z.loss), want);
    assert!(values(with_z.z_loss)[0] > 0.0);
    // The composite path's z-loss term is the same number.
    let composite = with_loss_path(LossPath::Composite, || {
        module.forward_with_z_loss(
            hidden,
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
            target,
            Reduction::Mean,
        )
    });
    let fused_z = values(
        module
            .forward_with_z_loss(
                float::<B, 2>(&data.hidden, [N, D], &device),
                layer.weight.val(),
                layer.bias.as_ref().map(|b| b.val()),
                int::<B, 1>(&data.target, [N], &device),
                Reduction::Mean,
            )
            .z_loss,
    );
    assert_close(
        &fused_z,
        &values(composite.z_loss),
        1e-5,
        1e-7,
        "z-loss term",
    );
}

/// Plain `cross_entropy`'s soft cap and z-loss against their formulas written with Burn's
/// operations (f64, both paths): `cap · tanh(x / cap)` first, then `scale · w[t] · lse²` per
/// element, reduced with the loss.
#[test]
fn cross_entropy_softcap_and_z_loss_follow_their_formulas() {
    type B = NdArrayAd64;
    let device = Default::default();
    let data = Data::new(N, D, V, 3, 17);
    let (cap, scale) = (2.0, 0.03);
    let x = || float::<B, 2>(&data.hidden[..N * 8], [N, 8], &device).mul_scalar(3.0);
    let t = || int::<B, 1>(&data.target, [N], &device).clamp(0, 7);
    let w = float::<B, 1>(&data.class_weight[..8], [8], &device);
    let base = CrossEntropyOptions::new().with_weight(w.clone());
    for path in [LossPath::Fused, LossPath::Composite] {
        with_loss_path(path, || {
            for reduction in [Reduction::Mean, Reduction::Sum] {
                let capped = x().mul_scalar(1.0 / cap).tanh().mul_scalar(cap);
                let lse = capped.clone().exp().sum_dim(1).log().reshape([N]);
                let tw = w.clone().select(0, t());
                let plain = cross_entropy(capped, t(), reduction, &base);
                let z_sum = (lse.powi_scalar(2) * tw.clone()).sum().mul_scalar(scale);
                let z = match reduction {
                    Reduction::Mean => z_sum / tw.sum(),
                    Reduction::Sum => z_sum,
                };
                let want = values(plain + z.clone());
                let got = cross_entropy_with_z_loss(
                    x(),
                    t(),
                    reduction,
                    &base.clone().with_softcap(cap).with_z_loss(scale),
                );
                assert_close(
                    &values(got.loss),
                    &want,
                    1e-12,
                    0.0,
                    &format!("{path:?} {reduction:?}"),
                );
                assert_close(&values(got.z_loss), &values(z), 1e-12, 0.0, "z term");
            }
        });
    }
}

/// `mean_denominator` is the weight sum of the non-ignored targets, and micro-batch sums over
/// the global total give the whole batch's mean (value and gradient).
#[test]
fn mean_denominator_makes_accumulation_exact() {
    type B = NdArrayAd64;
    let device = Default::default();
    let data = Data::new(N, D, V, -100, 19);
    let w = float::<B, 1>(&data.class_weight, [V], &device);
    let t = int::<B, 1>(&data.target, [N], &device);
    let want: f64 = data
        .target
        .iter()
        .filter(|&&t| t != -100)
        .map(|&t| data.class_weight[t as usize])
        .sum();
    let got = values(mean_denominator(t.clone(), Some(w.clone()), -100))[0];
    assert!((got - want).abs() < 1e-12, "{got} {want}");
    assert_eq!(values(mean_denominator(t.clone(), None, -100))[0], 9.0);

    // Unequal micro-batches (rows 0..3 and 3..12), with the linear loss.
    let hidden = float::<B, 2>(&data.hidden, [N, D], &device).require_grad();
    let weight = float::<B, 2>(&data.weight, [D, V], &device).require_grad();
    let options = LinearCrossEntropyOptions::new()
        .with_class_weight(w.clone())
        .with_chunk_size(4);
    let whole = linear_cross_entropy(
        hidden.clone(),
        weight.clone(),
        None,
        t.clone(),
        Reduction::Mean,
        &options,
    );
    let whole_grad = values(weight.grad(&whole.backward()).unwrap());
    let total = mean_denominator(t.clone(), Some(w.clone()), -100);
    let mut sum = 0.0;
    let mut grad = vec![0.0; D * V];
    for rows in [0..3, 3..N] {
        let loss = linear_cross_entropy(
            hidden.clone().slice([rows.clone()]),
            weight.clone(),
            None,
            t.clone().slice([rows]),
            Reduction::Sum,
            &options,
        ) / total.clone();
        let g = values(weight.grad(&loss.backward()).unwrap());
        grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
        sum += values(loss)[0];
    }
    assert_close(&[sum], &values(whole), 1e-12, 0.0, "accumulated loss");
    assert_close(&grad, &whole_grad, 1e-10, 1e-14, "accumulated gradient");
}

#[derive(Module, Debug)]
struct Model<B: burn::tensor::backend::Backend> {
    body: Linear<B>,
    head: Linear<B>,
}

on_both_backends!(
    ndarray_training_step_with_32k_vocabulary_matches_composite,
    wgpu_training_step_with_32k_vocabulary_matches_composite,
    training_step_with_32k_vocabulary_matches_composite
);

/// A two-layer model with a `Linear` head of V = 32,000 classes: one SGD step with the fused
/// loss moves every parameter as the composite loss does.
fn training_step_with_32k_vocabulary_matches_composite<B: AutodiffBackend>(device: &B::Device) {
    let (rows, input, width, classes) = (48, 16, 32, 32_000);
    let model = Model::<B> {
        body: linear_layer(input, width, 42, device),
        head: linear_layer(width, classes, 43, device),
    };
    let mut s = Stream::new(23);
    let features = float::<B, 2>(&s.normals(rows * input, 1.0), [rows, input], device);
    let mut target = s.classes(rows, classes);
    target[5] = -100;
    let target = int::<B, 1>(&target, [rows], device);
    let options = LinearCrossEntropyOptions::new()
        .with_label_smoothing(0.1)
        .with_z_loss(1e-4);
    let before = values(model.head.weight.val());
    let step = |path: LossPath| {
        with_loss_path(path, || {
            let model = model.clone();
            let hidden = burn::tensor::activation::relu(model.body.forward(features.clone()));
            let loss = linear_layer_cross_entropy(
                &model.head,
                hidden,
                target.clone(),
                Reduction::Mean,
                &options,
            );
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let mut optim = SgdConfig::new().init::<B, Model<B>>();
            optim.step(0.5, model, grads)
        })
    };
    let (fused, composite) = (step(LossPath::Fused), step(LossPath::Composite));
    let params = |m: &Model<B>| {
        [
            ("head.weight", values(m.head.weight.val())),
            ("head.bias", values(m.head.bias.as_ref().unwrap().val())),
            ("body.weight", values(m.body.weight.val())),
            ("body.bias", values(m.body.bias.as_ref().unwrap().val())),
        ]
    };
    let start = params(&model);
    assert_eq!(start[0].1, before);
    // The updates (new - old) agree within f32 round-off of each update's scale.
    for ((name, old), ((_, f), (_, c))) in start
        .iter()
        .zip(params(&fused).into_iter().zip(params(&composite)))
    {
        let delta = |new: &[f64]| new.iter().zip(old).map(|(n, o)| n - o).collect::<Vec<_>>();
        let (df, dc) = (delta(&f), delta(&c));
        let scale = dc.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: the step moved nothing");
        assert_close(&df, &dc, 1e-4, 1e-4 * scale, name);
    }
}
