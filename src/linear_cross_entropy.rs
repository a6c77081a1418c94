//! The classifier head and cross-entropy in one call: `cross_entropy(linear(hidden, weight,
//! bias), target)`, computed on the fused backends in chunks of rows so that the `[N, V]`
//! logits and their gradient never exist whole.

use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use crate::checks;
use crate::cross_entropy::{
    CrossEntropyOptions, LossWithZLoss, cross_entropy_no_reduction, cross_entropy_with_z_loss,
};
use crate::fused::{FusedOp, LinearOp, LinearParams, Output, Ran};
use crate::path::{LossPath, float, loss_path, no_kernel, path_kernels};
use crate::reduction::Reduction;

const FUNCTION: &str = "linear_cross_entropy";

/// Options of [`linear_cross_entropy`]: those of [`cross_entropy`](crate::cross_entropy)
/// (the class weight here named `class_weight`, since `weight` is the linear layer's), plus
/// the number of rows per chunk of the fused path.
#[derive(Clone, Debug)]
pub struct LinearCrossEntropyOptions {
    /// One weight per class, shape `[V]` (PyTorch's `weight` of `F.cross_entropy`); a
    /// constant of the fused path (one that requires a gradient takes the composite path).
    pub class_weight: Option<Tensor<1>>,
    /// Targets equal to this value get no loss and no gradient and do not count in the mean
    /// (PyTorch's `ignore_index`, default -100).
    pub ignore_index: i64,
    /// Label smoothing ε in `[0, 1]` (PyTorch's `label_smoothing`, default 0).
    pub label_smoothing: f64,
    /// Caps the logits before the loss, `z ↦ cap · tanh(z / cap)` (Gemma 2); positive.
    pub softcap: Option<f64>,
    /// The z-loss scale: `scale · w[t] · lse²` added per row (PaLM); non-negative, default 0.
    pub z_loss: f64,
    /// Rows of `hidden` per chunk on the fused path; `None` (the default) picks it from the
    /// sizes (see [`linear_cross_entropy`]). Ignored by the composite path.
    pub chunk_size: Option<usize>,
    /// Check that every class index lies in `[0, V)` or equals `ignore_index` (default
    /// `true`; one read from the device).
    pub check_values: bool,
}

impl Default for LinearCrossEntropyOptions {
    fn default() -> Self {
        Self {
            class_weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
            softcap: None,
            z_loss: 0.0,
            chunk_size: None,
            check_values: true,
        }
    }
}

impl LinearCrossEntropyOptions {
    /// PyTorch's defaults (no class weight, `ignore_index=-100`, no smoothing), no soft cap,
    /// no z-loss, the chunk size picked from the sizes, values checked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the per-class weight, shape `[V]`.
    pub fn with_class_weight(mut self, weight: Tensor<1>) -> Self {
        self.class_weight = Some(weight);
        self
    }

    /// Sets the target value that is ignored.
    pub fn with_ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Sets the label smoothing ε, in `[0, 1]`.
    pub fn with_label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Sets the logit soft cap, positive and finite.
    pub fn with_softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// Sets the z-loss scale, non-negative.
    pub fn with_z_loss(mut self, scale: f64) -> Self {
        self.z_loss = scale;
        self
    }

    /// Sets the rows per chunk of the fused path (at least 1).
    pub fn with_chunk_size(mut self, rows: usize) -> Self {
        self.chunk_size = Some(rows);
        self
    }

    /// Switches the target range check on or off.
    pub fn with_check_values(mut self, check_values: bool) -> Self {
        self.check_values = check_values;
        self
    }

    /// The same loss's options for [`cross_entropy`](crate::cross_entropy) on the logits
    /// (the composite path), values already checked.
    fn cross_entropy(&self) -> CrossEntropyOptions {
        CrossEntropyOptions {
            weight: self.class_weight.clone(),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            check_values: false,
            softcap: self.softcap,
            z_loss: self.z_loss,
        }
    }
}

/// Cross-entropy of a linear layer's output, reduced to one value, without the `[N, V]`
/// logits ever existing whole on the fused backends: `cross_entropy(linear(hidden, weight,
/// bias), target)`, values and gradients with respect to `hidden`, `weight` and `bias`.
///
/// PyTorch has no such function (pytorch/pytorch issue 124480); the equivalent line is
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.cross_entropy(F.linear(h, W.T, b), t)` | `linear_cross_entropy(h, W, Some(b), t, Reduction::Mean, &LinearCrossEntropyOptions::new())` |
/// | `F.cross_entropy(F.linear(h, W.T), t, weight=w, ignore_index=0, label_smoothing=0.1)` | `linear_cross_entropy(h, W, None, t, Reduction::Mean, &LinearCrossEntropyOptions::new().with_class_weight(w).with_ignore_index(0).with_label_smoothing(0.1))` |
///
/// (`W` in Burn's `Linear` layout `[D, V]`, PyTorch's `nn.Linear.weight` transposed.) With a
/// soft cap the logits are `cap · tanh(z / cap)` first; with a z-loss `scale · w[t] · lse²` is
/// added per row (see [`CrossEntropyOptions`] and [`linear_cross_entropy_with_z_loss`]).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn_xent::{CrossEntropyOptions, LinearCrossEntropyOptions, Reduction, cross_entropy, linear_cross_entropy};
/// let device = Device::ndarray().autodiff();
/// let hidden = Tensor::<2>::from_floats([[0.5, -1.0], [2.0, 0.1], [0.3, 0.3]], &device);
/// let weight = Tensor::<2>::from_floats([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], &device); // [D, V]
/// let bias = Tensor::<1>::from_floats([0.1, 0.0, -0.1], &device);
/// let target = Tensor::<1, Int>::from_ints([2, 0, -100], &device);
/// let options = LinearCrossEntropyOptions::new().with_chunk_size(2);
/// let fused = linear_cross_entropy(hidden.clone(), weight.clone(), Some(bias.clone()), target.clone(), Reduction::Mean, &options);
/// // The definition: the logits whole, then cross-entropy.
/// let logits = hidden.matmul(weight) + bias.unsqueeze();
/// let reference = cross_entropy(logits, target, Reduction::Mean, &CrossEntropyOptions::new());
/// assert!((fused.into_scalar::<f32>() - reference.into_scalar::<f32>()).abs() < 1e-6);
/// ```
///
/// **Fused path** (`NdArray`, `Flex`, the wgpu cube backends, and `Autodiff` of them): the rows
/// of `hidden` are taken `chunk_size` at a time; each chunk's logits come from one matrix
/// product (plus the bias), its loss and logit gradient from the fused cross-entropy kernel
/// (written over the logits), and its contributions to the gradients of `hidden`, `weight`
/// and `bias` from two more products, then the chunk is dropped. With `Mean` or `Sum` the
/// gradients are computed during the forward (when any of the three requires one) and the
/// backward only scales them, so the extra memory is one chunk's logits, not `[N, V]`; on a
/// backend without autodiff (or when none of the three is tracked) no gradient work is done.
/// The mean's denominator is computed from the targets first. The whole op is one autodiff
/// node.
///
/// On the CPU backends the products run on the `gemm` crate over the tensors' own storage at
/// their strides (a transposed `hidden`, or a tied embedding's `weight.transpose()`, is not
/// copied), and the weight's gradient accumulates in place in one `[D, V]` buffer; the default
/// chunk is 256 rows or more where that stays within 2^25 logits (512 rows at `V = 32,000`,
/// 256 at `V = 128,256`: fewer rows make the products slower per row). On wgpu the products are
/// CubeCL's matrix product through Burn's `matmul`, and the default chunk holds at most twice
/// as many logits as `hidden` holds values (at least 2^20, at most 2^24 logits; 256 rows at
/// `[4096, 1024]` and `V = 32,000`), a multiple of 8 rows.
///
/// **Composite path** (every other backend, or under [`LossPath::Composite`]): `linear` then
/// [`cross_entropy`](crate::cross_entropy), with the same numbers; it holds the full logits
/// and saves no memory.
///
/// # Shapes
/// - `hidden`: `[N, D]` or `[B, T, D]` (any rank ≥ 2; the leading dimensions are flattened
///   into rows, as cross-entropy's K-dimensional inputs are)
/// - `weight`: `[D, V]` (as `burn::nn::Linear::weight` holds it)
/// - `bias`: `[V]`
/// - `target`: `hidden`'s leading dimensions (`[N]` or `[B, T]`), class indices in `[0, V)`
///   or `ignore_index`
/// - `class_weight`: `[V]`
/// - output: `[1]`
///
/// # Panics
/// With a message naming `linear_cross_entropy`, the argument, what was expected and what
/// came: `weight`'s first dimension not `hidden`'s last, `bias` or `class_weight` not `[V]`,
/// `target`'s shape not `hidden`'s leading dimensions, a label smoothing outside `[0, 1]`, a
/// soft cap that is not positive, a negative z-loss scale, a chunk size of 0, and (when
/// `check_values` is on, one read from the device) a class index outside `[0, V)` that is not
/// `ignore_index`.
pub fn linear_cross_entropy<const D: usize, const DT: usize>(
    hidden: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    target: Tensor<DT, Int>,
    reduction: Reduction,
    options: &LinearCrossEntropyOptions,
) -> Tensor<1> {
    linear_cross_entropy_with_z_loss(hidden, weight, bias, target, reduction, options).loss
}

/// [`linear_cross_entropy`], also returning its z-loss term apart, for logging (0 without a
/// z-loss).
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `z = 30 * torch.tanh(F.linear(h, W.T, b) / 30); F.cross_entropy(z, t) + 1e-4 * (z.logsumexp(1) ** 2).mean()` | `linear_cross_entropy_with_z_loss(h, W, Some(b), t, Reduction::Mean, &LinearCrossEntropyOptions::new().with_softcap(30.0).with_z_loss(1e-4))` |
///
/// `loss` is [`linear_cross_entropy`]'s value (z-loss included); `z_loss` is the z-loss term
/// reduced the same way. On the fused path `z_loss` is detached (read it for logging; the
/// gradient flows through `loss`); on the composite path it carries its gradient.
///
/// # Shapes and panics
/// Those of [`linear_cross_entropy`].
pub fn linear_cross_entropy_with_z_loss<const D: usize, const DT: usize>(
    hidden: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    target: Tensor<DT, Int>,
    reduction: Reduction,
    options: &LinearCrossEntropyOptions,
) -> LossWithZLoss {
    let call = Call::new(hidden, weight, bias, target, options);
    match call.fused(Output::Reduced(reduction)) {
        Some(out) => LossWithZLoss {
            loss: out.clone().narrow(0, 0, 1),
            z_loss: out.narrow(0, 1, 1).detach(),
        },
        None => cross_entropy_with_z_loss(
            call.logits(),
            call.target,
            reduction,
            &options.cross_entropy(),
        ),
    }
}

/// [`linear_cross_entropy`] per row, PyTorch's `reduction='none'`: the target's shape (0
/// where the target is ignored).
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.cross_entropy(F.linear(h, W.T, b), t, reduction='none')` | `linear_cross_entropy_no_reduction(h, W, Some(b), t, &LinearCrossEntropyOptions::new())` |
///
/// On the fused path the forward keeps no gradient; the backward, which gets one upstream
/// value per row, recomputes each chunk's logits (one more matrix product per chunk than the
/// reduced losses), so the memory stays bounded by a chunk.
///
/// # Shapes and panics
/// Those of [`linear_cross_entropy`]; the output has `target`'s shape.
pub fn linear_cross_entropy_no_reduction<const D: usize, const DT: usize>(
    hidden: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    target: Tensor<DT, Int>,
    options: &LinearCrossEntropyOptions,
) -> Tensor<DT> {
    let dims = target.dims();
    let call = Call::new(hidden, weight, bias, target, options);
    match call.fused(Output::PerElement) {
        Some(loss) => loss.reshape(dims),
        None => {
            let loss =
                cross_entropy_no_reduction(call.logits(), call.target, &options.cross_entropy());
            loss.reshape(dims)
        }
    }
}

/// [`linear_cross_entropy`] of a `burn::nn::Linear` layer: its weight `[D, V]` and bias.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.cross_entropy(head(h), t)` (`head = nn.Linear(D, V)`) | `linear_layer_cross_entropy(&head, h, t, Reduction::Mean, &LinearCrossEntropyOptions::new())` |
///
/// # Shapes and panics
/// Those of [`linear_cross_entropy`].
pub fn linear_layer_cross_entropy<const D: usize, const DT: usize>(
    layer: &Linear,
    hidden: Tensor<D>,
    target: Tensor<DT, Int>,
    reduction: Reduction,
    options: &LinearCrossEntropyOptions,
) -> Tensor<1> {
    let bias = layer.bias.as_ref().map(|bias| bias.val());
    linear_cross_entropy(hidden, layer.weight.val(), bias, target, reduction, options)
}

/// A checked call: rows flattened to `[N, D]` and `[N]`.
struct Call<'a> {
    hidden: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    target: Tensor<1, Int>,
    options: &'a LinearCrossEntropyOptions,
}

impl<'a> Call<'a> {
    /// Checks every argument and option (and the class indices, when asked), then flattens.
    fn new<const D: usize, const DT: usize>(
        hidden: Tensor<D>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        target: Tensor<DT, Int>,
        options: &'a LinearCrossEntropyOptions,
    ) -> Self {
        let f = FUNCTION;
        let dims = hidden.dims();
        assert!(
            D >= 2,
            "{f}: hidden: expected rank 2 or more ([N, D] or [B, T, D]), got shape {dims:?}"
        );
        let (rows, width) = (dims[..D - 1].iter().product::<usize>(), dims[D - 1]);
        let [weight_in, classes] = weight.dims();
        assert!(
            weight_in == width,
            "{f}: weight: expected shape [{width}, V] (hidden's last dimension first), got \
             [{weight_in}, {classes}]"
        );
        if let Some(bias) = &bias {
            let got = bias.dims();
            assert!(
                got == [classes],
                "{f}: bias: expected shape [{classes}] (weight's last dimension), got {got:?}"
            );
        }
        let leading = &dims[..D - 1];
        assert!(
            target.dims().as_slice() == leading,
            "{f}: target: expected shape {leading:?} (hidden's leading dimensions), got {:?}",
            target.dims()
        );
        if let Some(class_weight) = &options.class_weight {
            let got = class_weight.dims()[0];
            assert!(
                got == classes,
                "{f}: class_weight: expected one weight per class, shape [{classes}], got \
                 shape [{got}]"
            );
        }
        checks::label_smoothing(f, options.label_smoothing);
        checks::softcap(f, options.softcap);
        checks::z_loss(f, options.z_loss);
        assert!(
            options.chunk_size != Some(0),
            "{f}: chunk_size: expected at least 1 row per chunk, got 0"
        );
        let target = target.reshape([rows]);
        if options.check_values && rows > 0 {
            checks::class_indices(f, &target, classes, options.ignore_index);
        }
        Self {
            hidden: hidden.reshape([rows, width]),
            weight,
            bias,
            target,
            options,
        }
    }

    /// The logits `[N, V]` of the composite path.
    fn logits(&self) -> Tensor<2> {
        let logits = self.hidden.clone().matmul(self.weight.clone());
        match &self.bias {
            Some(bias) => logits + bias.clone().unsqueeze(),
            None => logits,
        }
    }

    /// The fused op's result (`[2]`, the loss and its z-loss term, or `[N]` per row) when the
    /// path and the backend have one; `None` for the composite path.
    fn fused(&self, output: Output) -> Option<Tensor<1>> {
        let device = self.hidden.device();
        let kernels = path_kernels(FUNCTION, &device)?;
        let [rows, width] = self.hidden.dims();
        if rows == 0 {
            return None;
        }
        let classes = self.weight.dims()[1];
        let options = self.options;
        let params = LinearParams {
            rows,
            width,
            classes,
            chunk_rows: options.chunk_size,
            ignore_index: options.ignore_index,
            label_smoothing: options.label_smoothing,
            softcap: options.softcap,
            z_loss: options.z_loss,
            output,
        };
        let op = (|| {
            Some(LinearOp {
                hidden: float(&self.hidden)?,
                weight: float(&self.weight)?,
                bias: crate::fused::all_some(self.bias.as_ref().map(float))?,
                target: self.target.clone().into_dispatch(),
                class_weight: crate::fused::all_some(options.class_weight.as_ref().map(float))?,
                params,
            })
        })();
        match op.map(|op| kernels.run(FusedOp::Linear(op))) {
            Some(Ran::Done(out)) => Some(Tensor::from_dispatch(out)),
            Some(Ran::Refused(_)) => unreachable!("the linear op checks no value in its kernel"),
            _ if loss_path() == LossPath::Fused => no_kernel(FUNCTION, &device),
            _ => None,
        }
    }
}

/// Configuration of [`LinearCrossEntropyLoss`]: the options of [`linear_cross_entropy`].
#[derive(Config, Debug)]
pub struct LinearCrossEntropyLossConfig {
    /// One weight per class.
    pub class_weight: Option<Vec<f32>>,
    /// The target value that is ignored.
    #[config(default = -100)]
    pub ignore_index: i64,
    /// Label smoothing ε in `[0, 1]`.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// The logit soft cap, positive.
    #[config(default = "None")]
    pub softcap: Option<f64>,
    /// The z-loss scale, non-negative.
    #[config(default = 0.0)]
    pub z_loss: f64,
    /// Rows per chunk of the fused path (`None`: picked from the sizes).
    #[config(default = "None")]
    pub chunk_size: Option<usize>,
    /// Check that every class index is a class or `ignore_index`.
    #[config(default = true)]
    pub check_values: bool,
}

impl LinearCrossEntropyLossConfig {
    /// Builds the module on `device`.
    ///
    /// # Panics
    /// If `label_smoothing` is outside `[0, 1]`, `softcap` is not positive, `z_loss` is
    /// negative or `chunk_size` is 0.
    pub fn init(&self, device: &Device) -> LinearCrossEntropyLoss {
        let f = "LinearCrossEntropyLossConfig::init";
        checks::label_smoothing(f, self.label_smoothing);
        checks::softcap(f, self.softcap);
        checks::z_loss(f, self.z_loss);
        assert!(
            self.chunk_size != Some(0),
            "{f}: chunk_size: expected at least 1 row per chunk, got 0"
        );
        LinearCrossEntropyLoss {
            class_weight: self
                .class_weight
                .as_ref()
                .map(|w| Tensor::<1>::from_floats(w.as_slice(), device)),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            softcap: self.softcap,
            z_loss: self.z_loss,
            chunk_size: self.chunk_size,
            check_values: self.check_values,
        }
    }
}

/// [`linear_cross_entropy`] as a module holding its options (no parameters: the head's
/// weight and bias are arguments, or a `Linear` layer).
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `nn.CrossEntropyLoss()(head(h), t)` | `LinearCrossEntropyLossConfig::new().init(&device).forward_layer(&head, h, t, Reduction::Mean)` |
#[derive(Module, Debug)]
pub struct LinearCrossEntropyLoss {
    /// One weight per class.
    pub class_weight: Option<Tensor<1>>,
    /// The target value that is ignored.
    pub ignore_index: i64,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// The logit soft cap.
    pub softcap: Option<f64>,
    /// The z-loss scale.
    pub z_loss: f64,
    /// Rows per chunk of the fused path.
    pub chunk_size: Option<usize>,
    /// Whether class indices are checked.
    pub check_values: bool,
}

impl LinearCrossEntropyLoss {
    /// The function options this module stands for.
    pub fn options(&self) -> LinearCrossEntropyOptions {
        LinearCrossEntropyOptions {
            class_weight: self.class_weight.clone(),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            softcap: self.softcap,
            z_loss: self.z_loss,
            chunk_size: self.chunk_size,
            check_values: self.check_values,
        }
    }

    /// The reduced loss; see [`linear_cross_entropy`].
    pub fn forward<const D: usize, const DT: usize>(
        &self,
        hidden: Tensor<D>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        target: Tensor<DT, Int>,
        reduction: Reduction,
    ) -> Tensor<1> {
        linear_cross_entropy(hidden, weight, bias, target, reduction, &self.options())
    }

    /// The per-row loss; see [`linear_cross_entropy_no_reduction`].
    pub fn forward_no_reduction<const D: usize, const DT: usize>(
        &self,
        hidden: Tensor<D>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        target: Tensor<DT, Int>,
    ) -> Tensor<DT> {
        linear_cross_entropy_no_reduction(hidden, weight, bias, target, &self.options())
    }

    /// The reduced loss and its z-loss term apart; see [`linear_cross_entropy_with_z_loss`].
    pub fn forward_with_z_loss<const D: usize, const DT: usize>(
        &self,
        hidden: Tensor<D>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        target: Tensor<DT, Int>,
        reduction: Reduction,
    ) -> LossWithZLoss {
        linear_cross_entropy_with_z_loss(hidden, weight, bias, target, reduction, &self.options())
    }

    /// The reduced loss of a `Linear` layer's output; see [`linear_layer_cross_entropy`].
    pub fn forward_layer<const D: usize, const DT: usize>(
        &self,
        layer: &Linear,
        hidden: Tensor<D>,
        target: Tensor<DT, Int>,
        reduction: Reduction,
    ) -> Tensor<1> {
        linear_layer_cross_entropy(layer, hidden, target, reduction, &self.options())
    }
}
