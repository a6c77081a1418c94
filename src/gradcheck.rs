//! Numerical gradient checking, in the spirit of PyTorch's `torch.autograd.gradcheck`: the
//! gradient that Burn's autodiff computes for a function is compared, element by element, with
//! central finite differences of the same function.
//!
//! ```
//! use burn::tensor::{DType, Device, Tensor, TensorData};
//! use burn_xent::gradcheck::{GradcheckConfig, assert_gradcheck};
//! use burn_xent::{BceWithLogitsOptions, Reduction, binary_cross_entropy_with_logits};
//! // The ndarray backend with autodiff; f64 is chosen when each tensor is created.
//! let device = Device::ndarray().autodiff();
//! let f64_tensor = |values: Vec<f64>| {
//!     Tensor::<2>::from_data(TensorData::new(values, [2, 3]), (&device, DType::F64))
//! };
//! let logits = f64_tensor(vec![0.5, -1.0, 2.0, 0.1, -0.3, 1.2]);
//! let soft_target = f64_tensor(vec![1.0, 0.0, 0.7, 0.2, 0.5, 1.0]);
//! let opts = BceWithLogitsOptions::new();
//!
//! // PyTorch: torch.autograd.gradcheck(lambda x, t: F.binary_cross_entropy_with_logits(x, t), (x, t))
//! // f64 inputs: PyTorch's defaults (step 1e-6, atol 1e-5, rtol 1e-3).
//! let report = assert_gradcheck(
//!     |x| binary_cross_entropy_with_logits(x[0].clone(), x[1].clone(), Reduction::Mean, &opts),
//!     &[logits, soft_target],
//!     &GradcheckConfig::new(),
//! );
//! assert!(report.passed && report.checked == 12);
//! println!("{report}");
//! ```
//!
//! # What is compared
//! The function `f` maps the inputs `x_0, …, x_{n-1}` (float tensors of one rank `D`) to a
//! float tensor `y` of any rank. It is turned into a scalar `s = Σ_j p_j y_j` with a fixed
//! projection `p` of `y`'s shape ([`Projection`]: deterministic pseudo-random weights, the
//! default, or all ones, the plain sum). For every checked element `x_i[k]`:
//! - the *analytic* derivative `∂s/∂x_i[k]` comes from one backward pass of `(y * p).sum()`
//!   through tracked copies of the inputs (one backward pass for all inputs);
//! - the *numeric* derivative is `(s(x_i[k] + h) - s(x_i[k] - h)) / (2h)`, each side an
//!   evaluation of `f` on tensors that do not require a gradient, the perturbed one rebuilt
//!   from host data on the input's device in the input's dtype. The difference is taken on
//!   the host in f64 as `Σ_j p_j (y⁺_j - y⁻_j)`, so outputs that do not depend on the element
//!   cancel exactly, and `2h` is the difference of the two perturbed values as the dtype
//!   stores them, so rounding the step to f32 costs no accuracy.
//!
//! The element passes when `|analytic - numeric| <= atol + rtol * |numeric|` (PyTorch's rule;
//! a NaN or an infinity on either side fails). The [`GradcheckReport`] names the worst element
//! (the largest error relative to its tolerance), its input and index, both values, and how
//! many elements were checked and failed.
//!
//! A random projection checks a vector-Jacobian product in a direction in which errors do not
//! cancel: with the plain sum, a wrong gradient whose columns sum to zero (for example one
//! that leaks between the outputs of a softmax) goes unseen. Checking a reduced loss (one
//! output) the two differ only by a constant factor.
//!
//! # Several inputs, mixed ranks
//! All inputs have the rank `D` of the slice, not necessarily one shape: the input and a soft
//! target of a loss, or a `[N, C]` logit tensor and a `[1, C]` weight. An input of another
//! rank is passed with leading axes of size 1 and reshaped inside `f` (a class weight `[C]` as
//! `[1, C]`, then `w.reshape([C])`). Tensors that need no check (class indices, weights held
//! constant) are captured by the closure instead of passed.
//!
//! # Choosing the step and the tolerances
//! The numeric derivative has two errors: truncation, about `h² |f'''| / 6`, which shrinks
//! with the step, and rounding, about `ε |s| / h` with `ε` the dtype's unit roundoff (each
//! evaluation of `s` carries an error of a few `ε |s|`, and their difference is divided by
//! `2h`), which grows as the step shrinks. Their sum is smallest near
//! `h ≈ (3 ε |s| / |f'''|)^(1/3)`.
//! - **f64** (`ε ≈ 1.1e-16`): PyTorch's defaults, step `1e-6`, `atol 1e-5`, `rtol 1e-3`
//!   ([`GradcheckConfig::new`]). Rounding contributes about `1e-10 |s|`, truncation about
//!   `1e-13 |f'''|`: far below the tolerances, which then catch nothing but real errors
//!   (burn-xent's own losses agree to about `1e-8`). Prefer f64 whenever the backend computes
//!   in it (burn-ndarray does; burn-wgpu with fusion does not).
//! - **f32** (`ε ≈ 6e-8`): the optimum is near `h ≈ 5e-3`, but truncation grows fast where
//!   `f` curves sharply (BCE at a probability `p` near 0 or 1 has a relative truncation error
//!   `h² / (3 p²)`), so [`GradcheckConfig::f32`] takes step `1e-3`, where rounding gives
//!   about `1e-4 |s|` (burn-xent's losses on 12 elements, reduced by `Sum`: up to `1.4e-3`),
//!   with `atol 5e-3` and `rtol 1e-2`. Raise `atol` with `|s|`: a sum over many elements has
//!   a larger `|s|` than a mean. The other side of that coin: a derivative much smaller than
//!   `atol` is barely checked (a mean over a thousand elements has derivatives near `1e-3`,
//!   which pass whatever their value), so check such functions on a few elements, with a
//!   `Sum`, or in f64.
//! - **f16, bf16**: only a coarse smoke test is possible ([`GradcheckConfig::for_dtype`]);
//!   check the same function in f32 or f64.
//!
//! In every dtype, keep the inputs at least a few steps away from kinks, clamps and domain
//! edges (`relu` at 0, BCE's clamps at probabilities 0 and 1, `log` near 0): there the two
//! one-sided derivatives differ, and no step makes the numeric derivative agree with either.
//!
//! # Devices and dtypes
//! The inputs may live on any device, with autodiff or without: `f` always receives tensors on
//! the autodiff form of each input's device ([`Tensor::autodiff`]), tracked copies for the
//! analytic derivative and untracked ones for the numeric derivative.
//!
//! Each input is perturbed and rebuilt in its own dtype (reported in [`InputCheck::dtype`]).
//! Make sure it is the one intended: since Burn 0.22, f64 is chosen when a tensor is created,
//! `Tensor::from_data(data, (&device, DType::F64))`, while `Tensor::from_data(data, &device)`
//! gives the device's default float dtype (f32). A function that creates tensors of its own (a
//! mask, a constant) should create them in its inputs' dtype,
//! `Tensor::ones(shape, (&x.device(), x.dtype()))`.

use std::fmt;

use burn::tensor::{DType, Tensor, TensorData};

use crate::checks::unravel;

/// The scalar the output of the checked function is reduced to before differentiation.
///
/// PyTorch's `torch.autograd.gradcheck` checks the full Jacobian (or, with `fast_mode=True`,
/// random projections of it); burn-xent checks the vector-Jacobian product in the direction
/// given here, element by element of every input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// `Σ_j p_j y_j` with `p_j = ±m_j`, `m_j` in `{0.5, 0.625, …, 1.5}` and the sign drawn
    /// from a SplitMix64 stream seeded by `seed`: deterministic, the same on every backend,
    /// and exactly representable in every float dtype (f16 and bf16 included).
    Random {
        /// Seed of the SplitMix64 stream.
        seed: u64,
    },
    /// `Σ_j y_j`: the plain sum of the output (`p_j = 1`).
    Sum,
}

impl Default for Projection {
    /// `Random { seed: 0 }`.
    fn default() -> Self {
        Projection::Random { seed: 0 }
    }
}

impl Projection {
    /// The `count` projection weights `p_j`, in the output's row-major order.
    pub fn weights(&self, count: usize) -> Vec<f64> {
        match *self {
            Projection::Sum => vec![1.0; count],
            Projection::Random { seed } => {
                let mut state = seed;
                (0..count)
                    .map(|_| {
                        let bits = splitmix64(&mut state);
                        let magnitude = (4 + bits % 9) as f64 / 8.0;
                        if (bits >> 32) & 1 == 1 {
                            -magnitude
                        } else {
                            magnitude
                        }
                    })
                    .collect()
            }
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Projection::Random { seed } => write!(f, "random (seed {seed})"),
            Projection::Sum => write!(f, "sum"),
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Settings of [`gradcheck`]: PyTorch's `eps` (here `step`), `atol` and `rtol`, the
/// projection of the output, and an optional cap on the elements checked per input.
///
/// [`GradcheckConfig::new`] (also `Default`) gives PyTorch's defaults, meant for f64;
/// [`GradcheckConfig::f32`] gives values that work in f32. See the
/// [module documentation](self) for how to choose them.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckConfig {
    /// The finite-difference step `h` (PyTorch's `eps`), added to and subtracted from one
    /// element at a time; positive.
    pub step: f64,
    /// Absolute tolerance (PyTorch's `atol`).
    pub atol: f64,
    /// Relative tolerance, relative to the numeric derivative (PyTorch's `rtol`).
    pub rtol: f64,
    /// How the output is reduced to the scalar that is differentiated.
    pub projection: Projection,
    /// Check at most this many elements of each input, spread evenly over it (`None`, the
    /// default: every element). Each checked element costs two evaluations of the function.
    pub max_elements_per_input: Option<usize>,
}

impl Default for GradcheckConfig {
    /// PyTorch's defaults, for f64: see [`GradcheckConfig::new`].
    fn default() -> Self {
        Self {
            step: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            projection: Projection::default(),
            max_elements_per_input: None,
        }
    }
}

impl GradcheckConfig {
    /// PyTorch's `torch.autograd.gradcheck` defaults, for backends that compute in f64:
    /// step `1e-6`, `atol 1e-5`, `rtol 1e-3`, a random projection (seed 0), every element.
    pub fn new() -> Self {
        Self::default()
    }

    /// Values for backends that compute in f32: step `1e-3`, `atol 5e-3`, `rtol 1e-2`, a
    /// random projection (seed 0), every element. They hold for losses of a few dozen
    /// elements with values of order 1; raise `atol` with the size of the projected sum. A
    /// derivative much smaller than `atol` is barely checked: see the
    /// [module documentation](self).
    pub fn f32() -> Self {
        Self {
            step: 1e-3,
            atol: 5e-3,
            rtol: 1e-2,
            ..Self::default()
        }
    }

    /// The values for a float dtype: [`GradcheckConfig::new`] for `F64`, a coarse smoke-test
    /// setting for `F16` and `BF16` (step `1e-1`, `atol 1e-1`, `rtol 1e-1`), and
    /// [`GradcheckConfig::f32`] otherwise. Pass the dtype of the inputs
    /// (`tensor.dtype()`) to write one check for every backend.
    pub fn for_dtype(dtype: DType) -> Self {
        match dtype {
            DType::F64 => Self::new(),
            DType::F16 | DType::BF16 => Self {
                step: 1e-1,
                atol: 1e-1,
                rtol: 1e-1,
                ..Self::default()
            },
            _ => Self::f32(),
        }
    }

    /// Sets the finite-difference step.
    pub fn with_step(mut self, step: f64) -> Self {
        self.step = step;
        self
    }

    /// Sets the absolute tolerance.
    pub fn with_atol(mut self, atol: f64) -> Self {
        self.atol = atol;
        self
    }

    /// Sets the relative tolerance.
    pub fn with_rtol(mut self, rtol: f64) -> Self {
        self.rtol = rtol;
        self
    }

    /// Sets the projection of the output.
    pub fn with_projection(mut self, projection: Projection) -> Self {
        self.projection = projection;
        self
    }

    /// Caps the number of elements checked per input (`None`: all of them).
    pub fn with_max_elements_per_input(mut self, max: Option<usize>) -> Self {
        self.max_elements_per_input = max;
        self
    }
}

/// The comparison at one element of one input.
#[derive(Clone, Debug, PartialEq)]
pub struct ElementCheck {
    /// Position of the input in the slice given to [`gradcheck`].
    pub input: usize,
    /// The element's index in the input, one entry per dimension.
    pub index: Vec<usize>,
    /// The element's row-major position in the input.
    pub flat_index: usize,
    /// The autodiff derivative of the projected output with respect to the element.
    pub analytic: f64,
    /// The central finite difference of the projected output.
    pub numeric: f64,
    /// `|analytic - numeric|` (NaN when either is NaN).
    pub abs_error: f64,
    /// The allowed error, `atol + rtol * |numeric|`.
    pub tolerance: f64,
}

impl ElementCheck {
    /// Whether the element passes: both values finite and `abs_error <= tolerance`.
    pub fn passed(&self) -> bool {
        self.analytic.is_finite() && self.numeric.is_finite() && self.abs_error <= self.tolerance
    }

    /// `abs_error / tolerance`: at most 1 for a passing element; infinite for a non-finite
    /// value, or for any error with a zero tolerance. The worst element maximises it.
    pub fn ratio(&self) -> f64 {
        let finite = self.analytic.is_finite() && self.numeric.is_finite();
        error_ratio(finite, self.abs_error, self.tolerance)
    }
}

/// `abs_error / tolerance` of an element whose two values are `finite` (both) or not: 0 when
/// equal, infinite for any error against a zero tolerance, infinite when either value is not
/// finite. The worst element of a check maximises it (here and in [`crate::backend_check`]).
pub(crate) fn error_ratio(finite: bool, abs_error: f64, tolerance: f64) -> f64 {
    if !finite {
        f64::INFINITY
    } else if abs_error == 0.0 {
        0.0
    } else if tolerance > 0.0 {
        abs_error / tolerance
    } else {
        f64::INFINITY
    }
}

impl fmt::Display for ElementCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input {} element {:?}: analytic {:.9e}, numeric {:.9e}, |error| {:.3e} {} tolerance {:.3e}",
            self.input,
            self.index,
            self.analytic,
            self.numeric,
            self.abs_error,
            if self.passed() { "<=" } else { ">" },
            self.tolerance
        )
    }
}

/// The outcome for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputCheck {
    /// Position of the input in the slice given to [`gradcheck`].
    pub input: usize,
    /// The input's shape.
    pub shape: Vec<usize>,
    /// The input's dtype, in which it was perturbed.
    pub dtype: DType,
    /// How many of its elements were checked.
    pub checked: usize,
    /// How many of those failed.
    pub failed: usize,
    /// The element with the largest [`ElementCheck::ratio`], `None` when none was checked.
    pub worst: Option<ElementCheck>,
}

/// What [`gradcheck`] found: pass or fail, the worst element over all inputs, counts, and the
/// settings used. Its `Display` is a readable summary, one line per input.
///
/// PyTorch's `torch.autograd.gradcheck` returns a bool (or raises with the first mismatch);
/// this report carries the numbers behind the verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    /// True when every checked element passed.
    pub passed: bool,
    /// Elements checked, over all inputs.
    pub checked: usize,
    /// Elements that failed, over all inputs.
    pub failed: usize,
    /// The element with the largest [`ElementCheck::ratio`] over all inputs (the first
    /// failure to look at), `None` when no element was checked.
    pub worst: Option<ElementCheck>,
    /// One entry per input, in order.
    pub inputs: Vec<InputCheck>,
    /// The output's shape.
    pub output_shape: Vec<usize>,
    /// The settings of the check.
    pub config: GradcheckConfig,
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        if self.passed {
            write!(f, "gradcheck passed: {} elements checked", self.checked)?;
        } else {
            write!(
                f,
                "gradcheck FAILED: {} of {} elements checked exceed atol + rtol * |numeric|",
                self.failed, self.checked
            )?;
        }
        writeln!(
            f,
            " (step {:e}, atol {:e}, rtol {:e}, projection {}, output {:?})",
            c.step, c.atol, c.rtol, c.projection, self.output_shape
        )?;
        if let Some(worst) = &self.worst {
            writeln!(f, "  worst: {worst}")?;
        }
        for (n, input) in self.inputs.iter().enumerate() {
            write!(
                f,
                "  input {} {:?} {:?}: {} checked, {} failed",
                input.input, input.shape, input.dtype, input.checked, input.failed
            )?;
            if let Some(worst) = &input.worst {
                write!(
                    f,
                    "; worst {:?}: analytic {:.6e}, numeric {:.6e}, |error| {:.2e} ({:.2} of tolerance)",
                    worst.index,
                    worst.analytic,
                    worst.numeric,
                    worst.abs_error,
                    worst.ratio()
                )?;
            }
            if n + 1 < self.inputs.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// Compares the autodiff gradient of `f` at `inputs` with central finite differences, element
/// by element; PyTorch's `torch.autograd.gradcheck(f, inputs, eps=step, atol, rtol)`, with a
/// report instead of a bool. See the [module documentation](self) for what is compared and
/// how to choose the settings.
///
/// # Shapes
/// - `inputs`: one or more float tensors of rank `D` (shapes may differ), on any device, with
///   autodiff or without; every one is checked. They are not modified; `f` receives copies
///   (tracked for the analytic gradient, untracked and perturbed for the numeric one) in the
///   same dtypes, on the autodiff form of the same devices.
/// - `f`: any function of the inputs, returning a float tensor of any rank `DO` whose shape
///   does not depend on the values. It is called once with tracking and twice per checked
///   element without, so it must be deterministic (no dropout, no fresh random numbers).
///
/// # Cost
/// One backward pass, plus two evaluations of `f` and one read of its output from the device
/// per checked element (see [`GradcheckConfig::max_elements_per_input`]).
///
/// # Panics
/// - if `inputs` is empty, `step` is not positive and finite, or `atol` or `rtol` is negative
///   or NaN;
/// - if the step vanishes when rounded to an input's dtype at some element (`x + h == x - h`;
///   raise the step);
/// - if `f` panics, or returns outputs of different shapes on different calls.
pub fn gradcheck<const D: usize, const DO: usize, F>(
    f: F,
    inputs: &[Tensor<D>],
    config: &GradcheckConfig,
) -> GradcheckReport
where
    F: Fn(&[Tensor<D>]) -> Tensor<DO>,
{
    validate(inputs.len(), config);

    // Every evaluation of f runs on the autodiff form of the inputs' devices, from untracked
    // leaves (detached from any graph of the caller, not requiring a gradient).
    let constants: Vec<Tensor<D>> = inputs
        .iter()
        .map(|t| t.clone().autodiff().set_require_grad(false))
        .collect();

    // Analytic: one backward pass of (y * p).sum() through tracked copies of the inputs. An
    // output that no input reaches is not tracked: no gradient, read as zeros below.
    let tracked: Vec<Tensor<D>> = constants.iter().map(|t| t.clone().require_grad()).collect();
    let output = f(&tracked);
    let output_shape = output.dims().to_vec();
    let weights = config
        .projection
        .weights(output_shape.iter().product::<usize>());
    let projected = project(output, &weights);
    let grads = projected.is_tracked().then(|| projected.backward());
    let analytic: Vec<Vec<f64>> = tracked
        .iter()
        .map(|t| match grads.as_ref().and_then(|grads| t.grad(grads)) {
            Some(grad) => host_values(grad.into_data()),
            None => vec![0.0; t.shape().num_elements()],
        })
        .collect();
    drop(grads);

    // Numeric: central differences of the projected output, taken on the host in f64.
    let evaluate = |args: &[Tensor<D>]| -> Vec<f64> {
        let out = f(args);
        assert!(
            out.dims().as_slice() == output_shape.as_slice(),
            "gradcheck: f: expected the output shape {output_shape:?} of the first call, got {:?}",
            out.dims()
        );
        host_values(out.into_data())
    };

    let mut checks = Vec::with_capacity(inputs.len());
    for (i, input) in constants.iter().enumerate() {
        let shape = input.dims();
        let dtype = input.dtype();
        let device = input.device();
        let base = host_values(input.to_data());
        let count = base.len();
        let selected: Vec<usize> = match config.max_elements_per_input {
            Some(max) if max < count => (0..max).map(|j| j * count / max).collect(),
            _ => (0..count).collect(),
        };

        let mut input_check = InputCheck {
            input: i,
            shape: shape.to_vec(),
            dtype,
            checked: 0,
            failed: 0,
            worst: None,
        };
        for k in selected {
            let x = base[k];
            let stored = round_to(dtype, &[x + config.step, x - config.step]);
            let (plus, minus) = (stored[0], stored[1]);
            let index = unravel(k, &shape);
            assert!(
                plus > minus,
                "gradcheck: step: {:e} vanishes in {dtype:?} at input {i} element {index:?} \
                 (value {x:e}: x + step and x - step round to {plus:e} and {minus:e}); \
                 choose a larger step",
                config.step
            );
            let at = |value: f64| {
                let mut values = base.clone();
                values[k] = value;
                let perturbed = Tensor::<D>::from_data(
                    TensorData::new(values, shape).convert_dtype(dtype),
                    (&device, dtype),
                );
                let mut args = constants.clone();
                args[i] = perturbed;
                evaluate(&args)
            };
            // Σ_j p_j (y⁺_j - y⁻_j): outputs that do not depend on the element cancel exactly.
            let (y_plus, y_minus) = (at(plus), at(minus));
            let difference: f64 = y_plus
                .iter()
                .zip(&y_minus)
                .zip(&weights)
                .map(|((a, b), p)| p * (a - b))
                .sum();
            let numeric = difference / (plus - minus);
            let analytic_k = analytic[i][k];
            let check = ElementCheck {
                input: i,
                index,
                flat_index: k,
                analytic: analytic_k,
                numeric,
                abs_error: (analytic_k - numeric).abs(),
                tolerance: config.atol + config.rtol * numeric.abs(),
            };
            input_check.checked += 1;
            if !check.passed() {
                input_check.failed += 1;
            }
            if input_check
                .worst
                .as_ref()
                .is_none_or(|worst| check.ratio() > worst.ratio())
            {
                input_check.worst = Some(check);
            }
        }
        checks.push(input_check);
    }

    let checked = checks.iter().map(|c| c.checked).sum();
    let failed = checks.iter().map(|c| c.failed).sum();
    let worst = checks
        .iter()
        .filter_map(|c| c.worst.as_ref())
        .fold(None::<&ElementCheck>, |best, e| match best {
            Some(b) if b.ratio() >= e.ratio() => Some(b),
            _ => Some(e),
        })
        .cloned();
    GradcheckReport {
        passed: failed == 0,
        checked,
        failed,
        worst,
        inputs: checks,
        output_shape,
        config: config.clone(),
    }
}

/// [`gradcheck`], panicking with the report when an element fails; returns the report when
/// all pass. PyTorch's `torch.autograd.gradcheck(…, raise_exception=True)`.
///
/// # Panics
/// When the check fails, with a message that starts `gradcheck FAILED` and contains the whole
/// report (the worst element's input, index, analytic and numeric values); and in the cases
/// listed under [`gradcheck`].
#[track_caller]
pub fn assert_gradcheck<const D: usize, const DO: usize, F>(
    f: F,
    inputs: &[Tensor<D>],
    config: &GradcheckConfig,
) -> GradcheckReport
where
    F: Fn(&[Tensor<D>]) -> Tensor<DO>,
{
    let report = gradcheck(f, inputs, config);
    if !report.passed {
        panic!("{report}");
    }
    report
}

fn validate(inputs: usize, config: &GradcheckConfig) {
    assert!(
        inputs > 0,
        "gradcheck: inputs: expected at least one tensor, got none"
    );
    assert!(
        config.step.is_finite() && config.step > 0.0,
        "gradcheck: step: expected a positive finite value, got {:e}",
        config.step
    );
    assert_tolerance("gradcheck", "atol", config.atol);
    assert_tolerance("gradcheck", "rtol", config.rtol);
}

/// Panics unless the tolerance `name` of `function` is non-negative (NaN is refused).
pub(crate) fn assert_tolerance(function: &str, name: &str, value: f64) {
    assert!(
        value >= 0.0,
        "{function}: {name}: expected a non-negative value, got {value:e}"
    );
}

/// The projected output `Σ_j p_j y_j` as a `[1]` tensor, ready for the backward pass: the
/// weights `p` (row-major, one per element of `output`) are created on `output`'s device in
/// its dtype, in which they are exact ([`Projection::weights`]).
pub(crate) fn project<const D: usize>(output: Tensor<D>, weights: &[f64]) -> Tensor<1> {
    let (dtype, device) = (output.dtype(), output.device());
    let weights = Tensor::<D>::from_data(
        TensorData::new(weights.to_vec(), output.shape()).convert_dtype(dtype),
        (&device, dtype),
    );
    (output * weights).sum()
}

/// The values of float tensor data as f64 (exact for f64, f32, f16 and bf16).
fn host_values(data: TensorData) -> Vec<f64> {
    data.try_into_vec_as::<f64>()
        .expect("gradcheck: float tensor data converts to f64")
}

/// `values` as `dtype` stores them, back in f64.
fn round_to(dtype: DType, values: &[f64]) -> Vec<f64> {
    let data = TensorData::new(values.to_vec(), [values.len()]);
    if dtype.is_float() {
        host_values(data.convert_dtype(dtype))
    } else {
        values.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_weights_are_exact_and_deterministic() {
        let a = Projection::Random { seed: 7 }.weights(64);
        assert_eq!(a, Projection::Random { seed: 7 }.weights(64));
        assert_ne!(a, Projection::Random { seed: 8 }.weights(64));
        assert!(a.iter().any(|w| *w < 0.0) && a.iter().any(|w| *w > 0.0));
        for w in &a {
            assert!((0.5..=1.5).contains(&w.abs()));
            assert_eq!((w * 8.0).fract(), 0.0);
        }
        assert_eq!(Projection::Sum.weights(3), vec![1.0; 3]);
    }

    #[test]
    fn rounding_to_f32_is_what_f32_stores() {
        let r = round_to(DType::F32, &[0.1, 0.2]);
        assert_eq!(r, vec![0.1f32 as f64, 0.2f32 as f64]);
        assert_eq!(round_to(DType::F64, &[0.1]), vec![0.1]);
    }
}
