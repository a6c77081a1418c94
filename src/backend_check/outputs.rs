//! The outputs of a computation: [`Outputs`], named float and int tensors of any rank, kept
//! flat with their shapes for the comparison and the backward pass.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// One output, flattened to rank 1 (its shape is kept beside it).
pub(super) enum OutputValue<B: Backend> {
    Float(Tensor<B, 1>),
    Int(Tensor<B, 1, Int>),
}

/// The named outputs of a [`Computation`](super::Computation), float or int, of any ranks.
///
/// A single float tensor converts into `Outputs` named `"output"`:
/// `fn run(…) -> Outputs<B> { loss.into() }`.
pub struct Outputs<B: Backend> {
    /// Name, shape and flattened value of each output, in the order they were added.
    pub(super) entries: Vec<(String, Vec<usize>, OutputValue<B>)>,
}

impl<B: Backend> Default for Outputs<B> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<B: Backend> Outputs<B> {
    /// No outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a float output; it is compared, and it enters the backward pass.
    ///
    /// # Panics
    /// If the name is taken.
    pub fn float<const D: usize>(mut self, name: &str, tensor: Tensor<B, D>) -> Self {
        self.check_name(name);
        let shape = tensor.dims().to_vec();
        let flat = tensor.reshape([shape.iter().product::<usize>()]);
        self.entries
            .push((name.to_string(), shape, OutputValue::Float(flat)));
        self
    }

    /// Adds an int output (predicted classes, say); compared for equality.
    ///
    /// # Panics
    /// If the name is taken.
    pub fn int<const D: usize>(mut self, name: &str, tensor: Tensor<B, D, Int>) -> Self {
        self.check_name(name);
        let shape = tensor.dims().to_vec();
        let flat = tensor.reshape([shape.iter().product::<usize>()]);
        self.entries
            .push((name.to_string(), shape, OutputValue::Int(flat)));
        self
    }

    fn check_name(&self, name: &str) {
        assert!(
            self.entries.iter().all(|(n, _, _)| n != name),
            "backend_check: Outputs: output {name:?} is already taken"
        );
    }
}

impl<B: Backend, const D: usize> From<Tensor<B, D>> for Outputs<B> {
    /// One float output named `"output"`.
    fn from(tensor: Tensor<B, D>) -> Self {
        Outputs::new().float("output", tensor)
    }
}
