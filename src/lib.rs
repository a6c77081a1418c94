//! # burn-xent
//!
//! PyTorch's cross-entropy family of losses for [Burn](https://burn.dev) 0.22, with PyTorch's
//! options and numbers, on every Burn backend (a `Tensor<D>` on any [`Device`](burn::tensor::Device)):
//!
//! | PyTorch module | PyTorch function | burn-xent module (+ `…Config`) | burn-xent function |
//! |---|---|---|---|
//! | `nn.BCELoss` | `F.binary_cross_entropy` | [`BceLoss`] | [`binary_cross_entropy`] |
//! | `nn.BCEWithLogitsLoss` | `F.binary_cross_entropy_with_logits` | [`BceWithLogitsLoss`] | [`binary_cross_entropy_with_logits`] |
//! | `nn.CrossEntropyLoss` | `F.cross_entropy` | [`CrossEntropyLoss`] | [`cross_entropy`], [`cross_entropy_with_probs`] |
//! | `nn.NLLLoss` | `F.nll_loss` | [`NllLoss`] | [`nll_loss`] |
//! | none (`F.cross_entropy(F.linear(h, W.T, b), t)`) | | [`LinearCrossEntropyLoss`] | [`linear_cross_entropy`] |
//!
//! [`linear_cross_entropy`] computes the classifier head and the cross-entropy together, in
//! chunks of rows on the fused backends, so the `[N, V]` logits never exist whole;
//! [`mean_denominator`] gives the mean's denominator for gradient accumulation.
//!
//! Each module is built from its `#[derive(Config)]` configuration and its `forward` calls the
//! function, so the two agree bit for bit, values and gradients. Following burn-nn's
//! `MseLoss`, a module's `forward(input, target, reduction)` returns the reduced loss as a
//! `Tensor<1>` of shape `[1]` ([`Reduction::Mean`] or [`Reduction::Sum`]) and
//! `forward_no_reduction(input, target)` returns PyTorch's `reduction='none'` per-element
//! loss; the functions come in the same two forms (`*_no_reduction`).
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use burn_xent::{CrossEntropyLossConfig, CrossEntropyOptions, Reduction, cross_entropy};
//! let device = Device::ndarray();
//! let logits = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], &device);
//! let target = Tensor::<1, Int>::from_ints([0, 2], &device);
//!
//! // PyTorch: nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1)
//! let module = CrossEntropyLossConfig::new()
//!     .with_weight(Some(vec![1.0, 2.0, 0.5]))
//!     .with_label_smoothing(0.1)
//!     .init(&device);
//! let loss = module.forward(logits.clone(), target.clone(), Reduction::Mean);
//!
//! // PyTorch: F.cross_entropy(logits, target, weight=w, label_smoothing=0.1)
//! let options = CrossEntropyOptions::new()
//!     .with_weight(Tensor::from_floats([1.0, 2.0, 0.5], &device))
//!     .with_label_smoothing(0.1);
//! let same = cross_entropy(logits, target, Reduction::Mean, &options);
//! assert_eq!(loss.into_scalar::<f32>(), same.into_scalar::<f32>());
//! ```
//!
//! Bad input (mismatched shapes, a class weight of the wrong length, a target class out of
//! range, a BCE probability outside `[0, 1]`, a label smoothing outside `[0, 1]`) panics with
//! a message that names the function, the argument, what was expected and what came. The
//! checks of values need one read from the device; each function's docs say what it costs
//! and how to switch it off.
//!
//! Every loss has two implementations with the same numbers: fused kernels (one custom
//! autodiff node whose forward also computes the input gradient when autodiff tracks the
//! input, writing it over the logits on the CPU when nothing else holds them; the backward
//! only scales it) on `NdArray` and `Flex` (features `ndarray` and `flex`, on by default) and
//! on the cube backend (wgpu; feature `wgpu`), and a composite path built from Burn's
//! generic tensor operations on every other backend. The path is picked at
//! run time from the tensors' device; [`with_loss_path`] and [`LossPath`] choose it by hand,
//! and [`fused_kernels_available`] tells whether a backend has kernels in this build.

#![warn(missing_docs)]
// Burn 0.22's `Tensor` is a large value (its dispatch primitive inline); the protocol hands a
// loss's input back by value (`Err(input)`) so that the composite path gets it without a clone.
#![allow(clippy::result_large_err)]

pub mod availability;
pub mod backend_check;
mod bce;
mod bce_with_logits;
mod binary;
mod broadcast;
mod checks;
mod class_layout;
mod class_shapes;
mod cross_entropy;
mod denominator;
mod fused;
pub mod gradcheck;
mod linear_cross_entropy;
mod nll;
mod path;
mod picked_targets;
mod pytorch;
mod reduction;
#[cfg(feature = "train")]
pub mod train;
mod workarounds;

pub use bce::{
    BceLoss, BceLossConfig, BceOptions, binary_cross_entropy, binary_cross_entropy_no_reduction,
};
pub use bce_with_logits::{
    BceWithLogitsLoss, BceWithLogitsLossConfig, BceWithLogitsOptions,
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_no_reduction,
};
pub use broadcast::BroadcastWeight;
pub use cross_entropy::{
    CrossEntropyLoss, CrossEntropyLossConfig, CrossEntropyOptions, LossWithZLoss, cross_entropy,
    cross_entropy_no_reduction, cross_entropy_with_probs, cross_entropy_with_probs_no_reduction,
    cross_entropy_with_z_loss,
};
pub use denominator::mean_denominator;
pub use linear_cross_entropy::{
    LinearCrossEntropyLoss, LinearCrossEntropyLossConfig, LinearCrossEntropyOptions,
    linear_cross_entropy, linear_cross_entropy_no_reduction, linear_cross_entropy_with_z_loss,
    linear_layer_cross_entropy,
};
pub use nll::{NllLoss, NllLossConfig, NllLossOptions, nll_loss, nll_loss_no_reduction};
pub use path::{LossPath, fused_kernels_available, loss_path, with_loss_path};
pub use reduction::Reduction;
pub use workarounds::log_softmax;
