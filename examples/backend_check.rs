//! Checking a small model across backends with `burn_xent::backend_check`.
//!
//! A classifier (a Linear layer, GELU, a Linear layer) trained with burn-xent's cross-entropy
//! (class weights, label smoothing) runs on the ndarray device with autodiff in f64, the
//! reference, and on the same device in f32 and on wgpu (f32), from the same parameters and the
//! same batch;
//! the loss, the logits and the gradient of every parameter and of the features are compared
//! element by element. Then the same model with a hand-written log-softmax,
//! `log(exp(z) / Σ exp(z))`, on unscaled features: exact enough in f64, but `exp` overflows in
//! f32, and the check says where.
//!
//! Run with `cargo run --example backend_check`. Without a wgpu adapter the wgpu line reads
//! `skipped: …` (on Debian, `apt-get install mesa-vulkan-drivers` gives a software one).

use burn::module::{Module, Param};
use burn::nn::{Gelu, Linear, LinearConfig};
use burn::tensor::{DType, Device, DeviceKind, Int, Tensor};
use burn_xent::backend_check::{
    BackendCheck, BackendCheckConfig, Computation, HostInputs, Inputs, Outputs,
};
use burn_xent::{CrossEntropyOptions, NllLossOptions, Reduction, cross_entropy, nll_loss};

const BATCH: usize = 16;
const FEATURES: usize = 4;
const HIDDEN: usize = 8;
const CLASSES: usize = 3;

/// The user's model.
#[derive(Module, Debug)]
struct Classifier {
    hidden: Linear,
    activation: Gelu,
    output: Linear,
}

impl Classifier {
    fn init(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(FEATURES, HIDDEN).init(device),
            activation: Gelu::new(),
            output: LinearConfig::new(HIDDEN, CLASSES).init(device),
        }
    }

    /// `[N, FEATURES]` features to `[N, CLASSES]` logits.
    fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let hidden = self.activation.forward(self.hidden.forward(features));
        self.output.forward(hidden)
    }

    /// Adds the parameters to `inputs` as gradient leaves, named `hidden.weight`, ….
    fn parameters_to(&self, inputs: HostInputs) -> HostInputs {
        let mut inputs = inputs;
        for (name, linear) in [("hidden", &self.hidden), ("output", &self.output)] {
            inputs = inputs.float(&format!("{name}.weight"), linear.weight.val().into_data());
            if let Some(bias) = &linear.bias {
                inputs = inputs.float(&format!("{name}.bias"), bias.val().into_data());
            }
        }
        inputs
    }
}

/// The model rebuilt on the inputs' backend from the host parameters (the same gradient leaves
/// the check reads the gradients of).
fn model_from(x: &Inputs) -> Classifier {
    let linear = |name: &str| Linear {
        weight: Param::from_tensor(x.float(&format!("{name}.weight"))),
        bias: Some(Param::from_tensor(x.float(&format!("{name}.bias")))),
    };
    Classifier {
        hidden: linear("hidden"),
        activation: Gelu::new(),
        output: linear("output"),
    }
}

/// One training step's forward pass, written once for every backend.
struct TrainingStep {
    /// burn-xent's cross-entropy (true) or a hand-written `log(softmax)` and NLL (false).
    burn_xent_loss: bool,
}

impl Computation for TrainingStep {
    fn run(&self, x: &Inputs) -> Outputs {
        let model = model_from(x);
        let logits = model.forward(x.float("features"));
        let labels: Tensor<1, Int> = x.int("labels");
        let class_weight: Tensor<1> = x.float("class_weight");
        let loss = if self.burn_xent_loss {
            // PyTorch: F.cross_entropy(logits, labels, weight=w, label_smoothing=0.1)
            let options = CrossEntropyOptions::new()
                .with_weight(class_weight)
                .with_label_smoothing(0.1);
            cross_entropy(logits.clone(), labels, Reduction::Mean, &options)
        } else {
            let e = logits.clone().exp();
            let log_p = (e.clone() / e.sum_dim(1)).log();
            let options = NllLossOptions::new().with_weight(class_weight);
            nll_loss(log_p, labels, Reduction::Mean, &options)
        };
        Outputs::new().float("loss", loss).float("logits", logits)
    }
}

/// A batch: `[BATCH, FEATURES]` features of the given scale, labels, class weights.
fn batch(scale: f64) -> HostInputs {
    let features: Vec<f64> = (0..BATCH * FEATURES)
        .map(|i| scale * ((i as f64 * 1.7 + 0.3).sin() + 0.25 * (i as f64 * 0.31).cos()))
        .collect();
    let labels: Vec<i64> = (0..BATCH)
        .map(|i| ((i * 7 + i / 3) % CLASSES) as i64)
        .collect();
    HostInputs::new()
        .float(
            "features",
            burn::tensor::TensorData::new(features, [BATCH, FEATURES]),
        )
        .int("labels", burn::tensor::TensorData::new(labels, [BATCH]))
        .constant(
            "class_weight",
            burn::tensor::TensorData::new(vec![1.0, 2.0, 0.5], [CLASSES]),
        )
}

fn main() {
    // The backends: a device and the float dtype to run it in. The reference is
    // `burn_xent::backend_check::default_reference()`, spelled out.
    #[allow(deprecated)] // Burn 0.22 deprecates ndarray for Flex; burn-xent still serves it
    let cpu = Device::ndarray().autodiff();
    let gpu = Device::wgpu(DeviceKind::DefaultDevice).autodiff();

    // The parameters of a freshly initialised model (any model's, trained or not, will do).
    cpu.seed(42);
    let model = Classifier::init(&cpu);

    // The same numbers for every backend: rounded to f32 once, so the f32 backends and the
    // f64 reference start from identical inputs and only the computation's round-off shows.
    let inputs = |scale| {
        model
            .parameters_to(batch(scale))
            .round_floats_to(DType::F32)
    };
    let config = BackendCheckConfig::new(); // tolerances from the dtypes: f32's here

    println!("1. The classifier with burn-xent's cross-entropy, standardised features:");
    let standardised = inputs(1.0);
    let step = TrainingStep {
        burn_xent_loss: true,
    };
    let report = BackendCheck::new(&step, &standardised, &cpu, DType::F64, &config)
        .against(&cpu, DType::F32)
        .against(&gpu, DType::F32)
        .assert_agree();
    println!("{report}\n");

    println!(
        "2. Unscaled features (in the thousands: logits beyond 88), burn-xent's cross-entropy:"
    );
    let unscaled = inputs(1000.0);
    let report = BackendCheck::new(&step, &unscaled, &cpu, DType::F64, &config)
        .against(&cpu, DType::F32)
        .against(&gpu, DType::F32)
        .assert_agree();
    println!("{report}\n");

    println!("3. The same with a hand-written log(softmax): exp(88.8) overflows f32, caught:");
    let naive = TrainingStep {
        burn_xent_loss: false,
    };
    let report = BackendCheck::new(&naive, &unscaled, &cpu, DType::F64, &config)
        .against(&cpu, DType::F32)
        .against(&gpu, DType::F32)
        .finish();
    println!("{report}");
    assert!(!report.passed(), "the f32 overflow should have been caught");
}
