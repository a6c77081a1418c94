//! burn-xent in a burn-train `Learner`, on real data: the red wine quality data set.
//!
//! 1,599 Portuguese red wines (Cortez et al., 2009), 11 physico-chemical measurements each and
//! a quality score from 3 to 8, shipped inside the `linfa-datasets` crate (no download). A
//! small MLP (11 -> 64 -> 32 -> outputs, ReLU) is trained with burn-train's `Learner` (its
//! terminal UI when stdout is a terminal, a line every 10 epochs otherwise), Adam, a fixed
//! seed, on a stratified 80/20 split whose 20 % is held out for validation and the final
//! numbers. Two tasks, chosen with `--task`:
//!
//! - `quality` (default): the six quality scores as classes, very imbalanced (10 wines score
//!   3, 18 score 8, 1,319 score 5 or 6). burn-xent's `CrossEntropyLoss` with class weights
//!   from the training split's class counts and label smoothing 0.1, through
//!   `CrossEntropyLoss::classification_output`; metrics: loss, accuracy, and the macro
//!   averages of recall (the balanced accuracy) and F1.
//! - `good`: "good wine", a quality of 7 or more (217 wines, 13.6 %). burn-xent's
//!   `BceWithLogitsLoss` with `pos_weight` = negatives / positives of the training split,
//!   through `BceWithLogitsLoss::multi_label_output`; metrics: loss, accuracy (the one-label
//!   Hamming score), precision, recall and F1 of the positive class at probability 0.5.
//!
//! The class weights are the square roots of the "balanced" weights `n / (C n_c)` (PyTorch's
//! usual recipe, scikit-learn's `class_weight="balanced"`), 0.6 to 5.2 here. The balanced
//! weights themselves (0.4 to 27, `--class-weights balanced`) do not mix with label
//! smoothing: PyTorch weights the smoothing term of every sample by *every* class's weight,
//! `(1 - ε) w_y (-log p_y) + ε/C Σ_c w_c (-log p_c)`, so the rarest classes' large weights
//! pull every wine towards them, and the held-out accuracy falls to about 9 %. Without
//! smoothing (`--label-smoothing 0`) they work, and give the best balanced accuracy.
//!
//! Each task is trained twice from the same initial weights: with Burn's own loss as Burn's
//! examples use it (`burn::nn::loss::CrossEntropyLossConfig::new()`,
//! `BinaryCrossEntropyLossConfig::new().with_logits(true)`), then with burn-xent and the
//! options; the held-out metrics of both are printed side by side, so the gap is what the
//! options buy. With `--burn-options`, Burn's losses get their nearest options instead (class
//! weights and smoothing for the cross-entropy; the per-class weights `[1, pos_weight]` of
//! the binary loss's one-dimensional form), and train the same model as burn-xent's.
//!
//! ```text
//! cargo run --release --features train --example train_wine -- [--task quality|good]
//!     [--wgpu] [--epochs N] [--seed S] [--class-weights sqrt|balanced|none]
//!     [--label-smoothing E] [--pos-weight W] [--burn-options]
//! ```
//!
//! `--wgpu` trains on Burn's wgpu backend (default: ndarray, CPU). The seed fixes the split,
//! the initial weights and the batch order; Burn's ndarray backend is not bit-for-bit
//! reproducible from run to run, so the last digits of the metrics can move.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::loss::{BinaryCrossEntropyLoss, BinaryCrossEntropyLossConfig};
use burn::optim::AdamConfig;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn::train::metric::{
    AccuracyMetric, ClassReduction, FBetaScoreMetric, HammingScore, LossMetric, PrecisionMetric,
    RecallMetric,
};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearnerModel, MultiLabelClassificationOutput,
    SupervisedTraining, TrainOutput, TrainStep,
};
use burn_xent::{BceWithLogitsLoss, BceWithLogitsLossConfig, CrossEntropyLossConfig};

/// The tests' helpers: the seeded generator (`Stream`, SplitMix64), for the split, and the
/// devices of their backend matrix.
#[path = "../../tests/common/mod.rs"]
mod common;
mod model;
mod progress;

use common::{Stream, TestBackend};
use model::{
    CLASSES, FEATURES, LOWEST_QUALITY, Mlp, balanced_class_weights, good_label, mean_and_std,
    quality_class,
};

const BATCH_SIZE: usize = 64;
const LEARNING_RATE: f64 = 1e-3;
const EPOCHS: usize = 150;

// ---------------------------------------------------------------------------------------
// Data

/// One wine: standardized measurements and both targets.
#[derive(Clone, Debug)]
struct WineItem {
    features: [f32; FEATURES],
    /// Quality class, `quality - 3`, in `0..6`.
    class: i64,
    /// 1 for a quality of 7 or more, else 0.
    good: i64,
}

/// A batch: features `[N, 11]`, quality classes `[N]`, good-wine labels `[N, 1]`.
#[derive(Clone, Debug)]
struct WineBatch {
    features: Tensor<2>,
    classes: Tensor<1, Int>,
    good: Tensor<2, Int>,
}

#[derive(Clone, Default)]
struct WineBatcher;

impl Batcher<WineItem, WineBatch> for WineBatcher {
    fn batch(&self, items: Vec<WineItem>, device: &Device) -> WineBatch {
        let n = items.len();
        let features: Vec<f32> = items.iter().flat_map(|item| item.features).collect();
        let classes: Vec<i64> = items.iter().map(|item| item.class).collect();
        let good: Vec<i64> = items.iter().map(|item| item.good).collect();
        WineBatch {
            features: Tensor::from_data(TensorData::new(features, [n, FEATURES]), device),
            classes: Tensor::from_data(TensorData::new(classes, [n]), device),
            good: Tensor::from_data(TensorData::new(good, [n, 1]), device),
        }
    }
}

/// The data set split 80/20, stratified by quality score and shuffled with `seed`, the
/// features standardized with the training split's mean and standard deviation.
fn load_split(seed: u64) -> (Vec<WineItem>, Vec<WineItem>) {
    let dataset = linfa_datasets::winequality();
    let records = &dataset.records;
    let qualities: Vec<usize> = dataset.targets.iter().copied().collect();
    assert_eq!(records.ncols(), FEATURES);

    let mut rng = Stream::new(seed);
    let (mut train_idx, mut valid_idx) = (Vec::new(), Vec::new());
    for class in 0..CLASSES {
        let mut members: Vec<usize> = (0..qualities.len())
            .filter(|&i| qualities[i] - LOWEST_QUALITY == class)
            .collect();
        rng.shuffle(&mut members);
        let held_out = (members.len() as f64 * 0.2).round() as usize;
        valid_idx.extend_from_slice(&members[..held_out]);
        train_idx.extend_from_slice(&members[held_out..]);
    }
    rng.shuffle(&mut train_idx);
    rng.shuffle(&mut valid_idx);

    let stats: [(f64, f64); FEATURES] = std::array::from_fn(|f| {
        let column: Vec<f64> = train_idx.iter().map(|&i| records[[i, f]]).collect();
        mean_and_std(&column)
    });
    let item = |i: usize| WineItem {
        features: std::array::from_fn(|f| {
            let (mean, std) = stats[f];
            ((records[[i, f]] - mean) / std) as f32
        }),
        class: quality_class(qualities[i]),
        good: good_label(qualities[i]),
    };
    (
        train_idx.into_iter().map(item).collect(),
        valid_idx.into_iter().map(item).collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Model (the MLP itself is in `model.rs`)

/// The loss of the quality classifier.
#[derive(Module, Debug)]
enum QualityLoss {
    /// `burn::nn::loss::CrossEntropyLoss`, as configured by the caller.
    Burn(burn::nn::loss::CrossEntropyLoss),
    /// `burn_xent::CrossEntropyLoss`.
    Xent(burn_xent::CrossEntropyLoss),
}

/// Six-class quality classifier: logits `[N, 6]`.
#[derive(Module, Debug)]
struct QualityModel {
    mlp: Mlp,
    loss: QualityLoss,
}

impl QualityModel {
    fn forward_classification(&self, batch: WineBatch) -> ClassificationOutput {
        let logits = self.mlp.forward(batch.features);
        match &self.loss {
            QualityLoss::Burn(loss) => {
                let value = loss.forward(logits.clone(), batch.classes.clone());
                ClassificationOutput::new(value, logits, batch.classes)
            }
            // burn-xent: the loss, the logits and the targets for burn-train, in one call.
            QualityLoss::Xent(loss) => loss.classification_output(logits, batch.classes),
        }
    }
}

impl TrainStep for QualityModel {
    type Input = WineBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: WineBatch) -> TrainOutput<ClassificationOutput> {
        let item = self.forward_classification(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for QualityModel {
    type Input = WineBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: WineBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}

/// The loss of the good-wine detector.
// One per model, built once per run: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
enum GoodLoss {
    /// `burn::nn::loss::BinaryCrossEntropyLoss` on logits.
    Burn(BinaryCrossEntropyLoss),
    /// `burn_xent::BceWithLogitsLoss`.
    Xent(BceWithLogitsLoss),
}

/// Good-wine detector: one logit per wine, `[N, 1]`.
#[derive(Module, Debug)]
struct GoodModel {
    mlp: Mlp,
    loss: GoodLoss,
}

impl GoodModel {
    fn forward_classification(&self, batch: WineBatch) -> MultiLabelClassificationOutput {
        let logits = self.mlp.forward(batch.features);
        match &self.loss {
            GoodLoss::Burn(loss) => {
                // The one-dimensional form, `[N]`, whose `weights` are per class (0 and 1).
                let value = loss.forward(
                    logits.clone().squeeze_dim::<1>(1),
                    batch.good.clone().squeeze_dim::<1>(1),
                );
                MultiLabelClassificationOutput::new(value, sigmoid(logits.detach()), batch.good)
            }
            // burn-xent: the loss, sigmoid(logits) and the labels for burn-train, in one call.
            GoodLoss::Xent(loss) => loss.multi_label_output(logits, batch.good),
        }
    }
}

impl TrainStep for GoodModel {
    type Input = WineBatch;
    type Output = MultiLabelClassificationOutput;

    fn step(&self, batch: WineBatch) -> TrainOutput<MultiLabelClassificationOutput> {
        let item = self.forward_classification(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for GoodModel {
    type Input = WineBatch;
    type Output = MultiLabelClassificationOutput;

    fn step(&self, batch: WineBatch) -> MultiLabelClassificationOutput {
        self.forward_classification(batch)
    }
}

// ---------------------------------------------------------------------------------------
// Training

/// What a run needs besides the model.
struct Run<'a> {
    /// The autodiff device the model trains on (validation runs on its inner device).
    device: &'a Device,
    train: &'a [WineItem],
    valid: &'a [WineItem],
    epochs: usize,
    seed: u64,
    options: &'a LossOptions,
    directory: PathBuf,
}

impl Run<'_> {
    /// The training loader (shuffled, on the autodiff device) and the validation loader (the
    /// whole held-out split in one batch, on the inner device).
    fn loaders(&self) -> (Loader, Loader) {
        let train = DataLoaderBuilder::new(WineBatcher)
            .batch_size(BATCH_SIZE)
            .shuffle(self.seed)
            .set_device(self.device.clone())
            .build(InMemDataset::new(self.train.to_vec()));
        let valid = DataLoaderBuilder::new(WineBatcher)
            .batch_size(self.valid.len())
            .set_device(self.device.clone().inner())
            .build(InMemDataset::new(self.valid.to_vec()));
        (train, valid)
    }

    /// A fresh artifact directory (burn-train writes its metric logs there).
    fn directory(&self) -> PathBuf {
        let _ = std::fs::remove_dir_all(&self.directory);
        std::fs::create_dir_all(&self.directory).expect("artifact directory");
        self.directory.clone()
    }

    fn training<M>(&self) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Input = WineBatch> + InferenceStep<Input = WineBatch>,
    {
        let (train, valid) = self.loaders();
        let training = SupervisedTraining::new(self.directory(), train, valid)
            .num_epochs(self.epochs)
            .with_application_logger(None)
            .summary();
        if std::io::stdout().is_terminal() {
            training
        } else {
            training.renderer(Box::new(progress::EpochLines::new(10)))
        }
    }
}

type Loader = Arc<dyn DataLoader<WineBatch>>;

/// Held-out scores of one trained model.
struct Scores {
    name: String,
    columns: Vec<(&'static str, f64)>,
    detail: String,
}

/// Which loss a run trains with.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// Burn's own loss, as Burn's examples configure it, or with its nearest options.
    Burn,
    /// burn-xent's loss with PyTorch's options.
    Xent,
}

fn train_quality(run: &Run, variant: Variant) -> Scores {
    let weights = class_weights(run.train, run.options.class_weights);
    let smoothing = run.options.label_smoothing;
    let shown = match &weights {
        Some(w) => {
            let w: Vec<String> = w.iter().map(|w| format!("{w:.2}")).collect();
            format!("[{}]", w.join(", "))
        }
        None => "none".to_string(),
    };
    run.device.seed(run.seed);
    let mlp = Mlp::new(CLASSES, run.device);
    let (name, loss) = match variant {
        Variant::Burn if run.options.burn_options => (
            format!("burn::nn CrossEntropyLoss, weights {shown}, smoothing {smoothing}"),
            QualityLoss::Burn(
                burn::nn::loss::CrossEntropyLossConfig::new()
                    .with_weights(weights)
                    .with_smoothing((smoothing > 0.0).then_some(smoothing as f32))
                    .init(run.device),
            ),
        ),
        Variant::Burn => (
            "burn::nn CrossEntropyLoss, defaults".to_string(),
            QualityLoss::Burn(burn::nn::loss::CrossEntropyLossConfig::new().init(run.device)),
        ),
        Variant::Xent => (
            format!("burn-xent CrossEntropyLoss, weight {shown}, label_smoothing {smoothing}"),
            // PyTorch: nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
            QualityLoss::Xent(
                CrossEntropyLossConfig::new()
                    .with_weight(weights)
                    .with_label_smoothing(smoothing)
                    .init(run.device),
            ),
        ),
    };
    println!("\n== {name}");
    let model = QualityModel { mlp, loss };
    let training = run.training::<QualityModel>().metrics((
        LossMetric::new(),
        AccuracyMetric::new(),
        RecallMetric::multiclass(1, ClassReduction::Macro),
        FBetaScoreMetric::multiclass(1.0, 1, ClassReduction::Macro),
    ));
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), LEARNING_RATE));
    score_quality(name, &result.model, run.valid, run.device)
}

fn train_good(run: &Run, variant: Variant) -> Scores {
    let pos_weight = run.options.pos_weight.unwrap_or_else(|| {
        let positives = run.train.iter().filter(|w| w.good == 1).count();
        (run.train.len() - positives) as f32 / positives as f32
    });
    run.device.seed(run.seed);
    let mlp = Mlp::new(1, run.device);
    let (name, loss) = match variant {
        Variant::Burn if run.options.burn_options => (
            format!(
                "burn::nn BinaryCrossEntropyLoss, with_logits(true), weights [1, {pos_weight:.2}]"
            ),
            GoodLoss::Burn(
                BinaryCrossEntropyLossConfig::new()
                    .with_logits(true)
                    .with_weights(Some(vec![1.0, pos_weight]))
                    .init(run.device),
            ),
        ),
        Variant::Burn => (
            "burn::nn BinaryCrossEntropyLoss, with_logits(true)".to_string(),
            GoodLoss::Burn(
                BinaryCrossEntropyLossConfig::new()
                    .with_logits(true)
                    .init(run.device),
            ),
        ),
        Variant::Xent => (
            format!("burn-xent BceWithLogitsLoss, pos_weight [{pos_weight:.2}]"),
            // PyTorch: nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pw]))
            GoodLoss::Xent(
                BceWithLogitsLossConfig::new()
                    .with_pos_weight(Some(vec![pos_weight]))
                    .init(run.device),
            ),
        ),
    };
    println!("\n== {name}");
    let model = GoodModel { mlp, loss };
    let training = run.training::<GoodModel>().metrics((
        LossMetric::new(),
        HammingScore::new(),
        PrecisionMetric::binary(0.5),
        RecallMetric::binary(0.5),
        FBetaScoreMetric::binary(1.0, 0.5),
    ));
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), LEARNING_RATE));
    score_good(name, &result.model, run.valid, run.device)
}

/// How the quality classes are weighted.
#[derive(Clone, Copy, PartialEq)]
enum ClassWeights {
    /// No weights.
    None,
    /// `sqrt(n / (C n_c))`.
    Sqrt,
    /// `n / (C n_c)`: PyTorch's usual recipe, scikit-learn's `class_weight="balanced"`.
    Balanced,
}

/// Class weights from the training split's class counts.
fn class_weights(train: &[WineItem], kind: ClassWeights) -> Option<Vec<f32>> {
    let mut counts = [0usize; CLASSES];
    for wine in train {
        counts[wine.class as usize] += 1;
    }
    let balanced = balanced_class_weights(&counts);
    match kind {
        ClassWeights::None => None,
        ClassWeights::Sqrt => Some(balanced.into_iter().map(f32::sqrt).collect()),
        ClassWeights::Balanced => Some(balanced),
    }
}

// ---------------------------------------------------------------------------------------
// Held-out metrics, computed over the whole held-out split at once

/// The held-out split as one batch on `device`'s inner device, where burn-train's trained model
/// lives.
fn held_out(valid: &[WineItem], device: &Device) -> WineBatch {
    WineBatcher.batch(valid.to_vec(), &device.clone().inner())
}

fn score_quality(
    name: String,
    model: &QualityModel,
    valid: &[WineItem],
    device: &Device,
) -> Scores {
    let logits = model.mlp.forward(held_out(valid, device).features);
    let predicted: Vec<i64> = logits
        .argmax(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    // Per class: wines of that class, predicted as that class, and both.
    let (mut support, mut predicted_as, mut right) =
        ([0usize; CLASSES], [0; CLASSES], [0; CLASSES]);
    for (wine, &p) in valid.iter().zip(&predicted) {
        let (class, p) = (wine.class as usize, p as usize);
        support[class] += 1;
        predicted_as[p] += 1;
        right[class] += usize::from(class == p);
    }
    let correct: usize = right.iter().sum();
    let (mut recalls, mut f1s) = (Vec::new(), Vec::new());
    for c in (0..CLASSES).filter(|&c| support[c] > 0) {
        let recall = right[c] as f64 / support[c] as f64;
        let precision = if predicted_as[c] == 0 {
            0.0
        } else {
            right[c] as f64 / predicted_as[c] as f64
        };
        recalls.push(recall);
        f1s.push(f1(precision, recall));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let detail = (0..CLASSES)
        .map(|c| format!("{}: {}/{}", c + LOWEST_QUALITY, right[c], support[c]))
        .collect::<Vec<_>>()
        .join(", ");
    Scores {
        name,
        columns: vec![
            ("accuracy", 100.0 * correct as f64 / valid.len() as f64),
            ("balanced acc.", 100.0 * mean(&recalls)),
            ("macro F1", 100.0 * mean(&f1s)),
        ],
        detail: format!("right by quality: {detail}"),
    }
}

fn score_good(name: String, model: &GoodModel, valid: &[WineItem], device: &Device) -> Scores {
    let logits = model.mlp.forward(held_out(valid, device).features);
    let scores: Vec<f32> = logits.into_data().try_into_vec_as::<f32>().unwrap();
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for (wine, &s) in valid.iter().zip(&scores) {
        match (s > 0.0, wine.good == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    Scores {
        name,
        columns: vec![
            ("accuracy", 100.0 * ratio(tp + tn, valid.len())),
            ("precision", 100.0 * precision),
            ("recall", 100.0 * recall),
            ("F1", 100.0 * f1(precision, recall)),
            ("AUROC", 100.0 * auroc(&scores, valid)),
        ],
        detail: format!("good wines found: {tp} of {}, false alarms: {fp}", tp + fn_),
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// The probability that a random good wine scores above a random other one (ties count half).
fn auroc(scores: &[f32], valid: &[WineItem]) -> f64 {
    let (mut pairs, mut wins) = (0.0f64, 0.0f64);
    let of = |good: i64| {
        scores
            .iter()
            .zip(valid)
            .filter(move |(_, wine)| wine.good == good)
            .map(|(&score, _)| score)
    };
    for a in of(1) {
        for b in of(0) {
            pairs += 1.0;
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / pairs
}

// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Task {
    Quality,
    Good,
}

/// The loss options of the runs.
struct LossOptions {
    class_weights: ClassWeights,
    label_smoothing: f64,
    /// `None`: negatives / positives of the training split.
    pos_weight: Option<f32>,
    /// Give Burn's own losses their nearest options too.
    burn_options: bool,
}

struct Args {
    task: Task,
    wgpu: bool,
    epochs: usize,
    seed: u64,
    options: LossOptions,
}

const USAGE: &str = "cargo run --release --features train --example train_wine -- \
    [--task quality|good] [--wgpu] [--epochs N] [--seed S] \
    [--class-weights sqrt|balanced|none] [--label-smoothing E] [--pos-weight W] [--burn-options]";

fn parse_args() -> Args {
    let mut args = Args {
        task: Task::Quality,
        wgpu: false,
        epochs: EPOCHS,
        seed: 42,
        options: LossOptions {
            class_weights: ClassWeights::Sqrt,
            label_smoothing: 0.1,
            pos_weight: None,
            burn_options: false,
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| -> String {
            it.next()
                .unwrap_or_else(|| panic!("{arg} needs {what}; usage: {USAGE}"))
        };
        match arg.as_str() {
            "--task" => {
                args.task = match value("quality or good").as_str() {
                    "quality" => Task::Quality,
                    "good" => Task::Good,
                    other => panic!("--task: expected quality or good, got {other}"),
                }
            }
            "--wgpu" => args.wgpu = true,
            "--epochs" => args.epochs = value("a number").parse().expect("--epochs N"),
            "--seed" => args.seed = value("a number").parse().expect("--seed S"),
            "--class-weights" => {
                args.options.class_weights = match value("sqrt, balanced or none").as_str() {
                    "sqrt" => ClassWeights::Sqrt,
                    "balanced" => ClassWeights::Balanced,
                    "none" => ClassWeights::None,
                    other => {
                        panic!("--class-weights: expected sqrt, balanced or none, got {other}")
                    }
                }
            }
            "--label-smoothing" => {
                args.options.label_smoothing =
                    value("a number").parse().expect("--label-smoothing E")
            }
            "--pos-weight" => {
                args.options.pos_weight = Some(value("a number").parse().expect("--pos-weight W"))
            }
            "--burn-options" => args.options.burn_options = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}; usage: {USAGE}"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let backend = if args.wgpu {
        TestBackend::wgpu()
    } else {
        TestBackend::ndarray_f32()
    };
    run(&args, &backend.device.autodiff(), backend.name);
}

/// Both variants of the task on `device`, an autodiff device.
fn run(args: &Args, device: &Device, backend: &str) {
    let start = std::time::Instant::now();
    let (train, valid) = load_split(args.seed);
    let task = match args.task {
        Task::Quality => "quality",
        Task::Good => "good",
    };
    let epochs = args.epochs;
    let positives = |items: &[WineItem]| items.iter().filter(|w| w.good == 1).count();
    println!(
        "red wine quality: {} training wines ({} good), {} held out ({} good); task {task}, \
         {backend}, {epochs} epochs, batch {BATCH_SIZE}, Adam lr {LEARNING_RATE}, seed {}",
        train.len(),
        positives(&train),
        valid.len(),
        positives(&valid),
        args.seed
    );
    let run_with = |variant: &str| Run {
        device,
        train: &train,
        valid: &valid,
        epochs,
        seed: args.seed,
        options: &args.options,
        // burn-train's metric logs, under the crate's (git-ignored) target directory.
        directory: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("train_wine")
            .join(format!("{task}-{variant}")),
    };
    let results = match args.task {
        Task::Quality => vec![
            train_quality(&run_with("burn"), Variant::Burn),
            train_quality(&run_with("xent"), Variant::Xent),
        ],
        Task::Good => vec![
            train_good(&run_with("burn"), Variant::Burn),
            train_good(&run_with("xent"), Variant::Xent),
        ],
    };

    println!(
        "\nHeld-out metrics ({} wines, task {task}, {backend}, {epochs} epochs, seed {}):",
        valid.len(),
        args.seed
    );
    let header: Vec<String> = results[0]
        .columns
        .iter()
        .map(|(name, _)| format!("{name:>14}"))
        .collect();
    println!("{:<13}{}", "trained with", header.join(""));
    for (scores, label) in results.iter().zip(["burn::nn", "burn-xent"]) {
        let values: Vec<String> = scores
            .columns
            .iter()
            .map(|(_, v)| format!("{v:>13.1}%"))
            .collect();
        println!("{label:<13}{}", values.join(""));
    }
    for scores in &results {
        println!("  {}\n    {}", scores.name, scores.detail);
    }
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
}
