//! PyTorch's numeric constants, written once for the composite path and every kernel family
//! (`fused::cpu`, `fused::cube`), so that they cannot drift apart.

/// BCE clamps each logarithm at this value, so that a probability of exactly 0 or 1 gives a
/// finite loss (ATen's `binary_cross_entropy`: `std::max(std::log(x), -100)`).
pub(crate) const BCE_LOG_FLOOR: f64 = -100.0;

/// BCE's input gradient divides by `max(p (1 - p), BCE_GRAD_EPSILON)` so that it stays finite
/// at 0 and 1 (ATen's `binary_cross_entropy_backward`). PyTorch's constant is the f32 nearest
/// 1e-12, in every dtype.
pub(crate) const BCE_GRAD_EPSILON: f64 = 1e-12f32 as f64;
