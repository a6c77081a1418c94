//! Checking the gradient of a custom loss with `burn_xent::gradcheck`.
//!
//! A binary focal loss (Lin et al., 2017; torchvision's `sigmoid_focal_loss`) written with
//! Burn tensor ops is checked on f64 tensors of the ndarray device with autodiff against
//! central finite differences, with respect to the logits and to a soft target. A variant that
//! detaches the modulating factor, a tempting "optimisation", is caught, and so is a variant
//! built on Burn's `sigmoid`, which Burn 0.22 computes in f32 on ndarray even for f64 tensors.
//! Last, burn-xent's own `binary_cross_entropy_with_logits` is checked with respect to input
//! and target.
//!
//! Run with `cargo run --example gradcheck`.

use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_xent::gradcheck::{GradcheckConfig, assert_gradcheck, gradcheck};
use burn_xent::{BceWithLogitsOptions, Reduction, binary_cross_entropy_with_logits};

/// How the focal loss gets `p = sigmoid(x)`.
#[derive(Clone, Copy)]
enum Variant {
    /// `exp(log_sigmoid(x))`: computed in the backend's dtype.
    Correct,
    /// `p` detached: the modulating factor `(1 - p_t)^γ` gets no gradient. Same value, wrong
    /// gradient.
    DetachedModulation,
    /// Burn's `sigmoid`, which Burn 0.22 computes in f32 on ndarray whatever the tensor's
    /// dtype (the default implementation, which casts to f32): right gradient, but values good
    /// to 1e-7 only, too coarse for f64 finite differences.
    BurnSigmoid,
}

/// Binary focal loss on logits, per element:
/// `FL = α_t (1 - p_t)^γ BCE(x, t)` with `p = sigmoid(x)`, `p_t = p t + (1 - p)(1 - t)` and
/// `α_t = α t + (1 - α)(1 - t)`; torchvision's `sigmoid_focal_loss(x, t, alpha, gamma)`.
fn binary_focal_loss<const D: usize>(
    logits: Tensor<D>,
    target: Tensor<D>,
    gamma: f64,
    alpha: f64,
    variant: Variant,
) -> Tensor<D> {
    let p = match variant {
        Variant::Correct => log_sigmoid(logits.clone()).exp(),
        Variant::DetachedModulation => log_sigmoid(logits.clone()).exp().detach(),
        Variant::BurnSigmoid => sigmoid(logits.clone()),
    };
    // BCE from the logits, stable: -(t log σ(x) + (1 - t) log σ(-x)).
    let bce = -(target.clone() * log_sigmoid(logits.clone())
        + (target.clone().neg() + 1.0) * log_sigmoid(logits.neg()));
    let p_t = p.clone() * target.clone() + (p.neg() + 1.0) * (target.clone().neg() + 1.0);
    let modulating = (p_t.neg() + 1.0).powf_scalar(gamma);
    let alpha_t = target.clone() * alpha + (target.neg() + 1.0) * (1.0 - alpha);
    alpha_t * modulating * bce
}

/// A `[rows, cols]` f64 tensor on `device`, the dtype stated at creation (as `gradcheck`'s
/// docs advise: `Tensor::from_data(data, &device)` would give the device's default, f32).
fn tensor(values: &[f64], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), shape),
        (device, DType::F64),
    )
}

fn main() {
    // The ndarray device with autodiff (Burn 0.22 deprecates ndarray for Flex; its f32
    // `sigmoid` is the point of check 4).
    #[allow(deprecated)]
    let device = Device::ndarray().autodiff();
    let tensor = |values: &[f64], shape| tensor(values, shape, &device);
    let logits = tensor(
        &[
            1.2, -0.7, 0.3, -2.1, 0.9, 1.8, -0.4, 2.5, -1.3, 0.1, -0.9, 0.6,
        ],
        [4, 3],
    );
    let hard = tensor(
        &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
        [4, 3],
    );
    let soft = tensor(
        &[
            0.9, 0.2, 0.7, 0.1, 0.35, 0.8, 0.6, 0.95, 0.05, 0.4, 0.75, 0.5,
        ],
        [4, 3],
    );
    // PyTorch's defaults for f64: step 1e-6, atol 1e-5, rtol 1e-3.
    let config = GradcheckConfig::new();

    println!("1. Focal loss (gamma 2, alpha 0.25), mean, with respect to the logits:");
    let report = assert_gradcheck(
        |x| binary_focal_loss(x[0].clone(), hard.clone(), 2.0, 0.25, Variant::Correct).mean(),
        std::slice::from_ref(&logits),
        &config,
    );
    println!("{report}\n");

    println!("2. Focal loss per element (projected), with respect to logits and soft target:");
    let report = assert_gradcheck(
        |x| binary_focal_loss(x[0].clone(), x[1].clone(), 2.0, 0.25, Variant::Correct),
        &[logits.clone(), soft.clone()],
        &config,
    );
    println!("{report}\n");

    println!("3. The same loss with (1 - p_t)^gamma detached: gradcheck finds the error:");
    let report = gradcheck(
        |x| {
            let variant = Variant::DetachedModulation;
            binary_focal_loss(x[0].clone(), hard.clone(), 2.0, 0.25, variant).mean()
        },
        std::slice::from_ref(&logits),
        &config,
    );
    println!("{report}\n");
    assert!(!report.passed);

    println!("4. The same loss on Burn's sigmoid, which ndarray computes in f32: at f64");
    println!("   tolerances its finite differences are rounding noise, and the check fails:");
    let report = gradcheck(
        |x| {
            let variant = Variant::BurnSigmoid;
            binary_focal_loss(x[0].clone(), hard.clone(), 2.0, 0.25, variant).mean()
        },
        std::slice::from_ref(&logits),
        &config,
    );
    println!("{report}\n");

    println!("5. burn-xent's binary_cross_entropy_with_logits (pos_weight 2), with respect to");
    println!("   input and target:");
    let options = BceWithLogitsOptions::new().with_pos_weight(tensor(&[2.0, 2.0, 2.0], [1, 3]));
    let report = assert_gradcheck(
        |x| binary_cross_entropy_with_logits(x[0].clone(), x[1].clone(), Reduction::Mean, &options),
        &[logits, soft],
        &config,
    );
    println!("{report}");
}
