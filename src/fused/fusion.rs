//! The fused loss kernels of `Fusion<CubeBackend>` (the default `burn_wgpu::Wgpu`).
//!
//! Each op enters the fusion stream as one [`CustomOpIr`] node, the way Burn's own
//! non-fusable ops (convolutions, CTC) do: its inputs are the fusion tensors, its outputs are
//! new uninitialized fusion tensors of known shapes, and its [`Operation::execute`] runs, when
//! the stream is flushed, the [`super::cube`] kernels on the inner [`CubeBackend`] tensors and
//! registers their results under the output ids. Nothing is resolved or synchronized eagerly,
//! so the kernels queue like any other op, and fusers end their block at the custom node
//! (they fuse none).
//!
//! Inputs are read-only (the op holds clones, so the stream never hands their buffers over),
//! but for the input a `*_with_grad` forward or [`Kernels::scale`] owns: that one enters the
//! node by value, as Burn's own ops take a tensor they consume. When it was the last
//! reference to its fusion tensor, its status is `ReadWrite`: the stream hands the node its
//! buffer, and the cube kernels write the gradient over it when nothing else (another fusion
//! tensor, a pending fused op) holds the inner handle (`can_mut`); otherwise into a new
//! buffer.
//!
//! Whether a forward is covered is decided before the node is registered (from the params,
//! as on the cube backend), so a `None` leaves the stream untouched.

use std::marker::PhantomData;

use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Client, Fusion, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr, TensorStatus};

use super::cube;
use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassIndexSaved,
    ClassProbsArgs, ClassProbsParams, Kernels, LossAndGrads, Output, Periodic, Ran, Upstream,
};

/// The inner backend.
type Inner<R, F, I, BT> = CubeBackend<R, F, I, BT>;
/// The fusion tensor of a cube runtime.
type Tensor<R> = FusionTensor<FusionCubeRuntime<R>>;

/// Which fused op a [`CubeOp`] node runs, with its options; the node's inputs and outputs are
/// listed in the order each `execute` arm reads and writes them (optional ones in
/// parentheses).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// In: input, target, (weight). Out: loss, total weight, (log-sum-exp).
    ClassIndexForward {
        params: ClassIndexParams,
        weighted: bool,
    },
    /// In: input, target, total weight, grad, (weight), (log-sum-exp). Out: input gradient.
    ClassIndexBackward {
        params: ClassIndexParams,
        weighted: bool,
        with_lse: bool,
    },
    /// In: input, target, (weight). Out: loss, log-sum-exp.
    ClassProbsForward {
        params: ClassProbsParams,
        weighted: bool,
    },
    /// In: input, target, log-sum-exp, grad, (weight). Out: the wanted gradients.
    ClassProbsBackward {
        params: ClassProbsParams,
        weighted: bool,
        wants: [bool; 2],
    },
    /// In: input, target, (weight), (pos weight). Out: loss.
    BinaryForward {
        params: BinaryParams,
        weight_period: Option<usize>,
        pos_weight_period: Option<usize>,
    },
    /// In: input, target, grad, (weight), (pos weight). Out: the wanted gradients.
    BinaryBackward {
        params: BinaryParams,
        weight_period: Option<usize>,
        pos_weight_period: Option<usize>,
        wants: [bool; 2],
    },
    /// In: input (owned), target, (weight). Out: loss, input gradient.
    ClassIndexWithGrad {
        params: ClassIndexParams,
        weighted: bool,
    },
    /// In: input (owned), target, (weight). Out: loss, the wanted gradients.
    ClassProbsWithGrad {
        params: ClassProbsParams,
        weighted: bool,
        wants: [bool; 2],
    },
    /// In: input (owned), target, (weight), (pos weight). Out: loss, the wanted gradients.
    BinaryWithGrad {
        params: BinaryParams,
        weight_period: Option<usize>,
        pos_weight_period: Option<usize>,
        wants: [bool; 2],
    },
    /// In: gradient (owned), upstream gradient. Out: the scaled gradient.
    Scale { how: Upstream },
}

/// A fused loss op in the fusion stream, run on the inner [`CubeBackend`].
struct CubeOp<B> {
    kind: Kind,
    desc: CustomOpIr,
    _backend: PhantomData<fn() -> B>,
}

impl<B> core::fmt::Debug for CubeOp<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CubeOp")
            .field("kind", &self.kind)
            .field("desc", &self.desc)
            .finish()
    }
}

impl<R, F, I, BT> Operation<FusionCubeRuntime<R>> for CubeOp<Inner<R, F, I, BT>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn execute(
        &self,
        handles: &mut HandleContainer<<FusionCubeRuntime<R> as FusionRuntime>::FusionHandle>,
    ) {
        let mut inputs = self.desc.inputs.iter();
        let mut float = |handles: &mut HandleContainer<_>| -> CubeTensor<R> {
            handles.get_float_tensor::<Inner<R, F, I, BT>>(inputs.next().expect("an input"))
        };
        let outputs = &self.desc.outputs;
        let register = |handles: &mut HandleContainer<_>, index: usize, t: CubeTensor<R>| {
            handles.register_float_tensor::<Inner<R, F, I, BT>>(&outputs[index].id, t);
        };

        match self.kind {
            Kind::ClassIndexForward { params, weighted } => {
                let ins = &self.desc.inputs;
                let input = handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[0]);
                let target = handles.get_int_tensor::<Inner<R, F, I, BT>>(&ins[1]);
                let weight =
                    weighted.then(|| handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[2]));
                let out = cube::class_index_forward(&input, &target, weight.as_ref(), &params)
                    .expect("the cube kernels cover the registered op");
                register(handles, 0, out.loss);
                register(handles, 1, out.total_weight);
                if let Some(lse) = out.log_sum_exp {
                    register(handles, 2, lse);
                }
            }
            Kind::ClassIndexBackward {
                params,
                weighted,
                with_lse,
            } => {
                let ins = &self.desc.inputs;
                let input = handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[0]);
                let target = handles.get_int_tensor::<Inner<R, F, I, BT>>(&ins[1]);
                let total_weight = handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[2]);
                let grad = handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[3]);
                let mut next = 4;
                let weight = weighted.then(|| {
                    next += 1;
                    handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[next - 1])
                });
                let lse =
                    with_lse.then(|| handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[next]));
                let out = cube::class_index_backward(
                    &input,
                    &target,
                    weight.as_ref(),
                    &params,
                    lse.as_ref(),
                    &total_weight,
                    grad,
                    |w| Inner::<R, F, I, BT>::float_sum(w.clone()),
                );
                register(handles, 0, out);
            }
            Kind::ClassProbsForward { params, weighted } => {
                let input = float(handles);
                let target = float(handles);
                let weight = weighted.then(|| float(handles));
                let (loss, lse) =
                    cube::class_probs_forward(&input, &target, weight.as_ref(), &params)
                        .expect("the cube kernels cover the registered op");
                register(handles, 0, loss);
                register(handles, 1, lse);
            }
            Kind::ClassProbsBackward {
                params,
                weighted,
                wants,
            } => {
                let input = float(handles);
                let target = float(handles);
                let lse = float(handles);
                let grad = float(handles);
                let weight = weighted.then(|| float(handles));
                let grads = cube::class_probs_backward(
                    &input,
                    &target,
                    weight.as_ref(),
                    &params,
                    &lse,
                    grad,
                    wants,
                );
                for (index, g) in grads.into_iter().flatten().enumerate() {
                    register(handles, index, g);
                }
            }
            Kind::BinaryForward {
                params,
                weight_period,
                pos_weight_period,
            } => {
                let input = float(handles);
                let target = float(handles);
                let weight = weight_period.map(|p| (float(handles), p));
                let pos_weight = pos_weight_period.map(|p| (float(handles), p));
                let loss = cube::binary_forward(
                    &input,
                    &target,
                    weight.as_ref().map(|(t, p)| (t, *p)),
                    pos_weight.as_ref().map(|(t, p)| (t, *p)),
                    &params,
                );
                register(handles, 0, loss);
            }
            Kind::BinaryBackward {
                params,
                weight_period,
                pos_weight_period,
                wants,
            } => {
                let input = float(handles);
                let target = float(handles);
                let grad = float(handles);
                let weight = weight_period.map(|p| (float(handles), p));
                let pos_weight = pos_weight_period.map(|p| (float(handles), p));
                let grads = cube::binary_backward(
                    &input,
                    &target,
                    weight.as_ref().map(|(t, p)| (t, *p)),
                    pos_weight.as_ref().map(|(t, p)| (t, *p)),
                    &params,
                    grad,
                    wants,
                );
                for (index, g) in grads.into_iter().flatten().enumerate() {
                    register(handles, index, g);
                }
            }
            Kind::ClassIndexWithGrad { params, weighted } => {
                let ins = &self.desc.inputs;
                let input = handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[0]);
                let target = handles.get_int_tensor::<Inner<R, F, I, BT>>(&ins[1]);
                let weight =
                    weighted.then(|| handles.get_float_tensor::<Inner<R, F, I, BT>>(&ins[2]));
                let Ok((loss, grad)) =
                    cube::class_index_with_grad(input, &target, weight.as_ref(), &params)
                else {
                    panic!("the cube kernels cover the registered op");
                };
                register(handles, 0, loss);
                register(handles, 1, grad);
            }
            Kind::ClassProbsWithGrad {
                params,
                weighted,
                wants,
            } => {
                let input = float(handles);
                let target = float(handles);
                let weight = weighted.then(|| float(handles));
                let Ok((loss, grads)) =
                    cube::class_probs_with_grad(input, &target, weight.as_ref(), &params, wants)
                else {
                    panic!("the cube kernels cover the registered op");
                };
                register(handles, 0, loss);
                for (index, g) in grads.into_iter().flatten().enumerate() {
                    register(handles, index + 1, g);
                }
            }
            Kind::BinaryWithGrad {
                params,
                weight_period,
                pos_weight_period,
                wants,
            } => {
                let input = float(handles);
                let target = float(handles);
                let weight = weight_period.map(|p| (float(handles), p));
                let pos_weight = pos_weight_period.map(|p| (float(handles), p));
                let (loss, grads) = cube::binary_with_grad(
                    input,
                    &target,
                    weight.as_ref().map(|(t, p)| (t, *p)),
                    pos_weight.as_ref().map(|(t, p)| (t, *p)),
                    &params,
                    wants,
                );
                register(handles, 0, loss);
                for (index, g) in grads.into_iter().flatten().enumerate() {
                    register(handles, index + 1, g);
                }
            }
            Kind::Scale { how } => {
                let grad = float(handles);
                let upstream = float(handles);
                register(handles, 0, cube::scale(grad, upstream, how));
            }
        }
    }
}

/// Registers a [`CubeOp`] of `kind` on `inputs` (read-only clones) with outputs of the given
/// shapes (in `dtype`) and returns the output tensors, in order.
fn register<R, F, I, BT>(
    kind: Kind,
    inputs: &[&Tensor<R>],
    outputs: &[Shape],
    dtype: DType,
) -> Vec<Tensor<R>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let client = inputs[0].client.clone();
    let streams = OperationStreams::with_inputs(inputs.iter().copied());
    let inputs: Vec<TensorIr> = inputs.iter().map(|t| (*t).clone().into_ir()).collect();
    register_ir::<R, F, I, BT>(kind, client, streams, inputs, outputs, dtype)
}

/// [`register`] with a first input the node owns (`ReadWrite` when it was the last reference,
/// see the module's docs), then read-only clones of `rest`; outputs in `owned`'s dtype.
fn register_owning<R, F, I, BT>(
    kind: Kind,
    owned: Tensor<R>,
    rest: &[&Tensor<R>],
    outputs: &[Shape],
) -> Vec<Tensor<R>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let client = owned.client.clone();
    let dtype = owned.dtype;
    let streams =
        OperationStreams::with_inputs(core::iter::once(&owned).chain(rest.iter().copied()));
    let mut inputs = vec![owned.into_ir()];
    inputs.extend(rest.iter().map(|t| (*t).clone().into_ir()));
    register_ir::<R, F, I, BT>(kind, client, streams, inputs, outputs, dtype)
}

/// Registers a [`CubeOp`] of `kind` on the inputs' IR with outputs of the given shapes.
fn register_ir<R, F, I, BT>(
    kind: Kind,
    client: Client<FusionCubeRuntime<R>>,
    streams: OperationStreams,
    inputs: Vec<TensorIr>,
    outputs: &[Shape],
    dtype: DType,
) -> Vec<Tensor<R>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let outputs: Vec<TensorIr> = outputs
        .iter()
        .map(|shape| TensorIr {
            id: client.create_empty_handle(),
            shape: shape.clone(),
            status: TensorStatus::NotInit,
            dtype,
        })
        .collect();
    let desc = CustomOpIr::new("burn-xent fused loss", &inputs, &outputs);
    client.register(
        streams,
        OperationIr::Custom(desc.clone()),
        CubeOp::<Inner<R, F, I, BT>> {
            kind,
            desc,
            _backend: PhantomData,
        },
    )
}

/// The loss shape of an op with `elements` per-element losses.
fn loss_shape(output: Output, elements: usize) -> Shape {
    match output {
        Output::PerElement => Shape::new([elements]),
        Output::Reduced(_) => Shape::new([1]),
    }
}

/// The shapes of the wanted gradients, in order.
fn grad_shapes(
    input: &Tensor<impl CubeRuntime>,
    target: &Tensor<impl CubeRuntime>,
    wants: [bool; 2],
) -> Vec<Shape> {
    let mut shapes = Vec::new();
    if wants[0] {
        shapes.push(input.shape());
    }
    if wants[1] {
        shapes.push(target.shape());
    }
    shapes
}

/// Puts the registered gradients back in their `[input, target]` slots.
fn grad_slots<T>(grads: Vec<T>, wants: [bool; 2]) -> [Option<T>; 2] {
    let mut grads = grads.into_iter();
    [
        wants[0].then(|| grads.next().expect("the input gradient")),
        wants[1].then(|| grads.next().expect("the target gradient")),
    ]
}

impl<R, F, I, BT> Kernels for Fusion<CubeBackend<R, F, I, BT>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    const CHECKS_VALUES: bool = false;

    fn class_index_forward(
        args: ClassIndexArgs<'_, Self>,
    ) -> Option<Result<(FloatTensor<Self>, ClassIndexSaved<Self>), BadValue>> {
        let (input, target, weight, params) = args.split();
        if !cube::covers_class_index(params) {
            return None;
        }
        let elements = params.batch * params.spatial;
        let ce = params.kind == super::kernels::ClassIndexKind::CrossEntropy;
        let mut inputs = vec![input, target];
        inputs.extend(weight);
        let mut shapes = vec![loss_shape(params.output, elements), Shape::new([1])];
        if ce {
            shapes.push(Shape::new([2 * elements]));
        }
        let kind = Kind::ClassIndexForward {
            params: *params,
            weighted: weight.is_some(),
        };
        let mut out = register::<R, F, I, BT>(kind, &inputs, &shapes, input.dtype).into_iter();
        let loss = out.next().expect("the loss");
        let total_weight = out.next().expect("the total weight");
        let log_sum_exp = out.next();
        Some(Ok((
            loss,
            ClassIndexSaved {
                log_sum_exp,
                total_weight,
            },
        )))
    }

    fn class_index_backward(
        args: ClassIndexArgs<'_, Self>,
        saved: &ClassIndexSaved<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (input, target, weight, params) = args.split();
        let mut inputs = vec![input, target, &saved.total_weight, &grad];
        inputs.extend(weight);
        inputs.extend(saved.log_sum_exp.as_ref());
        let kind = Kind::ClassIndexBackward {
            params: *params,
            weighted: weight.is_some(),
            with_lse: saved.log_sum_exp.is_some(),
        };
        register::<R, F, I, BT>(kind, &inputs, &[input.shape()], input.dtype)
            .pop()
            .expect("the input gradient")
    }

    fn class_probs_forward(
        args: ClassProbsArgs<'_, Self>,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)> {
        let (input, target, weight, params) = args.split();
        if !cube::covers_class_probs(params) {
            return None;
        }
        let elements = params.batch * params.spatial;
        let mut inputs = vec![input, target];
        inputs.extend(weight);
        let shapes = [
            loss_shape(params.output, elements),
            Shape::new([2 * elements]),
        ];
        let kind = Kind::ClassProbsForward {
            params: *params,
            weighted: weight.is_some(),
        };
        let mut out = register::<R, F, I, BT>(kind, &inputs, &shapes, input.dtype).into_iter();
        let loss = out.next().expect("the loss");
        let lse = out.next().expect("the log-sum-exp");
        Some((loss, Some(lse)))
    }

    fn class_probs_backward(
        args: ClassProbsArgs<'_, Self>,
        log_sum_exp: Option<&FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, params) = args.split();
        let log_sum_exp = log_sum_exp.expect("saved by the forward");
        if !wants[0] && !wants[1] {
            return [None, None];
        }
        let mut inputs = vec![input, target, log_sum_exp, &grad];
        inputs.extend(weight);
        let kind = Kind::ClassProbsBackward {
            params: *params,
            weighted: weight.is_some(),
            wants,
        };
        let shapes = grad_shapes(input, target, wants);
        grad_slots(
            register::<R, F, I, BT>(kind, &inputs, &shapes, input.dtype),
            wants,
        )
    }

    fn binary_forward(args: BinaryArgs<'_, Self>) -> Option<Result<FloatTensor<Self>, BadValue>> {
        let (input, target, weight, pos_weight, params) = args.split();
        if !cube::covers_binary(params, weight, pos_weight) {
            return None;
        }
        let mut inputs = vec![input, target];
        inputs.extend(weight.map(|w| &w.values));
        inputs.extend(pos_weight.map(|w| &w.values));
        let kind = Kind::BinaryForward {
            params: *params,
            weight_period: weight.map(|w| w.period),
            pos_weight_period: pos_weight.map(|w| w.period),
        };
        let shapes = [loss_shape(params.output, params.len)];
        let loss = register::<R, F, I, BT>(kind, &inputs, &shapes, input.dtype)
            .pop()
            .expect("the loss");
        Some(Ok(loss))
    }

    fn binary_backward(
        args: BinaryArgs<'_, Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, pos_weight, params) = args.split();
        if !wants[0] && !wants[1] {
            return [None, None];
        }
        let mut inputs = vec![input, target, &grad];
        inputs.extend(weight.map(|w| &w.values));
        inputs.extend(pos_weight.map(|w| &w.values));
        let kind = Kind::BinaryBackward {
            params: *params,
            weight_period: weight.map(|w| w.period),
            pos_weight_period: pos_weight.map(|w| w.period),
            wants,
        };
        let shapes = grad_shapes(input, target, wants);
        grad_slots(
            register::<R, F, I, BT>(kind, &inputs, &shapes, input.dtype),
            wants,
        )
    }

    fn class_index_with_grad(
        input: FloatTensor<Self>,
        target: &IntTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassIndexParams,
    ) -> Ran<Self, (FloatTensor<Self>, FloatTensor<Self>)> {
        if !cube::covers_class_index(params) {
            return Ran::Uncovered(input);
        }
        let elements = params.batch * params.spatial;
        let mut rest = vec![target];
        rest.extend(weight);
        let shapes = [loss_shape(params.output, elements), input.shape()];
        let kind = Kind::ClassIndexWithGrad {
            params: *params,
            weighted: weight.is_some(),
        };
        let mut out = register_owning::<R, F, I, BT>(kind, input, &rest, &shapes).into_iter();
        let loss = out.next().expect("the loss");
        Ran::Done((loss, out.next().expect("the input gradient")))
    }

    fn class_probs_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassProbsParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        if !cube::covers_class_probs(params) {
            return Ran::Uncovered(input);
        }
        let elements = params.batch * params.spatial;
        let mut rest = vec![target];
        rest.extend(weight);
        let mut shapes = vec![loss_shape(params.output, elements)];
        shapes.extend(grad_shapes(&input, target, wants));
        let kind = Kind::ClassProbsWithGrad {
            params: *params,
            weighted: weight.is_some(),
            wants,
        };
        let mut out = register_owning::<R, F, I, BT>(kind, input, &rest, &shapes);
        let grads = out.split_off(1);
        let loss = out.pop().expect("the loss");
        Ran::Done((loss, grad_slots(grads, wants)))
    }

    fn binary_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&Periodic<Self>>,
        pos_weight: Option<&Periodic<Self>>,
        params: &BinaryParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        if !cube::covers_binary(params, weight, pos_weight) {
            return Ran::Uncovered(input);
        }
        let mut rest = vec![target];
        rest.extend(weight.map(|w| &w.values));
        rest.extend(pos_weight.map(|w| &w.values));
        let mut shapes = vec![loss_shape(params.output, params.len)];
        shapes.extend(grad_shapes(&input, target, wants));
        let kind = Kind::BinaryWithGrad {
            params: *params,
            weight_period: weight.map(|w| w.period),
            pos_weight_period: pos_weight.map(|w| w.period),
            wants,
        };
        let mut out = register_owning::<R, F, I, BT>(kind, input, &rest, &shapes);
        let grads = out.split_off(1);
        let loss = out.pop().expect("the loss");
        Ran::Done((loss, grad_slots(grads, wants)))
    }

    fn scale(
        grad: FloatTensor<Self>,
        upstream: FloatTensor<Self>,
        how: Upstream,
    ) -> FloatTensor<Self> {
        let shape = grad.shape();
        register_owning::<R, F, I, BT>(Kind::Scale { how }, grad, &[&upstream], &[shape])
            .pop()
            .expect("the scaled gradient")
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract_tests::{CubeWgpu, assert_close, float, int, read, ready};
    use super::super::kernels::{
        BinaryArgs, BinaryKind, BinaryParams, ClassIndexKind, ClassIndexParams, Kernels, Output,
        Ran, Upstream,
    };
    use crate::reduction::Reduction;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Tensor, TensorPrimitive};

    /// `Fusion<CubeBackend<WgpuRuntime, f32, i32, u32>>`; the kernel contract's reference
    /// suite runs on it in `super::super::contract_tests`.
    type Wgpu = burn_wgpu::Wgpu;

    /// The custom node reads inputs that fused ops still hold pending, and later fused ops read
    /// its outputs: `(2x)` → loss → `loss + 1`, read once at the end.
    #[test]
    fn orders_with_pending_fused_ops() {
        if !ready::<Wgpu>("orders_with_pending_fused_ops") {
            return;
        }
        let device = Default::default();
        let x: Vec<f64> = (0..6).map(|i| i as f64 * 0.7 - 2.0).collect();
        let t = [1.0, 0.0, 0.5, 1.0, 0.25, 0.0];
        let doubled = Tensor::<Wgpu, 1>::from_primitive(TensorPrimitive::Float(float::<Wgpu>(
            &x,
            &[6],
            &device,
        )))
        .mul_scalar(2.0);
        let target = float::<Wgpu>(&t, &[6], &device);
        let params = BinaryParams {
            kind: BinaryKind::WithLogits,
            len: 6,
            output: Output::PerElement,
            check_values: false,
        };
        let loss = Wgpu::binary_forward(BinaryArgs {
            input: &doubled.into_primitive().tensor(),
            target: &target,
            weight: None,
            pos_weight: None,
            params: &params,
        })
        .expect("covered")
        .expect("no bad value");
        let shifted =
            Tensor::<Wgpu, 1>::from_primitive(TensorPrimitive::Float(loss)).add_scalar(1.0);
        let want: Vec<f64> = x
            .iter()
            .zip(t)
            .map(|(&x, t)| {
                let x = 2.0 * x;
                let softplus = |v: f64| v.max(0.0) + (-v.abs()).exp().ln_1p();
                (1.0 - t) * softplus(x) + t * softplus(-x) + 1.0
            })
            .collect();
        assert_close(
            "loss + 1",
            &read::<Wgpu>(shifted.into_primitive().tensor()).1,
            &want,
            2e-5,
        );
    }

    /// The id of the memory of a fusion tensor's inner handle (from its `Debug` form: the id
    /// is not public), read through a clone that is dropped before the tensor is used again.
    fn memory_id(tensor: &FloatTensor<Wgpu>) -> String {
        let inner = tensor
            .client
            .resolve_tensor_float::<CubeWgpu>(tensor.clone());
        let debug = format!("{:?}", inner.handle.memory);
        let start = debug.find("id:").expect("a memory id");
        let end = debug[start..].find('}').expect("the id's end");
        debug[start..start + end].to_string()
    }

    /// A `*_with_grad` forward and `scale` on the fusion backend write over their input when
    /// it was the last reference (`ReadWrite` in the stream, and a unique inner handle), and a
    /// shared input keeps its values.
    #[test]
    fn gradients_over_the_input_when_last_reference() {
        if !ready::<Wgpu>("gradients_over_the_input_when_last_reference") {
            return;
        }
        let device = Default::default();
        let (n, c, s) = (2, 5, 16);
        let values: Vec<f64> = (0..n * c * s).map(|i| (i as f64 * 0.37).sin()).collect();
        let targets: Vec<i64> = (0..n * s).map(|i| (i as i64 * 3) % c as i64).collect();
        let target = int::<Wgpu>(&targets, &[n, s], &device);
        let params = ClassIndexParams {
            kind: ClassIndexKind::CrossEntropy,
            batch: n,
            classes: c,
            spatial: s,
            ignore_index: -100,
            label_smoothing: 0.1,
            output: Output::Reduced(Reduction::Mean),
            check_values: false,
        };
        let with_grad = |x| match Wgpu::class_index_with_grad(x, &target, None, &params) {
            Ran::Done((_, grad)) => grad,
            _ => panic!("covered"),
        };

        let unique = float::<Wgpu>(&values, &[n, c, s], &device);
        let id = memory_id(&unique);
        let grad = with_grad(unique);
        assert_eq!(memory_id(&grad), id, "the gradient over a unique input");
        let upstream = float::<Wgpu>(&[2.0], &[1], &device);
        let scaled = Wgpu::scale(grad, upstream, Upstream::Whole);
        assert_eq!(memory_id(&scaled), id, "scaled in place");

        let shared = float::<Wgpu>(&values, &[n, c, s], &device);
        let keep = shared.clone();
        let grad = with_grad(shared);
        assert_ne!(
            memory_id(&grad),
            memory_id(&keep),
            "a shared input's gradient"
        );
        assert_close("shared input", &read::<Wgpu>(keep).1, &values, 1e-6);
    }
}
