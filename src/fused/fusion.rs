//! The fused loss kernels of `burn::backend::Cube`, which is `Fusion<CubeBackend>` in this
//! build (the `wgpu` feature turns on `burn/fusion`): the one cube type of the dispatch, for
//! every cubecl runtime (the device says which; wgpu here).
//!
//! Each op enters the fusion stream as one [`CustomOpIr`] node, the way Burn's own
//! non-fusable ops (convolutions, CTC) do: its inputs are the fusion tensors, its outputs are
//! new uninitialized fusion tensors of known shapes, and its [`Operation::execute`] runs, when
//! the stream is flushed, the [`super::cube`] kernels on the inner [`CubeBackend`] tensors and
//! registers their results under the output ids. Nothing is resolved or synchronized eagerly,
//! so the kernels queue like any other op, and fusers end their block at the custom node
//! (they fuse none). The node is registered on the calling stream
//! ([`StreamId::current`]); an input from another stream crosses over in
//! [`FusionTensor::into_ir`], as for Burn's own ops.
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
//! as in the cube launchers), so a `None` leaves the stream untouched.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::stream::{Operation, StreamId};
use burn_fusion::{Client, ExecutionError, Fusion, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};

use super::cube;
use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassIndexSaved,
    ClassProbsArgs, ClassProbsParams, Kernels, LossAndGrads, Output, Periodic, Ran, Upstream,
};

/// The fusion tensor of the cube backend (`FloatTensor<Fusion<CubeBackend>>`).
type Tensor = FusionTensor<FusionCubeRuntime>;
/// The handles an op reads its inputs from and writes its outputs to.
type Handles = HandleContainer<<FusionCubeRuntime as FusionRuntime>::FusionHandle>;

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
        /// The periods of `weight` and `pos_weight`, when given.
        periods: [Option<usize>; 2],
    },
    /// In: input, target, grad, (weight), (pos weight). Out: the wanted gradients.
    BinaryBackward {
        params: BinaryParams,
        /// The periods of `weight` and `pos_weight`, when given.
        periods: [Option<usize>; 2],
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
        /// The periods of `weight` and `pos_weight`, when given.
        periods: [Option<usize>; 2],
        wants: [bool; 2],
    },
    /// In: gradient (owned), upstream gradient. Out: the scaled gradient.
    Scale { how: Upstream },
}

/// A fused loss op in the fusion stream, run on the inner [`CubeBackend`].
#[derive(Debug)]
struct CubeOp {
    kind: Kind,
    desc: CustomOpIr,
}

/// Reads a node's inputs in order, as the inner backend's tensors.
struct Inputs<'a>(core::slice::Iter<'a, TensorIr>);

impl Inputs<'_> {
    fn next(&mut self) -> &TensorIr {
        self.0.next().expect("an input of the registered op")
    }

    fn float(&mut self, handles: &mut Handles) -> CubeTensor {
        handles.get_float_tensor::<CubeBackend>(self.next())
    }

    fn int(&mut self, handles: &mut Handles) -> CubeTensor {
        handles.get_int_tensor::<CubeBackend>(self.next())
    }

    /// The next float input when `present`.
    fn float_if(&mut self, present: bool, handles: &mut Handles) -> Option<CubeTensor> {
        present.then(|| self.float(handles))
    }

    /// A periodic weight `(values, period)` when it has a period.
    fn periodic(
        &mut self,
        period: Option<usize>,
        handles: &mut Handles,
    ) -> Option<(CubeTensor, usize)> {
        period.map(|p| (self.float(handles), p))
    }
}

/// The weights `(values, period)` of [`Inputs::periodic`] as the binary launchers take them.
fn parts(weight: &Option<(CubeTensor, usize)>) -> Option<(&CubeTensor, usize)> {
    weight.as_ref().map(|(values, period)| (values, *period))
}

/// The result of a launcher that covers every op registered (the cover was checked before).
fn covered<T>(result: Option<T>) -> Result<T, ExecutionError> {
    result.ok_or_else(|| {
        ExecutionError::generic("burn-xent: a registered op the cube kernels do not cover")
    })
}

impl Operation<FusionCubeRuntime> for CubeOp {
    fn execute(&self, handles: &mut Handles) -> Result<(), ExecutionError> {
        let mut ins = Inputs(self.desc.inputs.iter());
        let outputs = &self.desc.outputs;
        let register = |handles: &mut Handles, index: usize, t: CubeTensor| {
            handles.register_float_tensor::<CubeBackend>(&outputs[index].id, t);
        };
        // The wanted gradients, after `first` outputs.
        let register_grads =
            |handles: &mut Handles, first: usize, grads: [Option<CubeTensor>; 2]| {
                for (index, g) in grads.into_iter().flatten().enumerate() {
                    register(handles, first + index, g);
                }
            };

        match self.kind {
            Kind::ClassIndexForward { params, weighted } => {
                let input = ins.float(handles);
                let target = ins.int(handles);
                let weight = ins.float_if(weighted, handles);
                let out = covered(cube::class_index_forward(
                    &input,
                    &target,
                    weight.as_ref(),
                    &params,
                ))?;
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
                let input = ins.float(handles);
                let target = ins.int(handles);
                let total_weight = ins.float(handles);
                let grad = ins.float(handles);
                let weight = ins.float_if(weighted, handles);
                let lse = ins.float_if(with_lse, handles);
                let out = cube::class_index_backward(
                    &input,
                    &target,
                    weight.as_ref(),
                    &params,
                    lse.as_ref(),
                    &total_weight,
                    grad,
                    |w| CubeBackend::float_sum(w.clone()),
                );
                register(handles, 0, out);
            }
            Kind::ClassProbsForward { params, weighted } => {
                let input = ins.float(handles);
                let target = ins.float(handles);
                let weight = ins.float_if(weighted, handles);
                let (loss, lse) = covered(cube::class_probs_forward(
                    &input,
                    &target,
                    weight.as_ref(),
                    &params,
                ))?;
                register(handles, 0, loss);
                register(handles, 1, lse);
            }
            Kind::ClassProbsBackward {
                params,
                weighted,
                wants,
            } => {
                let input = ins.float(handles);
                let target = ins.float(handles);
                let lse = ins.float(handles);
                let grad = ins.float(handles);
                let weight = ins.float_if(weighted, handles);
                let grads = cube::class_probs_backward(
                    &input,
                    &target,
                    weight.as_ref(),
                    &params,
                    &lse,
                    grad,
                    wants,
                );
                register_grads(handles, 0, grads);
            }
            Kind::BinaryForward { params, periods } => {
                let input = ins.float(handles);
                let target = ins.float(handles);
                let [weight, pos_weight] = periods.map(|p| ins.periodic(p, handles));
                let loss = cube::binary_forward(
                    &input,
                    &target,
                    parts(&weight),
                    parts(&pos_weight),
                    &params,
                );
                register(handles, 0, loss);
            }
            Kind::BinaryBackward {
                params,
                periods,
                wants,
            } => {
                let input = ins.float(handles);
                let target = ins.float(handles);
                let grad = ins.float(handles);
                let [weight, pos_weight] = periods.map(|p| ins.periodic(p, handles));
                let grads = cube::binary_backward(
                    &input,
                    &target,
                    parts(&weight),
                    parts(&pos_weight),
                    &params,
                    grad,
                    wants,
                );
                register_grads(handles, 0, grads);
            }
            Kind::ClassIndexWithGrad { params, weighted } => {
                let input = ins.float(handles);
                let target = ins.int(handles);
                let weight = ins.float_if(weighted, handles);
                let ran = cube::class_index_with_grad(input, &target, weight.as_ref(), &params);
                let (loss, grad) = covered(ran.ok())?;
                register(handles, 0, loss);
                register(handles, 1, grad);
            }
            Kind::ClassProbsWithGrad {
                params,
                weighted,
                wants,
            } => {
                let input = ins.float(handles);
                let target = ins.float(handles);
                let weight = ins.float_if(weighted, handles);
                let ran =
                    cube::class_probs_with_grad(input, &target, weight.as_ref(), &params, wants);
                let (loss, grads) = covered(ran.ok())?;
                register(handles, 0, loss);
                register_grads(handles, 1, grads);
            }
            Kind::BinaryWithGrad {
                params,
                periods,
                wants,
            } => {
                let input = ins.float(handles);
                let target = ins.float(handles);
                let [weight, pos_weight] = periods.map(|p| ins.periodic(p, handles));
                let (loss, grads) = cube::binary_with_grad(
                    input,
                    &target,
                    parts(&weight),
                    parts(&pos_weight),
                    &params,
                    wants,
                );
                register(handles, 0, loss);
                register_grads(handles, 1, grads);
            }
            Kind::Scale { how } => {
                let grad = ins.float(handles);
                let upstream = ins.float(handles);
                register(handles, 0, cube::scale(grad, upstream, how));
            }
        }
        Ok(())
    }
}

/// Registers a [`CubeOp`] of `kind` on `inputs` (read-only clones) with outputs of the given
/// shapes (in `dtype`) and returns the output tensors, in order.
fn register(kind: Kind, inputs: &[&Tensor], outputs: &[Shape], dtype: DType) -> Vec<Tensor> {
    let client = inputs[0].client.clone();
    let inputs: Vec<TensorIr> = inputs.iter().map(|t| (*t).clone().into_ir()).collect();
    register_ir(kind, client, inputs, outputs, dtype)
}

/// [`register`] with a first input the node owns (`ReadWrite` when it was the last reference,
/// see the module's docs), then read-only clones of `rest`; outputs in `owned`'s dtype.
fn register_owning(kind: Kind, owned: Tensor, rest: &[&Tensor], outputs: &[Shape]) -> Vec<Tensor> {
    let client = owned.client.clone();
    let dtype = owned.dtype;
    let mut inputs = vec![owned.into_ir()];
    inputs.extend(rest.iter().map(|t| (*t).clone().into_ir()));
    register_ir(kind, client, inputs, outputs, dtype)
}

/// Registers a [`CubeOp`] of `kind` on the inputs' IR with outputs of the given shapes, on the
/// calling stream.
fn register_ir(
    kind: Kind,
    client: Client<FusionCubeRuntime>,
    inputs: Vec<TensorIr>,
    outputs: &[Shape],
    dtype: DType,
) -> Vec<Tensor> {
    let outputs: Vec<TensorIr> = outputs
        .iter()
        .map(|shape| TensorIr::uninit(client.create_empty_handle(), shape.clone(), dtype))
        .collect();
    let desc = CustomOpIr::new("burn-xent fused loss", &inputs, &outputs);
    client.register(
        StreamId::current(),
        OperationIr::Custom(desc.clone()),
        CubeOp { kind, desc },
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
fn grad_shapes(input: &Tensor, target: &Tensor, wants: [bool; 2]) -> Vec<Shape> {
    let mut shapes = Vec::new();
    if wants[0] {
        shapes.push(input.shape());
    }
    if wants[1] {
        shapes.push(target.shape());
    }
    shapes
}

/// A binary op's `weight` and `pos_weight` as node inputs: `inputs`, then the values of those
/// given; and their periods, as [`Kind`] keeps them.
fn with_weights<'a>(
    mut inputs: Vec<&'a Tensor>,
    weights: [Option<&'a Periodic<Fusion<CubeBackend>>>; 2],
) -> (Vec<&'a Tensor>, [Option<usize>; 2]) {
    let parts = weights.map(|w| w.map(Periodic::parts));
    inputs.extend(parts.iter().flatten().map(|&(values, _)| values));
    (inputs, parts.map(|w| w.map(|(_, period)| period)))
}

/// Puts the registered gradients back in their `[input, target]` slots.
fn grad_slots<T>(grads: Vec<T>, wants: [bool; 2]) -> [Option<T>; 2] {
    let mut grads = grads.into_iter();
    [
        wants[0].then(|| grads.next().expect("the input gradient")),
        wants[1].then(|| grads.next().expect("the target gradient")),
    ]
}

impl Kernels for Fusion<CubeBackend> {
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
        let mut out = register(kind, &inputs, &shapes, input.dtype).into_iter();
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
        register(kind, &inputs, &[input.shape()], input.dtype)
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
        let mut out = register(kind, &inputs, &shapes, input.dtype).into_iter();
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
        grad_slots(register(kind, &inputs, &shapes, input.dtype), wants)
    }

    fn binary_forward(args: BinaryArgs<'_, Self>) -> Option<Result<FloatTensor<Self>, BadValue>> {
        let (input, target, weight, pos_weight, params) = args.split();
        if !cube::covers_binary(params, weight, pos_weight) {
            return None;
        }
        let (inputs, periods) = with_weights(vec![input, target], [weight, pos_weight]);
        let kind = Kind::BinaryForward {
            params: *params,
            periods,
        };
        let shapes = [loss_shape(params.output, params.len)];
        let loss = register(kind, &inputs, &shapes, input.dtype)
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
        let (inputs, periods) = with_weights(vec![input, target, &grad], [weight, pos_weight]);
        let kind = Kind::BinaryBackward {
            params: *params,
            periods,
            wants,
        };
        let shapes = grad_shapes(input, target, wants);
        grad_slots(register(kind, &inputs, &shapes, input.dtype), wants)
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
        let mut out = register_owning(kind, input, &rest, &shapes).into_iter();
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
        let mut out = register_owning(kind, input, &rest, &shapes);
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
        let (rest, periods) = with_weights(vec![target], [weight, pos_weight]);
        let mut shapes = vec![loss_shape(params.output, params.len)];
        shapes.extend(grad_shapes(&input, target, wants));
        let kind = Kind::BinaryWithGrad {
            params: *params,
            periods,
            wants,
        };
        let mut out = register_owning(kind, input, &rest, &shapes);
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
        register_owning(Kind::Scale { how }, grad, &[&upstream], &[shape])
            .pop()
            .expect("the scaled gradient")
    }
}
