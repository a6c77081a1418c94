//! Weights of any rank that broadcast against the input, as PyTorch's BCE `weight` and
//! `pos_weight` do.

use burn::backend::Dispatch;
use burn::tensor::Tensor;

use crate::checks;
use crate::fused::Periodic;

/// A float tensor of any rank, kept flat with its shape, that is broadcast against the input
/// of a loss when the loss is computed (PyTorch's broadcasting rules: align the shapes from the
/// right; each dimension equal to the input's or 1).
///
/// Built from any `Tensor<K>` with [`BroadcastWeight::new`] or `From`; the usual shapes are
/// `[C]` (one weight per position of the last dimension) and the input's own shape.
#[derive(Clone, Debug)]
pub struct BroadcastWeight {
    values: Tensor<1>,
    shape: Vec<usize>,
}

impl BroadcastWeight {
    /// Keeps `tensor` (any rank) for broadcasting against a loss's input.
    pub fn new<const K: usize>(tensor: Tensor<K>) -> Self {
        let shape = tensor.dims().to_vec();
        Self {
            values: tensor.flatten(0, K - 1),
            shape,
        }
    }

    /// Builds the weight from a flat tensor and the shape it stands for.
    ///
    /// # Panics
    /// If `shape` does not hold as many elements as `values`.
    pub fn from_flat(values: Tensor<1>, shape: Vec<usize>) -> Self {
        let count: usize = shape.iter().product();
        assert!(
            count == values.dims()[0],
            "BroadcastWeight::from_flat: shape: expected {} elements to match the values, got shape {shape:?} ({count} elements)",
            values.dims()[0]
        );
        Self { values, shape }
    }

    /// The shape of the weight as given.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The weight broadcast to the shape and cast to the dtype of `input`, or a panic naming
    /// `function` and `argument` when its shape does not broadcast to exactly the input's.
    pub(crate) fn expand_to<const D: usize>(
        &self,
        function: &str,
        argument: &str,
        input: &Tensor<D>,
    ) -> Tensor<D> {
        let to = input.dims();
        checks::broadcasts_to(function, argument, &self.shape, &to);
        let mut padded = [1usize; D];
        padded[D - self.shape.len()..].copy_from_slice(&self.shape);
        self.values
            .clone()
            .cast(input.dtype())
            .reshape(padded)
            .expand(to)
    }
}

impl BroadcastWeight {
    /// The weight for a fused kernel: its values and the period with which they repeat over
    /// the input's row-major elements. A weight that varies along trailing dimensions only
    /// (`[C]` against `[N, C]`, or the input's own shape) keeps its values; any other shape
    /// (`[N, 1]` against `[N, C]`) is broadcast to the input's shape first. Panics as
    /// [`BroadcastWeight::expand_to`] does.
    pub(crate) fn periodic<const D: usize>(
        &self,
        function: &str,
        argument: &str,
        input: &Tensor<D>,
    ) -> Periodic<Dispatch> {
        let to = input.dims();
        checks::broadcasts_to(function, argument, &self.shape, &to);
        let first = self
            .shape
            .iter()
            .position(|&extent| extent != 1)
            .unwrap_or(self.shape.len());
        let trailing = &self.shape[first..];
        let (values, period) = if trailing == &to[D - trailing.len()..] {
            (self.values.clone(), trailing.iter().product())
        } else {
            let len = input.shape().num_elements();
            (
                self.expand_to(function, argument, input).reshape([len]),
                len,
            )
        };
        Periodic {
            values: values.into_dispatch(),
            period,
        }
    }
}

impl<const K: usize> From<Tensor<K>> for BroadcastWeight {
    fn from(tensor: Tensor<K>) -> Self {
        Self::new(tensor)
    }
}

/// The shape a config's flat weights stand for: `shape` when given (checked against the
/// number of weights), otherwise `[weights.len()]`.
pub(crate) fn config_shape(
    config: &str,
    argument: &str,
    weights: &Option<Vec<f32>>,
    shape: &Option<Vec<usize>>,
) -> Vec<usize> {
    let len = weights.as_ref().map_or(0, Vec::len);
    match shape {
        None => vec![len],
        Some(shape) => {
            let count: usize = shape.iter().product();
            assert!(
                count == len,
                "{config}: {argument}: expected a shape with {len} elements to match the weights, got {shape:?} ({count} elements)"
            );
            shape.clone()
        }
    }
}
