//! The fused loss kernels of the cube backend (burn-cubecl's one [`CubeBackend`], whose device
//! says the runtime: wgpu here), written in CubeCL, laid out as burn-cubecl's own kernel
//! folders: one file per kernel family with its kernels and their launchers ([`class_index`],
//! [`class_probs`], [`binary`]), the reduction every family shares ([`reduce`]), the backward
//! of every loss ([`scale`](mod@scale)), the row layout and online softmax of the class kernels
//! ([`rows`]), device helpers ([`helpers`]) and host-side helpers ([`launch`]). The launchers
//! work on [`CubeTensor`]s; the [`Kernels`] implementation is `super::fusion`'s, for
//! `burn::backend::Cube` (`Fusion<CubeBackend>`, the one cube type of the dispatch, which
//! crosses to and from dispatch tensors), whose custom ops run these launchers on the inner
//! tensors.
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
//! The gradient in the forward ([`Kernels`]`::*_with_grad`, for a tracked input): the same
//! forward kernels, with a comptime flag, also write the gradients for a unit upstream
//! gradient, a row's second read of its logits coming right after its softmax; the class
//! index forward first runs a one-cube pass over the targets for a mean's divisor (the total
//! weight), the others know theirs (`N S`, `L`). The log-sum-exp is then not saved. The
//! input gradient goes over the input's own buffer when the handle is ours to write
//! (`can_mut`, as burn-cubecl's in-place elementwise ops decide: the kernel's gradient
//! argument is an alias of its input argument), into a new buffer otherwise; the backward
//! (`Kernels::scale`) is one elementwise launch, in place the same way. So a loss on logits
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
//! `[0, 1]`) before the forward (`Kernels::CHECKS_VALUES` is false) and never passes empty
//! tensors (the cube kernels of Burn 0.21 crashed on zero-sized buffers).
//!
//! Every kernel indexes with CubeCL 0.11's default 32-bit addresses: the launchers cover only
//! ops whose sizes fit `u32` (`covers_*`).

mod binary;
mod class_index;
mod class_probs;
mod helpers;
mod launch;
mod reduce;
mod rows;
mod scale;
#[cfg(test)]
mod tests;

pub(super) use binary::{binary_backward, binary_forward, binary_with_grad};
pub(super) use class_index::{class_index_backward, class_index_forward, class_index_with_grad};
pub(super) use class_probs::{class_probs_backward, class_probs_forward, class_probs_with_grad};
pub(super) use launch::{covers_binary, covers_class_index, covers_class_probs};
pub(super) use scale::scale;

#[cfg(doc)]
use super::kernels::Kernels;
#[cfg(doc)]
use burn_cubecl::{CubeBackend, tensor::CubeTensor};

/// Units per cube of every kernel.
const CUBE_UNITS: u32 = 256;
/// The length of every shared-memory buffer: one slot per unit of a cube.
const SHARED_LEN: usize = CUBE_UNITS as usize;
/// The most cubes a grid-stride forward launches (each writes one partial sum).
const MAX_FORWARD_CUBES: usize = 4096;
