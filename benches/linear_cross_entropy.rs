//! `linear_cross_entropy` on ndarray (autodiff, f32), fused (chunked) against the composite
//! path (`linear` then the composite `cross_entropy`, the `[N, V]` logits whole) and against
//! what a user writes without it (`logits+ce`: the logits whole, then `cross_entropy` on its
//! fused path): forward + backward time and peak extra memory. PyTorch's side is
//! `python3 tools/bench_torch.py --losses linear_cross_entropy`.
//!
//! ```sh
//! cargo bench --bench linear_cross_entropy                      # the issue's shapes, then criterion
//! cargo bench --bench linear_cross_entropy -- --no-criterion    # the issue's shapes only
//! BURN_XENT_LCE_SHAPES=4096x1024x32000 cargo bench --bench linear_cross_entropy -- --no-criterion
//! ```
//!
//! **The issue's shapes** (`BURN_XENT_LCE_SHAPES`, default
//! `4096x1024x32000,2048x2048x128256,4096x1024x128256`: hidden `[N, D]`, `V` classes, with a
//! bias; the last is a language model's step, `[8, 512, 1024]` hidden states of a batch of 8
//! sequences of 512 flattened to rows, over Llama 3's vocabulary): each run is what
//! `tools/bench_torch.py` times, a fresh `require_grad` leaf for `hidden`, `weight` and
//! `bias` from inputs already made, the mean loss, `backward()`, the three gradients read
//! back (one element each). Each case runs once untimed, then `BURN_XENT_LCE_RUNS` times
//! (default 3); the median is printed. Peak memory comes from a counting global allocator:
//! the peak of live bytes during one run minus the live bytes before it, minus the three
//! gradients (`N·D + D·V + V` values, which both paths must return): the "peak extra memory
//! beyond the inputs and the gradients". These
//! cases are too slow for criterion's ten samples (the composite path takes tens of seconds
//! at `V = 128,256`), hence the plain medians.
//!
//! **Criterion** then times both paths at `[1024, 256]` with `V = 32,000` (`--no-criterion`
//! skips it). Under `cargo test --benches` everything runs once on a tiny shape.
//! `BURN_XENT_LCE_IMPLS` (`all`, or a comma list of `fused`, `composite`, `logits+ce`)
//! chooses the implementations of the issue's shapes; `BURN_XENT_LCE_WARM_UP=0` skips the
//! untimed run (for the slowest shapes).

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use burn_xent::{
    CrossEntropyOptions, LinearCrossEntropyOptions, LossPath, Reduction, cross_entropy,
    linear_cross_entropy, with_loss_path,
};
use criterion::Criterion;

#[path = "common/counting.rs"]
mod counting;
use counting::{LIVE, PEAK};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Hidden `[rows, width]`, weight `[width, classes]`, bias and targets, made once.
struct Case {
    rows: usize,
    width: usize,
    classes: usize,
    hidden: Tensor<2>,
    weight: Tensor<2>,
    bias: Tensor<1>,
    target: Tensor<1, Int>,
}

impl Case {
    /// The case on `backend` (`ndarray` or `flex`, with autodiff).
    fn new(backend: &str, rows: usize, width: usize, classes: usize) -> Self {
        let device = match backend {
            // Burn 0.22 deprecates burn-ndarray in favour of Flex; burn-xent still serves both.
            #[allow(deprecated)]
            "ndarray" => Device::ndarray().autodiff(),
            "flex" => Device::flex().autodiff(),
            other => panic!("BURN_XENT_LCE_BACKENDS: ndarray or flex, got {other}"),
        };
        // A cheap deterministic stream (the values only need to be ordinary).
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale)
                .collect()
        };
        let hidden = uniform(rows * width, 1.0);
        let weight = uniform(width * classes, 1.0 / (width as f32).sqrt());
        let bias = uniform(classes, 0.1);
        let target: Vec<i64> = uniform(rows, 1.0)
            .iter()
            .map(|u| (((u + 1.0) / 2.0 * classes as f32) as i64).clamp(0, classes as i64 - 1))
            .collect();
        Self {
            rows,
            width,
            classes,
            hidden: floats(hidden, [rows, width], &device),
            weight: floats(weight, [width, classes], &device),
            bias: floats(bias, [classes], &device),
            target: Tensor::from_data(TensorData::new(target, [rows]), &device),
        }
    }

    fn label(&self) -> String {
        format!("{}x{}x{}", self.rows, self.width, self.classes)
    }

    /// One forward + backward by `imp`, the three gradients read back (one element each).
    fn run(&self, imp: Impl) -> f32 {
        with_loss_path(imp.path(), || {
            let hidden = self.hidden.clone().detach().require_grad();
            let weight = self.weight.clone().detach().require_grad();
            let bias = self.bias.clone().detach().require_grad();
            let loss = match imp {
                Impl::Fused | Impl::Composite => linear_cross_entropy(
                    hidden.clone(),
                    weight.clone(),
                    Some(bias.clone()),
                    self.target.clone(),
                    Reduction::Mean,
                    &LinearCrossEntropyOptions::new(),
                ),
                Impl::Materialised => cross_entropy(
                    hidden.clone().matmul(weight.clone()) + bias.clone().unsqueeze(),
                    self.target.clone(),
                    Reduction::Mean,
                    &CrossEntropyOptions::new(),
                ),
            };
            let grads = loss.backward();
            // One element each, sliced out: burn-ndarray's `reshape` copies, so a
            // `reshape([-1])` would copy the weight gradient inside the measured run (the
            // peaks measured here did not change: they come earlier).
            let first = |t: Tensor<2>| t.slice([0..1, 0..1]).into_scalar::<f32>();
            let g_h = hidden.grad(&grads).expect("hidden's gradient");
            let g_w = weight.grad(&grads).expect("weight's gradient");
            let g_b = bias.grad(&grads).expect("bias's gradient").unsqueeze::<2>();
            first(g_h) + first(g_w) + first(g_b)
        })
    }

    /// The bytes of the three gradients (f32).
    fn gradient_bytes(&self) -> usize {
        4 * (self.rows * self.width + self.width * self.classes + self.classes)
    }
}

/// Host floats as an f32 tensor of `shape` on `device`.
fn floats<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F32))
}

/// What computes the loss.
#[derive(Clone, Copy, Debug)]
enum Impl {
    /// `linear_cross_entropy`, fused (chunked).
    Fused,
    /// `linear_cross_entropy` under `LossPath::Composite`: `linear`, then the composite
    /// cross-entropy.
    Composite,
    /// What a user writes without `linear_cross_entropy`: the logits whole
    /// (`hidden.matmul(weight) + bias`), then `cross_entropy` on its fused path.
    Materialised,
}

impl Impl {
    const ALL: [(&'static str, Impl); 3] = [
        ("fused", Impl::Fused),
        ("composite", Impl::Composite),
        ("logits+ce", Impl::Materialised),
    ];

    fn path(self) -> LossPath {
        match self {
            Impl::Fused => LossPath::Fused,
            Impl::Composite => LossPath::Composite,
            Impl::Materialised => LossPath::Auto,
        }
    }
}

/// Times of `runs` runs after one untimed run, and the peak extra bytes of one run.
fn measure(case: &Case, path: Impl, runs: usize) -> (Vec<Duration>, usize) {
    if std::env::var("BURN_XENT_LCE_WARM_UP").as_deref() != Ok("0") {
        black_box(case.run(path));
    }
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    black_box(case.run(path));
    let mut times = vec![start.elapsed()];
    let peak = PEAK.load(Ordering::Relaxed) - before;
    for _ in 1..runs {
        let start = Instant::now();
        black_box(case.run(path));
        times.push(start.elapsed());
    }
    times.sort();
    (times, peak.saturating_sub(case.gradient_bytes()))
}

fn parse(label: &str) -> (usize, usize, usize) {
    let dims: Vec<usize> = label
        .split('x')
        .map(|d| d.trim().parse().expect("a shape like 4096x1024x32000"))
        .collect();
    assert!(dims.len() == 3, "a shape like 4096x1024x32000, got {label}");
    (dims[0], dims[1], dims[2])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let test_mode = !flag("--bench") || flag("--test");
    let shapes = if test_mode {
        "64x16x100".to_string()
    } else {
        std::env::var("BURN_XENT_LCE_SHAPES")
            .unwrap_or_else(|_| "4096x1024x32000,2048x2048x128256,4096x1024x128256".into())
    };
    let runs: usize = if test_mode {
        1
    } else {
        std::env::var("BURN_XENT_LCE_RUNS").map_or(3, |r| r.parse().expect("a number of runs"))
    };
    let impls = std::env::var("BURN_XENT_LCE_IMPLS").unwrap_or_else(|_| "all".into());
    let backends =
        std::env::var("BURN_XENT_LCE_BACKENDS").unwrap_or_else(|_| "ndarray,flex".into());
    eprintln!(
        "linear_cross_entropy bench: {backends} (autodiff, f32), rayon threads {}, median of {runs} \
         run(s) after one untimed run",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<24} {:<8} {:<10} {:>12} {:>12} {:>16}",
        "shape", "backend", "path", "median ms", "min ms", "extra MiB"
    );
    let mut results = Vec::new();
    for label in shapes.split(',') {
        let (rows, width, classes) = parse(label);
        for backend in backends.split(',') {
            // Case::new refuses a name other than ndarray or flex.
            let backend = backend.trim();
            let case = Case::new(backend, rows, width, classes);
            for (name, imp) in Impl::ALL {
                if !impls.split(',').any(|i| i == "all" || i == name) {
                    continue;
                }
                let (times, extra) = measure(&case, imp, runs);
                let median = times[times.len() / 2].as_secs_f64() * 1e3;
                let min = times[0].as_secs_f64() * 1e3;
                let mib = extra as f64 / (1 << 20) as f64;
                println!(
                    "{:<24} {backend:<8} {name:<10} {median:>12.1} {min:>12.1} {mib:>16.1}",
                    case.label()
                );
                results.push(format!(
                    "{{\"shape\": \"{}\", \"backend\": \"{backend}\", \"path\": \"{name}\", \
                 \"median_ms\": {median:.3}, \"min_ms\": {min:.3}, \"runs\": {runs}, \
                 \"extra_bytes\": {extra}}}",
                    case.label()
                ));
            }
        }
    }
    if !test_mode {
        let dir = std::path::Path::new(
            &std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
        )
        .join("bench-results");
        std::fs::create_dir_all(&dir).expect("the results folder");
        let file = dir.join("linear_cross_entropy.json");
        std::fs::write(&file, format!("[\n{}\n]\n", results.join(",\n"))).expect("write");
        eprintln!("wrote {}", file.display());
    }

    if flag("--no-criterion") {
        return;
    }
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let case = if test_mode {
        Case::new("ndarray", 64, 16, 100)
    } else {
        Case::new("ndarray", 1024, 256, 32_000)
    };
    let mut group = criterion.benchmark_group(format!(
        "linear_cross_entropy/{}/forward_backward",
        case.label()
    ));
    for (name, imp) in Impl::ALL {
        group.bench_function(name, |b| b.iter(|| black_box(case.run(imp))));
    }
    group.finish();
    criterion.final_summary();
}
