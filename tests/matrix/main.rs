//! The backend matrix: every check here runs on `Autodiff<NdArray>` and `Autodiff<Wgpu>`.
//!
//! - `module_equals_function`: each module gives its function's values and gradients bit for
//!   bit, for every loss, reduction and option.
//! - `cross_checks`: BCE on `sigmoid(x)` = BCE-with-logits on `x`; CE on logits = NLL on
//!   `log_softmax`; BCE-with-logits on `x` = CE on the two-class logits `[0, x]`.
//! - `semantics`: PyTorch's rules at the edges (ignored targets, empty batches, clamps,
//!   saturation, NaN).
//! - `backends_agree`: every backend gives ndarray's numbers on the same inputs.
//! - `bad_input`: each misuse is refused with a message naming function and argument.

#[path = "../common/mod.rs"]
mod common;

mod backends_agree;
mod bad_input;
mod cross_checks;
mod module_equals_function;
mod paths_agree;
mod semantics;
mod support;
