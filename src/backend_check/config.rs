//! The settings of a backend check: [`BackendCheckConfig`].

use burn::tensor::DType;

use super::{Projection, Tolerance};
use crate::gradcheck::assert_tolerance;

/// Settings of a backend check: tolerances (by default from the dtypes compared), NaN
/// handling, the projection of the outputs for the backward pass, and whether a backend that
/// cannot run fails the check.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendCheckConfig {
    /// Relative tolerance for every float comparison; `None` (the default): from the dtypes
    /// compared ([`Tolerance::for_dtypes`]).
    pub rtol: Option<f64>,
    /// Absolute tolerance for every float comparison; `None` (the default): from the dtypes.
    pub atol: Option<f64>,
    /// Whether NaN on both sides agrees (default true; PyTorch's `equal_nan`, whose default is
    /// false, but NaN is a value burn-xent's losses return on purpose).
    pub equal_nan: bool,
    /// The projection of each float output in the backward pass; output `o` uses the stream of
    /// `seed + o` ([`Projection::Random`], the default) or the plain sum.
    pub projection: Projection,
    /// Whether a backend that cannot run here fails the check (default false: it is reported
    /// as skipped).
    pub required: bool,
}

impl Default for BackendCheckConfig {
    fn default() -> Self {
        Self {
            rtol: None,
            atol: None,
            equal_nan: true,
            projection: Projection::default(),
            required: false,
        }
    }
}

impl BackendCheckConfig {
    /// Tolerances from the dtypes, NaN equal to NaN, a random projection (seed 0), backends
    /// that cannot run skipped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the relative tolerance of every float comparison.
    pub fn with_rtol(mut self, rtol: f64) -> Self {
        self.rtol = Some(rtol);
        self
    }

    /// Sets the absolute tolerance of every float comparison.
    pub fn with_atol(mut self, atol: f64) -> Self {
        self.atol = Some(atol);
        self
    }

    /// Sets whether NaN on both sides agrees.
    pub fn with_equal_nan(mut self, equal_nan: bool) -> Self {
        self.equal_nan = equal_nan;
        self
    }

    /// Sets the projection of the outputs in the backward pass.
    pub fn with_projection(mut self, projection: Projection) -> Self {
        self.projection = projection;
        self
    }

    /// Sets whether a backend that cannot run fails the check instead of being skipped.
    pub fn with_required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Panics unless each tolerance set is non-negative (NaN is refused).
    pub(super) fn validate(&self) {
        for (name, value) in [("rtol", self.rtol), ("atol", self.atol)] {
            if let Some(value) = value {
                assert_tolerance("backend_check", name, value);
            }
        }
    }

    /// The tolerance for a pair of tensors of these dtypes (exact for integers).
    pub fn tolerance(&self, reference: DType, value: DType) -> Tolerance {
        let default = Tolerance::for_dtypes(reference, value);
        if !(reference.is_float() || value.is_float()) {
            return default;
        }
        Tolerance {
            rtol: self.rtol.unwrap_or(default.rtol),
            atol: self.atol.unwrap_or(default.atol),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_tolerance_replaces_the_dtypes_for_floats_only() {
        let config = BackendCheckConfig::new().with_atol(1e-3);
        let t = config.tolerance(DType::F64, DType::F32);
        assert_eq!((t.rtol, t.atol), (1e-4, 1e-3));
        let exact = config.tolerance(DType::I64, DType::I32);
        assert_eq!((exact.rtol, exact.atol), (0.0, 0.0));
    }
}
