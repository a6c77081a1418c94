//! A few training steps of `examples/train_wine`'s model with each loss: the loss goes down
//! and the parameters stay finite.
//!
//! The model is the example's MLP (`examples/train_wine/model.rs`: 11 -> 64 -> 32 -> outputs,
//! ReLU), trained full-batch with Burn's Adam on 256 wines of the red wine quality data set
//! (`linfa-datasets`), standardized and weighted with the example's recipes, on
//! `Autodiff<NdArray<f32>>` and on `Autodiff<Flex>` (the same steps, `training/steps.rs`, in one
//! module per backend). Plain burn (`burn::optim`, `burn::nn`), so the test runs without
//! the `train` feature; with it, the `glue` module checks `burn_xent::train`.

mod common;
/// The example's network and recipes (its `train` feature parts stay in `main.rs`).
#[allow(dead_code)]
#[path = "../examples/train_wine/model.rs"]
mod model;

mod ndarray {
    fn backend() -> crate::common::TestBackend {
        crate::common::TestBackend::ndarray_f32().autodiff()
    }
    include!("training/steps.rs");
}

mod flex {
    fn backend() -> crate::common::TestBackend {
        crate::common::TestBackend::flex_f32().autodiff()
    }
    include!("training/steps.rs");
}
