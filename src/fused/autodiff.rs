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
//!
//! Burn 0.22 keeps an autodiff tensor's node private: a kernel that takes the input's
//! primitive and then finds the case uncovered hands the primitive back, and the input is
//! rebuilt as the output of an identity node over the input's node ([`Identity`]), so the
//! composite path that follows stays in the graph without a copy.

use burn::backend::Backend;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};

use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassProbsArgs,
    ClassProbsParams, Kernels, Output, Periodic, Ran, Upstream,
};
use super::linear_chunks::{self, LinearInputs, LinearParams};
use super::linear_products::Grads;

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

/// The identity, as a node: gives back an input whose primitive a kernel took but did not use,
/// still in the graph (its gradient passes to the input unchanged).
#[derive(Debug)]
struct Identity;

impl<X: Backend> Backward<X, 1> for Identity {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<X>(&ops.node);
        if let [Some(parent)] = ops.parents {
            grads.register::<X>(parent.id, grad);
        }
    }
}

/// `primitive` (taken from a tensor whose node `guard` keeps) back in the graph.
fn rejoin<X: Kernels>(primitive: FloatTensor<X>, guard: NodeGuard) -> AdFloat<X> {
    Identity
        .prepare::<NoCheckpointing>([guard])
        .compute_bound()
        .stateless(primitive)
}

/// Whether autodiff tracks `tensor` (it requires a gradient, or leads to one that does).
fn tracked<X: Kernels>(tensor: &AdFloat<X>) -> bool {
    tensor.is_tracked()
}

/// The node of a fused op whose parents are `$tensor`s (autodiff primitives): tracked or not.
macro_rules! prepare {
    ($x:ty; $($tensor:expr),+) => {
        ScaledGradients
            .prepare::<NoCheckpointing>([$($tensor.node()),+])
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
            let (primitive, guard) = input.into_parts();
            match with_grad(primitive) {
                Ran::Done((loss, grads)) => {
                    drop(guard);
                    Ran::Done(prep.finish(GradientState { grads, how }, loss))
                }
                Ran::Refused(bad) => Ran::Refused(bad),
                Ran::Uncovered(primitive) => Ran::Uncovered(rejoin(primitive, guard)),
            }
        }
        OpsKind::UnTracked(prep) => match plain(input.primitive()) {
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
    let (target, weight) = (target.primitive(), weight.as_ref());
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
    let target = target.primitive();
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
                let scale = first_value::<X>(grad);
                computed.map(|g| g.map(|g| scaled::<X>(g, scale)))
            }
            LinearState::PerRow(inputs, wants) => {
                linear_chunks::backward_per_row(&inputs, grad, wants)
            }
        };
        for (parent, result) in ops.parents.into_iter().zip(results) {
            if let (Some(parent), Some(result)) = (parent, result) {
                grads.register::<X>(parent.id, result);
            }
        }
    }
}

/// The first element of `tensor`, read to the host (one read, which waits for the queued work).
fn first_value<X: Backend>(tensor: FloatTensor<X>) -> f64 {
    let first = X::float_slice(tensor, &[burn::tensor::Slice::new(0, Some(1), 1)]);
    let data = burn::tensor::try_read_sync(X::float_into_data(first))
        .expect("linear_cross_entropy: the backward reads its upstream gradient synchronously")
        .expect("linear_cross_entropy: reading the upstream gradient");
    data.iter::<f64>().next().unwrap_or(f64::NAN)
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
) -> Result<AdFloat<X>, AdFloat<X>> {
    let wants = [
        tracked(&hidden),
        tracked(&weight),
        bias.as_ref().is_some_and(tracked::<X>),
    ];
    let (hidden, hidden_node) = hidden.into_parts();
    let (weight, weight_node) = weight.into_parts();
    let (bias, bias_node) = match bias.map(AdFloat::<X>::into_parts) {
        Some((bias, node)) => (Some(bias), Some(node)),
        None => (None, None),
    };
    let inputs = LinearInputs {
        hidden,
        weight,
        bias,
        target,
        class_weight,
        params,
    };
    let reduced = matches!(params.output, Output::Reduced(_));
    // A per-row loss sweeps again in the backward: its forward computes no gradient.
    let Some((output, computed)) =
        linear_chunks::forward(&inputs, wants.map(|want| want && reduced))
    else {
        return Err(rejoin(inputs.hidden, hidden_node));
    };
    let state = if reduced {
        LinearState::Computed(computed)
    } else {
        LinearState::PerRow(inputs, wants)
    };
    // One node over the tracked tensors' parents (a macro: the parent count is the node's
    // const parameter).
    macro_rules! finish {
        ($($node:expr),*) => {
            match LinearNode.prepare::<NoCheckpointing>([$($node),*]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(state, output),
                OpsKind::UnTracked(prep) => prep.finish(output),
            }
        };
    }
    Ok(match bias_node {
        Some(bias_node) => finish!(hidden_node, weight_node, bias_node),
        None => finish!(hidden_node, weight_node),
    })
}
