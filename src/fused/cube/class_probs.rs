//! Cross-entropy with class-probability targets: the forward (with the gradients for a unit
//! upstream gradient when asked) and the backward (both row kernels, see [`super::rows`]: the
//! backward needs a sum over each row) and their launchers.

use burn::backend::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::SHARED_LEN;
use super::launch::{
    GradInto, RowLaunch, backward_tensors, dummy, elem, empty_like, lowest, or_dummy, row_layout,
    scalar, smoothing_args, wanted,
};
use super::reduce::{MeanOver, Reduce, element_grad, finish, loss_buffer, ordered_sum, tree_sum};
use super::rows::{RowMemory, RowShape, RowSums, RowUnit, row_log_sum, row_softmax, target_weight};
use crate::fused::kernels::ClassProbsParams;

/// Class-probability forward: per row, `lse = log Σ exp(x)`,
/// `loss = lse Σ_c w_c q_c - Σ_c w_c q_c x_c` with `q = (1 - ε) y + ε / C`.
///
/// Writes `log_sum_exp[i]` (without gradients) and `loss[i]` (per element) or the cube's sum
/// of the losses to `loss[CUBE_POS]` (reduced).
///
/// With `want_input` / `want_target`, also the gradients for a unit upstream gradient
/// (`1 / (N S)` for a mean), as [`class_probs_backward_kernel()`] computes them with the
/// row's `Σ_k w_k q_k` from its softmax, into `grad_input` (which may alias `input`,
/// argument 0: the row's first logit is read before the softmax's barriers, and each unit
/// writes only the classes it read itself) and `grad_target`.
#[cube(launch)]
// `if comptime { if runtime { … } }`: CubeCL expands the outer `if` at compile time.
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
fn class_probs_forward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    log_sum_exp: &mut Tensor<F>,
    grad_input: &mut Tensor<F>,
    grad_target: &mut Tensor<F>,
    shape: RowShape,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    lowest: InputScalar,
    nan: InputScalar,
    #[comptime] weighted: bool,
    #[comptime] reduce: Reduce,
    #[comptime] want_input: bool,
    #[comptime] want_target: bool,
    #[define(F)] _dtype: ElemType,
) {
    let unit = RowUnit::here(&shape);
    let m = unit.elements;
    let with_grad = comptime!(want_input || want_target);
    let one_minus_eps = one_minus_eps.get::<F>();
    let eps_over_c = eps_over_c.get::<F>();
    // The factor of a unit upstream gradient: `1 / (N S)` for a mean.
    let mut unit_grad = F::new(1.0);
    if comptime!(reduce == Reduce::Mean) {
        unit_grad = F::new(1.0) / F::cast_from(m);
    }

    let mut memory = RowMemory::<F>::new();

    let mut acc_loss = F::new(0.0);

    let mut block = CUBE_POS;
    while block < unit.blocks() {
        let i = unit.element(block);
        let valid = i < m;
        let base = unit.base(unit.clamped(i));
        let x0 = row_softmax::<F>(
            input,
            target,
            weight,
            &unit,
            base,
            lowest.get::<F>(),
            one_minus_eps,
            eps_over_c,
            &mut memory,
            RowSums::TargetWeights,
            weighted,
        );
        let row_max = memory.max[unit.first];
        let log_sum = row_log_sum::<F>(
            row_max,
            memory.sum[unit.first],
            lowest.get::<F>(),
            nan.get::<F>(),
        );
        let total_wq = memory.a_sum[unit.first];

        if unit.lane == 0 && valid {
            if comptime!(!with_grad) {
                log_sum_exp[i] = row_max;
                log_sum_exp[m + i] = log_sum;
            }
            // Σ_c w_c q_c (lse - x_c), lse = row_max + log_sum.
            let mut li = ((row_max - x0) + log_sum) * total_wq - memory.ax_sum[unit.first];
            // NaN fails the comparison too.
            let target_finite = total_wq.abs() <= -lowest.get::<F>();
            if !target_finite {
                // A target holding ±inf or NaN: the two sums above would cancel `inf - inf`
                // where PyTorch's `-Σ_c w_c q_c log p_c` has an infinity, so the row's sum is
                // taken term by term, by this unit alone (a pathological input: no barrier).
                li = F::new(0.0);
                let mut c = 0;
                while c < unit.classes {
                    let at = base + c * unit.spatial;
                    let wq = target_weight::<F>(
                        target,
                        weight,
                        at,
                        c,
                        one_minus_eps,
                        eps_over_c,
                        weighted,
                    );
                    li += wq * ((row_max - input[at]) + log_sum);
                    c += 1;
                }
            }
            if comptime!(reduce.is_reduced()) {
                acc_loss += li;
            } else {
                loss[i] = li;
            }
        }
        if with_grad {
            if valid {
                let mut c = unit.lane;
                while c < unit.classes {
                    let at = base + c * unit.spatial;
                    let x = input[at];
                    if want_input {
                        let wq = target_weight::<F>(
                            target,
                            weight,
                            at,
                            c,
                            one_minus_eps,
                            eps_over_c,
                            weighted,
                        );
                        let p = ((x - row_max) - log_sum).exp();
                        grad_input[at] = unit_grad * (p * total_wq - wq);
                    }
                    if want_target {
                        let mut v = unit_grad * one_minus_eps * ((row_max - x) + log_sum);
                        if weighted {
                            v *= weight[c];
                        }
                        grad_target[at] = v;
                    }
                    c += unit.width;
                }
            }
        }
        sync_cube();
        block += CUBE_COUNT;
    }

    if comptime!(reduce.is_reduced()) {
        if unit.lane == 0 {
            memory.max[unit.row] = acc_loss;
        }
        sync_cube();
        if unit.slot == 0 {
            loss[CUBE_POS] = ordered_sum::<F>(&memory.max, unit.rows);
        }
    }
}

/// Class-probability gradients, rows laid out as in [`class_probs_forward_kernel()`]:
/// `dx_c = g (p_c Σ_k w_k q_k - w_c q_c)`, `dy_c = g (1 - ε) w_c (lse - x_c)`, with `g` the
/// element's gradient ([`element_grad()`], a mean over the `N S` elements).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn class_probs_backward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    log_sum_exp: &Tensor<F>,
    grad: &Tensor<F>,
    grad_input: &mut Tensor<F>,
    grad_target: &mut Tensor<F>,
    shape: RowShape,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    #[comptime] weighted: bool,
    #[comptime] reduce: Reduce,
    #[comptime] want_input: bool,
    #[comptime] want_target: bool,
    #[define(F)] _dtype: ElemType,
) {
    let unit = RowUnit::here(&shape);
    let (c_count, s_count, m) = (unit.classes, unit.spatial, unit.elements);
    let one_minus_eps = one_minus_eps.get::<F>();
    let eps_over_c = eps_over_c.get::<F>();

    let mut sh_wq = Shared::<[F]>::new_slice(SHARED_LEN);

    let mut block = CUBE_POS;
    while block < unit.blocks() {
        let i = unit.element(block);
        let valid = i < m;
        let ii = unit.clamped(i);
        let base = unit.base(ii);

        let g = element_grad::<F>(grad, ii, F::cast_from(m), reduce);
        let row_max = log_sum_exp[ii];
        let log_sum = log_sum_exp[m + ii];

        if want_input {
            let mut swq = F::new(0.0);
            let mut c = unit.lane;
            while c < c_count {
                let at = base + c * s_count;
                swq +=
                    target_weight::<F>(target, weight, at, c, one_minus_eps, eps_over_c, weighted);
                c += unit.width;
            }
            sh_wq[unit.slot] = swq;
            sync_cube();
            tree_sum::<F>(&mut sh_wq, unit.slot, unit.lane, unit.width, unit.lane_step);
            let total_wq = sh_wq[unit.first];
            // Every unit has read the sum before the next block overwrites it.
            sync_cube();
            if valid {
                let mut c = unit.lane;
                while c < c_count {
                    let at = base + c * s_count;
                    let wq = target_weight::<F>(
                        target,
                        weight,
                        at,
                        c,
                        one_minus_eps,
                        eps_over_c,
                        weighted,
                    );
                    let p = ((input[at] - row_max) - log_sum).exp();
                    grad_input[at] = g * (p * total_wq - wq);
                    c += unit.width;
                }
            }
        }
        if want_target && valid {
            let mut c = unit.lane;
            while c < c_count {
                let at = base + c * s_count;
                let mut v = g * one_minus_eps * ((row_max - input[at]) + log_sum);
                if weighted {
                    v *= weight[c];
                }
                grad_target[at] = v;
                c += unit.width;
            }
        }
        block += CUBE_COUNT;
    }
}

/// The class-probability forward on cube tensors (see `Kernels::class_probs_forward`);
/// `None` for an op the kernels do not cover.
pub(in crate::fused) fn class_probs_forward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<&CubeTensor>,
    params: &ClassProbsParams,
) -> Option<(CubeTensor, CubeTensor)> {
    if !super::covers_class_probs(params) {
        return None;
    }
    let input = into_contiguous(input.clone());
    let elements = params.batch * params.spatial;
    let log_sum_exp = empty_like(&input, [2 * elements].into(), input.dtype);
    let placeholder = GradInto::New(dummy(&input));
    let grads = [&placeholder, &placeholder];
    let loss = launch_forward(
        &input,
        target,
        weight,
        params,
        Some(&log_sum_exp),
        grads,
        [false; 2],
    );
    Some((loss, log_sum_exp))
}

/// The class-probability loss and the gradients wanted for a unit upstream gradient on cube
/// tensors (see `Kernels::class_probs_with_grad`), in one forward launch: the input gradient
/// over `input`'s buffer when it is ours ([`GradInto`]), into a new one otherwise.
/// `Err(input)` for an op the kernels do not cover.
#[allow(clippy::result_large_err, clippy::type_complexity)]
pub(in crate::fused) fn class_probs_with_grad(
    input: CubeTensor,
    target: &CubeTensor,
    weight: Option<&CubeTensor>,
    params: &ClassProbsParams,
    wants: [bool; 2],
) -> Result<(CubeTensor, [Option<CubeTensor>; 2]), CubeTensor> {
    if !super::covers_class_probs(params) {
        return Err(input);
    }
    let (input, input_into) = GradInto::of(input, wants[0]);
    let target_into = GradInto::New(if wants[1] {
        empty_like(&input, target.shape(), input.dtype)
    } else {
        dummy(&input)
    });
    let grads = [&input_into, &target_into];
    let loss = launch_forward(&input, target, weight, params, None, grads, wants);
    let target_grad = target_into.gradient(input.clone());
    let input_grad = input_into.gradient(input);
    Ok((
        loss,
        [
            wants[0].then_some(input_grad),
            wants[1].then_some(target_grad),
        ],
    ))
}

/// One launch of [`class_probs_forward_kernel()`] (and the finalise step) on the contiguous
/// `input`: the log-sum-exp when given, the `wants` gradients where `grads` says.
fn launch_forward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<&CubeTensor>,
    params: &ClassProbsParams,
    log_sum_exp: Option<&CubeTensor>,
    grads: [&GradInto; 2],
    wants: [bool; 2],
) -> CubeTensor {
    let dtype = input.dtype;
    let elements = params.batch * params.spatial;
    let reduce = Reduce::of(params.output);
    let rows = row_launch(params);
    let loss = loss_buffer(input, reduce, rows.cubes, elements);
    let (one_minus_eps, eps_over_c) = smoothing_args(params.label_smoothing, params.classes, input);

    class_probs_forward_kernel::launch(
        &input.client,
        rows.count,
        rows.dim,
        input.clone().into_tensor_arg(),
        into_contiguous(target.clone()).into_tensor_arg(),
        or_dummy(weight, input).into_tensor_arg(),
        loss.clone().into_tensor_arg(),
        log_sum_exp
            .cloned()
            .unwrap_or_else(|| dummy(input))
            .into_tensor_arg(),
        grads[0].arg(input),
        grads[1].arg(input),
        rows.shape,
        one_minus_eps,
        eps_over_c,
        scalar(lowest(dtype), input),
        scalar(f64::NAN, input),
        weight.is_some(),
        reduce,
        wants[0],
        wants[1],
        elem(dtype),
    );

    finish(
        input,
        loss,
        None,
        rows.cubes,
        elements,
        reduce,
        MeanOver::Count,
    )
    .0
}

/// The class-probability gradients on cube tensors (see `Kernels::class_probs_backward`).
pub(in crate::fused) fn class_probs_backward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<&CubeTensor>,
    params: &ClassProbsParams,
    log_sum_exp: &CubeTensor,
    grad: CubeTensor,
    wants: [bool; 2],
) -> [Option<CubeTensor>; 2] {
    let Some(([input, target], grads)) = backward_tensors(input, target, wants) else {
        return [None, None];
    };
    let rows = row_launch(params);
    let (one_minus_eps, eps_over_c) =
        smoothing_args(params.label_smoothing, params.classes, &input);

    class_probs_backward_kernel::launch(
        &input.client,
        rows.count,
        rows.dim,
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        or_dummy(weight, &input).into_tensor_arg(),
        into_contiguous(log_sum_exp.clone()).into_tensor_arg(),
        into_contiguous(grad).into_tensor_arg(),
        grads[0].clone().into_tensor_arg(),
        grads[1].clone().into_tensor_arg(),
        rows.shape,
        one_minus_eps,
        eps_over_c,
        weight.is_some(),
        Reduce::of(params.output),
        wants[0],
        wants[1],
        elem(input.dtype),
    );
    wanted(grads, wants)
}

/// The launch of both class-probability kernels: one row of units per element.
fn row_launch(params: &ClassProbsParams) -> RowLaunch {
    let layout = row_layout(params.classes, params.spatial);
    RowLaunch::new(layout, params.batch, params.classes, params.spatial)
}
