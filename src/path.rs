//! Which implementation computes a loss, the fused kernels of a known backend or the
//! composite path built from Burn's generic tensor operations, and the protocol every loss
//! follows to get there ([`Request`]).
//!
//! Every loss picks its path when it is called: the fused path when the crate was built with
//! the backend's feature (`ndarray` and `flex` on by default, `wgpu`), the input's device is
//! one the fused kernels know (NdArray, Flex or a cube device, with or without autodiff, f32 or
//! f64 tensors) and the case is one they cover; the composite path otherwise. Both give PyTorch's
//! numbers; the composite path is the reference the tests hold the fused one to.
//! [`with_loss_path`] overrides the choice for the current thread, for tests and for
//! comparisons.

use core::cell::Cell;

use burn::backend::{Dispatch, DispatchTensor};
use burn::tensor::{DType, Device, Int, Tensor};

use crate::broadcast::BroadcastWeight;
use crate::checks;
use crate::class_shapes::class_dims;
use crate::fused::{
    self, BadValue, BinaryKind, BinaryParams, ClassIndexKind, ClassIndexParams, ClassProbsParams,
    FusedLosses, FusedOp, Output, Ran,
};

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
/// use burn::tensor::{Device, Int, Tensor};
/// use burn_xent::{CrossEntropyOptions, LossPath, Reduction, cross_entropy, with_loss_path};
/// let device = Device::ndarray();
/// let logits = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], &device);
/// let target = Tensor::<1, Int>::from_ints([0, 2], &device);
/// let loss = |path| {
///     with_loss_path(path, || {
///         cross_entropy(logits.clone(), target.clone(), Reduction::Mean, &CrossEntropyOptions::new())
///     })
///     .into_scalar::<f32>()
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

/// True when this build of burn-xent has fused kernels for the backend of `device` (NdArray,
/// Flex or a cube device, with or without autodiff, whose feature is on: `ndarray`, `flex`,
/// `wgpu`); false when every loss on it takes the composite path. An autodiff device with
/// gradient checkpointing has none (the fused nodes never recompute).
///
/// A loss that runs on the composite path because the backend's feature is off also says so
/// once per backend, on standard error (`burn-xent: no fused kernels for …`).
///
/// ```
/// use burn::tensor::Device;
/// assert!(burn_xent::fused_kernels_available(&Device::ndarray().autodiff())); // feature `ndarray`
/// ```
pub fn fused_kernels_available(device: &Device) -> bool {
    fused::kernels_for(device).is_some()
}

/// The backends with fused kernels in burn-xent: the name Burn gives their devices
/// (`Debug`), the feature that compiles their kernels, and whether this build has it.
const BACKEND_FEATURES: [(&str, &str, bool); 3] = [
    ("NdArray", "ndarray", cfg!(feature = "fused-ndarray")),
    ("Flex", "flex", cfg!(feature = "fused-flex")),
    ("Cube", "wgpu", cfg!(feature = "fused-wgpu")),
];

/// The backend a device runs on, as Burn's `Debug` of it names it (`Autodiff` looked through).
fn backend_name(device: &Device) -> String {
    let name = format!("{:?}", device.clone().inner().as_dispatch());
    name.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The feature, switched off in `features`, that would give fused kernels to the backend named
/// `backend`.
fn feature_off<'a>(backend: &str, features: &[(&str, &'a str, bool)]) -> Option<&'a str> {
    features
        .iter()
        .find(|(name, _, on)| !on && backend == *name)
        .map(|(_, feature, _)| *feature)
}

/// Prints, once per backend, that the device's backend has fused kernels in burn-xent whose
/// feature this build left off (the losses then take the slower composite path).
fn notice_feature_off(device: &Device) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static NOTICED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let name = backend_name(device);
    let Some(feature) = feature_off(&name, &BACKEND_FEATURES) else {
        return;
    };
    let mut noticed = NOTICED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if noticed
        .get_or_insert_with(HashSet::new)
        .insert(name.clone())
    {
        eprintln!(
            "burn-xent: no fused kernels for {name} in this build; the losses take the \
             composite path (enable burn-xent's feature `{feature}` for the fused one)"
        );
    }
}

/// What a loss asks of the protocol, built by one of the constructors below from arguments
/// whose shapes and options they check: the kernel family, the tensors, and whether values
/// are to be checked. [`Request::fused`] then runs it.
///
/// The request owns the input: the fused kernels may then write its gradient over its
/// storage when nothing else holds it, and the composite path gets it back when no kernel
/// runs.
pub(crate) struct Request<'a, const D: usize, const DT: usize> {
    input: Tensor<D>,
    call: Call<'a, D, DT>,
}

/// Everything of a [`Request`] but the input.
struct Call<'a, const D: usize, const DT: usize> {
    function: &'static str,
    check_values: bool,
    family: Family<'a, D, DT>,
}

/// The three kernel families, with what each needs beyond the input.
enum Family<'a, const D: usize, const DT: usize> {
    ClassIndex {
        target: &'a Tensor<DT, Int>,
        weight: Option<&'a Tensor<1>>,
        params: ClassIndexParams,
    },
    ClassProbs {
        target: &'a Tensor<D>,
        weight: Option<&'a Tensor<1>>,
        params: ClassProbsParams,
    },
    Binary {
        target: &'a Tensor<D>,
        weight: Option<&'a BroadcastWeight>,
        pos_weight: Option<&'a BroadcastWeight>,
        params: BinaryParams,
    },
}

/// The options of a class-index loss (cross-entropy, NLL) that the protocol needs.
pub(crate) struct IndexOptions<'a> {
    pub weight: Option<&'a Tensor<1>>,
    pub ignore_index: i64,
    /// ε; 0 for NLL.
    pub label_smoothing: f64,
    pub check_values: bool,
}

impl<'a, const D: usize, const DT: usize> Request<'a, D, DT> {
    /// Cross-entropy or NLL with class-index targets. Panics unless `target` has PyTorch's
    /// shape for `input`, the weight is `[C]` and the smoothing lies in `[0, 1]`.
    pub(crate) fn class_index(
        function: &'static str,
        kind: ClassIndexKind,
        input: Tensor<D>,
        target: &'a Tensor<DT, Int>,
        options: IndexOptions<'a>,
        output: Output,
    ) -> Self {
        checks::label_smoothing(function, options.label_smoothing);
        crate::class_shapes::check_index_target(function, &input.dims(), &target.dims());
        let (batch, classes, spatial) = class_dims(&input.dims());
        if let Some(weight) = options.weight {
            checks::class_weight(function, weight, classes);
        }
        let params = ClassIndexParams {
            kind,
            batch,
            classes,
            spatial,
            ignore_index: options.ignore_index,
            label_smoothing: options.label_smoothing,
            output,
            check_values: false,
        };
        let call = Call {
            function,
            check_values: options.check_values,
            family: Family::ClassIndex {
                target,
                weight: options.weight,
                params,
            },
        };
        Self { input, call }
    }
}

impl<'a, const D: usize> Request<'a, D, D> {
    /// Cross-entropy with class probabilities. Panics unless `target` has the input's shape,
    /// the weight is `[C]`, the smoothing lies in `[0, 1]` and `ignore_index` is negative
    /// (PyTorch: "ignore_index is not supported for floating point target").
    pub(crate) fn class_probs(
        function: &'static str,
        input: Tensor<D>,
        target: &'a Tensor<D>,
        options: IndexOptions<'a>,
        output: Output,
    ) -> Self {
        checks::same_shape(function, &input.dims(), &target.dims());
        checks::label_smoothing(function, options.label_smoothing);
        assert!(
            options.ignore_index < 0,
            "{function}: ignore_index: expected a negative value (ignore_index is not \
             supported for probability targets), got {}",
            options.ignore_index
        );
        let (batch, classes, spatial) = class_dims(&input.dims());
        if let Some(weight) = options.weight {
            checks::class_weight(function, weight, classes);
        }
        let params = ClassProbsParams {
            batch,
            classes,
            spatial,
            label_smoothing: options.label_smoothing,
            output,
        };
        let call = Call {
            function,
            check_values: false,
            family: Family::ClassProbs {
                target,
                weight: options.weight,
                params,
            },
        };
        Self { input, call }
    }

    /// BCE (`check_values`: probabilities and targets in `[0, 1]`) or BCE with logits (no
    /// value rule). Panics unless `target` has the input's shape; the weights' shapes are
    /// checked where they are broadcast.
    pub(crate) fn binary(
        function: &'static str,
        kind: BinaryKind,
        input: Tensor<D>,
        target: &'a Tensor<D>,
        [weight, pos_weight]: [Option<&'a BroadcastWeight>; 2],
        check_values: bool,
        output: Output,
    ) -> Self {
        checks::same_shape(function, &input.dims(), &target.dims());
        let params = BinaryParams {
            kind,
            len: input.shape().num_elements(),
            output,
            check_values: false,
        };
        let call = Call {
            function,
            check_values: check_values && kind == BinaryKind::Probabilities,
            family: Family::Binary {
                target,
                weight,
                pos_weight,
                params,
            },
        };
        Self { input, call }
    }
}

impl<const D: usize, const DT: usize> Request<'_, D, DT> {
    /// The protocol: the loss computed by the fused kernels when the path and the backend
    /// allow it, or `None` for the composite path. Either way the values have been checked
    /// when the request asks for it: inside the kernel where the backend's kernels check
    /// values, before it otherwise (and before the composite path when no kernel ran).
    ///
    /// The steps, the same for every loss: the path switch and the backend probe, once; an
    /// empty input takes the composite path (its result is built from host data, see
    /// `workarounds`); the kernel runs; a case the kernels do not cover takes the composite
    /// path, except under [`LossPath::Fused`], which panics.
    ///
    /// The fused loss comes as `[N * S]`, `[L]` (per element) or `[1]` (reduced); `Err` hands
    /// the input back for the composite path.
    pub(crate) fn fused(self) -> Result<Tensor<1>, Tensor<D>> {
        let Self { input, call } = self;
        let kernels = path_kernels(call.function, &input.device());
        let Some(kernels) = kernels.filter(|_| input.shape().num_elements() > 0) else {
            call.check_values(&input);
            return Err(input);
        };
        let in_kernel = call.check_values && kernels.checks_values();
        if !in_kernel {
            call.check_values(&input);
        }
        let input_dims = input.dims();
        let op = match call.op(input) {
            Ok(op) => op.check_values_in_kernel(in_kernel),
            Err(input) => return call.uncovered(input, in_kernel),
        };
        match kernels.run(op) {
            Ran::Done(loss) => Ok(Tensor::from_dispatch(loss)),
            Ran::Refused(bad) => call.refuse(bad, &input_dims),
            Ran::Uncovered(input) => call.uncovered(Tensor::from_dispatch(input), in_kernel),
        }
    }
}

impl<const D: usize, const DT: usize> Call<'_, D, DT> {
    /// A case no kernel covers: the composite path gets the input back, its values checked
    /// now if the kernel was to check them; under [`LossPath::Fused`], a panic.
    fn uncovered<T>(&self, input: Tensor<D>, in_kernel: bool) -> Result<T, Tensor<D>> {
        if loss_path() == LossPath::Fused {
            no_kernel(self.function, &input.device());
        }
        if in_kernel {
            self.check_values(&input);
        }
        Err(input)
    }
    /// The generic value check on the device, when asked for and there is anything to check.
    fn check_values(&self, input: &Tensor<D>) {
        if !self.check_values {
            return;
        }
        match &self.family {
            Family::ClassIndex { target, params, .. } => {
                // An empty target has nothing to check (and Burn 0.21's wgpu fails on some
                // kernels over empty tensors, see `workarounds`).
                if target.shape().num_elements() > 0 {
                    checks::class_indices(
                        self.function,
                        target,
                        params.classes,
                        params.ignore_index,
                    );
                }
            }
            Family::Binary { target, .. } => {
                if input.shape().num_elements() > 0 {
                    checks::probabilities(self.function, input, target);
                }
            }
            Family::ClassProbs { .. } => {}
        }
    }

    /// Panics with the loss's usual message for a value a kernel refused.
    fn refuse(&self, bad: BadValue, input_dims: &[usize]) -> ! {
        let (target_dims, classes, ignore_index) = match &self.family {
            Family::ClassIndex { target, params, .. } => {
                (target.dims().to_vec(), params.classes, params.ignore_index)
            }
            _ => (input_dims.to_vec(), 0, 0),
        };
        checks::refuse(
            self.function,
            bad,
            &target_dims,
            input_dims,
            classes,
            ignore_index,
        )
    }

    /// The fused op on dispatch tensors, taking the input; the input back for a quantized
    /// tensor (the composite path).
    fn op(&self, input: Tensor<D>) -> Result<FusedOp<Dispatch>, Tensor<D>> {
        let Some(with_input) = self.op_around(&input) else {
            return Err(input);
        };
        if matches!(input.dtype(), DType::QFloat(_)) {
            return Err(input);
        }
        Ok(with_input(input.into_dispatch()))
    }

    /// The fused op but for its input, which the returned function takes; `None` for a
    /// quantized target or weight.
    #[allow(clippy::type_complexity)]
    fn op_around(
        &self,
        input: &Tensor<D>,
    ) -> Option<Box<dyn FnOnce(DispatchTensor) -> FusedOp<Dispatch>>> {
        Some(match &self.family {
            Family::ClassIndex {
                target,
                weight,
                params,
            } => {
                let target = (*target).clone().into_dispatch();
                let weight = fused::all_some(weight.map(float))?;
                let params = *params;
                Box::new(move |input| FusedOp::ClassIndex(input, target, weight, params))
            }
            Family::ClassProbs {
                target,
                weight,
                params,
            } => {
                let target = float(target)?;
                let weight = fused::all_some(weight.map(float))?;
                let params = *params;
                Box::new(move |input| FusedOp::ClassProbs(input, target, weight, params))
            }
            Family::Binary {
                target,
                weight,
                pos_weight,
                params,
            } => {
                // Weights are broadcast (and their shapes checked) only now that the fused
                // path runs; the composite path broadcasts them itself.
                let periodic = |weight: &BroadcastWeight, argument: &str| {
                    weight.periodic(self.function, argument, input)
                };
                let target = float(target)?;
                let weight = weight.map(|w| periodic(w, "weight"));
                let pos_weight = pos_weight.map(|w| periodic(w, "pos_weight"));
                let params = *params;
                Box::new(move |input| FusedOp::Binary(input, target, weight, pos_weight, params))
            }
        })
    }
}

/// The fused kernels the current path allows for `device` (the backend probe): none on
/// [`LossPath::Composite`], the backend's kernels if any on [`LossPath::Auto`] (saying once
/// when a feature would have given some), and the backend's kernels or a panic naming
/// `function` on [`LossPath::Fused`].
pub(crate) fn path_kernels(function: &str, device: &Device) -> Option<&'static dyn FusedLosses> {
    match loss_path() {
        LossPath::Composite => None,
        LossPath::Auto => {
            let kernels = fused::kernels_for(device);
            if kernels.is_none() {
                notice_feature_off(device);
            }
            kernels
        }
        LossPath::Fused => {
            Some(fused::kernels_for(device).unwrap_or_else(|| no_kernel(function, device)))
        }
    }
}

/// Panics for [`LossPath::Fused`] where no kernel covers the backend or the case.
pub(crate) fn no_kernel(function: &str, device: &Device) -> ! {
    panic!(
        "{function}: LossPath::Fused: no fused kernel for device {device:?} and this case (see \
         the README for the backends and cases the fused path covers)"
    )
}

/// The dispatch tensor of a float `tensor`; `None` for a quantized tensor (the composite
/// path).
pub(crate) fn float<const K: usize>(tensor: &Tensor<K>) -> Option<DispatchTensor> {
    match tensor.dtype() {
        DType::QFloat(_) => None,
        _ => Some(tensor.clone().into_dispatch()),
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: Burn 0.22 deprecates burn-ndarray.
mod tests {
    use super::feature_off;

    #[test]
    fn names_the_feature_a_backend_misses() {
        let wgpu_off = [("NdArray", "ndarray", true), ("Cube", "wgpu", false)];
        assert_eq!(feature_off("Cube", &wgpu_off), Some("wgpu"));
        assert_eq!(feature_off("NdArray", &wgpu_off), None);
        assert_eq!(
            feature_off("NdArray", &[("NdArray", "ndarray", false)]),
            Some("ndarray")
        );
        let flex_off = (!cfg!(feature = "fused-flex")).then_some("flex");
        assert_eq!(feature_off("Flex", &super::BACKEND_FEATURES), flex_off);
    }

    /// The names `BACKEND_FEATURES` holds are the names Burn's devices give.
    #[cfg(all(feature = "fused-ndarray", feature = "fused-flex"))]
    #[test]
    fn backend_names_are_burns() {
        use burn::tensor::Device;
        assert_eq!(super::backend_name(&Device::ndarray()), "NdArray");
        assert_eq!(super::backend_name(&Device::flex().autodiff()), "Flex");
    }
}
