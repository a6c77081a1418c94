//! The composite path's view of a class-dimension input (cross-entropy, NLL): any rank seen
//! as `[N, C, S]`, so the math is written once for every rank.

use burn::tensor::{Int, Tensor};

use crate::class_shapes::class_dims;
use crate::workarounds;

/// An input of shape `[C]`, `[N, C]` or `[N, C, d1, …, dk]` seen as `[N, C, S]`, where `S` is
/// the product of the `d`s (1 when there are none). Every class-dimension loss is computed on
/// this view and reshaped back, so the math is written once for every rank.
pub(crate) struct ClassLayout {
    /// The input as `[N, C, S]`.
    pub input: Tensor<3>,
    pub batch: usize,
    pub classes: usize,
    pub spatial: usize,
}

impl ClassLayout {
    /// The `[N, C, S]` view of `input`; an unbatched `[C]` input becomes `[1, C, 1]`.
    pub fn new<const D: usize>(input: Tensor<D>) -> Self {
        let (batch, classes, spatial) = class_dims(&input.dims());
        Self {
            input: input.reshape([batch, classes, spatial]),
            batch,
            classes,
            spatial,
        }
    }

    /// `log_softmax` over the class dimension of the `[N, C, S]` input, with a backward that
    /// avoids Burn's approximate `log` gradient (see [`workarounds::log_softmax`]).
    pub fn log_softmax(&self) -> Tensor<3> {
        workarounds::log_softmax(self.input.clone(), 1)
    }

    /// True when the input has no elements: the losses then skip the math (see
    /// [`workarounds`]).
    pub fn is_empty(&self) -> bool {
        workarounds::is_empty(&self.input)
    }

    /// An empty `[N, S]` grid, for an empty input.
    pub fn empty_grid(&self) -> Tensor<2> {
        workarounds::empty_loss([self.batch, self.spatial], &self.input)
    }

    /// The number of elements that get a loss, `N × S`.
    pub fn elements(&self) -> usize {
        self.batch * self.spatial
    }

    /// A `[1, C, 1]` view of a per-class weight in the input's dtype, for broadcasting
    /// against the input.
    pub fn per_class(&self, weight: &Tensor<1>) -> Tensor<3> {
        weight
            .clone()
            .cast(self.input.dtype())
            .reshape([1, self.classes, 1])
    }

    /// An `[N, S]` tensor reshaped to the loss's output shape `dims`.
    pub fn output<const DO: usize>(loss: Tensor<2>, dims: [usize; DO]) -> Tensor<DO> {
        if workarounds::is_empty(&loss) {
            return workarounds::empty_loss(dims, &loss);
        }
        loss.reshape(dims)
    }
}

/// The class-index target as `[N, S]`.
pub(crate) fn flat_index_target<const DT: usize>(
    layout: &ClassLayout,
    target: Tensor<DT, Int>,
) -> Tensor<2, Int> {
    target.reshape([layout.batch, layout.spatial])
}
