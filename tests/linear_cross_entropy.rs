//! `linear_cross_entropy` against its definition, `cross_entropy(linear(hidden, weight, bias),
//! target)` computed by Burn's generic operations and the composite cross-entropy on the
//! autodiff ndarray device in f64: values and the gradients of `hidden`, `weight` and `bias`,
//! over options, reductions, ignored rows and chunk sizes, on both paths, on ndarray, Flex and
//! wgpu in f32 and closely on ndarray and Flex in f64, and the forward on plain (non-autodiff)
//! devices; f64 gradchecks; the bad-input messages (`linear_cross_entropy/refusals.rs`); the
//! module, the soft cap and z-loss of plain `cross_entropy` against their formulas,
//! `mean_denominator`, and one training step with a `Linear` head of V = 32,000 classes, fused
//! against composite (`linear_cross_entropy/api.rs`); the CPU products at larger odd sizes
//! and with `hidden` and `weight` as views (transposes, row and column slices,
//! `linear_cross_entropy/layouts.rs`).
//!
//! Shapes: `N = 12` rows, `D = 16`, `V = 37` classes (not a multiple of any vector width);
//! chunks of 1, 4 (dividing N), 5 (not dividing) and the default. On wgpu one shape only
//! (each new shape costs kernel compilations).

#[path = "linear_cross_entropy/api.rs"]
mod api;
mod common;
#[path = "linear_cross_entropy/layouts.rs"]
mod layouts;
#[path = "linear_cross_entropy/refusals.rs"]
mod refusals;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Int, Tensor};
use burn_xent::gradcheck::{GradcheckConfig, assert_gradcheck};
use burn_xent::*;
use common::{Stream, TestBackend, assert_close, values};

/// Two tests of `$test(backend: &TestBackend)`: on the autodiff ndarray device in f32, and on
/// the autodiff wgpu device when an adapter exists (`SKIPPED` otherwise). `$test` runs both
/// paths itself where it compares them (`matrix_tests!` would run it once per path).
macro_rules! on_both_backends {
    ($ndarray:ident, $wgpu:ident, $test:ident) => {
        #[test]
        fn $ndarray() {
            $test(&$crate::common::TestBackend::ndarray_f32().autodiff());
        }

        #[test]
        fn $wgpu() {
            let backend = $crate::common::TestBackend::wgpu().autodiff();
            if backend.ready(stringify!($wgpu)) {
                $test(&backend);
            }
        }
    };
}
pub(crate) use on_both_backends;

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

/// The tensors of a case on a backend, tracked (on an autodiff device).
struct Inputs {
    hidden: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    target: Tensor<1, Int>,
    class_weight: Option<Tensor<1>>,
}

impl Inputs {
    fn new(data: &Data, setup: Setup, b: &TestBackend) -> Self {
        Self {
            hidden: b
                .float(&data.hidden, [data.rows, data.width])
                .require_grad(),
            weight: b
                .float(&data.weight, [data.width, data.classes])
                .require_grad(),
            bias: setup
                .bias
                .then(|| b.float(&data.bias, [data.classes]).require_grad()),
            target: b.int(&data.target, [data.rows]),
            class_weight: setup
                .class_weight
                .then(|| b.float(&data.class_weight, [data.classes])),
        }
    }

    /// Backpropagates `loss` (per row: weighted by a fixed upstream gradient) and reads the
    /// value and the three gradients.
    fn evaluate(&self, loss: Tensor<1>, mode: Mode) -> Evaluation {
        let value = values(loss.clone());
        let objective = match mode {
            Mode::Reduced(_) => loss,
            Mode::PerRow => {
                let rows = loss.dims()[0];
                let upstream: Vec<f64> = (0..rows).map(|i| 0.5 + (i % 3) as f64).collect();
                let upstream = common::float_as(upstream, [rows], &loss.device(), loss.dtype());
                (loss * upstream).sum()
            }
        };
        let grads = objective.backward();
        let grad = |t: &Tensor<2>| t.grad(&grads).map(values);
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

fn options(setup: Setup, inputs: &Inputs, chunk: Option<usize>) -> LinearCrossEntropyOptions {
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

/// `linear_cross_entropy` (or its `none` form) on `b`, on the thread's current path.
fn linear(
    data: &Data,
    setup: Setup,
    mode: Mode,
    chunk: Option<usize>,
    b: &TestBackend,
) -> Evaluation {
    let x = Inputs::new(data, setup, b);
    let options = options(setup, &x, chunk);
    let (h, w, bias, t) = (
        x.hidden.clone(),
        x.weight.clone(),
        x.bias.clone(),
        x.target.clone(),
    );
    let loss = match mode {
        Mode::Reduced(reduction) => linear_cross_entropy(h, w, bias, t, reduction, &options),
        Mode::PerRow => linear_cross_entropy_no_reduction(h, w, bias, t, &options),
    };
    x.evaluate(loss, mode)
}

/// The definition: `cross_entropy(hidden · weight + bias, target)` by Burn's generic
/// operations and the composite cross-entropy, on the autodiff ndarray device in f64.
fn reference(data: &Data, setup: Setup, mode: Mode) -> Evaluation {
    let x = Inputs::new(data, setup, &TestBackend::ndarray_f64().autodiff());
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
/// (uniform in `±1/√d_in`) but in `b`'s dtype (`LinearConfig::init` takes the device's
/// default float dtype).
fn linear_layer(d_in: usize, d_out: usize, seed: u64, b: &TestBackend) -> Linear {
    let mut s = Stream::new(seed);
    let k = 1.0 / (d_in as f64).sqrt();
    Linear {
        weight: Param::from_tensor(b.float(&s.uniforms(d_in * d_out, -k, k), [d_in, d_out])),
        bias: Some(Param::from_tensor(
            b.float(&s.uniforms(d_out, -k, k), [d_out]),
        )),
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

/// Every option set, reduction and chunk size on `b` and the thread's path, against the
/// definition.
fn equals_definition(b: &TestBackend, chunks: &[Option<usize>]) {
    for (i, setup) in setups().into_iter().enumerate() {
        let data = Data::new(N, D, V, setup.ignore_index, 7 + i as u64);
        for mode in MODES {
            let want = reference(&data, setup, mode);
            for &chunk in chunks {
                let got = linear(&data, setup, mode, chunk, b);
                let context = format!("{} {setup:?}, {mode:?}, chunk {chunk:?}", b.label());
                assert_matches(&got, &want, 2e-5, &context);
            }
        }
    }
}

const CHUNKS: [Option<usize>; 4] = [Some(1), Some(4), Some(5), None];

/// The fused path (every chunk size) and the composite path on `backend` with autodiff, when
/// it can run here.
fn both_paths_equal_definition(backend: TestBackend, test: &str, fused_chunks: &[Option<usize>]) {
    let b = backend.autodiff();
    if b.ready(test) {
        with_loss_path(LossPath::Fused, || equals_definition(&b, fused_chunks));
        with_loss_path(LossPath::Composite, || equals_definition(&b, &[None]));
    }
}

#[test]
fn ndarray_equals_definition() {
    both_paths_equal_definition(TestBackend::ndarray_f32(), "ndarray", &CHUNKS);
}

#[test]
fn flex_equals_definition() {
    both_paths_equal_definition(TestBackend::flex_f32(), "flex", &CHUNKS);
}

#[test]
fn wgpu_equals_definition() {
    both_paths_equal_definition(TestBackend::wgpu(), "wgpu_equals_definition", &[Some(5)]);
}

/// In f64 the fused path matches the definition to f64 round-off.
fn f64_fused_equals_definition_closely(b: &TestBackend) {
    with_loss_path(LossPath::Fused, || {
        for (i, setup) in setups().into_iter().enumerate() {
            let data = Data::new(N, D, V, setup.ignore_index, 70 + i as u64);
            for mode in MODES {
                let want = reference(&data, setup, mode);
                let got = linear(&data, setup, mode, Some(5), b);
                let context = format!("{} {setup:?}, {mode:?}", b.label());
                assert_matches(&got, &want, 1e-12, &context);
            }
        }
    });
}

#[test]
fn ndarray_f64_fused_equals_definition_closely() {
    f64_fused_equals_definition_closely(&TestBackend::ndarray_f64().autodiff());
}

#[test]
fn flex_f64_fused_equals_definition_closely() {
    f64_fused_equals_definition_closely(&TestBackend::flex_f64().autodiff());
}

/// `[B, T, D]` hidden states with `[B, T]` targets give the rows' loss, and the per-row loss
/// comes back as `[B, T]`.
#[test]
fn batched_hidden_is_flattened_into_rows() {
    let data = Data::new(N, D, V, -100, 3);
    let x = Inputs::new(&data, PLAIN, &TestBackend::ndarray_f32().autodiff());
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

/// Without autodiff (a plain device) the fused forward gives the same value.
fn plain_forward_equals_definition(b: &TestBackend) {
    for (i, setup) in setups().into_iter().enumerate() {
        let data = Data::new(N, D, V, setup.ignore_index, 30 + i as u64);
        for mode in MODES {
            let want = reference(&data, setup, mode);
            let options = LinearCrossEntropyOptions {
                class_weight: setup.class_weight.then(|| b.float(&data.class_weight, [V])),
                ignore_index: setup.ignore_index,
                label_smoothing: setup.smoothing,
                softcap: setup.softcap,
                z_loss: setup.z_loss,
                chunk_size: Some(5),
                check_values: true,
            };
            let h = b.float(&data.hidden, [N, D]);
            let w = b.float(&data.weight, [D, V]);
            let bias = setup.bias.then(|| b.float(&data.bias, [V]));
            let t = b.int(&data.target, [N]);
            let got = with_loss_path(LossPath::Fused, || match mode {
                Mode::Reduced(reduction) => {
                    values(linear_cross_entropy(h, w, bias, t, reduction, &options))
                }
                Mode::PerRow => values(linear_cross_entropy_no_reduction(h, w, bias, t, &options)),
            });
            let scale = want.value.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
            assert_close(
                &got,
                &want.value,
                2e-5,
                2e-5 * scale,
                &format!("{} {setup:?} {mode:?}", b.label()),
            );
        }
    }
}

#[test]
fn ndarray_plain_forward_equals_definition() {
    plain_forward_equals_definition(&TestBackend::ndarray_f32());
}

#[test]
fn flex_plain_forward_equals_definition() {
    plain_forward_equals_definition(&TestBackend::flex_f32());
}

/// Only the tensors that require a gradient get one; none tracked, the loss still comes.
#[test]
fn gradients_only_for_tracked_inputs() {
    let b = TestBackend::ndarray_f32().autodiff();
    let data = Data::new(N, D, V, -100, 5);
    for path in [LossPath::Fused, LossPath::Composite] {
        with_loss_path(path, || {
            let hidden = b.float(&data.hidden, [N, D]);
            let weight = b.float(&data.weight, [D, V]).require_grad();
            let bias = b.float(&data.bias, [V]);
            let target = b.int(&data.target, [N]);
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
    let b = TestBackend::ndarray_f32().autodiff();
    with_loss_path(LossPath::Fused, || {
        let mean = linear(&data, setup, Mode::Reduced(Reduction::Mean), Some(5), &b);
        assert!(mean.value[0].is_nan());
        for grad in mean.grads.iter().flatten() {
            assert!(grad.iter().all(|&g| g == 0.0), "{grad:?}");
        }
        let sum = linear(&data, setup, Mode::Reduced(Reduction::Sum), Some(5), &b);
        assert_eq!(sum.value, vec![0.0]);
    });
}

/// The gradients of hidden, weight and bias against central differences, in f64, on the fused
/// path, chunk sizes dividing N and not, every reduction, with and without the soft cap and
/// z-loss.
#[test]
fn gradcheck_f64_fused() {
    let b = TestBackend::ndarray_f64().autodiff();
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
                    b.float(&data.hidden, [rows, width]),
                    b.float(&data.weight, [width, classes]),
                    b.float(&data.bias, [1, classes]),
                ];
                let target = b.int(&data.target, [rows]);
                let options = LinearCrossEntropyOptions {
                    class_weight: setup
                        .class_weight
                        .then(|| b.float(&data.class_weight, [classes])),
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
