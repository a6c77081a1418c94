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
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassProbsArgs,
    ClassProbsParams, Kernels, Periodic, Ran, Upstream,
};

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
