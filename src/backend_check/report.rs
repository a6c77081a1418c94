//! What a backend check found: per backend ([`BackendComparison`]), per output and gradient
//! ([`TensorComparison`]) and at the worst element ([`ElementDiff`]), each with a `Display`
//! that reads as one line of the report.

use std::fmt;

use burn::tensor::DType;

use super::{BackendCheckConfig, Tolerance};
use crate::gradcheck::error_ratio;

/// What a [`TensorComparison`] compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The output of this name.
    Output(String),
    /// The gradient of the projected outputs with respect to the input of this name.
    Gradient(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Output(name) => write!(f, "output {name:?}"),
            Subject::Gradient(name) => write!(f, "gradient of {name:?}"),
        }
    }
}

/// Which run of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The reference backend.
    Reference,
    /// The backend checked against it.
    Checked,
}

/// How the comparison of one tensor ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Both sides have the tensor, of one shape; compared element by element.
    Compared,
    /// Neither side has it: Burn returned no gradient on either backend (the input is
    /// detached, unread, or empty). Passes.
    AbsentOnBoth,
    /// One side has it and the other does not: a gradient Burn did not return (or an output
    /// the computation did not give) on `on`. Fails.
    Missing {
        /// The side without it.
        on: Side,
        /// The shape on the other side.
        shape: Vec<usize>,
    },
    /// The shapes differ. Fails.
    ShapeMismatch {
        /// The reference's shape.
        reference: Vec<usize>,
        /// The checked backend's shape.
        checked: Vec<usize>,
    },
}

/// The comparison at one element.
#[derive(Clone, Debug, PartialEq)]
pub struct ElementDiff {
    /// The element's index, one entry per dimension.
    pub index: Vec<usize>,
    /// The element's row-major position.
    pub flat_index: usize,
    /// The reference's value.
    pub reference: f64,
    /// The checked backend's value.
    pub value: f64,
    /// `|value - reference|` (NaN or infinite when either is not finite).
    pub abs_error: f64,
    /// The allowed error, `atol + rtol * |reference|`.
    pub tolerance: f64,
}

impl ElementDiff {
    /// `abs_error / tolerance` for finite values (0 when equal, infinite for any error against
    /// a zero tolerance); infinite when either value is not finite.
    pub fn ratio(&self) -> f64 {
        let finite = self.reference.is_finite() && self.value.is_finite();
        error_ratio(finite, self.abs_error, self.tolerance)
    }
}

impl fmt::Display for ElementDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let within = self.ratio() <= 1.0;
        write!(
            f,
            "{:?}: reference {:.9e}, got {:.9e}, |error| {:.2e} {} tolerance {:.2e}",
            self.index,
            self.reference,
            self.value,
            self.abs_error,
            if within { "<=" } else { ">" },
            self.tolerance
        )
    }
}

/// The comparison of one output or one gradient between the reference and a backend.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorComparison {
    /// The output or the input whose gradient this is.
    pub subject: Subject,
    /// How the comparison ended; see [`Outcome`].
    pub outcome: Outcome,
    /// The shape compared (the reference's; empty unless [`Outcome::Compared`]).
    pub shape: Vec<usize>,
    /// The reference's dtype (`None` when it lacks the tensor).
    pub reference_dtype: Option<DType>,
    /// The checked backend's dtype (`None` when it lacks the tensor).
    pub dtype: Option<DType>,
    /// The tolerance used (from the less precise dtype unless set).
    pub tolerance: Tolerance,
    /// Elements compared.
    pub compared: usize,
    /// Elements, finite on both sides, beyond the tolerance.
    pub failed: usize,
    /// Elements where one side is NaN or infinite and the other is not the same value (NaN on
    /// both sides counts here when [`BackendCheckConfig::equal_nan`] is false).
    pub nonfinite_mismatches: usize,
    /// The element, finite on both sides, with the largest error relative to its tolerance.
    pub worst: Option<ElementDiff>,
    /// The first NaN/inf mismatch.
    pub first_nonfinite_mismatch: Option<ElementDiff>,
}

impl TensorComparison {
    /// Whether the tensor agrees: compared with no element beyond tolerance and no NaN/inf
    /// mismatch, or absent on both sides.
    pub fn passed(&self) -> bool {
        match self.outcome {
            Outcome::Compared => self.failed == 0 && self.nonfinite_mismatches == 0,
            Outcome::AbsentOnBoth => true,
            Outcome::Missing { .. } | Outcome::ShapeMismatch { .. } => false,
        }
    }
}

impl fmt::Display for TensorComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.subject)?;
        match &self.outcome {
            Outcome::AbsentOnBoth => write!(f, ": no gradient on either backend"),
            Outcome::Missing { on, shape } => match on {
                Side::Reference => write!(
                    f,
                    ": MISSING on the reference (the checked backend has one of shape {shape:?})"
                ),
                Side::Checked => write!(
                    f,
                    ": MISSING on the checked backend (Burn returned none; the reference has one \
                     of shape {shape:?})"
                ),
            },
            Outcome::ShapeMismatch { reference, checked } => {
                write!(
                    f,
                    ": SHAPE differs: reference {reference:?}, got {checked:?}"
                )
            }
            Outcome::Compared => {
                let dtype = |d: Option<DType>| d.map(|d| format!("{d:?}")).unwrap_or_default();
                let Tolerance { rtol, atol } = self.tolerance;
                let tolerance = if rtol == 0.0 && atol == 0.0 {
                    "exact".to_string()
                } else {
                    format!("rtol {rtol:e}, atol {atol:e}")
                };
                write!(
                    f,
                    " {:?} {} vs {} ({tolerance}): {} compared, {} beyond tolerance, {} NaN/inf \
                     mismatches",
                    self.shape,
                    dtype(self.dtype),
                    dtype(self.reference_dtype),
                    self.compared,
                    self.failed,
                    self.nonfinite_mismatches
                )?;
                if let Some(worst) = &self.worst {
                    write!(f, "; worst {worst}")?;
                }
                if let Some(first) = &self.first_nonfinite_mismatch {
                    write!(
                        f,
                        "; first NaN/inf mismatch {:?}: reference {:.9e}, got {:.9e}",
                        first.index, first.reference, first.value
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Whether a backend ran.
#[derive(Clone, Debug, PartialEq)]
pub enum BackendStatus {
    /// It ran and was compared.
    Ran,
    /// It (or the reference) cannot run here; the reason. Does not fail the check.
    Skipped(String),
    /// It (or the reference) cannot run here but was required
    /// ([`BackendCheckConfig::required`]); the reason. Fails the check.
    Unavailable(String),
    /// Its run panicked; the panic's message. Fails the check.
    Panicked(String),
}

/// One backend against the reference: every output, then every gradient of a float input.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendComparison {
    /// The backend, named by its device as [`crate::availability`] names it (e.g.
    /// `Autodiff<NdArray(Cpu)>`, or `Autodiff<Cube(…)>` for wgpu); always with autodiff, which
    /// the check turns on.
    pub backend: String,
    /// The float dtype the backend ran in (given with its device), in which its float inputs
    /// are created.
    pub float_dtype: DType,
    /// Whether it ran.
    pub status: BackendStatus,
    /// The outputs in the reference's order (then any the reference lacks), then the gradients
    /// in the order of the float inputs; empty unless [`BackendStatus::Ran`].
    pub tensors: Vec<TensorComparison>,
}

impl BackendComparison {
    /// True when it ran and every tensor agrees, or it was skipped.
    pub fn passed(&self) -> bool {
        match self.status {
            BackendStatus::Ran => self.tensors.iter().all(TensorComparison::passed),
            BackendStatus::Skipped(_) => true,
            BackendStatus::Unavailable(_) | BackendStatus::Panicked(_) => false,
        }
    }

    /// Elements compared, over every tensor.
    pub fn compared(&self) -> usize {
        self.tensors.iter().map(|t| t.compared).sum()
    }

    /// The comparison of output `name`.
    pub fn output(&self, name: &str) -> Option<&TensorComparison> {
        self.tensors
            .iter()
            .find(|t| t.subject == Subject::Output(name.to_string()))
    }

    /// The comparison of the gradient with respect to input `name`.
    pub fn gradient(&self, input: &str) -> Option<&TensorComparison> {
        self.tensors
            .iter()
            .find(|t| t.subject == Subject::Gradient(input.to_string()))
    }

    /// The tensors that disagree.
    pub fn failures(&self) -> impl Iterator<Item = &TensorComparison> {
        self.tensors.iter().filter(|t| !t.passed())
    }
}

impl fmt::Display for BackendComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{:?}]: ", self.backend, self.float_dtype)?;
        match &self.status {
            BackendStatus::Skipped(reason) => write!(f, "skipped: {reason}"),
            BackendStatus::Unavailable(reason) => {
                write!(f, "FAILED: required but cannot run: {reason}")
            }
            BackendStatus::Panicked(message) => write!(f, "FAILED: panicked: {message}"),
            BackendStatus::Ran => {
                let failed = self.failures().count();
                if failed == 0 {
                    write!(f, "agrees, {} elements compared", self.compared())?;
                } else {
                    write!(
                        f,
                        "DISAGREES on {failed} of {} tensors ({} elements compared)",
                        self.tensors.len(),
                        self.compared()
                    )?;
                }
                for tensor in &self.tensors {
                    write!(f, "\n    {tensor}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a backend check found: the reference, and each backend against it. Its `Display`
/// gives one line per backend and, for a backend that ran, one line per output and gradient
/// (shape, dtypes, tolerance, elements compared and beyond tolerance, NaN/inf mismatches, the
/// worst element with its index, both values, the error and the tolerance).
///
/// PyTorch's `torch.testing.assert_close` raises with the mismatched elements' count and the
/// greatest absolute and relative differences; this report carries the same, per tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendCheckReport {
    /// The reference backend, named by its device (see [`BackendComparison::backend`]).
    pub reference: String,
    /// The float dtype the reference ran in.
    pub reference_float_dtype: DType,
    /// Why the reference cannot run here, when it cannot (every backend is then skipped, or
    /// failed when required).
    pub reference_unavailable: Option<String>,
    /// One entry per checked backend, in order.
    pub backends: Vec<BackendComparison>,
    /// The settings of the check.
    pub config: BackendCheckConfig,
}

impl BackendCheckReport {
    /// True when every backend that ran agrees and none failed to run where it was required
    /// (skipped backends do not fail it).
    pub fn passed(&self) -> bool {
        self.backends.iter().all(BackendComparison::passed)
    }

    /// How many backends were skipped.
    pub fn skipped(&self) -> usize {
        self.backends
            .iter()
            .filter(|b| matches!(b.status, BackendStatus::Skipped(_)))
            .count()
    }
}

impl fmt::Display for BackendCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.backends.iter().filter(|b| !b.passed()).count();
        let skipped = self.skipped();
        let ran = self.backends.len() - skipped;
        if failed == 0 {
            write!(
                f,
                "backend check passed: {ran} of {} backends ran and agree with the reference {} \
                 [{:?}]",
                self.backends.len(),
                self.reference,
                self.reference_float_dtype
            )?;
        } else {
            write!(
                f,
                "backend check FAILED: {failed} of {} backends disagree with the reference {} \
                 [{:?}]",
                self.backends.len(),
                self.reference,
                self.reference_float_dtype
            )?;
        }
        if skipped > 0 {
            write!(f, " ({skipped} skipped)")?;
        }
        if let Some(reason) = &self.reference_unavailable {
            write!(f, "\n  the reference cannot run: {reason}")?;
        }
        for backend in &self.backends {
            write!(f, "\n  {backend}")?;
        }
        Ok(())
    }
}
