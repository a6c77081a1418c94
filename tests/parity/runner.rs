//! Runs one fixture case through burn-xent on an autodiff backend: the loss, then the input
//! gradient of `sum(loss * upstream)`.
//!
//! Fixture ranks are runtime values and the crate's functions take const-generic ranks, so
//! each case is dispatched on its input's rank (1 to [`MAX_RANK`]) to a monomorphic call. The
//! dispatch stays linear in the rank, never input rank x target rank: every other rank
//! follows from the input's (a binary loss's target and a probability target have the
//! input's rank; a class-index target has one less, or rank 1 for an unbatched input; the
//! unreduced output of a probability target has one less), and a broadcast weight's rank is
//! dispatched on its own. A tensor of rank above [`MAX_RANK`] is a [`Run::HarnessError`].
//!
//! PyTorch's 0-dimensional tensors are Burn's shape `[1]`: a scalar target, upstream or
//! weight is loaded as `[1]`, and a loss of shape `[]` is compared with the crate's `[1]`.
//!
//! Float tensors are created in the case's dtype with the common `float_as`: Burn 0.22 chooses
//! f64 at creation (`Tensor::from_data(data, &device)` gives the device's default float dtype,
//! f32).
//!
//! On an autodiff device the input is a gradient leaf and its gradient is read; on a plain
//! device the loss alone is computed (the outcome says the gradient was not asked for).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use burn_xent::{
    BceOptions, BceWithLogitsOptions, BroadcastWeight, CrossEntropyOptions, NllLossOptions,
    binary_cross_entropy, binary_cross_entropy_no_reduction, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_no_reduction, cross_entropy, cross_entropy_no_reduction,
    cross_entropy_with_probs, cross_entropy_with_probs_no_reduction, nll_loss,
    nll_loss_no_reduction,
};

use super::fixture::{Case, FloatTensor, IndexTensor, Loss, Reduction, Target};
use crate::common::{float_as, panic_message, values};

/// The highest tensor rank the harness runs (inputs, targets, weights, `pos_weight`,
/// upstream), the format's limit (`docs/fixture-format.md`).
pub const MAX_RANK: usize = 6;

// `with_rank!` lists the ranks 1 to 6 literally; keep the two in step.
const _: () = assert!(MAX_RANK == 6, "with_rank! dispatches ranks 1 to 6");

/// What the crate computed for a case.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The loss's shape as Burn gives it (`[1]` for a reduced loss).
    pub loss_shape: Vec<usize>,
    /// The loss's values, as f64.
    pub loss: Vec<f64>,
    /// The input gradient's shape (the input's).
    pub grad_shape: Vec<usize>,
    /// The input gradient's values, as f64.
    pub grad: Vec<f64>,
    /// Burn returned no gradient for the input (taken as zeros of the input's shape).
    pub grad_missing: bool,
    /// The gradient was asked for (an autodiff device); on a plain device `grad` is empty and
    /// not compared.
    pub tracked: bool,
    /// The dtype the loss was computed in.
    pub loss_dtype: DType,
    /// The dtype the gradient was computed in; `None` when there was none.
    pub grad_dtype: Option<DType>,
    /// The float target's gradient (shape `grad_shape`), where the case expects one and the
    /// device is an autodiff one; no gradient from Burn reads as zeros.
    pub grad_target: Option<Vec<f64>>,
}

/// How a case ended.
#[derive(Clone, Debug)]
pub enum Run {
    /// The crate returned a loss and a gradient.
    Ran(Outcome),
    /// The crate panicked (refused the input); the panic message.
    Panicked(String),
    /// The call cannot be written with the crate's types (e.g. target and input of different
    /// ranks where the API takes one rank for both); the reason. A refusal for an
    /// `expect_error` case, a failure otherwise.
    Inexpressible(String),
    /// The harness could not run the case (a rank above [`MAX_RANK`], a class-index target
    /// whose rank PyTorch never accepts, a bad upstream shape, a panic while building the
    /// inputs); the reason. Always a failure.
    HarnessError(String),
}

thread_local! {
    /// Set while a panic is expected on this thread: the panic hook stays quiet.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that is silent on threads inside an expected
/// panic and prints as before everywhere else.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `Err(message)`; the panic is not printed when `quiet`.
fn guard<R>(quiet: bool, f: impl FnOnce() -> R) -> Result<R, String> {
    install_quiet_hook();
    QUIET.with(|q| q.set(quiet));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    outcome.map_err(|panic| {
        panic_message(&*panic).unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// Dispatches a runtime rank to a const generic: `with_rank!(r, D => expr)` evaluates `expr`
/// with `const D: usize = r` for `r` in `1..=MAX_RANK`; any other rank is a
/// [`Run::HarnessError`]. One arm per rank, so a call site costs `MAX_RANK` instantiations.
macro_rules! with_rank {
    ($rank:expr, $d:ident => $body:expr) => {
        with_rank!(@arms $rank, $d => $body; 1 2 3 4 5 6)
    };
    (@arms $rank:expr, $d:ident => $body:expr; $($r:literal)*) => {
        match $rank {
            $($r => {
                const $d: usize = $r;
                $body
            })*
            rank => Run::HarnessError(unsupported_rank("input", rank)),
        }
    };
}

/// The rank one less than `rank`, but at least 1: a class-index target's rank (and a
/// probability target's unreduced output rank) for an input of rank `rank`, as loaded
/// (an unbatched input `[C]` has a scalar target `[]`, loaded as `[1]`).
const fn minus_class_dim(rank: usize) -> usize {
    if rank > 1 { rank - 1 } else { 1 }
}

fn unsupported_rank(what: &str, rank: usize) -> String {
    format!(
        "{what} has rank {rank}: not supported by the parity harness, which runs ranks 0 to \
         {MAX_RANK} (docs/fixture-format.md)"
    )
}

/// The first tensor of `case` whose rank is above [`MAX_RANK`], as a harness error.
fn check_ranks(case: &Case) -> Result<(), String> {
    let target_shape = match &case.target {
        Target::Index(target) => &target.shape,
        Target::Float(target) => &target.shape,
    };
    let tensors = [
        ("input", Some(&case.input.shape)),
        ("target", Some(target_shape)),
        ("weight", case.weight.as_ref().map(|w| &w.shape)),
        ("pos_weight", case.pos_weight.as_ref().map(|w| &w.shape)),
        ("upstream", case.upstream.as_ref().map(|u| &u.shape)),
    ];
    match tensors
        .into_iter()
        .find_map(|(what, shape)| shape.filter(|s| s.len() > MAX_RANK).map(|s| (what, s)))
    {
        Some((what, shape)) => Err(unsupported_rank(what, shape.len())),
        None => Ok(()),
    }
}

/// The rank a shape is loaded with: PyTorch's scalar `[]` becomes `[1]`.
fn loaded_rank(shape: &[usize]) -> usize {
    shape.len().max(1)
}

/// `shape` as loaded: `[]` becomes `[1]`.
pub fn loaded_shape(shape: &[usize]) -> Vec<usize> {
    if shape.is_empty() {
        vec![1]
    } else {
        shape.to_vec()
    }
}

/// Runs `case` on `device` (plain or autodiff), its float tensors created in `dtype`.
pub fn run_case(case: &Case, dtype: DType, device: &Device) -> Run {
    if let Err(reason) = check_ranks(case) {
        return Run::HarnessError(reason);
    }
    let device = &Place { device, dtype };
    match (case.loss, &case.target) {
        (Loss::Bce | Loss::BceWithLogits, Target::Float(target)) => {
            let rank = loaded_rank(&case.input.shape);
            if loaded_rank(&target.shape) != rank {
                return Run::Inexpressible(format!(
                    "target has rank {} and input rank {}; the API takes one rank for both",
                    target.shape.len(),
                    case.input.shape.len()
                ));
            }
            with_rank!(rank, D => binary::<D>(case, target, device))
        }
        (Loss::CrossEntropy | Loss::Nll, target) => {
            if case.input.shape.is_empty() {
                return Run::Inexpressible(
                    "a 0-dimensional input has no class dimension".to_string(),
                );
            }
            if let Some(weight) = &case.weight
                && weight.shape.len() != 1
            {
                return Run::Inexpressible(format!(
                    "weight has rank {}; the API takes one weight per class, a rank-1 tensor",
                    weight.shape.len()
                ));
            }
            let rank = case.input.shape.len();
            match target {
                Target::Index(target) => {
                    // PyTorch accepts no other target rank (`[C]` takes `[]`, `[N, C, …]`
                    // takes `[N, …]`), so no valid case has one; running the others would
                    // square the dispatch (input rank x target rank).
                    if loaded_rank(&target.shape) != minus_class_dim(rank) {
                        return Run::HarnessError(format!(
                            "class-index target has rank {} and input rank {rank}: the parity \
                             harness runs index targets of rank {} only (input rank - 1, or \
                             0 for an unbatched input), the ranks PyTorch accepts",
                            target.shape.len(),
                            rank - 1
                        ));
                    }
                    with_rank!(rank, D => {
                        const DT: usize = minus_class_dim(D);
                        class_indices::<D, DT>(case, target, device)
                    })
                }
                Target::Float(target) => {
                    if target.shape.len() != rank {
                        return Run::Inexpressible(format!(
                            "probability target has rank {} and input rank {rank}; the API \
                             takes one rank for both",
                            target.shape.len()
                        ));
                    }
                    with_rank!(rank, D => {
                        const DO: usize = minus_class_dim(D);
                        class_probs::<D, DO>(case, target, device)
                    })
                }
            }
        }
        (loss, Target::Index(_)) => Run::HarnessError(format!("{loss:?} with class-index targets")),
    }
}

/// Where a case's tensors are created: the device, and the float dtype.
struct Place<'a> {
    device: &'a Device,
    dtype: DType,
}

/// A float tensor of rank `D` from fixture data, in the case's float dtype.
fn float<const D: usize>(tensor: &FloatTensor, device: &Place) -> Tensor<D> {
    let shape = loaded_shape(&tensor.shape);
    float_as(tensor.data.clone(), shape, device.device, device.dtype)
}

/// The input as a gradient leaf on an autodiff device; as it is on a plain one.
fn leaf<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    if input.is_autodiff() {
        input.require_grad()
    } else {
        input
    }
}

/// The float target as a gradient leaf where the case expects its gradient (on an autodiff
/// device); as it is otherwise.
fn target_leaf<const D: usize>(case: &Case, target: Tensor<D>) -> Tensor<D> {
    if wants_target_grad(case) {
        leaf(target)
    } else {
        target
    }
}

fn wants_target_grad(case: &Case) -> bool {
    case.expected
        .as_ref()
        .is_some_and(|e| e.grad_target.is_some())
}

/// The tensors whose gradients a case reads: the input, and the float target where the case
/// expects its gradient.
struct Leaves<const D: usize> {
    input: Tensor<D>,
    target: Option<Tensor<D>>,
}

impl<const D: usize> Leaves<D> {
    fn input(input: Tensor<D>) -> Self {
        Self {
            input,
            target: None,
        }
    }

    fn new(input: &Tensor<D>, target: &Tensor<D>, case: &Case) -> Self {
        Self {
            input: input.clone(),
            target: wants_target_grad(case).then(|| target.clone()),
        }
    }
}

/// An int tensor of rank `D` from fixture data, in the device's int dtype.
fn int<const D: usize>(tensor: &IndexTensor, device: &Place) -> Tensor<D, Int> {
    let shape = loaded_shape(&tensor.shape);
    Tensor::from_data(TensorData::new(tensor.data.clone(), shape), device.device)
}

/// A broadcast weight (`weight` or `pos_weight`) of the fixture's rank, 1 to [`MAX_RANK`].
fn broadcast_weight(tensor: &FloatTensor, device: &Place) -> Result<BroadcastWeight, String> {
    Ok(match loaded_rank(&tensor.shape) {
        1 => BroadcastWeight::new(float::<1>(tensor, device)),
        2 => BroadcastWeight::new(float::<2>(tensor, device)),
        3 => BroadcastWeight::new(float::<3>(tensor, device)),
        4 => BroadcastWeight::new(float::<4>(tensor, device)),
        5 => BroadcastWeight::new(float::<5>(tensor, device)),
        6 => BroadcastWeight::new(float::<6>(tensor, device)),
        rank => return Err(unsupported_rank("a broadcast weight", rank)),
    })
}

/// Builds the inputs with `build` (a panic or an error there is the harness's), then runs
/// the loss with `call` (a panic there is the crate's refusal).
fn run<T>(
    case: &Case,
    build: impl FnOnce() -> Result<T, String>,
    call: impl FnOnce(T) -> Result<Outcome, String>,
) -> Run {
    let built = match guard(false, build) {
        Ok(Ok(built)) => built,
        Ok(Err(reason)) => return Run::HarnessError(reason),
        Err(panic) => return Run::HarnessError(format!("panic while loading the inputs: {panic}")),
    };
    match guard(case.expect_error, || call(built)) {
        Ok(Ok(outcome)) => Run::Ran(outcome),
        Ok(Err(reason)) => Run::HarnessError(reason),
        Err(panic) => Run::Panicked(panic),
    }
}

fn binary<const D: usize>(case: &Case, target: &FloatTensor, device: &Place) -> Run {
    let build = || {
        let input = leaf(float::<D>(&case.input, device));
        let target = target_leaf(case, float::<D>(target, device));
        let weight = case
            .weight
            .as_ref()
            .map(|w| broadcast_weight(w, device))
            .transpose()?;
        let pos_weight = case
            .pos_weight
            .as_ref()
            .map(|w| broadcast_weight(w, device))
            .transpose()?;
        Ok((input, target, weight, pos_weight))
    };
    run(case, build, |(input, target, weight, pos_weight)| {
        let upstream = case.upstream.as_ref();
        if case.loss == Loss::BceWithLogits {
            let mut options = BceWithLogitsOptions::new();
            if let Some(weight) = weight {
                options = options.with_weight(weight);
            }
            if let Some(pos_weight) = pos_weight {
                options = options.with_pos_weight(pos_weight);
            }
            match reduced(case.reduction) {
                Some(reduction) => {
                    let leaves = Leaves::new(&input, &target, case);
                    let loss = binary_cross_entropy_with_logits(input, target, reduction, &options);
                    finish(leaves, loss, upstream)
                }
                None => {
                    let leaves = Leaves::new(&input, &target, case);
                    let loss =
                        binary_cross_entropy_with_logits_no_reduction(input, target, &options);
                    finish(leaves, loss, upstream)
                }
            }
        } else {
            let mut options = BceOptions::new();
            if let Some(weight) = weight {
                options = options.with_weight(weight);
            }
            match reduced(case.reduction) {
                Some(reduction) => {
                    let leaves = Leaves::new(&input, &target, case);
                    let loss = binary_cross_entropy(input, target, reduction, &options);
                    finish(leaves, loss, upstream)
                }
                None => {
                    let leaves = Leaves::new(&input, &target, case);
                    let loss = binary_cross_entropy_no_reduction(input, target, &options);
                    finish(leaves, loss, upstream)
                }
            }
        }
    })
}

fn class_indices<const D: usize, const DT: usize>(
    case: &Case,
    target: &IndexTensor,
    device: &Place,
) -> Run {
    let build = || {
        let input = leaf(float::<D>(&case.input, device));
        let target = int::<DT>(target, device);
        let weight = case.weight.as_ref().map(|w| float::<1>(w, device));
        Ok((input, target, weight))
    };
    run(case, build, |(input, target, weight)| {
        let upstream = case.upstream.as_ref();
        if case.loss == Loss::CrossEntropy {
            let options = CrossEntropyOptions {
                weight,
                ignore_index: case.ignore_index,
                label_smoothing: case.label_smoothing,
                check_values: true,
                ..CrossEntropyOptions::new()
            };
            match reduced(case.reduction) {
                Some(reduction) => {
                    let loss = cross_entropy(input.clone(), target, reduction, &options);
                    finish(Leaves::input(input), loss, upstream)
                }
                None => {
                    let loss = cross_entropy_no_reduction(input.clone(), target, &options);
                    finish(Leaves::input(input), loss, upstream)
                }
            }
        } else {
            let options = NllLossOptions {
                weight,
                ignore_index: case.ignore_index,
                check_values: true,
            };
            match reduced(case.reduction) {
                Some(reduction) => {
                    let loss = nll_loss(input.clone(), target, reduction, &options);
                    finish(Leaves::input(input), loss, upstream)
                }
                None => {
                    let loss = nll_loss_no_reduction(input.clone(), target, &options);
                    finish(Leaves::input(input), loss, upstream)
                }
            }
        }
    })
}

fn class_probs<const D: usize, const DO: usize>(
    case: &Case,
    target: &FloatTensor,
    device: &Place,
) -> Run {
    let build = || {
        let input = leaf(float::<D>(&case.input, device));
        let target = target_leaf(case, float::<D>(target, device));
        let weight = case.weight.as_ref().map(|w| float::<1>(w, device));
        Ok((input, target, weight))
    };
    run(case, build, |(input, target, weight)| {
        let upstream = case.upstream.as_ref();
        let options = CrossEntropyOptions {
            weight,
            ignore_index: case.ignore_index,
            label_smoothing: case.label_smoothing,
            check_values: true,
            ..CrossEntropyOptions::new()
        };
        match reduced(case.reduction) {
            Some(reduction) => {
                let leaves = Leaves::new(&input, &target, case);
                let loss = cross_entropy_with_probs(input, target, reduction, &options);
                finish(leaves, loss, upstream)
            }
            None => {
                let leaves = Leaves::new(&input, &target, case);
                let loss = cross_entropy_with_probs_no_reduction::<D, DO>(input, target, &options);
                finish(leaves, loss, upstream)
            }
        }
    })
}

/// The crate's reduction, or `None` for PyTorch's `reduction='none'`.
fn reduced(reduction: Reduction) -> Option<burn_xent::Reduction> {
    match reduction {
        Reduction::Mean => Some(burn_xent::Reduction::Mean),
        Reduction::Sum => Some(burn_xent::Reduction::Sum),
        Reduction::None => None,
    }
}

/// Reads the loss, back-propagates `sum(loss * upstream)` and reads the input gradient (on an
/// autodiff device; on a plain one the loss alone, after the same check of the upstream).
///
/// An upstream of shape `[]` multiplies the loss as a scalar; any other upstream must have
/// the loss's shape; none means ones. An empty loss runs no tensor operation (burn-xent
/// builds it from host data, and Burn's cube backends mishandle empty tensors) and so has no
/// gradient, which is taken as zeros of the input's shape.
fn finish<const D: usize, const R: usize>(
    leaves: Leaves<D>,
    loss: Tensor<R>,
    upstream: Option<&FloatTensor>,
) -> Result<Outcome, String> {
    let loss_shape = loss.dims().to_vec();
    let count = loss.shape().num_elements();
    let objective = match upstream {
        _ if count == 0 => None,
        None => Some(loss.clone().sum()),
        Some(u) if u.shape.is_empty() => Some(loss.clone().mul_scalar(u.data[0]).sum()),
        Some(u) if u.shape == loss_shape => {
            let u = float_as::<R, _>(
                u.data.clone(),
                u.shape.clone(),
                &loss.device(),
                loss.dtype(),
            );
            Some((loss.clone() * u).sum())
        }
        Some(u) => {
            return Err(format!(
                "upstream has shape {:?} but the loss has shape {loss_shape:?}",
                u.shape
            ));
        }
    };
    let Leaves { input, target } = leaves;
    let loss_dtype = loss.dtype();
    let loss = values(loss);
    let grad_shape = input.dims().to_vec();
    let tracked = input.is_autodiff();
    if !tracked {
        return Ok(Outcome {
            loss_shape,
            loss,
            grad_shape,
            grad: Vec::new(),
            grad_missing: false,
            tracked,
            loss_dtype,
            grad_dtype: None,
            grad_target: None,
        });
    }
    // An untracked objective (a loss built from host data) has no graph to go back through:
    // Burn 0.22 panics on its backward, so it is read as Burn returning no gradient.
    let grads = objective
        .filter(Tensor::is_tracked)
        .map(|objective| objective.backward());
    let zeros = || vec![0.0; grad_shape.iter().product()];
    let grad = grads.as_ref().and_then(|grads| input.grad(grads));
    let grad_missing = grad.is_none();
    let grad_dtype = grad.as_ref().map(Tensor::dtype);
    let grad = grad.map_or_else(zeros, values);
    let grad_target = target.map(|target| {
        grads
            .as_ref()
            .and_then(|grads| target.grad(grads))
            .map_or_else(zeros, values)
    });
    Ok(Outcome {
        loss_shape,
        loss,
        grad_shape,
        grad,
        grad_missing,
        tracked,
        loss_dtype,
        grad_dtype,
        grad_target,
    })
}
