//! Cross-backend checking, the sibling of [`crate::gradcheck`]: one computation, written once
//! generically over the backend, runs on a reference backend and on one or more others from the
//! same host inputs, and its outputs and its gradients with respect to every input are compared
//! element by element. PyTorch users do this by hand, with `torch.testing.assert_close` on the
//! results of two runs (`f(x.cpu())` against `f(x.cuda()).cpu()`, and the same for `.grad`).
//!
//! ```
//! use burn::tensor::{Int, Tensor, TensorData};
//! use burn::tensor::backend::AutodiffBackend;
//! use burn_xent::backend_check::{
//!     BackendCheck, BackendCheckConfig, Computation, HostInputs, Inputs, Outputs,
//! };
//! use burn_xent::{CrossEntropyOptions, Reduction, cross_entropy};
//!
//! /// The computation, generic over the backend: here one loss of a `[N, C]` input.
//! struct Loss;
//! impl Computation for Loss {
//!     fn run<B: AutodiffBackend>(&self, inputs: &Inputs<B>) -> Outputs<B> {
//!         let logits: Tensor<B, 2> = inputs.float("logits");
//!         let target: Tensor<B, 1, Int> = inputs.int("target");
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
//! // same for x.grad. The reference is Autodiff<NdArray<f64>>; any Burn autodiff backend fits.
//! type Reference = burn_autodiff::Autodiff<burn_ndarray::NdArray<f64>>;
//! type Checked = burn_autodiff::Autodiff<burn_ndarray::NdArray<f32>>;
//! let report = BackendCheck::new::<Reference>(&Loss, &inputs, &Default::default(), &BackendCheckConfig::new())
//!     .against::<Checked>(&Default::default())
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
//! - builds every input from the host data of [`HostInputs`], on the backend's device, in the
//!   backend's float (or int) dtype; float inputs added with [`HostInputs::float`] are gradient
//!   leaves, those added with [`HostInputs::constant`] are not, and integer inputs (class
//!   indices, say) are passed through;
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
//! cannot run here (wgpu without an adapter) is reported as skipped, with the reason, and does
//! not fail the check, unless [`BackendCheckConfig::required`] is set (the crate's own tests
//! set it from [`crate::availability::REQUIRE_WGPU`]). A checked backend whose run panics is
//! reported as failed, with the panic's message.
//!
//! # Thread-local settings
//! Each backend runs inside the call that names it, on the calling thread:
//! [`BackendCheck::new`] runs the reference, [`BackendCheck::against`] each other backend. A
//! thread-local setting around a call applies to that backend only; burn-xent's own test
//! matrix runs its reference on the composite path and the checked backends on the path under
//! test:
//!
//! ```
//! # use burn::tensor::{Tensor, TensorData, backend::AutodiffBackend};
//! # use burn_xent::backend_check::{BackendCheck, BackendCheckConfig, Computation, HostInputs, Inputs, Outputs};
//! # use burn_xent::{BceWithLogitsOptions, Reduction, binary_cross_entropy_with_logits};
//! use burn_xent::{LossPath, with_loss_path};
//! # struct Case;
//! # impl Computation for Case {
//! #     fn run<B: AutodiffBackend>(&self, x: &Inputs<B>) -> Outputs<B> {
//! #         let opts = BceWithLogitsOptions::new();
//! #         binary_cross_entropy_with_logits::<B, 1>(x.float("x"), x.float("t"), Reduction::Sum, &opts).into()
//! #     }
//! # }
//! # let inputs = HostInputs::new()
//! #     .float("x", TensorData::new(vec![-2.0f32, 0.5, 3.0], [3]))
//! #     .float("t", TensorData::new(vec![0.0f32, 0.25, 1.0], [3]));
//! type Reference = burn_autodiff::Autodiff<burn_ndarray::NdArray<f64>>;
//! type Checked = burn_autodiff::Autodiff<burn_ndarray::NdArray<f32>>;
//! let config = BackendCheckConfig::new();
//! let check = with_loss_path(LossPath::Composite, || {
//!     BackendCheck::new::<Reference>(&Case, &inputs, &Default::default(), &config)
//! });
//! let report = with_loss_path(LossPath::Fused, || check.against::<Checked>(&Default::default()))
//!     .assert_agree();
//! assert_eq!(report.backends[0].compared(), 1 + 3 + 3); // the loss; gradients of x and t
//! ```
//!
//! # Dtypes
//! Burn 0.21 fixes a device's default float dtype at its first tensor, per device type, and
//! `NdArray<f32>` and `NdArray<f64>` share `NdArrayDevice`. The inputs are therefore created
//! with an explicit dtype, that of the backend's `FloatElem` ([`Inputs::float_dtype`]); a
//! computation that creates tensors of its own should do the same.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Element, Int, Tensor, TensorData};

use crate::availability::backend_unavailable;
use crate::checks::unravel;
pub use crate::gradcheck::Projection;

/// A computation written once, generically over the backend, to be compared across backends:
/// the one method is called once per backend with that backend's copies of the inputs.
///
/// Rust closures cannot be generic over a type, hence a trait. The implementing type carries
/// the computation's settings (a loss's options, a layer size); tensors come from
/// [`Inputs`], so that every backend starts from the same host data.
///
/// The computation must be deterministic (no dropout, no fresh random numbers) and return the
/// same output names and shapes on every backend.
pub trait Computation {
    /// Computes the outputs from `inputs` on backend `B`.
    fn run<B: AutodiffBackend>(&self, inputs: &Inputs<B>) -> Outputs<B>;
}

/// How a host input enters a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A float tensor that requires a gradient; its gradient is compared.
    Float,
    /// A float tensor that does not require a gradient (a constant weight); not compared
    /// itself, only through the outputs it affects.
    Constant,
    /// An integer tensor (class indices), passed through.
    Int,
}

/// One named input, as host data.
#[derive(Clone, Debug)]
pub struct HostInput {
    /// The name [`Inputs::float`] and [`Inputs::int`] take, and the report shows.
    pub name: String,
    /// Whether it is a gradient leaf, a float constant or an integer tensor.
    pub kind: InputKind,
    /// The values and shape; converted to each backend's float or int dtype.
    pub data: TensorData,
}

/// The inputs of a [`Computation`] as host data ([`TensorData`], any rank), shared by every
/// backend of a check.
///
/// ```
/// use burn::tensor::TensorData;
/// use burn_xent::backend_check::HostInputs;
/// let inputs = HostInputs::new()
///     .float("logits", TensorData::new(vec![0.5f32; 12], [4, 3])) // gradient compared
///     .constant("weight", TensorData::new(vec![1.0f32, 2.0, 0.5], [3])) // no gradient
///     .int("target", TensorData::new(vec![0i64, 2, 1, 1], [4])); // passed through
/// assert_eq!(inputs.inputs().len(), 3);
/// ```
#[derive(Clone, Debug, Default)]
pub struct HostInputs {
    inputs: Vec<HostInput>,
}

impl HostInputs {
    /// No inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a float input that requires a gradient: its gradient is compared across backends.
    ///
    /// # Panics
    /// If the name is taken, or `data` is not numeric.
    pub fn float(self, name: &str, data: impl Into<TensorData>) -> Self {
        self.push(name, InputKind::Float, data.into())
    }

    /// Adds a float input that does not require a gradient (PyTorch: `requires_grad=False`).
    ///
    /// # Panics
    /// If the name is taken, or `data` is not numeric.
    pub fn constant(self, name: &str, data: impl Into<TensorData>) -> Self {
        self.push(name, InputKind::Constant, data.into())
    }

    /// Adds an integer input (class indices), passed through to each backend in its int dtype.
    ///
    /// # Panics
    /// If the name is taken, or `data` is not of an integer dtype.
    pub fn int(self, name: &str, data: impl Into<TensorData>) -> Self {
        self.push(name, InputKind::Int, data.into())
    }

    /// Stores every float input (gradient leaf or constant) as `dtype` stores it, so that a
    /// backend computing in `dtype` and a more precise reference see the same numbers.
    pub fn round_floats_to(mut self, dtype: DType) -> Self {
        for input in &mut self.inputs {
            if input.kind != InputKind::Int {
                input.data = input.data.clone().convert_dtype(dtype);
            }
        }
        self
    }

    /// The inputs, in the order they were added.
    pub fn inputs(&self) -> &[HostInput] {
        &self.inputs
    }

    fn push(mut self, name: &str, kind: InputKind, data: TensorData) -> Self {
        assert!(
            self.inputs.iter().all(|input| input.name != name),
            "backend_check: HostInputs: input {name:?} is already taken"
        );
        let numeric = data.dtype.is_float() || data.dtype.is_int() || data.dtype.is_uint();
        match kind {
            InputKind::Int => assert!(
                data.dtype.is_int() || data.dtype.is_uint(),
                "backend_check: HostInputs: int input {name:?}: expected integer data, got {:?}",
                data.dtype
            ),
            _ => assert!(
                numeric,
                "backend_check: HostInputs: float input {name:?}: expected numeric data, got {:?}",
                data.dtype
            ),
        }
        self.inputs.push(HostInput {
            name: name.to_string(),
            kind,
            data,
        });
        self
    }

    fn position(&self, name: &str) -> usize {
        self.inputs
            .iter()
            .position(|input| input.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                panic!("backend_check: no input named {name:?}; the inputs are {names:?}")
            })
    }
}

/// A backend's copy of an input, made at its first use.
struct Leaf<B: AutodiffBackend> {
    /// The `Tensor<B, D>` or `Tensor<B, D, Int>` handed to the computation.
    tensor: Box<dyn Any>,
    /// For gradient leaves: reads the leaf's gradient after the backward pass.
    gradient: Option<GradientReader<B>>,
}

type GradientReader<B> = Box<dyn Fn(&<B as AutodiffBackend>::Gradients) -> Option<TensorData>>;

/// The inputs of a [`Computation`] on backend `B`: the host inputs, created on `B`'s device in
/// `B`'s dtypes at their first use and the same tensor (the same gradient leaf) at every later
/// use.
pub struct Inputs<B: AutodiffBackend> {
    host: HostInputs,
    device: B::Device,
    float_dtype: DType,
    int_dtype: DType,
    leaves: RefCell<Vec<Option<Leaf<B>>>>,
}

impl<B: AutodiffBackend> Inputs<B> {
    fn new(host: HostInputs, device: B::Device) -> Self {
        let count = host.inputs.len();
        Self {
            host,
            device,
            float_dtype: <B::FloatElem as Element>::dtype(),
            int_dtype: <B::IntElem as Element>::dtype(),
            leaves: RefCell::new((0..count).map(|_| None).collect()),
        }
    }

    /// The float input `name`, of rank `D`, in [`Inputs::float_dtype`]: a gradient leaf for an
    /// input added with [`HostInputs::float`], a plain tensor for one added with
    /// [`HostInputs::constant`].
    ///
    /// # Panics
    /// If there is no input `name`, it is an int input, its rank is not `D`, or it was taken
    /// before with another rank.
    pub fn float<const D: usize>(&self, name: &str) -> Tensor<B, D> {
        let i = self.host.position(name);
        let input = &self.host.inputs[i];
        assert!(
            input.kind != InputKind::Int,
            "backend_check: input {name:?} is an int input; take it with Inputs::int"
        );
        self.checked_rank::<D>(input);
        let mut leaves = self.leaves.borrow_mut();
        if let Some(leaf) = &leaves[i] {
            return leaf
                .tensor
                .downcast_ref::<Tensor<B, D>>()
                .unwrap_or_else(|| panic!("backend_check: input {name:?}: taken as another kind"))
                .clone();
        }
        let dtype = self.float_dtype;
        let tensor = Tensor::<B, D>::from_data(
            input.data.clone().convert_dtype(dtype),
            (&self.device, dtype),
        );
        let (tensor, gradient) = if input.kind == InputKind::Float {
            let leaf = tensor.require_grad();
            let handle = leaf.clone();
            let reader: GradientReader<B> =
                Box::new(move |grads| handle.grad(grads).map(|g| g.into_data()));
            (leaf, Some(reader))
        } else {
            (tensor, None)
        };
        leaves[i] = Some(Leaf {
            tensor: Box::new(tensor.clone()),
            gradient,
        });
        tensor
    }

    /// The int input `name`, of rank `D`, in `B`'s int dtype.
    ///
    /// # Panics
    /// If there is no input `name`, it is a float input, or its rank is not `D`.
    pub fn int<const D: usize>(&self, name: &str) -> Tensor<B, D, Int> {
        let i = self.host.position(name);
        let input = &self.host.inputs[i];
        assert!(
            input.kind == InputKind::Int,
            "backend_check: input {name:?} is a float input; take it with Inputs::float"
        );
        self.checked_rank::<D>(input);
        let mut leaves = self.leaves.borrow_mut();
        if let Some(leaf) = &leaves[i] {
            return leaf
                .tensor
                .downcast_ref::<Tensor<B, D, Int>>()
                .unwrap_or_else(|| panic!("backend_check: input {name:?}: taken as another kind"))
                .clone();
        }
        let dtype = self.int_dtype;
        let tensor = Tensor::<B, D, Int>::from_data(
            input.data.clone().convert_dtype(dtype),
            (&self.device, dtype),
        );
        leaves[i] = Some(Leaf {
            tensor: Box::new(tensor.clone()),
            gradient: None,
        });
        tensor
    }

    /// The device the inputs are on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The dtype of the float inputs (`B`'s `FloatElem`): the dtype to create any other float
    /// tensor of the computation in (`Tensor::from_data(data, (device, dtype))`).
    pub fn float_dtype(&self) -> DType {
        self.float_dtype
    }

    fn checked_rank<const D: usize>(&self, input: &HostInput) {
        assert!(
            input.data.shape.num_dims() == D,
            "backend_check: input {:?} has shape {:?} (rank {}), taken as rank {D}",
            input.name,
            input.data.shape.as_slice(),
            input.data.shape.num_dims()
        );
    }
}

enum OutputValue<B: Backend> {
    Float(Tensor<B, 1>),
    Int(Tensor<B, 1, Int>),
}

/// The named outputs of a [`Computation`], float or int, of any ranks.
///
/// A single float tensor converts into `Outputs` named `"output"`:
/// `fn run(…) -> Outputs<B> { loss.into() }`.
pub struct Outputs<B: Backend> {
    entries: Vec<(String, Vec<usize>, OutputValue<B>)>,
}

impl<B: Backend> Default for Outputs<B> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<B: Backend> Outputs<B> {
    /// No outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a float output; it is compared, and it enters the backward pass.
    ///
    /// # Panics
    /// If the name is taken.
    pub fn float<const D: usize>(mut self, name: &str, tensor: Tensor<B, D>) -> Self {
        self.check_name(name);
        let shape = tensor.dims().to_vec();
        let flat = tensor.reshape([shape.iter().product::<usize>()]);
        self.entries
            .push((name.to_string(), shape, OutputValue::Float(flat)));
        self
    }

    /// Adds an int output (predicted classes, say); compared for equality.
    ///
    /// # Panics
    /// If the name is taken.
    pub fn int<const D: usize>(mut self, name: &str, tensor: Tensor<B, D, Int>) -> Self {
        self.check_name(name);
        let shape = tensor.dims().to_vec();
        let flat = tensor.reshape([shape.iter().product::<usize>()]);
        self.entries
            .push((name.to_string(), shape, OutputValue::Int(flat)));
        self
    }

    fn check_name(&self, name: &str) {
        assert!(
            self.entries.iter().all(|(n, _, _)| n != name),
            "backend_check: Outputs: output {name:?} is already taken"
        );
    }
}

impl<B: Backend, const D: usize> From<Tensor<B, D>> for Outputs<B> {
    /// One float output named `"output"`.
    fn from(tensor: Tensor<B, D>) -> Self {
        Outputs::new().float("output", tensor)
    }
}

/// Absolute and relative tolerance: `|value - reference| <= atol + rtol * |reference|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance, relative to the reference value.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

impl Tolerance {
    /// The default tolerance for comparing values computed in `dtype`: f64 `rtol 1e-7`,
    /// `atol 1e-7`; f32 (and flex32) `rtol 1e-4`, `atol 1e-5`; f16 `rtol 1e-2`, `atol 1e-3`;
    /// bf16 `rtol 5e-2`, `atol 1e-2`; integers, booleans: exact (`0`, `0`).
    pub fn for_dtype(dtype: DType) -> Self {
        let (rtol, atol) = match dtype {
            DType::F64 => (1e-7, 1e-7),
            DType::F32 | DType::Flex32 => (1e-4, 1e-5),
            DType::F16 => (1e-2, 1e-3),
            DType::BF16 => (5e-2, 1e-2),
            DType::QFloat(_) => (5e-2, 1e-2),
            _ => (0.0, 0.0),
        };
        Self { rtol, atol }
    }

    /// The default tolerance of the less precise of two dtypes: an f32 tensor compared with an
    /// f64 reference gets f32's.
    pub fn for_dtypes(a: DType, b: DType) -> Self {
        let (ta, tb) = (Self::for_dtype(a), Self::for_dtype(b));
        if ta.rtol >= tb.rtol { ta } else { tb }
    }

    /// The allowed error at a reference value.
    pub fn allowed(&self, reference: f64) -> f64 {
        self.atol + self.rtol * reference.abs()
    }
}

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
        if !(self.reference.is_finite() && self.value.is_finite()) {
            f64::INFINITY
        } else if self.abs_error == 0.0 {
            0.0
        } else if self.tolerance > 0.0 {
            self.abs_error / self.tolerance
        } else {
            f64::INFINITY
        }
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
    /// The backend's type, without module paths (e.g. `Autodiff<Fusion<CubeBackend<WgpuRuntime,
    /// f32, i32, u32>>>`; Rust leaves out default type parameters: `Autodiff<NdArray>` is
    /// `NdArray<f32>`).
    pub backend: String,
    /// The backend's float dtype (its `FloatElem`), in which its inputs are created.
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
    /// The reference backend's type, without module paths.
    pub reference: String,
    /// The reference's float dtype.
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

/// A tensor read back to the host.
#[derive(Clone, Debug)]
struct HostTensor {
    shape: Vec<usize>,
    dtype: DType,
    values: Vec<f64>,
}

impl HostTensor {
    fn from_data(data: TensorData, shape: Vec<usize>) -> Self {
        let dtype = data.dtype;
        Self {
            shape,
            dtype,
            values: data.iter::<f64>().collect(),
        }
    }
}

/// What one backend computed: the outputs and the gradients of the float inputs, in order.
struct Run {
    outputs: Vec<(String, HostTensor)>,
    gradients: Vec<(String, Option<HostTensor>)>,
}

/// The projection weights of output `o`.
fn projection_weights(projection: Projection, o: usize, count: usize) -> Vec<f64> {
    match projection {
        Projection::Random { seed } => Projection::Random {
            seed: seed.wrapping_add(o as u64),
        }
        .weights(count),
        Projection::Sum => Projection::Sum.weights(count),
    }
}

fn run_on<B: AutodiffBackend, C: Computation + ?Sized>(
    computation: &C,
    host: &HostInputs,
    device: &B::Device,
    projection: Projection,
) -> Run {
    let inputs = Inputs::<B>::new(host.clone(), device.clone());
    let produced = computation.run(&inputs);
    let mut outputs = Vec::with_capacity(produced.entries.len());
    let mut projected: Option<Tensor<B, 1>> = None;
    for (o, (name, shape, value)) in produced.entries.into_iter().enumerate() {
        let count = shape.iter().product::<usize>();
        match value {
            OutputValue::Float(flat) => {
                outputs.push((name, HostTensor::from_data(flat.to_data(), shape)));
                if count > 0 {
                    let dtype = flat.dtype();
                    let weights = Tensor::<B, 1>::from_data(
                        TensorData::new(projection_weights(projection, o, count), [count])
                            .convert_dtype(dtype),
                        (device, dtype),
                    );
                    let term = (flat * weights).sum();
                    projected = Some(match projected {
                        Some(sum) => sum + term,
                        None => term,
                    });
                }
            }
            OutputValue::Int(flat) => {
                outputs.push((name, HostTensor::from_data(flat.into_data(), shape)));
            }
        }
    }
    let grads = projected.map(|s| s.backward());
    let leaves = inputs.leaves.into_inner();
    let gradients = host
        .inputs
        .iter()
        .zip(&leaves)
        .filter(|(input, _)| input.kind == InputKind::Float)
        .map(|(input, leaf)| {
            let gradient = match (leaf, &grads) {
                (
                    Some(Leaf {
                        gradient: Some(read),
                        ..
                    }),
                    Some(grads),
                ) => read(grads).map(|data| {
                    let shape = data.shape.to_vec();
                    HostTensor::from_data(data, shape)
                }),
                _ => None,
            };
            (input.name.clone(), gradient)
        })
        .collect();
    Run { outputs, gradients }
}

/// Compares one tensor of both runs.
fn compare(
    subject: Subject,
    reference: Option<&HostTensor>,
    value: Option<&HostTensor>,
    config: &BackendCheckConfig,
) -> TensorComparison {
    let mut comparison = TensorComparison {
        subject,
        outcome: Outcome::Compared,
        shape: Vec::new(),
        reference_dtype: reference.map(|r| r.dtype),
        dtype: value.map(|v| v.dtype),
        tolerance: Tolerance {
            rtol: 0.0,
            atol: 0.0,
        },
        compared: 0,
        failed: 0,
        nonfinite_mismatches: 0,
        worst: None,
        first_nonfinite_mismatch: None,
    };
    let (reference, value) = match (reference, value) {
        (None, None) => {
            comparison.outcome = Outcome::AbsentOnBoth;
            return comparison;
        }
        (None, Some(v)) => {
            comparison.outcome = Outcome::Missing {
                on: Side::Reference,
                shape: v.shape.clone(),
            };
            return comparison;
        }
        (Some(r), None) => {
            comparison.outcome = Outcome::Missing {
                on: Side::Checked,
                shape: r.shape.clone(),
            };
            return comparison;
        }
        (Some(r), Some(v)) => (r, v),
    };
    comparison.tolerance = config.tolerance(reference.dtype, value.dtype);
    if reference.shape != value.shape {
        comparison.outcome = Outcome::ShapeMismatch {
            reference: reference.shape.clone(),
            checked: value.shape.clone(),
        };
        return comparison;
    }
    comparison.shape = reference.shape.clone();
    let tolerance = comparison.tolerance;
    for (k, (&r, &v)) in reference.values.iter().zip(&value.values).enumerate() {
        comparison.compared += 1;
        let diff = || ElementDiff {
            index: unravel(k, &reference.shape),
            flat_index: k,
            reference: r,
            value: v,
            abs_error: (v - r).abs(),
            tolerance: tolerance.allowed(r),
        };
        if !(r.is_finite() && v.is_finite()) {
            let same = if r.is_nan() || v.is_nan() {
                r.is_nan() && v.is_nan() && config.equal_nan
            } else {
                r == v
            };
            if !same {
                comparison.nonfinite_mismatches += 1;
                if comparison.first_nonfinite_mismatch.is_none() {
                    comparison.first_nonfinite_mismatch = Some(diff());
                }
            }
            continue;
        }
        let element = diff();
        if element.abs_error > element.tolerance {
            comparison.failed += 1;
        }
        if comparison
            .worst
            .as_ref()
            .is_none_or(|worst| element.ratio() > worst.ratio())
        {
            comparison.worst = Some(element);
        }
    }
    comparison
}

fn compare_runs(
    reference: &Run,
    checked: &Run,
    config: &BackendCheckConfig,
) -> Vec<TensorComparison> {
    let mut tensors = Vec::new();
    let find = |run: &'_ Run, name: &str| -> Option<HostTensor> {
        run.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    };
    for (name, tensor) in &reference.outputs {
        let other = find(checked, name);
        tensors.push(compare(
            Subject::Output(name.clone()),
            Some(tensor),
            other.as_ref(),
            config,
        ));
    }
    for (name, tensor) in &checked.outputs {
        if find(reference, name).is_none() {
            tensors.push(compare(
                Subject::Output(name.clone()),
                None,
                Some(tensor),
                config,
            ));
        }
    }
    for ((name, r), (_, c)) in reference.gradients.iter().zip(&checked.gradients) {
        tensors.push(compare(
            Subject::Gradient(name.clone()),
            r.as_ref(),
            c.as_ref(),
            config,
        ));
    }
    tensors
}

/// A backend check in progress: the reference's results, and each backend compared so far.
///
/// [`BackendCheck::new`] runs the computation on the reference backend; each
/// [`BackendCheck::against`] runs it on another backend and compares; [`BackendCheck::finish`]
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
    /// Runs `computation` on `inputs` on the reference backend `R` (unless `R` cannot run
    /// here, which is remembered and reported).
    ///
    /// # Panics
    /// If a set tolerance is negative or NaN; if the computation panics on the reference (a
    /// wrong input name or rank, say).
    pub fn new<R: AutodiffBackend>(
        computation: &'a C,
        inputs: &'a HostInputs,
        reference_device: &R::Device,
        config: &BackendCheckConfig,
    ) -> Self {
        for (name, value) in [("rtol", config.rtol), ("atol", config.atol)] {
            if let Some(v) = value {
                assert!(
                    v >= 0.0,
                    "backend_check: {name}: expected a non-negative value, got {v:e}"
                );
            }
        }
        let unavailable = backend_unavailable::<R>(reference_device).map(without_name::<R>);
        let reference = match unavailable {
            None => Some(run_on::<R, C>(
                computation,
                inputs,
                reference_device,
                config.projection,
            )),
            Some(_) => None,
        };
        Self {
            computation,
            inputs,
            reference,
            report: BackendCheckReport {
                reference: short_type_name::<R>(),
                reference_float_dtype: <R::FloatElem as Element>::dtype(),
                reference_unavailable: unavailable,
                backends: Vec::new(),
                config: config.clone(),
            },
        }
    }

    /// Runs the computation on backend `B` and compares its outputs and gradients with the
    /// reference's; a backend that cannot run here is skipped (or failed, when
    /// [`BackendCheckConfig::required`]); a run that panics is a failure with its message.
    pub fn against<B: AutodiffBackend>(mut self, device: &B::Device) -> Self {
        let config = &self.report.config;
        let unavailable = |reason: String| {
            if config.required {
                BackendStatus::Unavailable(reason)
            } else {
                BackendStatus::Skipped(reason)
            }
        };
        let (status, tensors) = match (&self.reference, backend_unavailable::<B>(device)) {
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
            (Some(_), Some(reason)) => (unavailable(without_name::<B>(reason)), Vec::new()),
            (Some(reference), None) => {
                let run = catch_unwind(AssertUnwindSafe(|| {
                    run_on::<B, C>(self.computation, self.inputs, device, config.projection)
                }));
                match run {
                    Ok(run) => (BackendStatus::Ran, compare_runs(reference, &run, config)),
                    Err(panic) => (BackendStatus::Panicked(panic_message(&*panic)), Vec::new()),
                }
            }
        };
        self.report.backends.push(BackendComparison {
            backend: short_type_name::<B>(),
            float_dtype: <B::FloatElem as Element>::dtype(),
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

/// The reference backend the crate suggests: `Autodiff<NdArray<f64>>`, an f64 CPU backend
/// that runs everywhere (feature `fused-ndarray`, on by default).
#[cfg(feature = "fused-ndarray")]
pub type DefaultReference = burn_autodiff::Autodiff<burn_ndarray::NdArray<f64>>;

#[cfg(feature = "fused-ndarray")]
impl<'a, C: Computation + ?Sized> BackendCheck<'a, C> {
    /// [`BackendCheck::new`] with [`DefaultReference`] (`Autodiff<NdArray<f64>>`) on its
    /// default device.
    pub fn with_default_reference(
        computation: &'a C,
        inputs: &'a HostInputs,
        config: &BackendCheckConfig,
    ) -> Self {
        Self::new::<DefaultReference>(computation, inputs, &Default::default(), config)
    }
}

/// Runs `computation` on `inputs` on the reference backend `R` and on backend `B`, and
/// compares outputs and gradients element by element; PyTorch's `torch.testing.assert_close`
/// over two devices, with a report. See the [module documentation](self); for several
/// backends use [`BackendCheck`].
///
/// # Panics
/// As [`BackendCheck::new`].
pub fn backend_check<R: AutodiffBackend, B: AutodiffBackend>(
    computation: &impl Computation,
    inputs: &HostInputs,
    reference_device: &R::Device,
    device: &B::Device,
    config: &BackendCheckConfig,
) -> BackendCheckReport {
    BackendCheck::new::<R>(computation, inputs, reference_device, config)
        .against::<B>(device)
        .finish()
}

/// [`backend_check`], panicking with the report unless the backends agree (or `B` was
/// skipped); returns the report.
///
/// # Panics
/// When the check fails, with the whole report; and as [`BackendCheck::new`].
#[track_caller]
pub fn assert_backends_agree<R: AutodiffBackend, B: AutodiffBackend>(
    computation: &impl Computation,
    inputs: &HostInputs,
    reference_device: &R::Device,
    device: &B::Device,
    config: &BackendCheckConfig,
) -> BackendCheckReport {
    let report = backend_check::<R, B>(computation, inputs, reference_device, device, config);
    if !report.passed() {
        panic!("{report}");
    }
    report
}

/// An availability reason without the backend's name in front (the report shows it).
fn without_name<B>(reason: String) -> String {
    let name = short_type_name::<B>();
    match reason.strip_prefix(&format!("{name}: ")) {
        Some(rest) => rest.to_string(),
        None => reason,
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// `B`'s type name without module paths and without Burn's default parameters, e.g.
/// `Autodiff<NdArray<f32>>`.
fn short_type_name<B>() -> String {
    let full = core::any::type_name::<B>();
    let mut short = String::with_capacity(full.len());
    let mut segment = String::new();
    for ch in full.chars() {
        match ch {
            ':' => segment.clear(),
            '<' | '>' | ',' | ' ' => {
                short.push_str(&segment);
                segment.clear();
                short.push(ch);
            }
            _ => segment.push(ch),
        }
    }
    short.push_str(&segment);
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(values: &[f64], dtype: DType) -> HostTensor {
        HostTensor {
            shape: vec![values.len()],
            dtype,
            values: values.to_vec(),
        }
    }

    #[test]
    fn tolerance_follows_the_less_precise_dtype() {
        assert_eq!(
            Tolerance::for_dtypes(DType::F64, DType::F32),
            Tolerance::for_dtype(DType::F32)
        );
        assert_eq!(
            Tolerance::for_dtypes(DType::F32, DType::F64),
            Tolerance::for_dtype(DType::F32)
        );
        assert_eq!(
            Tolerance::for_dtypes(DType::F64, DType::F64),
            Tolerance::for_dtype(DType::F64)
        );
        let config = BackendCheckConfig::new().with_atol(1e-3);
        let t = config.tolerance(DType::F64, DType::F32);
        assert_eq!((t.rtol, t.atol), (1e-4, 1e-3));
        let exact = config.tolerance(DType::I64, DType::I32);
        assert_eq!((exact.rtol, exact.atol), (0.0, 0.0));
    }

    #[test]
    fn nonfinite_values_are_counted_apart() {
        let config = BackendCheckConfig::new();
        let r = host(&[1.0, f64::NAN, f64::INFINITY, 2.0, f64::NAN], DType::F64);
        let v = host(&[1.0, f64::NAN, f64::INFINITY, 2.5, 3.0], DType::F32);
        let c = compare(Subject::Output("y".into()), Some(&r), Some(&v), &config);
        assert_eq!((c.compared, c.failed, c.nonfinite_mismatches), (5, 1, 1));
        assert_eq!(c.worst.as_ref().unwrap().index, vec![3]);
        assert_eq!(c.first_nonfinite_mismatch.as_ref().unwrap().index, vec![4]);
        assert!(!c.passed());
        let strict = config.with_equal_nan(false);
        let c = compare(Subject::Output("y".into()), Some(&r), Some(&r), &strict);
        assert_eq!(c.nonfinite_mismatches, 2);
    }

    #[test]
    fn missing_and_absent_gradients() {
        let config = BackendCheckConfig::new();
        let g = host(&[1.0], DType::F32);
        let both = compare(Subject::Gradient("x".into()), None, None, &config);
        assert!(both.passed());
        let one = compare(Subject::Gradient("x".into()), Some(&g), None, &config);
        assert_eq!(
            one.outcome,
            Outcome::Missing {
                on: Side::Checked,
                shape: vec![1]
            }
        );
        assert!(!one.passed());
    }
}
