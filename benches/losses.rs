//! Times of the four losses, burn-xent against the nearest `burn::nn::loss` module, forward and
//! forward + backward, on ndarray, Flex and wgpu (autodiff devices, f32).
//!
//! ```sh
//! cargo bench --bench losses                                  # everything (see BENCHMARKS.md)
//! BURN_XENT_BENCH_SHAPES=small cargo bench --bench losses -- --quick   # a few minutes
//! cargo bench --bench losses -- 'cross_entropy/8192x1000'    # criterion's filter (a regex)
//! ```
//!
//! Each criterion group is one loss at one shape in one mode
//! (`cross_entropy/4096x32000/forward_backward`), and holds every implementation on every
//! backend (`burn-xent/ndarray`, `burn-nn/flex`, …), so each ratio comes from one run.
//!
//! The timed region is one call of [`common::Inputs::run`]: for forward + backward, a fresh
//! `require_grad` leaf from inputs already on the device, the loss, `backward()`, the input's
//! gradient and a read of one of its elements back to the host; for forward, the loss on the
//! untracked inputs (no graph: Burn 0.21's autodiff keeps a tracked forward's saved state
//! until the next `backward()`) and a read of its value. The read waits for all the queued
//! work (Burn is lazy on wgpu). Making the inputs
//! and uploading them is not timed. Freeing the graph and the gradient is timed, as it is in
//! `tools/bench_torch.py`.
//!
//! Environment: `BURN_XENT_BENCH_BACKENDS` (`ndarray,flex,wgpu`), `BURN_XENT_BENCH_SHAPES`
//! (`all`, `small` = all but `4096x32000`, or labels such as `65536x10,4194304`),
//! `BURN_XENT_BENCH_WGPU_SHAPES` (default `small`). Under `cargo test --benches` every case
//! runs once on tiny shapes.

mod common;

use std::cell::OnceCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};

use burn::tensor::Device;
use common::{
    BACKENDS_VAR, HostInputs, Impl, Inputs, Loss, Mode, SHAPES_VAR, WGPU_SHAPES_VAR,
    backend_selected, floor_bytes, shape_label, shape_selected, wgpu_unavailable,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    // Criterion's own rule: without `--bench` (that is, under `cargo test`) it only tests.
    let test_mode = !flag("--bench") || flag("--test");
    let quick = flag("--quick");

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let ndarray = backend_selected("ndarray");
    let flex = backend_selected("flex");
    let wgpu = backend_selected("wgpu")
        && match wgpu_unavailable() {
            None => true,
            Some(reason) => {
                eprintln!("SKIPPED wgpu: {reason}");
                false
            }
        };
    eprintln!(
        "burn-xent benches: ndarray={ndarray} flex={flex} wgpu={wgpu} ({BACKENDS_VAR}), shapes {} \
         ({SHAPES_VAR}), wgpu shapes {} ({WGPU_SHAPES_VAR}), rayon threads {}{}",
        std::env::var(SHAPES_VAR).unwrap_or_else(|_| "all".into()),
        std::env::var(WGPU_SHAPES_VAR).unwrap_or_else(|_| "small".into()),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if test_mode {
            ", test mode (tiny shapes)"
        } else {
            ""
        },
    );

    // Each backend's name and autodiff device.
    let devices = common::backends();
    for loss in Loss::ALL {
        for shape in loss.shapes_to_run(test_mode) {
            let case = Case {
                loss,
                shape: &shape,
                host: OnceCell::new(),
                // In quick mode criterion has no warm-up; one untimed run keeps one-time costs
                // (first touch of the allocator, wgpu's kernel compilation) out of the numbers.
                warm_up: quick,
            };
            let on_wgpu = wgpu && (test_mode || shape_selected(WGPU_SHAPES_VAR, "small", &shape));
            let selected = [ndarray, flex, on_wgpu];
            // Each backend's inputs, uploaded on first use.
            let inputs: [OnceCell<Inputs>; 3] = Default::default();
            for mode in Mode::ALL {
                let mut group = criterion.benchmark_group(format!(
                    "{}/{}/{}",
                    loss.name(),
                    shape_label(&shape),
                    mode.name()
                ));
                group.sampling_mode(SamplingMode::Flat);
                group.throughput(Throughput::Bytes(floor_bytes(loss, &shape, mode)));
                for &imp in loss.impls().iter().filter(|imp| imp.runs(&shape, mode)) {
                    for ((backend, inputs), _) in devices
                        .iter()
                        .zip(&inputs)
                        .zip(selected)
                        .filter(|(_, selected)| *selected)
                    {
                        case.bench(&mut group, backend, inputs, imp, mode);
                    }
                }
                group.finish();
            }
        }
    }
    criterion.final_summary();
}

/// One loss at one shape; its host inputs are made on first use (so criterion's filter skips
/// their cost too) and shared by every backend, implementation and mode.
struct Case<'a> {
    loss: Loss,
    shape: &'a [usize],
    host: OnceCell<HostInputs>,
    warm_up: bool,
}

impl Case<'_> {
    /// One implementation on one backend (its name and autodiff device).
    fn bench(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        (backend, device): &(&str, Device),
        inputs: &OnceCell<Inputs>,
        imp: Impl,
        mode: Mode,
    ) {
        let loss = self.loss;
        let mut warm = !self.warm_up && *backend != "wgpu";
        group.bench_function(BenchmarkId::new(imp.name(), backend), |b| {
            let inputs = inputs.get_or_init(|| {
                let host = self.host.get_or_init(|| HostInputs::new(loss, self.shape));
                Inputs::upload(host, loss, device)
            });
            if !warm {
                black_box(inputs.run(loss, imp, mode));
                warm = true;
            }
            b.iter(|| inputs.run(loss, imp, mode));
        });
    }
}
