//! The fused ops as Burn autodiff nodes: each forward runs the backend's fused forward on the
//! inner tensors and registers one node whose backward calls the fused backward, so the
//! gradient of a loss is one kernel, whatever the reduction.
//!
//! The nodes are prepared with `NoCheckpointing`: their state (the inputs and the few values
//! the forward saved) is kept until the backward, so they never recompute anything, under any
//! checkpointing strategy of the graph around them.

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};

use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassIndexSaved,
    ClassProbsArgs, ClassProbsParams, Kernels, Output, Periodic,
};
use crate::linear_cross_entropy::chunked::{self, Grads, LinearInputs, LinearParams};

/// An autodiff float primitive of `Autodiff<X>`.
pub(crate) type AdFloat<X> = FloatTensor<Autodiff<X>>;

#[derive(Debug)]
struct ClassIndexOp;

#[derive(Clone, Debug)]
struct ClassIndexState<X: Kernels> {
    input: FloatTensor<X>,
    target: IntTensor<X>,
    weight: Option<FloatTensor<X>>,
    params: ClassIndexParams,
    saved: ClassIndexSaved<X>,
}

impl<X: Kernels> Backward<X, 1> for ClassIndexOp {
    type State = ClassIndexState<X>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        unary::<X, _>(ops.parents, ops.node, grads, |grad| {
            X::class_index_backward(
                ClassIndexArgs {
                    input: &state.input,
                    target: &state.target,
                    weight: state.weight.as_ref(),
                    params: &state.params,
                },
                &state.saved,
                grad,
            )
        });
    }
}

/// Cross-entropy or NLL with class-index targets on `Autodiff<X>`.
pub(crate) fn class_index<X: Kernels>(
    input: AdFloat<X>,
    target: IntTensor<X>,
    weight: Option<FloatTensor<X>>,
    params: ClassIndexParams,
) -> Option<Result<AdFloat<X>, BadValue>> {
    let (loss, saved) = match X::class_index_forward(ClassIndexArgs {
        input: &input.primitive,
        target: &target,
        weight: weight.as_ref(),
        params: &params,
    })? {
        Ok(result) => result,
        Err(bad) => return Some(Err(bad)),
    };
    let prep = <ClassIndexOp as Backward<X, 1>>::prepare::<NoCheckpointing>(
        ClassIndexOp,
        [input.node.clone()],
    );
    Some(Ok(match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(
            ClassIndexState {
                input: input.primitive,
                target,
                weight,
                params,
                saved,
            },
            loss,
        ),
        OpsKind::UnTracked(prep) => prep.finish(loss),
    }))
}

/// Registers the gradients of a two-input node that its backward computed together.
fn register_pair<X: Kernels>(
    ops: Ops<impl Clone, 2>,
    grads: &mut Gradients,
    compute: impl FnOnce(FloatTensor<X>, [bool; 2]) -> [Option<FloatTensor<X>>; 2],
) {
    let grad = grads.consume::<X>(&ops.node);
    let wants = [ops.parents[0].is_some(), ops.parents[1].is_some()];
    let results = compute(grad, wants);
    for (parent, result) in ops.parents.into_iter().zip(results) {
        if let (Some(parent), Some(result)) = (parent, result) {
            grads.register::<X>(parent.id, result);
        }
    }
}

#[derive(Debug)]
struct ClassProbsOp;

#[derive(Clone, Debug)]
struct ClassProbsState<X: Kernels> {
    input: FloatTensor<X>,
    target: FloatTensor<X>,
    weight: Option<FloatTensor<X>>,
    params: ClassProbsParams,
    log_sum_exp: FloatTensor<X>,
}

impl<X: Kernels> Backward<X, 2> for ClassProbsOp {
    type State = ClassProbsState<X>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state.clone();
        register_pair::<X>(ops, grads, |grad, wants| {
            X::class_probs_backward(
                ClassProbsArgs {
                    input: &state.input,
                    target: &state.target,
                    weight: state.weight.as_ref(),
                    params: &state.params,
                },
                &state.log_sum_exp,
                grad,
                wants,
            )
        });
    }
}

/// Cross-entropy with probability targets on `Autodiff<X>` (gradients for both).
pub(crate) fn class_probs<X: Kernels>(
    input: AdFloat<X>,
    target: AdFloat<X>,
    weight: Option<FloatTensor<X>>,
    params: ClassProbsParams,
) -> Option<AdFloat<X>> {
    let (loss, log_sum_exp) = X::class_probs_forward(ClassProbsArgs {
        input: &input.primitive,
        target: &target.primitive,
        weight: weight.as_ref(),
        params: &params,
    })?;
    let prep = <ClassProbsOp as Backward<X, 2>>::prepare::<NoCheckpointing>(
        ClassProbsOp,
        [input.node.clone(), target.node.clone()],
    );
    Some(match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(
            ClassProbsState {
                input: input.primitive,
                target: target.primitive,
                weight,
                params,
                log_sum_exp,
            },
            loss,
        ),
        OpsKind::UnTracked(prep) => prep.finish(loss),
    })
}

#[derive(Debug)]
struct BinaryOp;

#[derive(Clone, Debug)]
struct BinaryState<X: Kernels> {
    input: FloatTensor<X>,
    target: FloatTensor<X>,
    weight: Option<Periodic<X>>,
    pos_weight: Option<Periodic<X>>,
    params: BinaryParams,
}

impl<X: Kernels> Backward<X, 2> for BinaryOp {
    type State = BinaryState<X>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state.clone();
        register_pair::<X>(ops, grads, |grad, wants| {
            X::binary_backward(
                BinaryArgs {
                    input: &state.input,
                    target: &state.target,
                    weight: state.weight.as_ref(),
                    pos_weight: state.pos_weight.as_ref(),
                    params: &state.params,
                },
                grad,
                wants,
            )
        });
    }
}

/// BCE or BCE with logits on `Autodiff<X>` (gradients for the input and the target).
pub(crate) fn binary<X: Kernels>(
    input: AdFloat<X>,
    target: AdFloat<X>,
    weight: Option<Periodic<X>>,
    pos_weight: Option<Periodic<X>>,
    params: BinaryParams,
) -> Option<Result<AdFloat<X>, BadValue>> {
    let loss = match X::binary_forward(BinaryArgs {
        input: &input.primitive,
        target: &target.primitive,
        weight: weight.as_ref(),
        pos_weight: pos_weight.as_ref(),
        params: &params,
    })? {
        Ok(loss) => loss,
        Err(bad) => return Some(Err(bad)),
    };
    let prep = <BinaryOp as Backward<X, 2>>::prepare::<NoCheckpointing>(
        BinaryOp,
        [input.node.clone(), target.node.clone()],
    );
    Some(Ok(match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(
            BinaryState {
                input: input.primitive,
                target: target.primitive,
                weight,
                pos_weight,
                params,
            },
            loss,
        ),
        OpsKind::UnTracked(prep) => prep.finish(loss),
    }))
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
