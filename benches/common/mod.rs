//! What the two benchmark binaries share: the cases (loss × shape), the implementations
//! compared, deterministic inputs, and one forward (+ backward) that ends with a read-back.
//!
//! `benches/losses.rs` times these cases with criterion; `benches/memory.rs` measures their
//! peak memory. Keeping both on this one definition means the memory numbers and the times
//! are of exactly the same work.
#![allow(dead_code)]

use std::fmt;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use burn_xent::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, NllLossOptions, Reduction,
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, nll_loss,
};

/// The helpers of the tests (`tests/common`): the backend matrix's entries, the wgpu probe
/// (why wgpu cannot run here, or `None` when it can), the seeded generator and the
/// dtype-aware tensor constructor.
#[path = "../../tests/common/mod.rs"]
mod shared;
#[allow(unused_imports)] // the memory bench runs on ndarray only
pub use shared::wgpu_unavailable;
use shared::{Stream, TestBackend, float_as};

/// The backends benchmarked, the tests' matrix in f32, each as its autodiff device (Burn 0.22
/// picks the backend by the device): ndarray, Flex, and wgpu (Burn's default: fusion).
pub fn backends() -> [(&'static str, Device); 3] {
    [
        TestBackend::ndarray_f32(),
        TestBackend::flex_f32(),
        TestBackend::wgpu(),
    ]
    .map(|backend| (backend.name, backend.autodiff().device))
}

/// Chooses the shapes: `all` (default), `small` (everything but `4096x32000`), or a comma
/// list of shape labels such as `65536x10,4194304`.
pub const SHAPES_VAR: &str = "BURN_XENT_BENCH_SHAPES";
/// Chooses the backends: a comma list of `ndarray`, `flex` and `wgpu` (default all three).
pub const BACKENDS_VAR: &str = "BURN_XENT_BENCH_BACKENDS";
/// The shapes run on wgpu, same syntax as [`SHAPES_VAR`] (default `small`: the software
/// Vulkan driver this was written on takes minutes per iteration at `4096x32000`).
pub const WGPU_SHAPES_VAR: &str = "BURN_XENT_BENCH_WGPU_SHAPES";

/// The four losses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    CrossEntropy,
    Nll,
    Bce,
    BceWithLogits,
}

impl Loss {
    pub const ALL: [Loss; 4] = [
        Loss::CrossEntropy,
        Loss::Nll,
        Loss::Bce,
        Loss::BceWithLogits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross_entropy",
            Loss::Nll => "nll_loss",
            Loss::Bce => "bce",
            Loss::BceWithLogits => "bce_with_logits",
        }
    }

    /// Whether the loss takes class indices (`[N, C]` with `[N]`) or a float target of the
    /// input's shape.
    pub fn class_indices(self) -> bool {
        matches!(self, Loss::CrossEntropy | Loss::Nll)
    }

    /// The implementations compared on this loss; the first is the default burn-xent call.
    pub fn impls(self) -> &'static [Impl] {
        match self {
            Loss::CrossEntropy | Loss::Bce => &[
                Impl::Xent,
                Impl::XentNoCheck,
                Impl::XentComposite,
                Impl::BurnNn,
                Impl::XentStep,
            ],
            // burn::nn has no NLL loss.
            Loss::Nll => &[
                Impl::Xent,
                Impl::XentNoCheck,
                Impl::XentComposite,
                Impl::XentStep,
            ],
            // burn-xent's BCE with logits reads nothing back: no value check to switch off.
            Loss::BceWithLogits => &[
                Impl::Xent,
                Impl::XentComposite,
                Impl::BurnNn,
                Impl::XentStep,
            ],
        }
    }

    /// The benchmarked shapes of this loss (the issues' lists): for cross-entropy also a
    /// segmentation-shaped batch, logits `[8, 21, 256, 256]` with targets `[8, 256, 256]` of
    /// which every tenth is `ignore_index = 255` ([`SEGMENTATION_IGNORE`]).
    pub fn shapes(self) -> Vec<Vec<usize>> {
        if self == Loss::CrossEntropy {
            vec![
                vec![65536, 10],
                vec![8192, 1000],
                vec![4096, 32000],
                vec![8, 21, 256, 256],
            ]
        } else if self.class_indices() {
            vec![vec![65536, 10], vec![8192, 1000], vec![4096, 32000]]
        } else {
            vec![vec![4096, 1024], vec![4194304]]
        }
    }

    /// Tiny shapes for `cargo test --benches` (criterion's test mode): every code path, no
    /// waiting.
    pub fn test_shapes(self) -> Vec<Vec<usize>> {
        if self == Loss::CrossEntropy {
            vec![vec![128, 10], vec![2, 3, 4, 4]]
        } else if self.class_indices() {
            vec![vec![128, 10]]
        } else {
            vec![vec![64, 16], vec![1024]]
        }
    }

    /// The shapes a run measures: the tiny ones in test mode, else the benchmarked shapes that
    /// [`SHAPES_VAR`] selects.
    pub fn shapes_to_run(self, test_mode: bool) -> Vec<Vec<usize>> {
        if test_mode {
            self.test_shapes()
        } else {
            self.shapes()
                .into_iter()
                .filter(|shape| shape_selected(SHAPES_VAR, "all", shape))
                .collect()
        }
    }
}

/// Who computes the loss.
///
/// Every implementation but [`Impl::XentStep`] gets a clone of the tracked leaf, which the run
/// keeps to read the gradient: the loss sees its input shared, as a loss on a parameter or a
/// reused activation does ("loss alone"). [`Impl::XentStep`] is what a training step does:
/// the loss's input comes out of an operation on the tracked leaf (`x · 1`, the least such
/// operation), so the loss holds the only reference to it and the fused CPU kernels write the
/// gradient over it; the operation and its backward are timed too. (Burn 0.21's runs had a
/// `burn-xent-owned` case that swapped the leaf's storage out of a clone; no step can do that,
/// and Burn 0.22 makes the field private.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// burn-xent's function with its defaults (value checks on).
    Xent,
    /// burn-xent with `check_values(false)`.
    XentNoCheck,
    /// burn-xent with its defaults on the composite path (`LossPath::Composite`): what
    /// burn-xent measured before the fused kernels.
    XentComposite,
    /// The nearest `burn::nn::loss` module.
    BurnNn,
    /// burn-xent with its defaults on `x · 1` of the tracked leaf `x`: the input owned by the
    /// loss, as in a training step (forward + backward only; `tools/bench_torch.py` times
    /// PyTorch's same step).
    XentStep,
}

impl Impl {
    /// Whether this implementation is benchmarked at `shape`: burn-nn has no `ignore_index`
    /// for the segmentation batch.
    pub fn runs(self, shape: &[usize], mode: Mode) -> bool {
        match self {
            Impl::BurnNn => shape.len() <= 2,
            Impl::XentStep => mode == Mode::ForwardBackward,
            _ => true,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Impl::Xent => "burn-xent",
            Impl::XentNoCheck => "burn-xent-nocheck",
            Impl::XentComposite => "burn-xent-composite",
            Impl::BurnNn => "burn-nn",
            Impl::XentStep => "burn-xent-step",
        }
    }

    pub fn parse(name: &str) -> Option<Impl> {
        [
            Impl::Xent,
            Impl::XentNoCheck,
            Impl::XentComposite,
            Impl::BurnNn,
            Impl::XentStep,
        ]
        .into_iter()
        .find(|i| i.name() == name)
    }
}

/// Forward only, or forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    ForwardBackward,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Forward, Mode::ForwardBackward];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::ForwardBackward => "forward_backward",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// `[4096, 32000]` as `4096x32000`.
pub struct ShapeLabel<'a>(pub &'a [usize]);

impl fmt::Display for ShapeLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "{}", parts.join("x"))
    }
}

pub fn shape_label(shape: &[usize]) -> String {
    ShapeLabel(shape).to_string()
}

pub fn parse_shape(label: &str) -> Vec<usize> {
    label
        .split('x')
        .map(|d| d.parse().expect("shape label like 4096x32000"))
        .collect()
}

/// Whether `shape` is selected by the value of `var` (`all`, `small` or a list of labels).
pub fn shape_selected(var: &str, default: &str, shape: &[usize]) -> bool {
    let value = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let label = shape_label(shape);
    value.split(',').map(str::trim).any(|item| match item {
        "all" => true,
        "small" => label != "4096x32000",
        other => other == label,
    })
}

/// The backends selected by [`BACKENDS_VAR`].
pub fn backend_selected(name: &str) -> bool {
    std::env::var(BACKENDS_VAR)
        .unwrap_or_else(|_| "ndarray,flex,wgpu".to_string())
        .split(',')
        .any(|b| b.trim() == name)
}

/// Bytes of one element of the input, the float target and the gradient (f32), and of one
/// class index (i64, the int type of ndarray and of PyTorch).
const F32: u64 = 4;
const I64: u64 = 8;

/// The least memory traffic of a pass (criterion's throughput, and BENCHMARKS.md's floor):
/// the input read once, the target read once and, for forward + backward, the gradient
/// written once. NLL's forward needs only the `N` picked log-probabilities, not the whole
/// input (its gradient is still the input's size).
pub fn floor_bytes(loss: Loss, shape: &[usize], mode: Mode) -> u64 {
    let elements: u64 = shape.iter().map(|&d| d as u64).product();
    let targets = elements / shape.get(1).map_or(1, |&c| c as u64).max(1);
    let (input, target) = match loss {
        Loss::Nll => (targets * F32, targets * I64),
        Loss::CrossEntropy => (elements * F32, targets * I64),
        Loss::Bce | Loss::BceWithLogits => (elements * F32, elements * F32),
    };
    let gradient = match mode {
        Mode::Forward => 0,
        Mode::ForwardBackward => elements * F32,
    };
    input + target + gradient
}

/// The inputs of one case on the host, made once and uploaded to each backend: the same on
/// every run and backend (the tests' seeded [`Stream`]).
pub struct HostInputs {
    pub shape: Vec<usize>,
    /// Logits (CE, BCE with logits), log-probabilities (NLL) or probabilities (BCE).
    pub input: Vec<f32>,
    /// Class indices in `[0, C)` (CE, NLL).
    pub classes: Vec<i64>,
    /// Hard 0/1 labels (BCE, BCE with logits): burn-nn's BCE takes integer labels only, so
    /// both sides get the same hard labels, burn-xent as floats.
    pub labels: Vec<i64>,
}

impl HostInputs {
    pub fn new(loss: Loss, shape: &[usize]) -> Self {
        let elements: usize = shape.iter().product();
        let mut stream = Stream::new(0x5EED ^ elements as u64);
        let mut input: Vec<f32> = (0..elements).map(|_| stream.normal() as f32).collect();
        let mut classes = Vec::new();
        let mut labels = Vec::new();
        match loss {
            Loss::CrossEntropy | Loss::Nll => {
                let c = shape[1];
                classes = stream.classes(elements / c, c);
                if shape.len() > 2 {
                    for t in classes.iter_mut().step_by(10) {
                        *t = SEGMENTATION_IGNORE;
                    }
                }
                if loss == Loss::Nll {
                    for row in input.chunks_mut(c) {
                        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
                        row.iter_mut().for_each(|x| *x -= lse);
                    }
                }
            }
            Loss::Bce | Loss::BceWithLogits => {
                labels = stream.classes(elements, 2);
                if loss == Loss::Bce {
                    input
                        .iter_mut()
                        .for_each(|x| *x = 1.0 / (1.0 + (-*x).exp()));
                }
            }
        }
        Self {
            shape: shape.to_vec(),
            input,
            classes,
            labels,
        }
    }
}

/// The `ignore_index` of the segmentation batch (every tenth target; Pascal VOC's boundary
/// label).
pub const SEGMENTATION_IGNORE: i64 = 255;

/// One case's inputs on a backend. They are not tracked; each forward + backward run makes a
/// fresh leaf with `require_grad`, as a training step's logits would be (see [`leaf`]).
/// Cloning shares every buffer.
#[derive(Clone)]
pub enum Inputs {
    Class {
        input: Tensor<2>,
        target: Tensor<1, Int>,
    },
    /// The segmentation batch: `[N, C, H, W]` logits, `[N, H, W]` targets.
    Segmentation {
        input: Tensor<4>,
        target: Tensor<3, Int>,
    },
    Binary2 {
        input: Tensor<2>,
        labels: Tensor<2>,
        int_labels: Tensor<2, Int>,
    },
    Binary1 {
        input: Tensor<1>,
        labels: Tensor<1>,
        int_labels: Tensor<1, Int>,
    },
}

impl Inputs {
    /// Uploads `host` for `loss` to `device` (an autodiff device), floats in f32; the binary
    /// losses get both float labels (burn-xent) and integer ones (burn-nn).
    pub fn upload(host: &HostInputs, loss: Loss, device: &Device) -> Self {
        let labels_f32 = || host.labels.iter().map(|&l| l as f32).collect::<Vec<f32>>();
        let int = |values: &[i64]| TensorData::new(values.to_vec(), host.shape.clone());
        let inputs = if loss.class_indices() && host.shape.len() == 4 {
            let s = &host.shape;
            Inputs::Segmentation {
                input: on_device(host.input.clone(), s, device),
                target: Tensor::from_data(
                    TensorData::new(host.classes.clone(), [s[0], s[2], s[3]]),
                    device,
                ),
            }
        } else if loss.class_indices() {
            Inputs::Class {
                input: on_device(host.input.clone(), &host.shape, device),
                target: Tensor::from_data(
                    TensorData::new(host.classes.clone(), [host.shape[0]]),
                    device,
                ),
            }
        } else if host.shape.len() == 2 {
            Inputs::Binary2 {
                input: on_device(host.input.clone(), &host.shape, device),
                labels: on_device(labels_f32(), &host.shape, device),
                int_labels: Tensor::from_data(int(&host.labels), device),
            }
        } else {
            Inputs::Binary1 {
                input: on_device(host.input.clone(), &host.shape, device),
                labels: on_device(labels_f32(), &host.shape, device),
                int_labels: Tensor::from_data(int(&host.labels), device),
            }
        };
        device.sync().expect("the upload finishes");
        inputs
    }

    /// One forward (+ backward) of `imp` on these inputs, ending with a read from the device
    /// that waits for all of it: the loss value (forward, on untracked inputs) or one element
    /// of the input's gradient (forward + backward). Returns what was read.
    pub fn run(&self, loss: Loss, imp: Impl, mode: Mode) -> f32 {
        match imp {
            Impl::XentComposite => {
                burn_xent::with_loss_path(burn_xent::LossPath::Composite, || {
                    self.run(loss, Impl::Xent, mode)
                })
            }
            _ => self.clone().compute(loss, imp, mode),
        }
    }

    /// The run: the loss gets a clone of the leaf (or, for [`Impl::XentStep`], `leaf · 1`),
    /// and the run keeps the leaf to read its gradient.
    fn compute(self, loss: Loss, imp: Impl, mode: Mode) -> f32 {
        let step = imp == Impl::XentStep;
        let imp = if step { Impl::Xent } else { imp };
        match self {
            Inputs::Class { input, target } => run_on(input, mode, step, |x| match (loss, imp) {
                (Loss::CrossEntropy, Impl::Xent | Impl::XentNoCheck) => {
                    let options = CrossEntropyOptions::new().with_check_values(imp == Impl::Xent);
                    cross_entropy(x, target, Reduction::Mean, &options)
                }
                (Loss::CrossEntropy, Impl::BurnNn) => burn::nn::loss::CrossEntropyLossConfig::new()
                    .init(&x.device())
                    .forward(x, target),
                (Loss::Nll, Impl::Xent | Impl::XentNoCheck) => {
                    let options = NllLossOptions::new().with_check_values(imp == Impl::Xent);
                    nll_loss(x, target, Reduction::Mean, &options)
                }
                other => panic!("no benchmark for {other:?}"),
            }),
            Inputs::Segmentation { input, target } => run_on(input, mode, step, |x| {
                let options = CrossEntropyOptions::new()
                    .with_ignore_index(SEGMENTATION_IGNORE)
                    .with_check_values(imp != Impl::XentNoCheck);
                match imp {
                    Impl::Xent | Impl::XentNoCheck => {
                        cross_entropy(x, target, Reduction::Mean, &options)
                    }
                    other => panic!("no segmentation benchmark for {other:?}"),
                }
            }),
            Inputs::Binary2 {
                input,
                labels,
                int_labels,
            } => run_on(input, mode, step, |x| {
                binary(x, labels, int_labels, loss, imp)
            }),
            Inputs::Binary1 {
                input,
                labels,
                int_labels,
            } => run_on(input, mode, step, |x| {
                binary(x, labels, int_labels, loss, imp)
            }),
        }
    }
}

/// Runs `loss` on the input as [`Inputs::compute`] says (on `leaf · 1` for a `step`) and
/// reads one value back.
fn run_on<const D: usize>(
    input: Tensor<D>,
    mode: Mode,
    step: bool,
    loss: impl FnOnce(Tensor<D>) -> Tensor<1>,
) -> f32 {
    let x = leaf(input, mode);
    let value = loss(if step {
        x.clone().mul_scalar(1.0)
    } else {
        x.clone()
    });
    finish(x, value, mode)
}

/// Host floats of `shape` as an f32 tensor on `device`.
fn on_device<const D: usize>(values: Vec<f32>, shape: &[usize], device: &Device) -> Tensor<D> {
    float_as(values, shape.to_vec(), device, DType::F32)
}

/// The binary losses on `x`.
fn binary<const D: usize>(
    x: Tensor<D>,
    labels: Tensor<D>,
    int_labels: Tensor<D, Int>,
    loss: Loss,
    imp: Impl,
) -> Tensor<1> {
    match (loss, imp) {
        (Loss::Bce, Impl::Xent | Impl::XentNoCheck) => {
            let options = BceOptions::new().with_check_values(imp == Impl::Xent);
            binary_cross_entropy(x, labels, Reduction::Mean, &options)
        }
        (Loss::BceWithLogits, Impl::Xent) => binary_cross_entropy_with_logits(
            x,
            labels,
            Reduction::Mean,
            &BceWithLogitsOptions::new(),
        ),
        (Loss::Bce | Loss::BceWithLogits, Impl::BurnNn) => {
            burn::nn::loss::BinaryCrossEntropyLossConfig::new()
                .with_logits(loss == Loss::BceWithLogits)
                .init(&x.device())
                .forward(x, int_labels)
        }
        other => panic!("no benchmark for {other:?}"),
    }
}

/// The input of one run: a tracked leaf for forward + backward; for forward only, the
/// untracked input (no graph, as in evaluation). Burn 0.21's autodiff keeps the saved state
/// of a tracked forward until the next `backward()` call, so a loop of tracked forwards
/// without backward grows by about one input per iteration (it ran out of 24 GiB at
/// `4096x32000`).
fn leaf<const D: usize>(input: Tensor<D>, mode: Mode) -> Tensor<D> {
    match mode {
        Mode::Forward => input,
        Mode::ForwardBackward => input.require_grad(),
    }
}

/// Ends a run with the read-back that forces the (lazy) work to finish.
fn finish<const D: usize>(x: Tensor<D>, loss: Tensor<1>, mode: Mode) -> f32 {
    match mode {
        Mode::Forward => loss.into_scalar::<f32>(),
        Mode::ForwardBackward => {
            let grads = loss.backward();
            let mut gradient = x.grad(&grads).expect("the input has a gradient");
            // One element, by narrowing every dimension: a view. (A reshape to 1-D would copy
            // the whole gradient on burn-ndarray 0.21, and time that copy too.)
            for dim in 0..D {
                gradient = gradient.narrow(dim, 0, 1);
            }
            gradient
                .into_data()
                .iter::<f32>()
                .next()
                .expect("one element")
        }
    }
}
