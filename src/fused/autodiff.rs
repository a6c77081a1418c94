//! The fused ops as Burn autodiff nodes: for a tracked input the forward runs the backend's
//! `*_with_grad` kernel, which gives the loss and the gradients for a unit upstream gradient
//! together, and registers one node that keeps those gradients; its backward only scales them
//! by the upstream gradient ([`Kernels::scale`]). An untracked op runs the plain forward: no
//! gradient work at all.
//!
//! The node's state is the gradients, not the inputs: where the CPU kernels wrote the input
//! gradient over the input's own storage (nothing else held it), the forward and backward of
//! a loss allocate nothing of the input's size. The nodes are prepared with
//! `NoCheckpointing`: nothing is ever recomputed, under any checkpointing strategy of the
//! graph around them.

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassProbsArgs,
    ClassProbsParams, Kernels, Output, Periodic, Ran, Upstream,
};
use crate::linear_cross_entropy::chunked::{self, Grads, LinearInputs, LinearParams};

/// An autodiff float primitive of `Autodiff<X>`.
pub(crate) type AdFloat<X> = FloatTensor<Autodiff<X>>;

/// What a fused op on `Autodiff<X>` gave.
pub(crate) type AdRan<X> = Ran<Autodiff<X>, AdFloat<X>>;

/// The node of every fused loss with `N` parents: its state holds each tracked parent's
/// gradient for a unit upstream gradient.
#[derive(Debug)]
struct ScaledGradients;

#[derive(Clone, Debug)]
struct GradientState<X: Kernels, const N: usize> {
    grads: [Option<FloatTensor<X>>; N],
    how: Upstream,
}

impl<X: Kernels, const N: usize> Backward<X, N> for ScaledGradients {
    type State = GradientState<X, N>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let upstream = grads.consume::<X>(&ops.node);
        let how = ops.state.how;
        for (parent, grad) in ops.parents.into_iter().zip(ops.state.grads) {
            if let (Some(parent), Some(grad)) = (parent, grad) {
                grads.register::<X>(parent.id, X::scale(grad, upstream.clone(), how));
            }
        }
    }
}

/// Whether autodiff tracks `tensor` (it requires a gradient, or leads to one that does).
fn tracked<X: Kernels>(tensor: &AdFloat<X>) -> bool {
    !tensor.node.requirement.is_none()
}

/// The node of a fused op whose parents are `$tensor`s (autodiff primitives): tracked or not.
macro_rules! prepare {
    ($x:ty; $($tensor:expr),+) => {
        ScaledGradients
            .prepare::<NoCheckpointing>([$($tensor.node.clone()),+])
            .compute_bound()
            .stateful()
    };
}

/// A node prepared by `prepare!` for `N` parents.
type Prepared<X, const N: usize> =
    OpsKind<ScaledGradients, X, GradientState<X, N>, NoCheckpointing, N>;

/// Runs the tracked or the untracked form of an op whose node is `prep`: `with_grad` gets the
/// input's primitive (owned), `plain` borrows it; an uncovered case hands the input back
/// whole.
fn run<X: Kernels, const N: usize>(
    prep: Prepared<X, N>,
    input: AdFloat<X>,
    how: Upstream,
    with_grad: impl FnOnce(FloatTensor<X>) -> Ran<X, (FloatTensor<X>, [Option<FloatTensor<X>>; N])>,
    plain: impl FnOnce(&FloatTensor<X>) -> Option<Result<FloatTensor<X>, BadValue>>,
) -> AdRan<X> {
    match prep {
        OpsKind::Tracked(prep) => {
            let (node, rc) = (input.node, input.rc);
            match with_grad(input.primitive) {
                Ran::Done((loss, grads)) => {
                    Ran::Done(prep.finish(GradientState { grads, how }, loss))
                }
                Ran::Refused(bad) => Ran::Refused(bad),
                Ran::Uncovered(primitive) => Ran::Uncovered(AdFloat::<X> {
                    primitive,
                    node,
                    rc,
                }),
            }
        }
        OpsKind::UnTracked(prep) => match plain(&input.primitive) {
            Some(Ok(loss)) => Ran::Done(prep.finish(loss)),
            Some(Err(bad)) => Ran::Refused(bad),
            None => Ran::Uncovered(input),
        },
    }
}

/// Cross-entropy or NLL with class-index targets on `Autodiff<X>`.
pub(crate) fn class_index<X: Kernels>(
    input: AdFloat<X>,
    target: IntTensor<X>,
    weight: Option<FloatTensor<X>>,
    params: ClassIndexParams,
) -> AdRan<X> {
    let prep = prepare!(X; input);
    let how = Upstream::of_class(params.output, params.classes, params.spatial);
    let (target, weight) = (&target, weight.as_ref());
    run(
        prep,
        input,
        how,
        |input| match X::class_index_with_grad(input, target, weight, &params) {
            Ran::Done((loss, grad)) => Ran::Done((loss, [Some(grad)])),
            Ran::Refused(bad) => Ran::Refused(bad),
            Ran::Uncovered(input) => Ran::Uncovered(input),
        },
        |input| {
            let args = ClassIndexArgs {
                input,
                target,
                weight,
                params: &params,
            };
            X::class_index_forward(args).map(|result| result.map(|(loss, _)| loss))
        },
    )
}

/// Cross-entropy with probability targets on `Autodiff<X>` (gradients for both).
pub(crate) fn class_probs<X: Kernels>(
    input: AdFloat<X>,
    target: AdFloat<X>,
    weight: Option<FloatTensor<X>>,
    params: ClassProbsParams,
) -> AdRan<X> {
    let prep = prepare!(X; input, target);
    let wants = [tracked(&input), tracked(&target)];
    let how = Upstream::of_class(params.output, params.classes, params.spatial);
    let (target, weight) = (&target.primitive, weight.as_ref());
    run(
        prep,
        input,
        how,
        |input| X::class_probs_with_grad(input, target, weight, &params, wants),
        |input| {
            let args = ClassProbsArgs {
                input,
                target,
                weight,
                params: &params,
            };
            X::class_probs_forward(args).map(|(loss, _)| Ok(loss))
        },
    )
}

/// BCE or BCE with logits on `Autodiff<X>` (gradients for the input and the target).
pub(crate) fn binary<X: Kernels>(
    input: AdFloat<X>,
    target: AdFloat<X>,
    weight: Option<Periodic<X>>,
    pos_weight: Option<Periodic<X>>,
    params: BinaryParams,
) -> AdRan<X> {
    let prep = prepare!(X; input, target);
    let wants = [tracked(&input), tracked(&target)];
    let how = Upstream::of_binary(params.output);
    let target = &target.primitive;
    let (weight, pos_weight) = (weight.as_ref(), pos_weight.as_ref());
    run(
        prep,
        input,
        how,
        |input| X::binary_with_grad(input, target, weight, pos_weight, &params, wants),
        |input| {
            X::binary_forward(BinaryArgs {
                input,
                target,
                weight,
                pos_weight,
                params: &params,
            })
        },
    )
}

#[derive(Debug)]
struct LinearNode;

/// What the backward of `linear_cross_entropy` needs.
#[derive(Clone, Debug)]
enum LinearState<X: Kernels> {
    /// A reduced loss: the gradients its forward computed for an upstream gradient of 1,
    /// which the backward scales.
    Computed(Grads<X>),
    /// A per-row loss: the inputs, swept again with the per-row upstream gradient, and which
    /// gradients are wanted.
    PerRow(LinearInputs<X>, [bool; 3]),
}

impl<X: Kernels, const P: usize> Backward<X, P> for LinearNode {
    type State = LinearState<X>;

    fn backward(self, ops: Ops<Self::State, P>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<X>(&ops.node);
        let results = match ops.state {
            LinearState::Computed(computed) => {
                // The output is [loss, z-loss term]; the term is handed out detached, so only
                // the loss's upstream gradient counts.
                let scale: f64 = Tensor::<X, 1>::from_primitive(TensorPrimitive::Float(grad))
                    .narrow(0, 0, 1)
                    .into_scalar()
                    .elem();
                computed.map(|g| g.map(|g| scaled::<X>(g, scale)))
            }
            LinearState::PerRow(inputs, wants) => chunked::backward_per_row(&inputs, grad, wants),
        };
        for (parent, result) in ops.parents.into_iter().zip(results) {
            if let (Some(parent), Some(result)) = (parent, result) {
                grads.register::<X>(parent.id, result);
            }
        }
    }
}

/// `gradient` times the upstream value `scale`, read to the host (one read, which waits for
/// the queued work): not scaled at all for the usual upstream gradient of 1, and otherwise by
/// a scalar product, which backends can do in place on a gradient they hold alone (whether
/// a broadcast product with a `[1]` tensor would allocate a second weight-sized gradient was
/// not measured).
fn scaled<X: Kernels>(gradient: FloatTensor<X>, scale: f64) -> FloatTensor<X> {
    if scale == 1.0 {
        gradient
    } else {
        X::float_mul_scalar(gradient, scale.into())
    }
}

/// `linear_cross_entropy` on `Autodiff<X>`: one node over `hidden`, `weight` and `bias` (two
/// without a bias). A reduced loss computes the gradients of its tracked parents in the
/// forward; a per-row loss sweeps again in the backward; nothing tracked, no gradient work.
pub(crate) fn linear<X: Kernels>(
    hidden: AdFloat<X>,
    weight: AdFloat<X>,
    bias: Option<AdFloat<X>>,
    target: IntTensor<X>,
    class_weight: Option<FloatTensor<X>>,
    params: LinearParams,
) -> Option<AdFloat<X>> {
    let tracked = |tensor: &AdFloat<X>| !tensor.node.requirement.is_none();
    let wants = [
        tracked(&hidden),
        tracked(&weight),
        bias.as_ref().is_some_and(tracked),
    ];
    let inputs = LinearInputs {
        hidden: hidden.primitive,
        weight: weight.primitive,
        bias: bias.as_ref().map(|bias| bias.primitive.clone()),
        target,
        class_weight,
        params,
    };
    let (output, state) = match params.output {
        Output::Reduced(_) => {
            let (output, computed) = chunked::forward(&inputs, wants)?;
            (output, LinearState::Computed(computed))
        }
        Output::PerElement => {
            let (output, _) = chunked::forward(&inputs, [false; 3])?;
            (output, LinearState::PerRow(inputs, wants))
        }
    };
    // One node over the tracked tensors' parents (`NodeRef` is not nameable outside
    // burn-autodiff, hence a macro rather than a function generic over the parent count).
    macro_rules! finish {
        ($($node:expr),*) => {
            match LinearNode.prepare::<NoCheckpointing>([$($node),*]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(state, output),
                OpsKind::UnTracked(prep) => prep.finish(output),
            }
        };
    }
    Some(match bias {
        Some(bias) => finish!(hidden.node, weight.node, bias.node),
        None => finish!(hidden.node, weight.node),
    })
}
