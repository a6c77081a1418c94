//! The outputs of a computation: [`Outputs`], named float and int tensors of any rank, kept
//! flat with their shapes for the comparison and the backward pass.

use burn::tensor::{Int, Tensor};

/// One output, flattened to rank 1 (its shape is kept beside it).
pub(super) enum OutputValue {
    Float(Tensor<1>),
    Int(Tensor<1, Int>),
}

/// The named outputs of a [`Computation`](super::Computation), float or int, of any ranks.
///
/// A single float tensor converts into `Outputs` named `"output"`:
/// `fn run(…) -> Outputs { loss.into() }`.
#[derive(Default)]
pub struct Outputs {
    /// Name, shape and flattened value of each output, in the order they were added.
    pub(super) entries: Vec<(String, Vec<usize>, OutputValue)>,
}

impl Outputs {
    /// No outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a float output; it is compared, and it enters the backward pass.
    ///
    /// # Panics
    /// If the name is taken.
    pub fn float<const D: usize>(mut self, name: &str, tensor: Tensor<D>) -> Self {
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
    pub fn int<const D: usize>(mut self, name: &str, tensor: Tensor<D, Int>) -> Self {
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

impl<const D: usize> From<Tensor<D>> for Outputs {
    /// One float output named `"output"`.
    fn from(tensor: Tensor<D>) -> Self {
        Outputs::new().float("output", tensor)
    }
}
