//! burn-xent losses in burn-train's `Learner` (cargo feature `train`).
//!
//! burn-train's metrics read a model's step output through two structs:
//! [`ClassificationOutput`] (class logits `[N, C]`, class indices `[N]`: accuracy, top-k
//! accuracy, AUROC, perplexity, precision/recall/F-β with a top-k rule) and
//! [`MultiLabelClassificationOutput`] (label probabilities `[N, L]`, 0/1 labels `[N, L]`:
//! Hamming score, precision/recall/F-β with a threshold). The methods of this module compute a
//! burn-xent loss, [`Reduction::Mean`] as PyTorch's default and as burn-train's `LossMetric`
//! expects, and fill the struct in one call:
//!
//! | loss | method | model output | targets | struct |
//! |---|---|---|---|---|
//! | [`CrossEntropyLoss`] | [`classification_output`](CrossEntropyLoss::classification_output) | logits `[N, C]` | `[N]` Int | [`ClassificationOutput`] (logits) |
//! | [`NllLoss`] | [`classification_output`](NllLoss::classification_output) | log-probabilities `[N, C]` | `[N]` Int | [`ClassificationOutput`] (log-probabilities) |
//! | [`BceWithLogitsLoss`] | [`multi_label_output`](BceWithLogitsLoss::multi_label_output) | logits `[N, L]` | `[N, L]` Int 0/1 | [`MultiLabelClassificationOutput`] (probabilities) |
//! | [`BceWithLogitsLoss`] | [`binary_output`](BceWithLogitsLoss::binary_output) | logits `[N]` | `[N]` Int 0/1 | [`MultiLabelClassificationOutput`] `[N, 1]` (probabilities) |
//! | [`BceLoss`] | [`multi_label_output`](BceLoss::multi_label_output) | probabilities `[N, L]` | `[N, L]` Int 0/1 | [`MultiLabelClassificationOutput`] (probabilities) |
//! | [`BceLoss`] | [`binary_output`](BceLoss::binary_output) | probabilities `[N]` | `[N]` Int 0/1 | [`MultiLabelClassificationOutput`] `[N, 1]` (probabilities) |
//!
//! The binary case is a one-label [`MultiLabelClassificationOutput`] because that is what
//! burn-train 0.22's binary metrics read: `PrecisionMetric::binary(0.5)`,
//! `RecallMetric::binary(0.5)`, `FBetaScoreMetric::binary(1.0, 0.5)` and `HammingScore` (which
//! on one label is the accuracy) threshold *probabilities* at 0.5, so the BCE-with-logits
//! methods store `sigmoid(logits)` (detached; the loss is computed on the logits). Do not add
//! `HammingScore::with_sigmoid(true)` on top. `AccuracyMetric` takes the argmax over classes
//! and is meaningless on a single column; use `HammingScore` there.
//!
//! The cross-entropy methods store the logits (or log-probabilities) themselves, as Burn's
//! own examples do: `AccuracyMetric` takes their argmax (as do the top-k rules of precision,
//! recall and F-β) and `PerplexityMetric` applies the log-softmax itself (a log-softmax of
//! log-probabilities gives them back). burn-train 0.22's `AurocMetric` ranks each class's
//! column as stored, with no softmax: on a binary task's single column (the BCE methods'
//! probabilities) that is the usual AUROC; on multi-class logits the ranking of a class's
//! raw scores can differ from that of its probabilities. The loss leaves out rows whose target is `ignore_index`, as PyTorch
//! does, but burn-train's metrics see every row: with padded targets, use a non-negative
//! `ignore_index` and give the same index to `AccuracyMetric::with_pad_token`.
//!
//! With `check_values` on (the default), each call reads the targets (or probabilities) back
//! from the device once to check them, a wait for the step's work on a GPU (burn-train 0.22's
//! metrics compute on the device and read back only their scalars). Switch the check off on
//! the config to avoid it.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use burn::train::ClassificationOutput;
//! use burn_xent::CrossEntropyLossConfig;
//! let device = Device::flex();
//!
//! // In a model's `TrainStep::step` / `InferenceStep::step`:
//! // PyTorch: nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1)
//! let criterion = CrossEntropyLossConfig::new()
//!     .with_weight(Some(vec![1.0, 2.0, 0.5]))
//!     .with_label_smoothing(0.1)
//!     .init(&device);
//! let logits = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], &device);
//! let targets = Tensor::<1, Int>::from_ints([0, 2], &device);
//! let item: ClassificationOutput = criterion.classification_output(logits, targets);
//! assert_eq!(item.loss.dims(), [1]);
//! assert_eq!(item.output.dims(), [2, 3]);
//! ```

use burn::tensor::activation::sigmoid;
use burn::tensor::kind::Basic;
use burn::tensor::{Int, Tensor};
use burn::train::{ClassificationOutput, MultiLabelClassificationOutput};

use crate::{BceLoss, BceWithLogitsLoss, CrossEntropyLoss, NllLoss, Reduction};

/// `[N]` to `[N, 1]`: a binary task as burn-train's one-label multi-label output.
fn column<K: Basic>(tensor: Tensor<1, K>) -> Tensor<2, K> {
    tensor.unsqueeze_dim(1)
}

impl CrossEntropyLoss {
    /// The mean cross-entropy of `logits` against class indices `targets`, with the logits
    /// and targets, as burn-train's [`ClassificationOutput`].
    ///
    /// `logits`: `[N, C]` raw scores; `targets`: `[N]` class indices in `[0, C)` or
    /// `ignore_index`. `loss` is `self.forward(logits, targets, Reduction::Mean)`, shape `[1]`
    /// (PyTorch: `nn.CrossEntropyLoss(weight=…, ignore_index=…, label_smoothing=…)(logits,
    /// targets)`); `output` is `logits`; `targets` is `targets`.
    ///
    /// # Panics
    /// As [`cross_entropy`](crate::cross_entropy): shapes that do not match, a class weight of
    /// the wrong length, a target outside `[0, C)` that is not `ignore_index`.
    pub fn classification_output(
        &self,
        logits: Tensor<2>,
        targets: Tensor<1, Int>,
    ) -> ClassificationOutput {
        let loss = self.forward(logits.clone(), targets.clone(), Reduction::Mean);
        ClassificationOutput::new(loss, logits, targets)
    }
}

impl NllLoss {
    /// The mean negative log-likelihood of `log_probs` against class indices `targets`, with
    /// the log-probabilities and targets, as burn-train's [`ClassificationOutput`].
    ///
    /// `log_probs`: `[N, C]`, usually `log_softmax(logits, 1)`; `targets`: `[N]` class indices
    /// in `[0, C)` or `ignore_index`. `loss` is `self.forward(log_probs, targets,
    /// Reduction::Mean)`, shape `[1]` (PyTorch: `nn.NLLLoss(weight=…, ignore_index=…)(log_probs,
    /// targets)`); `output` is `log_probs` (their argmax and softmax are those of the logits);
    /// `targets` is `targets`.
    ///
    /// # Panics
    /// As [`nll_loss`](crate::nll_loss).
    pub fn classification_output(
        &self,
        log_probs: Tensor<2>,
        targets: Tensor<1, Int>,
    ) -> ClassificationOutput {
        let loss = self.forward(log_probs.clone(), targets.clone(), Reduction::Mean);
        ClassificationOutput::new(loss, log_probs, targets)
    }
}

impl BceWithLogitsLoss {
    /// The mean binary cross-entropy of `logits` against 0/1 `targets`, with the predicted
    /// probabilities and targets, as burn-train's [`MultiLabelClassificationOutput`].
    ///
    /// `logits`: `[N, L]`, one raw score per sample and label (`L = 1` for a binary task);
    /// `targets`: `[N, L]` labels 0 or 1. `loss` is `self.forward(logits, targets.float(),
    /// Reduction::Mean)`, shape `[1]` (PyTorch: `nn.BCEWithLogitsLoss(weight=…,
    /// pos_weight=…)(logits, targets.float())`); `output` is `sigmoid(logits)`, detached, for
    /// the metrics' 0.5 thresholds; `targets` is `targets`. For soft labels, compute the loss
    /// with [`forward`](Self::forward) and build the struct yourself.
    ///
    /// # Panics
    /// As [`binary_cross_entropy_with_logits`](crate::binary_cross_entropy_with_logits):
    /// shapes that do not match, a `weight` or `pos_weight` that does not broadcast.
    pub fn multi_label_output(
        &self,
        logits: Tensor<2>,
        targets: Tensor<2, Int>,
    ) -> MultiLabelClassificationOutput {
        let loss = self.forward(logits.clone(), targets.clone().float(), Reduction::Mean);
        MultiLabelClassificationOutput::new(loss, sigmoid(logits.detach()), targets)
    }

    /// [`multi_label_output`](Self::multi_label_output) for a binary task with one logit per
    /// sample: `logits` `[N]`, `targets` `[N]` (0 or 1); `output` and `targets` come back as
    /// `[N, 1]`, the shape burn-train's binary metrics read.
    ///
    /// PyTorch: `nn.BCEWithLogitsLoss(pos_weight=…)(logits, targets.float())`.
    ///
    /// # Panics
    /// As [`multi_label_output`](Self::multi_label_output).
    pub fn binary_output(
        &self,
        logits: Tensor<1>,
        targets: Tensor<1, Int>,
    ) -> MultiLabelClassificationOutput {
        self.multi_label_output(column(logits), column(targets))
    }
}

impl BceLoss {
    /// The mean binary cross-entropy of probabilities `probs` against 0/1 `targets`, with the
    /// probabilities and targets, as burn-train's [`MultiLabelClassificationOutput`].
    ///
    /// `probs`: `[N, L]` in `[0, 1]`, usually `sigmoid(logits)`; `targets`: `[N, L]` labels 0
    /// or 1. `loss` is `self.forward(probs, targets.float(), Reduction::Mean)`, shape `[1]`
    /// (PyTorch: `nn.BCELoss(weight=…)(probs, targets.float())`); `output` is `probs`;
    /// `targets` is `targets`. Prefer [`BceWithLogitsLoss::multi_label_output`] on the logits
    /// for training: BCE on probabilities clamps its logarithms at -100 and its gradient
    /// vanishes where the sigmoid saturates.
    ///
    /// # Panics
    /// As [`binary_cross_entropy`](crate::binary_cross_entropy): shapes that do not match, a
    /// `weight` that does not broadcast, a probability or BCE target outside `[0, 1]` (when
    /// checked).
    pub fn multi_label_output(
        &self,
        probs: Tensor<2>,
        targets: Tensor<2, Int>,
    ) -> MultiLabelClassificationOutput {
        let loss = self.forward(probs.clone(), targets.clone().float(), Reduction::Mean);
        MultiLabelClassificationOutput::new(loss, probs, targets)
    }

    /// [`multi_label_output`](Self::multi_label_output) for a binary task with one probability
    /// per sample: `probs` `[N]`, `targets` `[N]` (0 or 1); `output` and `targets` come back as
    /// `[N, 1]`.
    ///
    /// PyTorch: `nn.BCELoss()(probs, targets.float())`.
    ///
    /// # Panics
    /// As [`multi_label_output`](Self::multi_label_output).
    pub fn binary_output(
        &self,
        probs: Tensor<1>,
        targets: Tensor<1, Int>,
    ) -> MultiLabelClassificationOutput {
        self.multi_label_output(column(probs), column(targets))
    }
}
