//! Peak memory of a forward + backward (and of a forward) on ndarray (autodiff, f32), beyond
//! the inputs, for burn-xent and burn-nn; and this machine's memory copy bandwidth, for the
//! bandwidth floor in BENCHMARKS.md.
//!
//! ```sh
//! cargo bench --bench memory                      # every case, then the bandwidth
//! cargo bench --bench memory -- cross_entropy     # cases whose id contains a word
//! cargo bench --bench memory -- --bandwidth       # the copy bandwidth only
//! ```
//!
//! Every case runs in its own process (this binary, started again with `--case`), so one
//! case's freed memory cannot hide the next one's. The child counts every byte through a
//! counting global allocator, and also reads the kernel's resident-set high-water mark; it
//! runs the case once on a tiny input first (code pages, rayon's threads), makes the inputs,
//! then resets both peaks and runs the case once:
//! - `alloc`: the allocator's peak of live bytes minus the live bytes after making the inputs
//!   (exact; it counts what Burn asks for, touched or not);
//! - `rss`: the peak resident set minus the resident set after making the inputs, measured as
//!   `tools/bench_torch.py` measures PyTorch (`/proc/self/clear_refs` resets the peak), with
//!   `MALLOC_MMAP_THRESHOLD_=65536` so that freed large blocks go back to the kernel at once.
//!
//! Results go to stdout as a table and to `target/bench-results/memory.json`. The shapes
//! follow `BURN_XENT_BENCH_SHAPES` (see `benches/losses.rs`); under `cargo test --benches`
//! tiny shapes run.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

use common::{HostInputs, Impl, Inputs, Loss, Mode, parse_shape, shape_label};

#[path = "common/counting.rs"]
mod counting;
use counting::{LIVE, PEAK};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        child(&args[at + 1..]);
        return;
    }
    let test_mode = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    if args.iter().any(|a| a == "--bandwidth") {
        bandwidth(test_mode);
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();

    println!(
        "Peak memory beyond the inputs, ndarray (autodiff, f32), one process per case \
         (MiB; alloc = counted by the allocator, rss = resident set)"
    );
    println!(
        "{:<56} {:>10} {:>10} {:>10}",
        "case", "inputs", "alloc", "rss"
    );
    let mut results = Vec::new();
    for loss in Loss::ALL {
        for shape in loss.shapes_to_run(test_mode) {
            for mode in Mode::ALL {
                for &imp in loss.impls().iter().filter(|imp| imp.runs(&shape, mode)) {
                    let id = format!(
                        "{}/{}/{}/{}",
                        loss.name(),
                        shape_label(&shape),
                        mode.name(),
                        imp.name()
                    );
                    if !filters.is_empty() && !filters.iter().any(|f| id.contains(f.as_str())) {
                        continue;
                    }
                    let output = Command::new(std::env::current_exe().expect("own path"))
                        .args([
                            "--case",
                            loss.name(),
                            &shape_label(&shape),
                            mode.name(),
                            imp.name(),
                        ])
                        .env("MALLOC_MMAP_THRESHOLD_", "65536")
                        .output()
                        .expect("the case process starts");
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    let line = stdout.lines().find(|l| l.starts_with('{'));
                    let Some(line) = line.filter(|_| output.status.success()) else {
                        println!(
                            "{id:<56} FAILED: {}",
                            String::from_utf8_lossy(&output.stderr)
                        );
                        continue;
                    };
                    let value: serde_json::Value =
                        serde_json::from_str(line).expect("the case prints JSON");
                    let mib = |key: &str| value[key].as_f64().unwrap_or(f64::NAN) / MIB;
                    println!(
                        "{id:<56} {:>10.1} {:>10.1} {:>10.1}",
                        mib("input_bytes"),
                        mib("alloc_extra_bytes"),
                        mib("rss_extra_bytes")
                    );
                    results.push(value);
                }
            }
        }
    }
    if !test_mode && filters.is_empty() {
        let path = results_dir().join("memory.json");
        std::fs::write(&path, serde_json::to_string_pretty(&results).expect("JSON"))
            .expect("results written");
        println!("wrote {}", path.display());
        bandwidth(false);
    }
}

/// `target/bench-results` (or under `CARGO_TARGET_DIR`), created.
fn results_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(
        &std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("bench-results");
    std::fs::create_dir_all(&dir).expect("results directory");
    dir
}

/// One case in this process: `--case LOSS SHAPE MODE IMPL`; prints one JSON line.
fn child(args: &[String]) {
    let loss = Loss::ALL
        .into_iter()
        .find(|l| l.name() == args[0])
        .expect("a loss name");
    let shape = parse_shape(&args[1]);
    let mode = Mode::parse(&args[2]).expect("a mode");
    let imp = Impl::parse(&args[3]).expect("an implementation");
    // The first backend of the matrix: ndarray.
    let [(backend, device), ..] = common::backends();

    // Load the code and start the thread pool on a tiny input first.
    let tiny = loss.test_shapes().remove(0);
    let tiny = Inputs::upload(&HostInputs::new(loss, &tiny), loss, &device);
    std::hint::black_box(tiny.run(loss, imp, mode));
    drop(tiny);

    let live_before_inputs = LIVE.load(Ordering::Relaxed);
    let inputs = Inputs::upload(&HostInputs::new(loss, &shape), loss, &device);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    reset_peak_rss();
    let rss_base = status_kib("VmRSS:");

    let start = Instant::now();
    // The inputs stay alive until after the measurement.
    let value = std::hint::black_box(inputs.run(loss, imp, mode));
    let seconds = start.elapsed().as_secs_f64();

    let alloc_extra = PEAK.load(Ordering::Relaxed) - base;
    let rss_extra = status_kib("VmHWM:").saturating_sub(rss_base) * 1024;
    let leaked = LIVE.load(Ordering::Relaxed) as i64 - base as i64;
    drop(inputs);
    println!(
        "{}",
        serde_json::json!({
            "loss": loss.name(),
            "shape": shape,
            "mode": mode.name(),
            "impl": imp.name(),
            "backend": backend,
            "input_bytes": base - live_before_inputs,
            "alloc_extra_bytes": alloc_extra,
            "rss_extra_bytes": rss_extra,
            "live_after_run_bytes": leaked,
            "seconds": seconds,
            "value": value,
        })
    );
}

/// Resets the kernel's peak resident set (`VmHWM`) to the current one.
fn reset_peak_rss() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak resident set ({error}); rss numbers are upper bounds");
    }
}

/// A `kB` field of `/proc/self/status`, in KiB (0 where there is none).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Copy bandwidth, counted as bytes read plus bytes written per second, for buffers of the
/// size of each benchmarked input (the floor of a shape uses the bandwidth at its input's
/// size: a 2.6 MB input lives in cache, a 524 MB one does not) and of 1 GiB (memory). For
/// each size and for one thread and all threads (each copying a contiguous share, as often
/// as it takes to move about 2 GiB), the best of three rounds. Written to
/// `target/bench-results/bandwidth.json` (not under test, where 4 MiB and 64 MiB run).
fn bandwidth(test_mode: bool) {
    let mut sizes: Vec<usize> = if test_mode {
        vec![4 << 20, 64 << 20]
    } else {
        Loss::ALL
            .iter()
            .flat_map(|loss| loss.shapes())
            .map(|shape| shape.iter().product::<usize>() * 4)
            .chain([1 << 30])
            .collect()
    };
    sizes.sort_unstable();
    sizes.dedup();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Copy bandwidth, best of 3 rounds (read + write bytes per second):");
    let mut results = serde_json::Map::new();
    for bytes in sizes {
        let words = bytes / 8;
        let source: Vec<u64> = (0..words as u64).collect();
        let mut target = vec![1u64; words];
        let repeats = ((2usize << 30) / bytes).max(1);
        let mut by_threads = serde_json::Map::new();
        for workers in [1, threads] {
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let start = Instant::now();
                let share = words.div_ceil(workers);
                std::thread::scope(|scope| {
                    for (from, to) in source.chunks(share).zip(target.chunks_mut(share)) {
                        scope.spawn(move || {
                            for _ in 0..repeats {
                                to.copy_from_slice(std::hint::black_box(from));
                                std::hint::black_box(&mut *to);
                            }
                        });
                    }
                });
                best = best.min(start.elapsed().as_secs_f64() / repeats as f64);
            }
            let gbs = 2.0 * bytes as f64 / best / 1e9;
            println!(
                "  {:>8.1} MB, {workers} thread(s): {gbs:>6.2} GB/s ({:.3} ms per copy)",
                bytes as f64 / 1e6,
                best * 1e3
            );
            by_threads.insert(workers.to_string(), gbs.into());
        }
        results.insert(bytes.to_string(), by_threads.into());
    }
    if !test_mode {
        let path = results_dir().join("bandwidth.json");
        std::fs::write(&path, serde_json::to_string_pretty(&results).expect("JSON"))
            .expect("bandwidth written");
        println!("wrote {}", path.display());
    }
}
