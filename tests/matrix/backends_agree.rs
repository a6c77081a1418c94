//! Every backend of the matrix gives the numbers of an independent reference, the f64
//! composite path on ndarray (the autodiff ndarray device, f64 tensors, under
//! `LossPath::Composite`), for every
//! loss, option and reduction: loss values, the gradient of the input and, for float targets
//! (BCE, BCE with logits, probability targets), the gradient of the target. The comparison is
//! `burn_xent::backend_check`, so this test also exercises the tool that users get.
//!
//! The backend under test runs on the path of the matrix test (fused or composite), in its
//! dtype; inputs are f32 values, so it and the f64 reference see the same numbers, and the
//! default tolerances apply (f32's: rtol 1e-4, atol 1e-5; f64 against f64: 1e-7). Shapes are those of `support` (wgpu compiles kernels
//! per shape).

use std::fmt;

use burn::tensor::{DType, Tensor, TensorData};
use burn_xent::availability::required_by_env;
use burn_xent::backend_check::{
    BackendCheck, BackendCheckConfig, BackendStatus, Computation, HostInputs, Inputs, Outcome,
    Outputs,
};
use burn_xent::*;

use crate::common::{REQUIRE_WGPU, Stream, TestBackend, normalised_over_classes};
use crate::support::{C, CLASS_WEIGHT, K_SHAPE, N};

/// The loss and the input layout of a case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    /// `binary_cross_entropy` on `[N, C]` probabilities and soft targets.
    Bce,
    /// `binary_cross_entropy_with_logits` on `[N, C]` logits and soft targets.
    BceWithLogits,
    /// `cross_entropy`, `[N, C]` logits, `[N]` classes.
    CrossEntropy,
    /// `cross_entropy`, `[2, C, 2]` logits, `[2, 2]` classes.
    CrossEntropyKDim,
    /// `cross_entropy`, unbatched `[C]` logits, `[1]` class.
    CrossEntropyUnbatched,
    /// `cross_entropy_with_probs`, `[N, C]` logits and class probabilities.
    CrossEntropyProbs,
    /// `nll_loss`, `[N, C]` log-probabilities (any values), `[N]` classes.
    Nll,
    /// `nll_loss`, `[2, C, 2]` and `[2, 2]` classes.
    NllKDim,
}

/// One loss with its options and reduction (`None`: PyTorch's `reduction='none'`).
#[derive(Clone, Copy, Debug)]
struct Case {
    loss: Loss,
    /// The class weight `[C]` (BCE and BCE with logits: a weight broadcast over `[N, C]`).
    weight: bool,
    /// BCE with logits: `pos_weight` `[C]`.
    pos_weight: bool,
    ignore_index: Option<i64>,
    label_smoothing: f64,
    reduction: Option<Reduction>,
    /// An empty batch (`[0, C]` input): mean NaN, sum 0, no gradient on either side.
    empty: bool,
}

impl Case {
    fn new(loss: Loss) -> Self {
        Self {
            loss,
            weight: false,
            pos_weight: false,
            ignore_index: None,
            label_smoothing: 0.0,
            reduction: None,
            empty: false,
        }
    }

    fn weight(self) -> Self {
        Self {
            weight: true,
            ..self
        }
    }

    fn pos_weight(self) -> Self {
        Self {
            pos_weight: true,
            ..self
        }
    }

    fn ignore(self, index: i64) -> Self {
        Self {
            ignore_index: Some(index),
            ..self
        }
    }

    fn smoothing(self, label_smoothing: f64) -> Self {
        Self {
            label_smoothing,
            ..self
        }
    }

    fn empty(self) -> Self {
        Self {
            empty: true,
            ..self
        }
    }

    /// The host inputs: `input` and a float `target` (gradients compared) or int `target`,
    /// and the constant weights.
    fn inputs(&self) -> HostInputs {
        let rows = if self.empty { 0 } else { N };
        let logits = Stream::new(1).normals(rows * C, 1.5);
        let k_dim = Stream::new(5).normals(K_SHAPE.iter().product(), 1.5);
        let classes = |values: Vec<i64>, shape: &[usize]| TensorData::new(values, shape.to_vec());
        let [k0, _, k2] = K_SHAPE;
        let (input, target) = match self.loss {
            Loss::Bce => (
                f32_data(Stream::new(2).uniforms(rows * C, 0.05, 0.95), &[rows, C]),
                Some(f32_data(
                    Stream::new(3).uniforms(rows * C, 0.0, 1.0),
                    &[rows, C],
                )),
            ),
            Loss::BceWithLogits => (
                f32_data(logits, &[rows, C]),
                Some(f32_data(
                    Stream::new(3).uniforms(rows * C, 0.0, 1.0),
                    &[rows, C],
                )),
            ),
            Loss::CrossEntropyProbs => (
                f32_data(logits, &[rows, C]),
                Some(f32_data(class_probabilities(rows), &[rows, C])),
            ),
            Loss::CrossEntropy | Loss::Nll => (f32_data(logits, &[rows, C]), None),
            Loss::CrossEntropyUnbatched => (f32_data(logits[..C].to_vec(), &[C]), None),
            Loss::CrossEntropyKDim | Loss::NllKDim => (f32_data(k_dim, &K_SHAPE), None),
        };
        let mut inputs = HostInputs::new().float("input", input);
        inputs = match target {
            Some(target) => inputs.float("target", target),
            None => inputs.int(
                "target",
                match self.loss {
                    Loss::CrossEntropyKDim | Loss::NllKDim => classes(vec![2, 0, 1, 1], &[k0, k2]),
                    Loss::CrossEntropyUnbatched => classes(vec![2], &[1]),
                    _ => classes([0, 2, 1, 1][..rows].to_vec(), &[rows]),
                },
            ),
        };
        let weight = f32_data(CLASS_WEIGHT.iter().map(|&w| w as f64).collect(), &[C]);
        if self.weight {
            inputs = inputs.constant("weight", weight);
        }
        if self.pos_weight {
            let pos: Vec<f64> = CLASS_WEIGHT.iter().rev().map(|&w| 2.0 * w as f64).collect();
            inputs = inputs.constant("pos_weight", f32_data(pos, &[C]));
        }
        inputs
    }

    fn cross_entropy_options(&self, x: &Inputs) -> CrossEntropyOptions {
        let mut options = CrossEntropyOptions::new().with_label_smoothing(self.label_smoothing);
        if self.weight {
            options = options.with_weight(x.float("weight"));
        }
        if let Some(index) = self.ignore_index {
            options = options.with_ignore_index(index);
        }
        options
    }

    fn nll_options(&self, x: &Inputs) -> NllLossOptions {
        let mut options = NllLossOptions::new();
        if self.weight {
            options = options.with_weight(x.float("weight"));
        }
        if let Some(index) = self.ignore_index {
            options = options.with_ignore_index(index);
        }
        options
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.loss)?;
        if self.empty {
            write!(f, " empty batch")?;
        }
        if self.weight {
            write!(f, " weight")?;
        }
        if self.pos_weight {
            write!(f, " pos_weight")?;
        }
        if let Some(index) = self.ignore_index {
            write!(f, " ignore_index {index}")?;
        }
        if self.label_smoothing > 0.0 {
            write!(f, " label_smoothing {}", self.label_smoothing)?;
        }
        match self.reduction {
            Some(reduction) => write!(f, " {reduction:?}"),
            None => write!(f, " none"),
        }
    }
}

/// The case's loss as the output `"loss"`.
fn loss<const D: usize>(tensor: Tensor<D>) -> Outputs {
    Outputs::new().float("loss", tensor)
}

impl Computation for Case {
    fn run(&self, x: &Inputs) -> Outputs {
        let reduction = self.reduction;
        match self.loss {
            Loss::Bce => {
                let mut options = BceOptions::new();
                if self.weight {
                    options = options.with_weight(x.float::<1>("weight"));
                }
                let (p, t) = (x.float::<2>("input"), x.float::<2>("target"));
                match reduction {
                    Some(r) => loss(binary_cross_entropy(p, t, r, &options)),
                    None => loss(binary_cross_entropy_no_reduction(p, t, &options)),
                }
            }
            Loss::BceWithLogits => {
                let mut options = BceWithLogitsOptions::new();
                if self.weight {
                    options = options.with_weight(x.float::<1>("weight"));
                }
                if self.pos_weight {
                    options = options.with_pos_weight(x.float::<1>("pos_weight"));
                }
                let (z, t) = (x.float::<2>("input"), x.float::<2>("target"));
                match reduction {
                    Some(r) => loss(binary_cross_entropy_with_logits(z, t, r, &options)),
                    None => loss(binary_cross_entropy_with_logits_no_reduction(
                        z, t, &options,
                    )),
                }
            }
            Loss::CrossEntropy => {
                let options = self.cross_entropy_options(x);
                let (z, t) = (x.float::<2>("input"), x.int::<1>("target"));
                match reduction {
                    Some(r) => loss(cross_entropy(z, t, r, &options)),
                    None => loss(cross_entropy_no_reduction(z, t, &options)),
                }
            }
            Loss::CrossEntropyKDim => {
                let options = self.cross_entropy_options(x);
                let (z, t) = (x.float::<3>("input"), x.int::<2>("target"));
                match reduction {
                    Some(r) => loss(cross_entropy(z, t, r, &options)),
                    None => loss(cross_entropy_no_reduction(z, t, &options)),
                }
            }
            Loss::CrossEntropyUnbatched => {
                let options = self.cross_entropy_options(x);
                let (z, t) = (x.float::<1>("input"), x.int::<1>("target"));
                match reduction {
                    Some(r) => loss(cross_entropy(z, t, r, &options)),
                    None => loss(cross_entropy_no_reduction(z, t, &options)),
                }
            }
            Loss::CrossEntropyProbs => {
                let options = self.cross_entropy_options(x);
                let (z, q) = (x.float::<2>("input"), x.float::<2>("target"));
                match reduction {
                    Some(r) => loss(cross_entropy_with_probs(z, q, r, &options)),
                    None => loss(cross_entropy_with_probs_no_reduction::<2, 1>(
                        z, q, &options,
                    )),
                }
            }
            Loss::Nll => {
                let options = self.nll_options(x);
                let (z, t) = (x.float::<2>("input"), x.int::<1>("target"));
                match reduction {
                    Some(r) => loss(nll_loss(z, t, r, &options)),
                    None => loss(nll_loss_no_reduction(z, t, &options)),
                }
            }
            Loss::NllKDim => {
                let options = self.nll_options(x);
                let (z, t) = (x.float::<3>("input"), x.int::<2>("target"));
                match reduction {
                    Some(r) => loss(nll_loss(z, t, r, &options)),
                    None => loss(nll_loss_no_reduction(z, t, &options)),
                }
            }
        }
    }
}

/// f32 host data (so f32 backends and the f64 reference read the same numbers).
fn f32_data(values: Vec<f64>, shape: &[usize]) -> TensorData {
    TensorData::new(values, shape.to_vec()).convert_dtype(DType::F32)
}

/// `[rows, C]` class probabilities (rows sum to 1), as `support::class_probabilities`.
fn class_probabilities(rows: usize) -> Vec<f64> {
    let raw = Stream::new(4).uniforms(rows * C, 0.1, 1.0);
    normalised_over_classes(&raw, &[rows, C])
}

/// Every loss with each of its options alone and together, each in every reduction, and an
/// empty batch.
fn cases() -> Vec<Case> {
    use Loss::*;
    let losses = [
        Case::new(Bce),
        Case::new(Bce).weight(),
        Case::new(BceWithLogits),
        Case::new(BceWithLogits).pos_weight(),
        Case::new(BceWithLogits).weight().pos_weight(),
        Case::new(CrossEntropy),
        Case::new(CrossEntropy).weight(),
        Case::new(CrossEntropy).ignore(1),
        Case::new(CrossEntropy).smoothing(0.1),
        Case::new(CrossEntropy).weight().ignore(1).smoothing(0.1),
        Case::new(CrossEntropyKDim)
            .weight()
            .ignore(1)
            .smoothing(0.1),
        Case::new(CrossEntropyUnbatched).smoothing(0.1),
        Case::new(CrossEntropyProbs),
        Case::new(CrossEntropyProbs).weight().smoothing(0.1),
        Case::new(Nll),
        Case::new(Nll).weight().ignore(2),
        Case::new(NllKDim).weight(),
        Case::new(CrossEntropy).empty(),
        Case::new(BceWithLogits).empty(),
    ];
    losses
        .into_iter()
        .flat_map(|case| {
            [None, Some(Reduction::Mean), Some(Reduction::Sum)]
                .map(|reduction| Case { reduction, ..case })
        })
        .collect()
}

fn backend_agrees_with_the_f64_reference(b: &TestBackend) {
    let config = BackendCheckConfig::new().with_required(required_by_env(REQUIRE_WGPU));
    let reference = TestBackend::ndarray_f64().autodiff();
    let mut failures = Vec::new();
    let (mut compared, mut gradients) = (0, 0);
    for case in cases() {
        let inputs = case.inputs();
        let check = burn_xent::with_loss_path(LossPath::Composite, || {
            BackendCheck::new(&case, &inputs, &reference.device, reference.dtype, &config)
        });
        // The matrix's path (fused or composite) is the thread's path here.
        let report = check.against(&b.device, b.dtype).finish();
        let backend = &report.backends[0];
        assert_eq!(backend.status, BackendStatus::Ran, "{case}: {report}");
        // Nothing compared by accident: every case has its loss and the input's gradient, which
        // only the empty batch lacks on both sides.
        let input = backend.gradient("input").expect("the input's gradient");
        if case.empty {
            assert_eq!(input.outcome, Outcome::AbsentOnBoth, "{case}: {report}");
        } else {
            assert_eq!(input.outcome, Outcome::Compared, "{case}: {report}");
            gradients += backend.tensors.len() - 1;
        }
        compared += backend.compared();
        if !report.passed() {
            failures.push(format!("{case}: {report}"));
        }
    }
    println!(
        "{} cases, {compared} elements compared ({gradients} gradients), {} failed",
        cases().len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree with the f64 composite reference:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

crate::matrix_tests!(autodiff: backend_agrees_with_the_f64_reference);
