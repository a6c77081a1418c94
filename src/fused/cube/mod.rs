//! The fused loss kernels of the cube backends ([`CubeBackend`], e.g. `burn_wgpu`'s `CubeBackend`
//! on `WgpuRuntime`), written in CubeCL, laid out as burn-cubecl's own kernel folders: one file
//! per kernel family with its kernels and their launchers ([`class_index`], [`class_probs`],
//! [`binary`]), the reduction every family shares ([`reduce`]), the backward of every loss
//! ([`scale`](mod@scale)), the row layout and online softmax of the class kernels
//! ([`rows`]), device helpers ([`helpers`]), host-side helpers ([`launch`]), and here the
//! [`Kernels`] implementation.
//!
//! Every kernel reads its inputs made contiguous
//! ([`into_contiguous`](burn_cubecl::kernel::into_contiguous), a no-op for contiguous ones)
//! as flat buffers in the layouts of [`super::kernels`], and works in the float type of the
//! input (`F`) and the int type of the targets (`I`), both picked at run time
//! (`#[define(F, I)]`), so each kernel compiles once per dtype and comptime choice set.
//!
//! - Class losses (cross-entropy and NLL with class indices, cross-entropy with class
//!   probabilities): the forward gives each element (a row of `C` logits at stride `S`, read
//!   in the input's own `[N, C, S]` layout) to a row of `tx` units of a `tx × ty` cube; the
//!   row's units stride over its classes with an online softmax (running max and sum of
//!   exponentials, one read of the logits) and merge their partial results by a tree in
//!   shared memory: one unit per row up to 32 classes, 32 above, and 8 from 16 spatial
//!   positions on, the cube's units then numbered along the rows (a warp reads 32
//!   consecutive positions of a class: runs of consecutive addresses). The cross-entropy
//!   backward is elementwise over
//!   `[N, C, S]`, the NLL backward a fill and a scatter; the class-probability backward
//!   reuses the row layout (it needs a sum over each row).
//! - Binary losses: elementwise, with a grid-stride loop in the forward.
//!
//! The gradient in the forward (`Kernels::*_with_grad`, for a tracked input): the same
//! forward kernels, with a comptime flag, also write the gradients for a unit upstream
//! gradient, a row's second read of its logits coming right after its softmax; the class
//! index forward first runs a one-cube pass over the targets for a mean's divisor (the total
//! weight), the others know theirs (`N S`, `L`). The log-sum-exp is then not saved. The
//! input gradient goes over the input's own buffer when the handle is ours to write
//! (`can_mut`, as burn-cubecl's in-place elementwise ops decide: the kernel's gradient
//! argument is an alias of its input argument), into a new buffer otherwise; the backward
//! ([`Kernels::scale`]) is one elementwise launch, in place the same way. So a loss on logits
//! nothing else holds allocates nothing of the logits' size in its forward and backward.
//! - Reduced outputs: each forward cube writes one partial sum in a fixed order, and one
//!   single-cube kernel adds the partials and divides for the mean ([`reduce`]).
//!   Deterministic, no atomics.
//!
//! WGSL rejects infinite and NaN literals, so no kernel writes one: the online softmax starts
//! from each row's first logit, and the NaN of a mean over zero total weight comes in as a
//! run-time scalar.
//!
//! The caller checks the values (class indices in `[0, C)` or `ignore_index`, probabilities in
//! `[0, 1]`) before the forward ([`Kernels::CHECKS_VALUES`] is false) and never passes empty
//! tensors (Burn 0.21's cube kernels crash on zero-sized buffers).

mod binary;
mod class_index;
mod class_probs;
mod helpers;
mod launch;
mod reduce;
mod rows;
mod scale;

use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

pub(super) use binary::{binary_backward, binary_forward, binary_with_grad};
pub(super) use class_index::{class_index_backward, class_index_forward, class_index_with_grad};
pub(super) use class_probs::{class_probs_backward, class_probs_forward, class_probs_with_grad};
pub(super) use launch::{covers_binary, covers_class_index, covers_class_probs};
pub(super) use scale::scale;

use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassIndexSaved,
    ClassProbsArgs, ClassProbsParams, Kernels, LossAndGrads, Periodic, Ran, Upstream,
};

/// Units per cube of every kernel.
const CUBE_UNITS: u32 = 256;
/// The length of every shared-memory buffer: one slot per unit of a cube.
const SHARED_LEN: usize = CUBE_UNITS as usize;
/// The most cubes a grid-stride forward launches (each writes one partial sum).
const MAX_FORWARD_CUBES: usize = 4096;

impl<R, F, I, BT> Kernels for CubeBackend<R, F, I, BT>
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
        let out = class_index_forward(input, target, weight, params)?;
        let saved = ClassIndexSaved {
            log_sum_exp: out.log_sum_exp,
            total_weight: out.total_weight,
        };
        Some(Ok((out.loss, saved)))
    }

    fn class_index_backward(
        args: ClassIndexArgs<'_, Self>,
        saved: &ClassIndexSaved<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (input, target, weight, params) = args.split();
        let lse = saved.log_sum_exp.as_ref();
        let weight_sum = |w: &FloatTensor<Self>| Self::float_sum(w.clone());
        class_index_backward(
            input,
            target,
            weight,
            params,
            lse,
            &saved.total_weight,
            grad,
            weight_sum,
        )
    }

    fn class_probs_forward(
        args: ClassProbsArgs<'_, Self>,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)> {
        let (input, target, weight, params) = args.split();
        class_probs_forward(input, target, weight, params).map(|(loss, lse)| (loss, Some(lse)))
    }

    fn class_probs_backward(
        args: ClassProbsArgs<'_, Self>,
        log_sum_exp: Option<&FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, params) = args.split();
        let log_sum_exp = log_sum_exp.expect("saved by the forward");
        class_probs_backward(input, target, weight, params, log_sum_exp, grad, wants)
    }

    fn binary_forward(args: BinaryArgs<'_, Self>) -> Option<Result<FloatTensor<Self>, BadValue>> {
        let (input, target, weight, pos_weight, params) = args.split();
        covers_binary(params, weight, pos_weight).then(|| {
            let [weight, pos_weight] = [weight, pos_weight].map(|w| w.map(Periodic::parts));
            Ok(binary_forward(input, target, weight, pos_weight, params))
        })
    }

    fn binary_backward(
        args: BinaryArgs<'_, Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, pos_weight, params) = args.split();
        let [weight, pos_weight] = [weight, pos_weight].map(|w| w.map(Periodic::parts));
        binary_backward(input, target, weight, pos_weight, params, grad, wants)
    }

    fn class_index_with_grad(
        input: FloatTensor<Self>,
        target: &IntTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassIndexParams,
    ) -> Ran<Self, (FloatTensor<Self>, FloatTensor<Self>)> {
        match class_index_with_grad(input, target, weight, params) {
            Ok(done) => Ran::Done(done),
            Err(input) => Ran::Uncovered(input),
        }
    }

    fn class_probs_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassProbsParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        match class_probs_with_grad(input, target, weight, params, wants) {
            Ok(done) => Ran::Done(done),
            Err(input) => Ran::Uncovered(input),
        }
    }

    fn binary_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&Periodic<Self>>,
        pos_weight: Option<&Periodic<Self>>,
        params: &BinaryParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        if !covers_binary(params, weight, pos_weight) {
            return Ran::Uncovered(input);
        }
        let [weight, pos_weight] = [weight, pos_weight].map(|w| w.map(Periodic::parts));
        Ran::Done(binary_with_grad(
            input, target, weight, pos_weight, params, wants,
        ))
    }

    fn scale(
        grad: FloatTensor<Self>,
        upstream: FloatTensor<Self>,
        how: Upstream,
    ) -> FloatTensor<Self> {
        scale(grad, upstream, how)
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract_tests::{CubeWgpu, assert_close, float, int, read, ready};
    use super::super::kernels::{
        BinaryKind, BinaryParams, ClassIndexKind, ClassIndexParams, Output,
    };
    use super::*;
    use crate::reduction::Reduction;

    /// The id of the memory a tensor's handle points to (from its `Debug` form: the id is not
    /// public).
    fn memory_id(tensor: &FloatTensor<CubeWgpu>) -> String {
        let debug = format!("{:?}", tensor.handle.memory);
        let start = debug.find("id:").expect("a memory id");
        let end = debug[start..].find('}').expect("the id's end");
        debug[start..start + end].to_string()
    }

    /// Every `*_with_grad` forward and `scale` write over their input exactly when nothing else
    /// holds it: the gradient then lives in the input's memory; a shared input keeps its
    /// values and its gradient gets memory of its own.
    #[test]
    fn gradients_over_the_input_exactly_when_unique() {
        if !ready::<CubeWgpu>("gradients_over_the_input_exactly_when_unique") {
            return;
        }
        let device = Default::default();
        let (n, c, s) = (2, 40, 16);
        let values: Vec<f64> = (0..n * c * s).map(|i| (i as f64 * 0.37).sin()).collect();
        let targets: Vec<i64> = (0..n * s).map(|i| (i as i64 * 7) % c as i64).collect();
        let target = int::<CubeWgpu>(&targets, &[n, s], &device);
        let probs = float::<CubeWgpu>(&vec![1.0 / c as f64; n * c * s], &[n, c, s], &device);
        let binary_target = float::<CubeWgpu>(&vec![0.5; n * c * s], &[n * c * s], &device);
        let mean = Output::Reduced(Reduction::Mean);
        let class_params = |kind| ClassIndexParams {
            kind,
            batch: n,
            classes: c,
            spatial: s,
            ignore_index: -100,
            label_smoothing: 0.0,
            output: mean,
            check_values: false,
        };
        let probs_params = ClassProbsParams {
            batch: n,
            classes: c,
            spatial: s,
            label_smoothing: 0.0,
            output: mean,
        };
        let binary_params = BinaryParams {
            kind: BinaryKind::WithLogits,
            len: n * c * s,
            output: mean,
            check_values: false,
        };
        // Each op: the gradient of a fresh input of `values`.
        type Op<'a> = Box<dyn Fn(FloatTensor<CubeWgpu>) -> FloatTensor<CubeWgpu> + 'a>;
        let ops: Vec<(&str, Op<'_>)> = vec![
            (
                "cross-entropy",
                Box::new(|x| {
                    let params = class_params(ClassIndexKind::CrossEntropy);
                    match CubeWgpu::class_index_with_grad(x, &target, None, &params) {
                        Ran::Done((_, grad)) => grad,
                        _ => panic!("covered"),
                    }
                }),
            ),
            (
                "nll",
                Box::new(|x| {
                    let params = class_params(ClassIndexKind::Nll);
                    match CubeWgpu::class_index_with_grad(x, &target, None, &params) {
                        Ran::Done((_, grad)) => grad,
                        _ => panic!("covered"),
                    }
                }),
            ),
            (
                "class probabilities",
                Box::new(|x| {
                    let ran =
                        CubeWgpu::class_probs_with_grad(x, &probs, None, &probs_params, [true; 2]);
                    match ran {
                        Ran::Done((_, [Some(grad), Some(_)])) => grad,
                        _ => panic!("covered"),
                    }
                }),
            ),
            (
                "binary",
                Box::new(|x| {
                    let x = CubeWgpu::float_reshape(x, [n * c * s].into());
                    let ran = CubeWgpu::binary_with_grad(
                        x,
                        &binary_target,
                        None,
                        None,
                        &binary_params,
                        [true, false],
                    );
                    match ran {
                        Ran::Done((_, [Some(grad), None])) => grad,
                        _ => panic!("covered"),
                    }
                }),
            ),
            (
                "scale",
                Box::new(|x| {
                    let upstream = float::<CubeWgpu>(&[2.0], &[1], &device);
                    CubeWgpu::scale(x, upstream, Upstream::Whole)
                }),
            ),
        ];
        for (what, op) in ops {
            let unique = float::<CubeWgpu>(&values, &[n, c, s], &device);
            let id = memory_id(&unique);
            assert_eq!(memory_id(&op(unique)), id, "{what}: over a unique input");

            let shared = float::<CubeWgpu>(&values, &[n, c, s], &device);
            let keep = shared.clone();
            assert_ne!(
                memory_id(&op(shared)),
                memory_id(&keep),
                "{what}: a shared input's gradient"
            );
            assert_close(what, &read::<CubeWgpu>(keep).1, &values, 1e-6);
        }
    }

    /// The cases the cube kernels leave to the composite path: a positive weight for BCE on
    /// probabilities, an `ignore_index` beyond `i32`.
    #[test]
    fn uncovered_cases_return_none() {
        if !ready::<CubeWgpu>("uncovered_cases_return_none") {
            return;
        }
        let device = Default::default();
        let input = float::<CubeWgpu>(&[0.5; 4], &[4], &device);
        let pos_weight = Periodic::<CubeWgpu> {
            values: float::<CubeWgpu>(&[2.0], &[1], &device),
            period: 1,
        };
        let params = BinaryParams {
            kind: BinaryKind::Probabilities,
            len: 4,
            output: Output::PerElement,
            check_values: false,
        };
        assert!(
            CubeWgpu::binary_forward(BinaryArgs {
                input: &input,
                target: &input,
                weight: None,
                pos_weight: Some(&pos_weight),
                params: &params
            })
            .is_none()
        );
        let class_params = ClassIndexParams {
            kind: ClassIndexKind::CrossEntropy,
            batch: 2,
            classes: 2,
            spatial: 1,
            ignore_index: i64::from(i32::MAX) + 1,
            label_smoothing: 0.0,
            output: Output::PerElement,
            check_values: false,
        };
        let target = int::<CubeWgpu>(&[0, 1], &[2, 1], &device);
        assert!(
            CubeWgpu::class_index_forward(ClassIndexArgs {
                input: &input,
                target: &target,
                weight: None,
                params: &class_params
            })
            .is_none()
        );
    }
}
