//! The backend matrix: every check here runs on the devices of ndarray (f32 and f64 tensors),
//! Flex (f32 and f64) and wgpu (f32), each plain and with `.autodiff()`, on both loss paths
//! (`tests/common`'s `matrix_tests!`). On a plain device a check compares the loss values only
//! (no gradient can be asked for there); the checks of gradients alone (`gradient_accuracy`,
//! `gradient_in_forward`, `backends_agree`) run on the autodiff devices.
//!
//! - `module_equals_function`: each module gives its function's values and gradients bit for
//!   bit, for every loss, reduction and option.
//! - `cross_checks`: BCE on `sigmoid(x)` = BCE-with-logits on `x`; CE on logits = NLL on
//!   `log_softmax`; BCE-with-logits on `x` = CE on the two-class logits `[0, x]`.
//! - `semantics`: PyTorch's rules at the edges (ignored targets, empty batches, clamps,
//!   saturation, NaN).
//! - `backends_agree`: every backend gives the numbers of ndarray in f64 with autodiff on the
//!   composite path on the same inputs, compared by `burn_xent::backend_check`.
//! - `bad_input`: each misuse is refused with a message naming function and argument.
//! - `gradient_accuracy`: input gradients within a few f32 ulps of a float64 reference.
//! - `paths_agree`: the fused and composite paths give the same values and gradients.
//! - `gradient_in_forward`: the gradients the fused forward computes (in place where nothing
//!   else holds the logits) are right however the logits are held.

#[path = "../common/mod.rs"]
mod common;

mod backends_agree;
mod bad_input;
mod cross_checks;
mod gradient_accuracy;
mod gradient_in_forward;
mod module_equals_function;
mod paths_agree;
mod semantics;
mod support;
