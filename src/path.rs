//! Which implementation computes a loss: the fused kernels of a known backend, or the
//! composite path built from Burn's generic tensor operations.
//!
//! Every loss picks its path when it is called: the fused path when the crate was built with
//! the backend's `fused-*` feature (on by default), the backend is one the fused kernels know
//! (`Autodiff<NdArray<f32 | f64>>`, `NdArray<f32 | f64>`, and the cube backends listed in the
//! README) and the case is one they cover; the composite path otherwise. Both give PyTorch's
//! numbers; the composite path is the reference the tests hold the fused one to.
//! [`with_loss_path`] overrides the choice for the current thread, for tests and for
//! comparisons.

use core::cell::Cell;

/// Which implementation the losses use; see [`with_loss_path`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LossPath {
    /// The fused kernels where the backend and the case have them, the composite path
    /// elsewhere (the default).
    #[default]
    Auto,
    /// Always the composite path: Burn's generic tensor operations, on every backend.
    Composite,
    /// Always the fused kernels: a loss panics if its backend or case has none (so that a test
    /// of the fused path cannot silently run the composite one).
    Fused,
}

thread_local! {
    static PATH: Cell<LossPath> = const { Cell::new(LossPath::Auto) };
}

/// Runs `f` with every loss on this thread using `path`, then restores the previous path
/// (also when `f` panics).
///
/// The path is chosen when a loss is computed (its forward pass); the backward pass of a
/// loss runs the gradient of the path its forward took.
///
/// ```
/// use burn::tensor::{Int, Tensor};
/// use burn_xent::{CrossEntropyOptions, LossPath, Reduction, cross_entropy, with_loss_path};
/// type B = burn_ndarray::NdArray<f32>;
/// let device = Default::default();
/// let logits = Tensor::<B, 2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], &device);
/// let target = Tensor::<B, 1, Int>::from_ints([0, 2], &device);
/// let loss = |path| {
///     with_loss_path(path, || {
///         cross_entropy(logits.clone(), target.clone(), Reduction::Mean, &CrossEntropyOptions::new())
///     })
///     .into_scalar()
/// };
/// assert!((loss(LossPath::Composite) - loss(LossPath::Auto)).abs() < 1e-6);
/// ```
pub fn with_loss_path<R>(path: LossPath, f: impl FnOnce() -> R) -> R {
    struct Restore(LossPath);
    impl Drop for Restore {
        fn drop(&mut self) {
            PATH.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(PATH.with(|cell| cell.replace(path)));
    f()
}

/// The path the losses on this thread use now ([`LossPath::Auto`] unless inside
/// [`with_loss_path`]).
pub fn loss_path() -> LossPath {
    PATH.with(Cell::get)
}
