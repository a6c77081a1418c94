//! The reduction, shared by every kernel family: how an op's losses leave it ([`Reduce`], a
//! comptime choice of every kernel, mapped once from the op's [`Output`]), the sums within a
//! cube, the finalise step that adds the forward cubes' partial sums ([`finalize_kernel()`],
//! launched by [`finish`]), and the scaling of the loss gradient in the backwards
//! ([`element_grad()`]).
//!
//! A reduced forward never forms the per-element losses: each of its cubes writes one partial
//! sum (of the losses, and of the target weights for class indices) in a fixed order, and one
//! single-cube kernel adds the partials and divides for the mean. Deterministic, no atomics.

use burn::backend::Shape;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::launch::{dummy, elem, empty_like, scalar};
use super::{CUBE_UNITS, SHARED_LEN};
use crate::fused::kernels::Output;
use crate::reduction::Reduction;

/// How an op's losses leave it, as the kernels see it: a comptime choice of every forward
/// (each loss, or partial sums for [`finalize_kernel()`]), of the finalise step, and of every
/// backward (how [`element_grad()`] scales the loss gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Reduce {
    /// PyTorch's `reduction='none'`: the loss of each element; element `i`'s gradient is
    /// `grad[i]`.
    PerElement,
    /// `sum`: every element's gradient is `grad[0]`.
    Sum,
    /// `mean`: the sum divided by the op's [`MeanOver`]; every element's gradient is
    /// `grad[0] / divisor`.
    Mean,
}

impl Reduce {
    /// The kernels' reduction of an op's output: the one mapping from the kernel contract's
    /// [`Output`].
    pub(super) fn of(output: Output) -> Self {
        match output {
            Output::PerElement => Self::PerElement,
            Output::Reduced(Reduction::Sum) => Self::Sum,
            Output::Reduced(Reduction::Mean) => Self::Mean,
        }
    }

    /// True when the forward writes partial sums rather than each loss.
    pub(super) fn is_reduced(self) -> bool {
        self != Self::PerElement
    }
}

/// What an op's mean divides by, which also says what [`finalize_kernel()`] adds up beside the
/// losses. A comptime choice of the finalise step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum MeanOver {
    /// The total weight of the targets (class indices): the forward's partial target weights
    /// are added up and written out too (the backward's divisor), for every reduction; a
    /// mean over zero total weight is `0 / 0`, NaN.
    TotalWeight,
    /// The number of elements, a host scalar (class probabilities, binary losses).
    Count,
    /// The total weight of the targets, known before the forward (class indices with the
    /// gradient in the forward, which needs it first): `partial_weight[0]` of
    /// [`finalize_kernel()`]; a mean over zero total weight is NaN, as for
    /// [`MeanOver::TotalWeight`].
    Known,
}

/// The gradient of one element's loss, from the op's loss gradient `grad` (`[N * S]` or
/// `[L]` per element, `[1]` reduced): `grad[i]`, `grad[0]`, or `grad[0] / mean_divisor` (the
/// total weight or the element count, read for [`Reduce::Mean`] only).
#[cube]
pub(super) fn element_grad<F: Float>(
    grad: &Tensor<F>,
    i: usize,
    mean_divisor: F,
    #[comptime] reduce: Reduce,
) -> F {
    match reduce {
        Reduce::PerElement => grad[i],
        Reduce::Sum => grad[0],
        Reduce::Mean => grad[0] / mean_divisor,
    }
}

/// Adds the `width` slots `slot - lane * step, …` (`step` apart) of each group in `sums` into
/// the group's first slot by a tree (`width` a power of two, `lane` the unit's place in its
/// group), one barrier per level.
#[cube]
pub(super) fn tree_sum<F: Float>(
    sums: &mut Shared<[F]>,
    slot: usize,
    lane: usize,
    width: usize,
    step: usize,
) {
    let mut stride = width / 2;
    while stride > 0 {
        if lane < stride {
            let other = sums[slot + stride * step];
            sums[slot] += other;
        }
        sync_cube();
        stride /= 2;
    }
}

/// The sum of `sums[0..count]`, in order (one unit adds a cube's row results).
#[cube]
pub(super) fn ordered_sum<F: Float>(sums: &Shared<[F]>, count: usize) -> F {
    let mut total = F::new(0.0);
    for k in 0..count {
        total += sums[k];
    }
    total
}

/// Adds the forward cubes' `count` partial sums in one cube and writes the reduced outputs:
/// `loss[0]` (unless [`Reduce::PerElement`]) and, for [`MeanOver::TotalWeight`],
/// `total_weight[0]`. A mean over [`MeanOver::Count`] divides by `divisor`, one over
/// [`MeanOver::Known`] by `partial_weight[0]`; one over zero total weight writes `nan` (a
/// run-time NaN: WGSL rejects NaN literals).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn finalize_kernel<F: Float>(
    partial_loss: &Tensor<F>,
    partial_weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    total_weight: &mut Tensor<F>,
    count: u32,
    divisor: InputScalar,
    nan: InputScalar,
    #[comptime] reduce: Reduce,
    #[comptime] mean_over: MeanOver,
    #[define(F)] _dtype: ElemType,
) {
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let p = count as usize;
    let with_loss = comptime!(reduce.is_reduced());
    let with_weight = comptime!(mean_over == MeanOver::TotalWeight);
    let mut sh_loss = Shared::<[F]>::new_slice(SHARED_LEN);
    let mut sh_weight = Shared::<[F]>::new_slice(SHARED_LEN);
    let mut acc_loss = F::new(0.0);
    let mut acc_weight = F::new(0.0);
    let mut k = unit;
    while k < p {
        if with_loss {
            acc_loss += partial_loss[k];
        }
        if with_weight {
            acc_weight += partial_weight[k];
        }
        k += units;
    }
    sh_loss[unit] = acc_loss;
    sh_weight[unit] = acc_weight;
    sync_cube();
    tree_sum::<F>(&mut sh_loss, unit, unit, units, 1);
    tree_sum::<F>(&mut sh_weight, unit, unit, units, 1);
    if unit == 0 {
        let sum = sh_loss[0];
        let mut tw = sh_weight[0];
        if comptime!(mean_over == MeanOver::Known) {
            tw = partial_weight[0];
        }
        if with_weight {
            total_weight[0] = tw;
        }
        match reduce {
            Reduce::PerElement => {}
            Reduce::Sum => loss[0] = sum,
            Reduce::Mean => match mean_over {
                MeanOver::TotalWeight | MeanOver::Known => {
                    let mut mean = sum / tw;
                    if tw == F::new(0.0) && sum == F::new(0.0) {
                        mean = nan.get::<F>();
                    }
                    loss[0] = mean;
                }
                MeanOver::Count => loss[0] = sum / divisor.get::<F>(),
            },
        }
    }
}

/// The loss buffer of a forward over `elements` elements in `cubes` cubes: one loss per
/// element, or one partial sum per cube.
pub(super) fn loss_buffer(
    like: &CubeTensor,
    reduce: Reduce,
    cubes: u32,
    elements: usize,
) -> CubeTensor {
    let len = if reduce.is_reduced() {
        cubes as usize
    } else {
        elements
    };
    empty_like(like, Shape::new([len]), like.dtype)
}

/// The finalise step of a forward that wrote `loss` (from [`loss_buffer`]) and, for
/// [`MeanOver::TotalWeight`], `partial_weight` (one per cube): the op's loss (`loss` itself
/// per element, `[1]` reduced) and the total weight (`[1]`, [`MeanOver::TotalWeight`] only).
/// Launches [`finalize_kernel()`] when there is something to add; a mean over
/// [`MeanOver::Count`] divides by `count`, one over [`MeanOver::Known`] by the total weight
/// passed as `partial_weight` (`[1]`).
pub(super) fn finish(
    like: &CubeTensor,
    loss: CubeTensor,
    partial_weight: Option<CubeTensor>,
    cubes: u32,
    count: usize,
    reduce: Reduce,
    mean_over: MeanOver,
) -> (CubeTensor, Option<CubeTensor>) {
    let total_weight =
        (mean_over == MeanOver::TotalWeight).then(|| empty_like(like, Shape::new([1]), like.dtype));
    let reduced = reduce
        .is_reduced()
        .then(|| empty_like(like, Shape::new([1]), like.dtype));
    if reduced.is_none() && total_weight.is_none() {
        return (loss, None);
    }
    let partial_weight = match (mean_over, partial_weight) {
        (MeanOver::TotalWeight, Some(partial)) => partial,
        (MeanOver::Known, Some(total)) => total,
        (MeanOver::TotalWeight | MeanOver::Known, None) => {
            panic!("a mean over the total weight without partials")
        }
        (MeanOver::Count, _) => dummy(like),
    };
    finalize_kernel::launch(
        &like.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(CUBE_UNITS),
        if reduced.is_some() {
            loss.clone()
        } else {
            dummy(like)
        }
        .into_tensor_arg(),
        partial_weight.into_tensor_arg(),
        reduced
            .clone()
            .unwrap_or_else(|| dummy(like))
            .into_tensor_arg(),
        total_weight
            .clone()
            .unwrap_or_else(|| dummy(like))
            .into_tensor_arg(),
        cubes,
        scalar(count as f64, like),
        scalar(f64::NAN, like),
        reduce,
        mean_over,
        elem(like.dtype),
    );
    (reduced.unwrap_or(loss), total_weight)
}
