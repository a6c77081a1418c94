//! The contract between the fused losses and a backend's kernels.
//!
//! A backend `X` (the inner backend, without autodiff) that implements [`Kernels`] computes
//! each loss in one forward pass. For an input that autodiff tracks, the forward also gives
//! the gradients for a unit upstream gradient (`*_with_grad`; the default runs the forward,
//! then the backward with a unit upstream gradient; the CPU kernels compute them in the same
//! pass, over the input's own storage when nothing else holds it), and the backward only
//! scales them by the upstream gradient ([`Kernels::scale`]). `fused::autodiff` wraps this in
//! one Burn autodiff node for `Autodiff<X>`; on `X` itself, and for untracked inputs, only the
//! loss is computed. Every method works on primitives in the layouts below; a method returns
//! `None` (or [`Ran::Uncovered`]) for a case it does not cover, and the loss then takes the
//! composite path.
//!
//! Layouts (row-major, the primitives may be any strides the backend accepts):
//! - class losses: `input` `[N, C, S]` (an input `[N, C, d1, …, dk]` has `S = d1 ⋯ dk`,
//!   `[N, C]` has `S = 1`), index targets `[N, S]`, probability targets `[N, C, S]`, class
//!   weights `[C]`;
//! - binary losses: `input`, `target` flat `[L]`; weights [`Periodic`].

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::{FloatDType, Shape};

use super::linear_products::{BurnProducts, LinearOperands, LinearProducts, default_chunk_rows};
use crate::reduction::Reduction;

/// How the per-element losses leave the op: each one (`[N * S]` or `[L]`), or reduced to
/// `[1]`. A reduced op's backward receives a `[1]` gradient, so neither pass forms the
/// per-element tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// PyTorch's `reduction='none'`.
    PerElement,
    /// PyTorch's `mean` or `sum`.
    Reduced(Reduction),
}

/// What a class-index op computes per element `i` with target `t_i` and class weights `w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClassIndexKind {
    /// Cross-entropy on logits: `(1 - ε) w[t] (-log p_t) + (ε / C) Σ_c w[c] (-log p_c)`,
    /// `log p = log_softmax(x)`.
    CrossEntropy,
    /// NLL on log-probabilities: `-w[t] x_t`.
    Nll,
}

/// The shape and options of a class-index op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClassIndexParams {
    pub kind: ClassIndexKind,
    /// `N` (the CPU kernels work from `N × S` rows and do not read it).
    #[cfg_attr(not(feature = "fused-wgpu"), allow(dead_code))]
    pub batch: usize,
    pub classes: usize,
    pub spatial: usize,
    pub ignore_index: i64,
    /// ε; 0 for NLL.
    pub label_smoothing: f64,
    pub output: Output,
    /// Check the targets inside the kernel (only asked of backends whose
    /// [`Kernels::CHECKS_VALUES`] is true).
    pub check_values: bool,
}

/// What a class-index forward keeps for its backward, besides its inputs.
#[derive(Clone, Debug)]
// The CPU kernels' gradients come from the forward: only the cube kernels read these.
#[cfg_attr(not(feature = "fused-wgpu"), allow(dead_code))]
pub(crate) struct ClassIndexSaved<X: Backend> {
    /// The log-sum-exp of each element's logits in two parts, `[2 * N * S]` (cross-entropy
    /// only): the layout of [`Kernels::class_probs_forward`]'s.
    pub log_sum_exp: Option<FloatTensor<X>>,
    /// The sum of the target weights over non-ignored elements, `[1]`: the mean's divisor.
    pub total_weight: FloatTensor<X>,
}

/// A class-probability op (cross-entropy with probability targets):
/// `loss_i = -Σ_c w[c] q_ic log_softmax(x_i)[c]`, `q = (1 - ε) y + ε / C`; the mean divides
/// by `N × S`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClassProbsParams {
    /// `N` (the CPU kernels work from `N × S` rows and do not read it).
    #[cfg_attr(not(feature = "fused-wgpu"), allow(dead_code))]
    pub batch: usize,
    pub classes: usize,
    pub spatial: usize,
    pub label_smoothing: f64,
    pub output: Output,
}

/// What a binary op computes per element, with weight `w` and positive weight `pw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryKind {
    /// `w [(1 - t) softplus(x) + pw t softplus(-x)]`; input gradient
    /// `w [(1 - t) σ(x) - pw t σ(-x)]`.
    WithLogits,
    /// `-w [t max(log p, -100) + (1 - t) max(log(1 - p), -100)]`; input gradient PyTorch's
    /// `w (p - t) / max(p (1 - p), 1e-12)`.
    Probabilities,
}

/// The shape and options of a binary op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BinaryParams {
    pub kind: BinaryKind,
    /// `L`, the number of elements.
    pub len: usize,
    pub output: Output,
    /// Check that the probabilities and the targets lie in `[0, 1]` inside the kernel (only asked of backends
    /// whose [`Kernels::CHECKS_VALUES`] is true).
    pub check_values: bool,
}

/// A weight of a binary op (`weight` or `pos_weight`) as the kernels take it: `values[i %
/// period]` weighs element `i` of the flat input (a weight that varies along the input's
/// trailing dimensions only, or the full shape). The same idea as the dispatch's weight with a
/// period, on the kernels' side: a primitive of the kernels' backend.
#[derive(Clone, Debug)]
pub(crate) struct Periodic<X: Backend> {
    /// The weight's values, flat.
    pub values: FloatTensor<X>,
    /// How many flat input elements the values cover before they repeat (`values`' length).
    pub period: usize,
}

impl<X: Backend> Periodic<X> {
    /// The values and the period, the two arguments a cube kernel launch takes:
    /// `weight.map(Periodic::parts)`.
    #[cfg_attr(not(feature = "fused-wgpu"), allow(dead_code))]
    pub(crate) fn parts(&self) -> (&FloatTensor<X>, usize) {
        (&self.values, self.period)
    }
}

/// Declares the argument struct of one op family: references to its inputs (`Copy`, whatever
/// `X` is) and `split`, which hands the fields out in order to bind them in one `let`.
macro_rules! op_args {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        pub(crate) struct $name<'a, X: Backend> {
            $(pub $field: $ty),*
        }

        impl<X: Backend> Clone for $name<'_, X> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<X: Backend> Copy for $name<'_, X> {}

        impl<'a, X: Backend> $name<'a, X> {
            /// The fields in declaration order.
            #[allow(clippy::type_complexity)]
            pub(crate) fn split(self) -> ($($ty),*) {
                ($(self.$field),*)
            }
        }
    };
}

op_args!(
    /// The inputs of a class-index op as every method of [`Kernels`] takes them.
    ClassIndexArgs {
        input: &'a FloatTensor<X>,
        target: &'a IntTensor<X>,
        weight: Option<&'a FloatTensor<X>>,
        params: &'a ClassIndexParams,
    }
);

op_args!(
    /// The inputs of a class-probability op as every method of [`Kernels`] takes them.
    ClassProbsArgs {
        input: &'a FloatTensor<X>,
        target: &'a FloatTensor<X>,
        weight: Option<&'a FloatTensor<X>>,
        params: &'a ClassProbsParams,
    }
);

op_args!(
    /// The inputs of a binary op as every method of [`Kernels`] takes them.
    BinaryArgs {
        input: &'a FloatTensor<X>,
        target: &'a FloatTensor<X>,
        weight: Option<&'a Periodic<X>>,
        pos_weight: Option<&'a Periodic<X>>,
        params: &'a BinaryParams,
    }
);

/// A value the kernel refused; the caller turns it into the loss's usual panic message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BadValue {
    /// A class index outside `[0, C)` that is not `ignore_index`, at this flat target index.
    ClassIndex { flat_index: usize, value: i64 },
    /// A probability outside `[0, 1]` or NaN, at this flat input index.
    Probability { flat_index: usize, value: f64 },
    /// A BCE target outside `[0, 1]` or NaN, at this flat target index.
    Target { flat_index: usize, value: f64 },
}

/// What running a fused op gave: its result, a value the kernel refused, or a case the
/// kernels do not cover, with the op's input handed back for the composite path.
pub(crate) enum Ran<X: Backend, T> {
    /// The op's result.
    Done(T),
    /// A value the kernel refused.
    Refused(BadValue),
    /// A case the kernels do not cover: the input, untouched.
    Uncovered(FloatTensor<X>),
}

/// A loss and the gradients of its input and its target (each when wanted).
pub(crate) type LossAndGrads<X> = (FloatTensor<X>, [Option<FloatTensor<X>>; 2]);

/// How the upstream gradient of a backward scales the gradients its forward computed for a
/// unit upstream gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// The `[1]` gradient of a reduced loss scales every element.
    Whole,
    /// The `[N * S]` gradient of a per-element class loss: element `n * S + s` scales the `C`
    /// gradients of its row in `[N, C, S]`.
    Rows { classes: usize, spatial: usize },
    /// The `[L]` gradient of a per-element binary loss: one per element.
    Elements,
}

impl Upstream {
    /// The scaling of a class loss's gradients for this output.
    pub(crate) fn of_class(output: Output, classes: usize, spatial: usize) -> Self {
        match output {
            Output::PerElement => Self::Rows { classes, spatial },
            Output::Reduced(_) => Self::Whole,
        }
    }

    /// The scaling of a binary loss's gradients for this output.
    pub(crate) fn of_binary(output: Output) -> Self {
        match output {
            Output::PerElement => Self::Elements,
            Output::Reduced(_) => Self::Whole,
        }
    }
}

/// A unit upstream gradient for `loss`: ones of its shape and dtype.
fn unit_upstream<X: Backend>(loss: &FloatTensor<X>) -> FloatTensor<X> {
    let dtype = FloatDType::from(loss.dtype());
    X::float_ones(loss.shape(), &loss.device(), dtype)
}

/// `grad` times `upstream` as [`Upstream`] says, from Burn's generic operations.
pub(crate) fn scale_generic<X: Backend>(
    grad: FloatTensor<X>,
    upstream: FloatTensor<X>,
    how: Upstream,
) -> FloatTensor<X> {
    let shape = grad.shape();
    match how {
        Upstream::Whole => {
            let ones = Shape::from(vec![1; shape.num_dims()]);
            X::float_mul(grad, X::float_reshape(upstream, ones))
        }
        Upstream::Rows { classes, spatial } => {
            let rows = shape.num_elements() / (classes * spatial).max(1);
            let grad = X::float_reshape(grad, Shape::new([rows, classes, spatial]));
            let upstream = X::float_reshape(upstream, Shape::new([rows, 1, spatial]));
            X::float_reshape(X::float_mul(grad, upstream), shape)
        }
        Upstream::Elements => X::float_mul(grad, X::float_reshape(upstream, shape)),
    }
}

/// A backend's fused loss kernels. Every forward returns `None` for a case it does not cover.
pub(crate) trait Kernels: super::concrete::Concrete {
    /// True when the forwards check values themselves (`check_values` in the params);
    /// otherwise the caller runs the generic checks first.
    const CHECKS_VALUES: bool;

    /// The loss (`[N * S]` or `[1]`) and what the backward needs.
    #[allow(clippy::type_complexity)]
    fn class_index_forward(
        args: ClassIndexArgs<'_, Self>,
    ) -> Option<Result<(FloatTensor<Self>, ClassIndexSaved<Self>), BadValue>>;

    /// The input gradient `[N, C, S]` for the loss gradient `grad` (shape of the loss).
    fn class_index_backward(
        args: ClassIndexArgs<'_, Self>,
        saved: &ClassIndexSaved<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The loss (`[N * S]` or `[1]`) and the log-sum-exp of each element in two parts,
    /// `[2 * N * S]`: first each element's largest logit `m_i`, then `ln Σ_c exp(x_ic - m_i)`.
    /// Their sum is the log-sum-exp; kept apart, `x - m_i` stays exact for large logits
    /// (in f32 at logits of 1e4, one rounded log-sum-exp is 5e-4 off, which every softmax
    /// value of the backward would inherit). The class-index forward saves the same layout.
    fn class_probs_forward(
        args: ClassProbsArgs<'_, Self>,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)>;

    /// The gradients of the input and of the target (each `[N, C, S]`, computed when asked).
    fn class_probs_backward(
        args: ClassProbsArgs<'_, Self>,
        log_sum_exp: Option<&FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2];

    /// The loss, `[L]` or `[1]`.
    fn binary_forward(args: BinaryArgs<'_, Self>) -> Option<Result<FloatTensor<Self>, BadValue>>;

    /// The gradients of the input and of the target (each `[L]`, computed when asked).
    fn binary_backward(
        args: BinaryArgs<'_, Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2];

    /// The loss and the input gradient (the input's shape) for a unit upstream gradient: the
    /// gradient of the reduced loss, or of each element's own loss for
    /// [`Output::PerElement`]. `input` is owned: a backend may write the gradient over its
    /// storage when nothing else holds it. Default: the forward, then the backward.
    fn class_index_with_grad(
        input: FloatTensor<Self>,
        target: &IntTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassIndexParams,
    ) -> Ran<Self, (FloatTensor<Self>, FloatTensor<Self>)> {
        let args = ClassIndexArgs {
            input: &input,
            target,
            weight,
            params,
        };
        match Self::class_index_forward(args) {
            None => Ran::Uncovered(input),
            Some(Err(bad)) => Ran::Refused(bad),
            Some(Ok((loss, saved))) => {
                let grad = Self::class_index_backward(args, &saved, unit_upstream::<Self>(&loss));
                Ran::Done((loss, grad))
            }
        }
    }

    /// The loss and the gradients of the input and the target wanted, for a unit upstream
    /// gradient, as [`Kernels::class_index_with_grad`]. Default: the forward, then the backward.
    fn class_probs_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassProbsParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        let args = ClassProbsArgs {
            input: &input,
            target,
            weight,
            params,
        };
        match Self::class_probs_forward(args) {
            None => Ran::Uncovered(input),
            Some((loss, log_sum_exp)) => {
                let unit = unit_upstream::<Self>(&loss);
                let grads = Self::class_probs_backward(args, log_sum_exp.as_ref(), unit, wants);
                Ran::Done((loss, grads))
            }
        }
    }

    /// The loss and the gradients of the input and the target wanted, for a unit upstream
    /// gradient, as [`Kernels::class_index_with_grad`]. Default: the forward, then the backward.
    fn binary_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&Periodic<Self>>,
        pos_weight: Option<&Periodic<Self>>,
        params: &BinaryParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        let args = BinaryArgs {
            input: &input,
            target,
            weight,
            pos_weight,
            params,
        };
        match Self::binary_forward(args) {
            None => Ran::Uncovered(input),
            Some(Err(bad)) => Ran::Refused(bad),
            Some(Ok(loss)) => {
                let grads = Self::binary_backward(args, unit_upstream::<Self>(&loss), wants);
                Ran::Done((loss, grads))
            }
        }
    }

    /// The rows per chunk of `linear_cross_entropy` when the caller gives none, for `hidden`
    /// `[rows, width]` and `classes` classes. Default: [`default_chunk_rows`].
    fn linear_chunk_rows(rows: usize, width: usize, classes: usize) -> usize {
        default_chunk_rows(rows, width, classes)
    }

    /// The matrix products of one `linear_cross_entropy` sweep, accumulating the gradients
    /// `wants` asks for (of `hidden`, `weight`, `bias`). Default: Burn's `matmul`
    /// ([`BurnProducts`]).
    fn linear_products<'a>(
        operands: LinearOperands<'a, Self>,
        wants: [bool; 3],
    ) -> Box<dyn LinearProducts<Self> + 'a> {
        Box::new(BurnProducts::new(operands, wants))
    }

    /// A gradient from a `*_with_grad` forward times the backward's upstream gradient.
    /// Default: Burn's generic operations.
    fn scale(
        grad: FloatTensor<Self>,
        upstream: FloatTensor<Self>,
        how: Upstream,
    ) -> FloatTensor<Self> {
        scale_generic::<Self>(grad, upstream, how)
    }
}
