//! One backend's run of a computation: the inputs built on its device, the outputs read back,
//! one backward pass of their projection, and the gradient of every float input read back.

use burn::tensor::{DType, Device, Tensor, TensorData};

use super::inputs::Leaf;
use super::outputs::OutputValue;
use super::{Computation, HostInputs, InputKind, Inputs, Projection};
use crate::gradcheck::project;

/// A tensor read back to the host.
#[derive(Clone, Debug)]
pub(super) struct HostTensor {
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
    pub(super) values: Vec<f64>,
}

impl HostTensor {
    fn from_data(data: TensorData, shape: Vec<usize>) -> Self {
        let dtype = data.dtype();
        Self {
            shape,
            dtype,
            values: data.iter::<f64>().collect(),
        }
    }
}

/// What one backend computed: the outputs and the gradients of the float inputs, in order.
pub(super) struct Run {
    pub(super) outputs: Vec<(String, HostTensor)>,
    pub(super) gradients: Vec<(String, Option<HostTensor>)>,
}

/// The projection weights of output `o`.
fn projection_weights(projection: Projection, o: usize, count: usize) -> Vec<f64> {
    match projection {
        Projection::Random { seed } => Projection::Random {
            seed: seed.wrapping_add(o as u64),
        }
        .weights(count),
        Projection::Sum => Projection::Sum.weights(count),
    }
}

/// Runs `computation` on `device` (an autodiff device) from the host inputs, floats in
/// `float_dtype`, and reads back what it computed.
pub(super) fn run_on<C: Computation + ?Sized>(
    computation: &C,
    host: &HostInputs,
    device: &Device,
    float_dtype: DType,
    projection: Projection,
) -> Run {
    let inputs = Inputs::new(host.clone(), device.clone(), float_dtype);
    let produced = computation.run(&inputs);
    let mut outputs = Vec::with_capacity(produced.entries.len());
    let mut projected: Option<Tensor<1>> = None;
    for (o, (name, shape, value)) in produced.entries.into_iter().enumerate() {
        let count = shape.iter().product::<usize>();
        match value {
            OutputValue::Float(flat) => {
                outputs.push((name, HostTensor::from_data(flat.to_data(), shape)));
                if count > 0 {
                    let term = project(flat, &projection_weights(projection, o, count));
                    projected = Some(match projected {
                        Some(sum) => sum + term,
                        None => term,
                    });
                }
            }
            OutputValue::Int(flat) => {
                outputs.push((name, HostTensor::from_data(flat.into_data(), shape)));
            }
        }
    }
    // Outputs that no gradient leaf reaches are not tracked: then there is no backward pass,
    // and no gradient on this side.
    let grads = projected.filter(Tensor::is_tracked).map(|s| s.backward());
    let leaves = inputs.leaves.into_inner();
    let gradients = host
        .inputs
        .iter()
        .zip(&leaves)
        .filter(|(input, _)| input.kind == InputKind::Float)
        .map(|(input, leaf)| {
            let gradient = match (leaf, &grads) {
                (
                    Some(Leaf {
                        gradient: Some(read),
                        ..
                    }),
                    Some(grads),
                ) => read(grads).map(|data| {
                    let shape = data.shape().to_vec();
                    HostTensor::from_data(data, shape)
                }),
                _ => None,
            };
            (input.name.clone(), gradient)
        })
        .collect();
    Run { outputs, gradients }
}
