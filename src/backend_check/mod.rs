//! Cross-backend checking, the sibling of [`crate::gradcheck`]: one computation, written once,
//! runs on a reference backend and on one or more others from the same host inputs, and its
//! outputs and its gradients with respect to every input are compared element by element.
//! PyTorch users do this by hand, with `torch.testing.assert_close` on the results of two runs
//! (`f(x.cpu())` against `f(x.cuda()).cpu()`, and the same for `.grad`).
//!
//! A backend is a device and the float dtype to run it in: since Burn 0.22 the backend is
//! chosen at run time by the device, and f64 when each tensor is created.
//!
//! ```
//! use burn::tensor::{DType, Device, Int, Tensor, TensorData};
//! use burn_xent::backend_check::{
//!     BackendCheck, BackendCheckConfig, Computation, HostInputs, Inputs, Outputs,
//! };
//! use burn_xent::{CrossEntropyOptions, Reduction, cross_entropy};
//!
//! /// The computation, written once for every backend: here one loss of a `[N, C]` input.
//! struct Loss;
//! impl Computation for Loss {
//!     fn run(&self, inputs: &Inputs) -> Outputs {
//!         let logits: Tensor<2> = inputs.float("logits");
//!         let target: Tensor<1, Int> = inputs.int("target");
//!         Outputs::new().float(
//!             "loss",
//!             cross_entropy(logits, target, Reduction::Mean, &CrossEntropyOptions::new()),
//!         )
//!     }
//! }
//!
//! // The same host data for every backend; f32 values, so an f32 backend sees exactly what the
//! // f64 reference sees.
//! let inputs = HostInputs::new()
//!     .float("logits", TensorData::new(vec![2.0f32, 0.5, -1.0, 0.1, 0.2, 3.0], [2, 3]))
//!     .int("target", TensorData::new(vec![0i64, 2], [2]));
//!
//! // PyTorch: torch.testing.assert_close(loss(x.double()), loss(x.float()).double()), and the
//! // same for x.grad. The reference is the ndarray device with autodiff in f64, checked here
//! // against the same device in f32; any Burn device fits, with autodiff or without.
//! let device = Device::ndarray().autodiff();
//! let report = BackendCheck::new(&Loss, &inputs, &device, DType::F64, &BackendCheckConfig::new())
//!     .against(&device, DType::F32)
//!     .assert_agree();
//! println!("{report}");
//! assert!(report.passed());
//! assert_eq!(report.backends[0].compared(), 1 + 6); // the loss, and its gradient in `logits`
//! ```
//!
//! # What is compared
//! [`Computation::run`] receives the inputs as tensors of the backend it runs on
//! ([`Inputs::float`], [`Inputs::int`]) and returns named outputs of any rank ([`Outputs`]).
//! On each backend, the check
//! - builds every input from the host data of [`HostInputs`], on the backend's device with
//!   autodiff, floats in the backend's float dtype and integers in the device's int dtype;
//!   float inputs added with [`HostInputs::float`] are gradient leaves, those added with
//!   [`HostInputs::constant`] are not, and integer inputs (class indices, say) are passed
//!   through;
//! - runs the computation once and reads its outputs;
//! - back-propagates `s = Σ_o Σ_j p_oj y_oj` over the float outputs `y_o`, with a fixed
//!   pseudo-random projection `p` ([`Projection`], the same on every backend and exact in every
//!   float dtype), so that one backward pass gives, for each input, a vector-Jacobian product
//!   in a direction in which errors do not cancel (a per-element output is checked element by
//!   element), and reads the gradient of every float input.
//!
//! Then each output and each gradient is compared with the reference's element by element:
//! an element agrees when `|value - reference| <= atol + rtol * |reference|`
//! (`torch.testing.assert_close`'s rule), or when both are the same non-finite value (NaN and
//! NaN when [`BackendCheckConfig::equal_nan`], the default; `+inf` and `+inf`). A NaN or an
//! infinity on one side only is a *NaN/inf mismatch*, counted apart from the finite elements
//! beyond tolerance. Integer outputs must be equal. A gradient that Burn returns on one side
//! and not on the other is a failure ([`Outcome::Missing`]), never read as zeros; a gradient
//! missing on both sides (an input the computation detaches, does not read, or that is empty)
//! is reported and passes.
//!
//! # Tolerances
//! Each pair of tensors is compared with the tolerance of the less precise of its two dtypes
//! ([`Tolerance::for_dtypes`]): an f32 backend against an f64 reference gets f32 tolerances.
//! The defaults ([`Tolerance::for_dtype`]) allow the round-off of a different order of
//! operations and different implementations of `exp` and `ln`, not more: f64 `rtol 1e-7`,
//! `atol 1e-7` (PyTorch's `assert_close` defaults); f32 `rtol 1e-4`, `atol 1e-5` (wider than
//! `assert_close`'s `1.3e-6`, `1e-5`, which assume one implementation run twice);
//! f16 `rtol 1e-2`, `atol 1e-3`; bf16 `rtol 5e-2`, `atol 1e-2`. Set either with
//! [`BackendCheckConfig::with_rtol`] and [`BackendCheckConfig::with_atol`]; raise `atol` for
//! outputs far above 1 whose elements cancel (a gradient of a sum over many terms).
//!
//! Host float data is converted to each backend's dtype. Give it as f32 (or round it with
//! [`HostInputs::round_floats_to`]) when an f32 backend is checked against an f64 reference:
//! then both see the same numbers and only the computation's round-off is compared.
//!
//! # Backends that cannot run
//! Each backend is probed first with [`crate::availability::backend_unavailable`]: one that
//! cannot run here (wgpu without an adapter), or whose device does not support the float dtype
//! asked for (wgpu and f64), is reported as skipped, with the reason, and does not fail the
//! check, unless [`BackendCheckConfig::required`] is set (the crate's own tests set it from
//! [`crate::availability::REQUIRE_WGPU`]). A checked backend whose run panics is reported as
//! failed, with the panic's message.
//!
//! # Thread-local settings
//! Each backend runs inside the call that names it, on the calling thread:
//! [`BackendCheck::new`] runs the reference, [`BackendCheck::against`] each other backend. A
//! thread-local setting around a call applies to that backend only; burn-xent's own test
//! matrix runs its reference on the composite path and the checked backends on the path under
//! test. A closure `|x: &Inputs| -> Outputs` is a computation too:
//!
//! ```
//! # use burn::tensor::{DType, Device, TensorData};
//! # use burn_xent::backend_check::{BackendCheck, BackendCheckConfig, HostInputs, Inputs, Outputs};
//! # use burn_xent::{BceWithLogitsOptions, Reduction, binary_cross_entropy_with_logits};
//! use burn_xent::{LossPath, with_loss_path};
//! # let inputs = HostInputs::new()
//! #     .float("x", TensorData::new(vec![-2.0f32, 0.5, 3.0], [3]))
//! #     .float("t", TensorData::new(vec![0.0f32, 0.25, 1.0], [3]));
//! let case = |x: &Inputs| -> Outputs {
//!     let opts = BceWithLogitsOptions::new();
//!     binary_cross_entropy_with_logits::<1>(x.float("x"), x.float("t"), Reduction::Sum, &opts)
//!         .into()
//! };
//! let device = Device::ndarray().autodiff();
//! let config = BackendCheckConfig::new();
//! let check = with_loss_path(LossPath::Composite, || {
//!     BackendCheck::new(&case, &inputs, &device, DType::F64, &config)
//! });
//! let report = with_loss_path(LossPath::Fused, || check.against(&device, DType::F32))
//!     .assert_agree();
//! assert_eq!(report.backends[0].compared(), 1 + 3 + 3); // the loss; gradients of x and t
//! ```
//!
//! # Devices and dtypes
//! Each backend runs on the autodiff form of the device it is given (`device.autodiff()`; a
//! device with autodiff already is taken as it is), and its float inputs are created in the
//! float dtype given with it ([`Inputs::float_dtype`]): `Tensor::from_data(data, &device)`
//! would give the device's default float dtype (f32) instead. A computation that creates
//! tensors of its own should state the dtype too,
//! `Tensor::ones(shape, (inputs.device(), inputs.float_dtype()))`.

mod compare;
mod config;
mod inputs;
mod outputs;
mod report;
mod run;
mod tolerance;

use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::{DType, Device};

use crate::availability::{backend_unavailable, device_name, panic_text};
use compare::compare_runs;
use run::{Run, run_on};

pub use crate::gradcheck::Projection;
pub use config::BackendCheckConfig;
pub use inputs::{HostInput, HostInputs, InputKind, Inputs};
pub use outputs::Outputs;
pub use report::{
    BackendCheckReport, BackendComparison, BackendStatus, ElementDiff, Outcome, Side, Subject,
    TensorComparison,
};
pub use tolerance::Tolerance;

/// A computation written once, to be compared across backends: the one method is called once
/// per backend with that backend's copies of the inputs.
///
/// A closure `|x: &Inputs| -> Outputs` is one; a type implementing the trait can carry the
/// computation's settings (a loss's options, a layer size). Tensors come from [`Inputs`], so
/// that every backend starts from the same host data.
///
/// The computation must be deterministic (no dropout, no fresh random numbers) and return the
/// same output names and shapes on every backend.
pub trait Computation {
    /// Computes the outputs from `inputs`, tensors on the device of the backend it runs on.
    fn run(&self, inputs: &Inputs) -> Outputs;
}

impl<F: Fn(&Inputs) -> Outputs + ?Sized> Computation for F {
    fn run(&self, inputs: &Inputs) -> Outputs {
        self(inputs)
    }
}

/// A backend check in progress: the reference's results, and each backend compared so far.
///
/// [`BackendCheck::new`] runs the computation on the reference backend (a device and a float
/// dtype); each [`BackendCheck::against`] runs it on another backend and compares; [`BackendCheck::finish`]
/// or [`BackendCheck::assert_agree`] gives the report. Each run happens inside the call that
/// names its backend, so thread-local settings (burn-xent's [`crate::with_loss_path`]) wrap
/// one backend each; see the [module documentation](self).
///
/// PyTorch: `torch.testing.assert_close` on the outputs and on the `.grad` of every input of
/// one function run on two devices.
pub struct BackendCheck<'a, C: Computation + ?Sized> {
    computation: &'a C,
    inputs: &'a HostInputs,
    reference: Option<Run>,
    report: BackendCheckReport,
}

impl<'a, C: Computation + ?Sized> BackendCheck<'a, C> {
    /// Runs `computation` on `inputs` on the reference backend: `reference_device` (with
    /// autodiff; a plain device is taken as `reference_device.autodiff()`), float inputs in
    /// `reference_dtype`; unless it cannot run here, which is remembered and reported.
    ///
    /// # Panics
    /// If `reference_dtype` is not a float dtype; if a set tolerance is negative or NaN; if the
    /// computation panics on the reference (a wrong input name or rank, say).
    pub fn new(
        computation: &'a C,
        inputs: &'a HostInputs,
        reference_device: &Device,
        reference_dtype: DType,
        config: &BackendCheckConfig,
    ) -> Self {
        config.validate();
        let device = autodiff_device("BackendCheck::new", reference_device, reference_dtype);
        let unavailable = cannot_run(&device, reference_dtype);
        let reference = match unavailable {
            None => Some(run_on(
                computation,
                inputs,
                &device,
                reference_dtype,
                config.projection,
            )),
            Some(_) => None,
        };
        Self {
            computation,
            inputs,
            reference,
            report: BackendCheckReport {
                reference: device_name(&device),
                reference_float_dtype: reference_dtype,
                reference_unavailable: unavailable,
                backends: Vec::new(),
                config: config.clone(),
            },
        }
    }

    /// Runs the computation on the backend of `device` (with autodiff, as for the reference),
    /// float inputs in `float_dtype`, and compares its outputs and gradients with the
    /// reference's; a backend that cannot run here is skipped (or failed, when
    /// [`BackendCheckConfig::required`]); a run that panics is a failure with its message.
    ///
    /// # Panics
    /// If `float_dtype` is not a float dtype.
    pub fn against(mut self, device: &Device, float_dtype: DType) -> Self {
        let device = autodiff_device("BackendCheck::against", device, float_dtype);
        let config = &self.report.config;
        let unavailable = |reason: String| {
            if config.required {
                BackendStatus::Unavailable(reason)
            } else {
                BackendStatus::Skipped(reason)
            }
        };
        let (status, tensors) = match (&self.reference, cannot_run(&device, float_dtype)) {
            (None, _) => {
                let reason = self
                    .report
                    .reference_unavailable
                    .clone()
                    .unwrap_or_default();
                (
                    unavailable(format!("the reference cannot run: {reason}")),
                    Vec::new(),
                )
            }
            (Some(_), Some(reason)) => (unavailable(reason), Vec::new()),
            (Some(reference), None) => {
                let run = catch_unwind(AssertUnwindSafe(|| {
                    let (computation, inputs) = (self.computation, self.inputs);
                    run_on(computation, inputs, &device, float_dtype, config.projection)
                }));
                match run {
                    Ok(run) => (BackendStatus::Ran, compare_runs(reference, &run, config)),
                    Err(panic) => (BackendStatus::Panicked(panic_text(&*panic)), Vec::new()),
                }
            }
        };
        self.report.backends.push(BackendComparison {
            backend: device_name(&device),
            float_dtype,
            status,
            tensors,
        });
        self
    }

    /// The report so far.
    pub fn report(&self) -> &BackendCheckReport {
        &self.report
    }

    /// The report.
    pub fn finish(self) -> BackendCheckReport {
        self.report
    }

    /// The report when every backend agrees (or was skipped).
    ///
    /// # Panics
    /// When a backend disagrees, panicked, or was required and cannot run, with the whole
    /// report (it starts `backend check FAILED`).
    #[track_caller]
    pub fn assert_agree(self) -> BackendCheckReport {
        let report = self.finish();
        if !report.passed() {
            panic!("{report}");
        }
        report
    }
}

/// The reference backend the crate suggests: the ndarray device with autodiff, in f64, a CPU
/// backend that runs everywhere (feature `ndarray`, on by default, which turns on
/// `fused-ndarray`). Burn 0.21's `Autodiff<NdArray<f64>>`.
#[cfg(feature = "fused-ndarray")]
pub fn default_reference() -> (Device, DType) {
    // Burn 0.22 deprecates burn-ndarray in favour of Flex; it stays the crate's reference.
    #[allow(deprecated)]
    let device = Device::ndarray();
    (device.autodiff(), DType::F64)
}

#[cfg(feature = "fused-ndarray")]
impl<'a, C: Computation + ?Sized> BackendCheck<'a, C> {
    /// [`BackendCheck::new`] with the [`default_reference`], the ndarray device with autodiff
    /// in f64.
    pub fn with_default_reference(
        computation: &'a C,
        inputs: &'a HostInputs,
        config: &BackendCheckConfig,
    ) -> Self {
        let (device, dtype) = default_reference();
        Self::new(computation, inputs, &device, dtype, config)
    }
}

/// Runs `computation` on `inputs` on the reference backend (`reference_device` in
/// `reference_dtype`) and on the backend of `device` in `float_dtype`, and compares outputs
/// and gradients element by element; PyTorch's `torch.testing.assert_close` over two devices,
/// with a report. See the [module documentation](self); for several backends use
/// [`BackendCheck`].
///
/// # Panics
/// As [`BackendCheck::new`] and [`BackendCheck::against`].
pub fn backend_check(
    computation: &impl Computation,
    inputs: &HostInputs,
    reference_device: &Device,
    reference_dtype: DType,
    device: &Device,
    float_dtype: DType,
    config: &BackendCheckConfig,
) -> BackendCheckReport {
    BackendCheck::new(
        computation,
        inputs,
        reference_device,
        reference_dtype,
        config,
    )
    .against(device, float_dtype)
    .finish()
}

/// [`backend_check`], panicking with the report unless the backends agree (or the checked
/// backend was skipped); returns the report.
///
/// # Panics
/// When the check fails, with the whole report; and as [`BackendCheck::new`] and
/// [`BackendCheck::against`].
#[track_caller]
pub fn assert_backends_agree(
    computation: &impl Computation,
    inputs: &HostInputs,
    reference_device: &Device,
    reference_dtype: DType,
    device: &Device,
    float_dtype: DType,
    config: &BackendCheckConfig,
) -> BackendCheckReport {
    BackendCheck::new(
        computation,
        inputs,
        reference_device,
        reference_dtype,
        config,
    )
    .against(device, float_dtype)
    .assert_agree()
}

/// The device a backend runs on, the autodiff form of `device`, once `float_dtype` is known to
/// be a float dtype.
fn autodiff_device(function: &str, device: &Device, float_dtype: DType) -> Device {
    assert!(
        float_dtype.is_float(),
        "backend_check: {function}: float_dtype: expected a float dtype (F64, F32, F16, BF16), \
         got {float_dtype:?}"
    );
    device.clone().autodiff()
}

/// Why the backend of `device` cannot run here in `float_dtype`, or `None` when it can; without
/// the backend's name in front (the report shows it).
fn cannot_run(device: &Device, float_dtype: DType) -> Option<String> {
    if let Some(reason) = backend_unavailable(device) {
        let name = device_name(device);
        return Some(match reason.strip_prefix(&format!("{name}: ")) {
            Some(rest) => rest.to_string(),
            None => reason,
        });
    }
    (!device.supports_dtype(float_dtype))
        .then(|| format!("the device does not support {float_dtype:?}"))
}
