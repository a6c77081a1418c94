//! `burn_xent::backend_check` on itself: it does not flag round-off (a small network with a
//! burn-xent loss, f32 against the f64 reference, on ndarray and wgpu), and it catches planted
//! disagreements on the checked backend only (an output element, a gradient element, a NaN, a
//! missing gradient, a panic), naming the output or input and the index; tolerances follow the
//! dtypes; a backend without an adapter is skipped unless required.

mod common;

use burn::tensor::activation::relu;
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use burn_xent::backend_check::{
    BackendCheck, BackendCheckConfig, BackendStatus, Computation, HostInputs, Inputs, Outcome,
    Outputs, Side, Tolerance, assert_backends_agree, backend_check,
};
use burn_xent::{CrossEntropyOptions, LossPath, Reduction, cross_entropy, with_loss_path};
use common::{Stream, assert_panics_with};

/// The ndarray device with autodiff: the reference in f64 and the checked backend in f32.
fn ndarray() -> Device {
    #[allow(deprecated)] // Burn 0.22 deprecates ndarray for Flex; burn-xent still serves it
    let device = Device::ndarray();
    device.autodiff()
}

/// Host float data of `shape`, stored as f32 (so f32 backends and the f64 reference see the
/// same numbers).
fn data(values: Vec<f64>, shape: &[usize]) -> TensorData {
    TensorData::new(values, shape.to_vec()).convert_dtype(DType::F32)
}

/// A two-layer network with a burn-xent loss: `relu(x w1 + b1) w2 + b2`, cross-entropy with
/// label smoothing; outputs the mean loss, the per-sample loss, the logits and the predicted
/// classes.
struct Network;

const BATCH: usize = 64;
const FEATURES: usize = 16;
const HIDDEN: usize = 32;
const CLASSES: usize = 10;

impl Computation for Network {
    fn run(&self, inputs: &Inputs) -> Outputs {
        let x: Tensor<2> = inputs.float("x");
        let hidden = relu(x.matmul(inputs.float("w1")) + inputs.float::<1>("b1").unsqueeze());
        let logits = hidden.matmul(inputs.float("w2")) + inputs.float::<1>("b2").unsqueeze();
        let target: Tensor<1, Int> = inputs.int("target");
        let options = CrossEntropyOptions::new().with_label_smoothing(0.1);
        let loss = cross_entropy(logits.clone(), target.clone(), Reduction::Mean, &options);
        let per_sample = burn_xent::cross_entropy_no_reduction(logits.clone(), target, &options);
        Outputs::new()
            .float("loss", loss)
            .float("per_sample", per_sample)
            .float("logits", logits.clone())
            .int("predicted", logits.argmax(1))
    }
}

fn network_inputs() -> HostInputs {
    let mut s = Stream::new(42);
    HostInputs::new()
        .float(
            "x",
            data(s.normals(BATCH * FEATURES, 1.0), &[BATCH, FEATURES]),
        )
        .float(
            "w1",
            data(s.normals(FEATURES * HIDDEN, 0.4), &[FEATURES, HIDDEN]),
        )
        .float("b1", data(s.normals(HIDDEN, 0.1), &[HIDDEN]))
        .float(
            "w2",
            data(s.normals(HIDDEN * CLASSES, 0.3), &[HIDDEN, CLASSES]),
        )
        .float("b2", data(s.normals(CLASSES, 0.1), &[CLASSES]))
        .int(
            "target",
            TensorData::new(s.classes(BATCH, CLASSES), [BATCH]),
        )
}

#[test]
fn round_off_is_not_flagged_on_ndarray() {
    let inputs = network_inputs();
    for path in [LossPath::Fused, LossPath::Composite] {
        let report = with_loss_path(path, || {
            assert_backends_agree(
                &Network,
                &inputs,
                &ndarray(),
                DType::F64,
                &ndarray(),
                DType::F32,
                &BackendCheckConfig::new(),
            )
        });
        println!("{path:?}: {report}");
        let backend = &report.backends[0];
        assert_eq!(backend.status, BackendStatus::Ran);
        // 4 outputs (loss, per-sample loss, logits, predicted classes), 5 gradients, every
        // element of each.
        assert_eq!(backend.tensors.len(), 9);
        let elements = 1 + BATCH + BATCH * CLASSES + BATCH;
        let gradients = BATCH * FEATURES + FEATURES * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES;
        assert_eq!(backend.compared(), elements + gradients);
        // f32 against f64: f32's tolerance, and real round-off seen (the check is not vacuous).
        let loss = backend.output("loss").unwrap();
        assert_eq!(loss.tolerance, Tolerance::for_dtype(DType::F32));
        assert_eq!(loss.reference_dtype, Some(DType::F64));
        let w1 = backend.gradient("w1").unwrap();
        assert!(w1.worst.as_ref().unwrap().abs_error > 0.0, "{report}");
    }
}

#[test]
fn round_off_is_not_flagged_on_wgpu() {
    let required = burn_xent::availability::required_by_env(common::REQUIRE_WGPU);
    let config = BackendCheckConfig::new().with_required(required);
    let report = BackendCheck::new(&Network, &network_inputs(), &ndarray(), DType::F64, &config)
        .against(&common::wgpu_device(), DType::F32)
        .assert_agree();
    println!("{report}");
    match &report.backends[0].status {
        BackendStatus::Ran => assert!(report.backends[0].compared() > 0),
        BackendStatus::Skipped(reason) => {
            assert!(common::wgpu_unavailable().is_some(), "skipped: {reason}");
            assert!(report.to_string().contains("skipped: "), "{report}");
        }
        other => panic!("unexpected status {other:?}"),
    }
}

/// What [`Planted`] changes on the checked backend.
#[derive(Clone, Copy, Debug)]
enum Plant {
    Nothing,
    /// Adds `delta` to output `"z"` at a flat position (the value only).
    OutputElement {
        flat: usize,
        delta: f64,
    },
    /// Adds `delta * b[flat]`'s derivative to `"z"`: the gradient of `"b"` at `flat` moves by
    /// `delta` times the projection weight, the values not at all.
    GradientElement {
        flat: usize,
        delta: f64,
    },
    /// Output `"y"` becomes NaN at a flat position.
    NanOutput {
        flat: usize,
    },
    /// Input `"a"` is detached: Burn returns no gradient for it.
    DetachA,
    /// The run panics.
    Panic,
}

/// A computation over inputs of three ranks and an int input, with a disagreement planted on
/// the backend that runs in the float dtype `on` only (none when `None`): `y = a * 2 + sum(b)`
/// (`[5]`), `z = exp(b) * k` (`[2, 3, 2]`, `k` an int input broadcast over the last axis), and
/// `"unused"` never read.
struct Planted {
    on: Option<DType>,
    plant: Plant,
}

impl Computation for Planted {
    fn run(&self, inputs: &Inputs) -> Outputs {
        let here = Some(inputs.float_dtype()) == self.on;
        let plant = if here { self.plant } else { Plant::Nothing };
        let mut a: Tensor<1> = inputs.float("a");
        if let Plant::DetachA = plant {
            a = a.detach();
        }
        if let Plant::Panic = plant {
            panic!("planted panic");
        }
        let b: Tensor<3> = inputs.float("b");
        let k: Tensor<1, Int> = inputs.int("k");
        let scale: Tensor<1> = inputs.float("scale");
        let mut y = a * 2.0 + b.clone().sum() * scale;
        // `Int::float` would take the device's default float dtype (f32): cast to the inputs'
        // dtype instead.
        let k = k
            .cast(FloatDType::from(inputs.float_dtype()))
            .reshape([1, 1, 3])
            .swap_dims(1, 2);
        let mut z = b.clone().exp() * k;
        let (dtype, device) = (inputs.float_dtype(), inputs.device().clone());
        let one_hot = |flat: usize, count: usize, value: f64, shape: [usize; 3]| {
            let mut v = vec![0.0; count];
            v[flat] = value;
            Tensor::<3>::from_data(
                TensorData::new(v, shape).convert_dtype(dtype),
                (&device, dtype),
            )
        };
        match plant {
            Plant::OutputElement { flat, delta } => z = z + one_hot(flat, 12, delta, [2, 3, 2]),
            Plant::GradientElement { flat, delta } => {
                let moved = b.clone() * one_hot(flat, 12, delta, [2, 3, 2]);
                z = z + (moved.clone() - moved.detach());
            }
            Plant::NanOutput { flat } => {
                let mut v = vec![0.0; 5];
                v[flat] = f64::NAN;
                let nan = Tensor::<1>::from_data(
                    TensorData::new(v, [5]).convert_dtype(dtype),
                    (&device, dtype),
                );
                y = y + nan;
            }
            _ => {}
        }
        Outputs::new().float("y", y).float("z", z)
    }
}

fn planted_inputs() -> HostInputs {
    let mut s = Stream::new(9);
    HostInputs::new()
        .float("a", data(s.normals(5, 1.0), &[5]))
        .float("b", data(s.normals(12, 0.5), &[2, 3, 2]))
        .float("unused", data(vec![1.0, 2.0], &[2]))
        .constant("scale", data(vec![0.75], &[1]))
        .int("k", TensorData::new(vec![1i64, 2, 3], [3]))
}

/// Checks `plant` on ndarray in f32 against ndarray in f64 (the default reference).
fn planted(plant: Plant) -> burn_xent::backend_check::BackendCheckReport {
    let computation = Planted {
        on: Some(DType::F32),
        plant,
    };
    let report = backend_check(
        &computation,
        &planted_inputs(),
        &ndarray(),
        DType::F64,
        &ndarray(),
        DType::F32,
        &BackendCheckConfig::new(),
    );
    println!("{plant:?}: {report}");
    report
}

#[test]
fn without_a_plant_every_rank_agrees() {
    let report = planted(Plant::Nothing);
    assert!(report.passed(), "{report}");
    let backend = &report.backends[0];
    // y [5], z [12]; gradients of a [5], b [12]; "unused" has none on either side.
    assert_eq!(backend.compared(), 5 + 12 + 5 + 12);
    assert_eq!(
        backend.gradient("unused").unwrap().outcome,
        Outcome::AbsentOnBoth
    );
    assert!(
        backend.gradient("scale").is_none(),
        "constants have no gradient"
    );
    assert!(
        backend.gradient("k").is_none(),
        "int inputs have no gradient"
    );
}

#[test]
fn a_planted_output_element_is_found() {
    // 1e-3 relative to z's values near 1: far beyond f32 round-off, far below any eye.
    let report = planted(Plant::OutputElement {
        flat: 10,
        delta: 2e-3,
    });
    assert!(!report.passed());
    let backend = &report.backends[0];
    let failures: Vec<_> = backend.failures().collect();
    assert_eq!(failures.len(), 1, "{report}");
    let z = backend.output("z").unwrap();
    assert_eq!((z.failed, z.nonfinite_mismatches), (1, 0));
    let worst = z.worst.as_ref().unwrap();
    assert_eq!(worst.index, vec![1, 2, 0]);
    assert_eq!(worst.flat_index, 10);
    assert!(
        (worst.value - worst.reference - 2e-3).abs() < 1e-5,
        "{worst}"
    );
    assert!(worst.abs_error > worst.tolerance);
    let text = report.to_string();
    assert!(text.starts_with("backend check FAILED"), "{text}");
    assert!(text.contains("output \"z\" [2, 3, 2]"), "{text}");
    assert!(text.contains("worst [1, 2, 0]"), "{text}");
}

#[test]
fn a_planted_gradient_element_is_found() {
    let report = planted(Plant::GradientElement {
        flat: 7,
        delta: 1e-3,
    });
    let backend = &report.backends[0];
    let failures: Vec<_> = backend.failures().collect();
    assert_eq!(failures.len(), 1, "{report}");
    assert!(backend.output("y").unwrap().passed());
    assert!(backend.output("z").unwrap().passed());
    assert!(backend.gradient("a").unwrap().passed());
    let b = backend.gradient("b").unwrap();
    assert_eq!(b.failed, 1, "{report}");
    let worst = b.worst.as_ref().unwrap();
    assert_eq!(worst.index, vec![1, 0, 1]);
    // Moved by delta times the projection weight of z at that element (0.5 to 1.5 in size).
    assert!((5e-4..=1.5e-3).contains(&worst.abs_error), "{worst}");
    assert!(report.to_string().contains("gradient of \"b\""), "{report}");
}

#[test]
fn a_nan_on_one_side_is_counted_apart() {
    let report = planted(Plant::NanOutput { flat: 3 });
    let y = report.backends[0].output("y").unwrap();
    assert_eq!((y.failed, y.nonfinite_mismatches), (0, 1), "{report}");
    let first = y.first_nonfinite_mismatch.as_ref().unwrap();
    assert_eq!(first.index, vec![3]);
    assert!(first.value.is_nan() && first.reference.is_finite());
    assert!(!report.passed());
    assert!(
        report.to_string().contains("1 NaN/inf mismatches"),
        "{report}"
    );
}

#[test]
fn a_missing_gradient_is_reported_not_read_as_zeros() {
    let report = planted(Plant::DetachA);
    let backend = &report.backends[0];
    let a = backend.gradient("a").unwrap();
    assert_eq!(
        a.outcome,
        Outcome::Missing {
            on: Side::Checked,
            shape: vec![5]
        }
    );
    assert!(!report.passed());
    assert!(
        report
            .to_string()
            .contains("MISSING on the checked backend")
    );
    // The values do not depend on the detach: only the gradient fails.
    assert_eq!(backend.failures().count(), 1, "{report}");
}

#[test]
fn a_panicking_backend_is_a_failure_with_its_message() {
    let report = planted(Plant::Panic);
    match &report.backends[0].status {
        BackendStatus::Panicked(message) => assert!(message.contains("planted panic")),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(!report.passed());
}

#[test]
fn assert_backends_agree_panics_with_the_report() {
    let computation = Planted {
        on: Some(DType::F32),
        plant: Plant::OutputElement {
            flat: 4,
            delta: 0.5,
        },
    };
    assert_panics_with(
        || {
            assert_backends_agree(
                &computation,
                &planted_inputs(),
                &ndarray(),
                DType::F64,
                &ndarray(),
                DType::F32,
                &BackendCheckConfig::new(),
            )
        },
        &["backend check FAILED", "output \"z\"", "worst [0, 2, 0]"],
    );
}

#[test]
fn only_the_planted_backend_disagrees_and_tolerances_follow_dtypes() {
    // The f64 reference against f64 and f32 ndarray: the f64 backend gets f64 tolerances (and
    // passes them), the f32 one f32 tolerances (and fails them: it has the plant).
    let computation = Planted {
        on: Some(DType::F32),
        plant: Plant::OutputElement {
            flat: 0,
            delta: 1e-2,
        },
    };
    let inputs = planted_inputs();
    let config = BackendCheckConfig::new();
    let check = BackendCheck::new(&computation, &inputs, &ndarray(), DType::F64, &config)
        .against(&ndarray(), DType::F64)
        .against(&ndarray(), DType::F32);
    let report = check.finish();
    println!("{report}");
    let (f64_run, f32_run) = (&report.backends[0], &report.backends[1]);
    assert!(f64_run.passed() && !f32_run.passed(), "{report}");
    let f64_tolerance = f64_run.output("z").unwrap().tolerance;
    assert_eq!(f64_tolerance, Tolerance::for_dtype(DType::F64));
    assert_eq!(
        f32_run.output("z").unwrap().tolerance,
        Tolerance::for_dtype(DType::F32)
    );
    assert!(report.to_string().contains("1 of 2 backends disagree"));

    // Set tolerances replace the dtype's: atol 1 hides the 1e-2 plant.
    let loose = BackendCheckConfig::new().with_atol(1.0);
    let report = backend_check(
        &computation,
        &inputs,
        &ndarray(),
        DType::F64,
        &ndarray(),
        DType::F32,
        &loose,
    );
    assert!(report.passed(), "{report}");
    let z = report.backends[0].output("z").unwrap();
    assert_eq!((z.tolerance.rtol, z.tolerance.atol), (1e-4, 1.0));
}

#[test]
fn f32_round_off_fails_f64_tolerances() {
    // The same network with f64 tolerances forced: f32's round-off is caught, so the default
    // f32 tolerance is what lets it pass, not a blind spot.
    let report = backend_check(
        &Network,
        &network_inputs(),
        &ndarray(),
        DType::F64,
        &ndarray(),
        DType::F32,
        &BackendCheckConfig::new().with_rtol(1e-7).with_atol(1e-7),
    );
    assert!(!report.passed());
}

/// The child half of [`no_adapter_is_skipped_unless_required`]: runs only in the process that
/// test starts, with the Vulkan driver hidden.
#[test]
fn no_adapter_child() {
    if std::env::var("BURN_XENT_BACKEND_CHECK_CHILD").as_deref() != Ok("1") {
        return;
    }
    let inputs = planted_inputs();
    let computation = Planted {
        on: None,
        plant: Plant::Nothing,
    };
    let run = |required: bool| {
        backend_check(
            &computation,
            &inputs,
            &ndarray(),
            DType::F64,
            &common::wgpu_device(),
            DType::F32,
            &BackendCheckConfig::new().with_required(required),
        )
    };
    if common::wgpu_unavailable().is_none() {
        println!("CHILD adapter-present");
        return;
    }
    let report = run(false);
    println!("{report}");
    assert!(report.passed() && report.skipped() == 1, "{report}");
    assert!(report.to_string().contains("skipped: "), "{report}");
    let report = run(true);
    println!("{report}");
    assert!(!report.passed());
    assert!(matches!(
        report.backends[0].status,
        BackendStatus::Unavailable(_)
    ));
    assert!(report.to_string().contains("required but cannot run"));
    println!("CHILD skipped-and-required-checked");
}

#[test]
fn no_adapter_is_skipped_unless_required() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["no_adapter_child", "--exact", "--nocapture"])
        .env("BURN_XENT_BACKEND_CHECK_CHILD", "1")
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("CHILD "), "{stdout}");
    if stdout.contains("CHILD adapter-present") {
        println!("a wgpu adapter is visible without Vulkan here; the skip path was not exercised");
    }
}

/// The default reference is the ndarray device with autodiff, in f64 (feature `fused-ndarray`,
/// which the default feature `ndarray` turns on).
#[cfg(feature = "fused-ndarray")]
#[test]
fn the_default_reference_is_autodiff_ndarray_f64() {
    use burn_xent::backend_check::default_reference;
    let (device, dtype) = default_reference();
    assert_eq!((&device, dtype), (&ndarray(), DType::F64));
    assert!(device.is_autodiff());
    let inputs = planted_inputs();
    let computation = Planted {
        on: None,
        plant: Plant::Nothing,
    };
    let report =
        BackendCheck::with_default_reference(&computation, &inputs, &BackendCheckConfig::new())
            .against(&ndarray(), DType::F32)
            .assert_agree();
    assert_eq!(report.reference_float_dtype, DType::F64);
    assert_eq!(report.reference, "Autodiff<NdArray(Cpu)>", "{report}");
    assert!(
        report.to_string().contains("Autodiff<NdArray(Cpu)> [F64]"),
        "{report}"
    );
}

/// A plain device runs as its autodiff form (gradients compared), a closure is a computation,
/// and a float dtype that is not one is refused with a message.
#[test]
fn plain_devices_closures_and_bad_dtypes() {
    let inputs = planted_inputs();
    let case = |x: &Inputs| -> Outputs { (x.float::<1>("a").exp() * 3.0).into() };
    let plain = ndarray().without_autodiff();
    let report = BackendCheck::new(
        &case,
        &inputs,
        &plain,
        DType::F64,
        &BackendCheckConfig::new(),
    )
    .against(&plain, DType::F32)
    .assert_agree();
    println!("{report}");
    let backend = &report.backends[0];
    assert_eq!(backend.backend, "Autodiff<NdArray(Cpu)>");
    assert_eq!(report.reference, "Autodiff<NdArray(Cpu)>");
    assert_eq!(backend.gradient("a").unwrap().outcome, Outcome::Compared);
    assert_eq!(backend.compared(), 5 + 5, "{report}"); // the output, the gradient of a
    assert_panics_with(
        || {
            BackendCheck::new(
                &case,
                &inputs,
                &plain,
                DType::I64,
                &BackendCheckConfig::new(),
            )
        },
        &["backend_check", "BackendCheck::new", "float_dtype", "I64"],
    );
    let check = BackendCheck::new(
        &case,
        &inputs,
        &plain,
        DType::F64,
        &BackendCheckConfig::new(),
    );
    assert_panics_with(
        move || check.against(&plain, DType::U8),
        &[
            "backend_check",
            "BackendCheck::against",
            "float_dtype",
            "U8",
        ],
    );
}
