//! PyTorch parity: every case of the committed fixtures (`tests/fixtures/pytorch.json`, from
//! `tools/gen_fixtures.py`, and `tests/fixtures/pytorch_nonfinite.json`, from
//! `tools/gen_nonfinite.py`: +inf, -inf and NaN in logits, targets and weights) and of every
//! file named by `BURN_XENT_FIXTURES` (a file, or a folder whose `*.json` files are all read)
//! runs on every backend of the test matrix, on both loss paths (fused and composite); the
//! loss, the input gradient and, where the case has `expected.grad_target` (burn-xent's
//! extension of the format), the float target's gradient must match PyTorch's within the
//! case's tolerance (NaN only where PyTorch has NaN, an infinity only where it has the same
//! one), and an `expect_error` case must be refused.
//!
//! Format: `xent-fixtures/1`, documented in `docs/fixture-format.md`. A field or value the
//! reader does not understand is a failure, never a skip; so is a tensor of rank above 6 (the
//! harness runs ranks 0 to 6). Every case runs before the test fails; each backend and path
//! prints `parity <backend> <path>: N cases, P passed` (with `, K not representable in f32`
//! where K > 0) and every failed case with the index, the value got and the value wanted.
//!
//! Each backend runs on its autodiff device (loss and input gradient compared) and on its plain
//! device (`<backend> plain <path>`: the loss compared, no gradient asked for):
//!
//! - `ndarray` and `flex`: each case's tensors in its dtype (f32 cases in f32, f64 cases in
//!   f64: since Burn 0.22 a tensor's dtype is chosen at creation, on the same device).
//! - `wgpu`: f32 only (burn-wgpu with fusion rejects f64: "Unsupported
//!   precision for fusion: f64"), so f64 cases run in f32 with the f32 tolerance (or the
//!   case's, where looser); the count of such cases is printed and each failure says so. An
//!   f64 case holding a value that is finite in f64 but overflows f32 (`|v|` above `f32::MAX`,
//!   so it would load as an infinity) in its input, target, weight, `pos_weight`, upstream or
//!   expected values is not run there: it is counted and listed as "not representable in
//!   f32". It still runs on ndarray in f64. The test passes when every case passed or was
//!   counted so.
//!
//! `BURN_XENT_FIXTURES=path cargo test --test pytorch_parity -- --nocapture` prints the counts.

mod common;
#[path = "parity/fixture.rs"]
mod fixture;
#[path = "parity/runner.rs"]
mod runner;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::DType;
use burn_xent::{LossPath, with_loss_path};

use common::TestBackend;
use fixture::{Case, Dtype, FloatTensor, Loss, Target, Tolerance};
use runner::{Outcome, Run, loaded_shape, run_case};

/// The environment variable naming extra fixture files.
const EXTRA_FIXTURES: &str = "BURN_XENT_FIXTURES";

/// The tolerance an f64 case gets when it runs in f32 (the generator's f32 tolerance).
const F32_TOLERANCE: Tolerance = Tolerance {
    rtol: 1e-4,
    atol: 1e-5,
};

/// At most this many mismatching elements are listed per tensor of a failed case.
const LISTED_PER_TENSOR: usize = 20;

/// One fixture file as read: its path and its cases, or why it could not be read.
struct FixtureFile {
    path: PathBuf,
    cases: Result<Vec<Result<Case, fixture::BadCase>>, String>,
}

/// The committed fixture files, under `tests/fixtures/`.
const COMMITTED_FIXTURES: &[&str] = &["pytorch.json", "pytorch_nonfinite.json"];

/// The committed fixtures followed by every file `BURN_XENT_FIXTURES` names.
fn fixture_files() -> Vec<FixtureFile> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<_> = COMMITTED_FIXTURES
        .iter()
        .map(|name| Ok(folder.join(name)))
        .collect();
    if let Some(extra) = std::env::var_os(EXTRA_FIXTURES).filter(|v| !v.is_empty()) {
        paths.extend(extra_paths(Path::new(&extra)));
    }
    paths
        .into_iter()
        .map(|path| match path {
            Ok(path) => {
                let cases = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read: {e}"))
                    .and_then(|text| fixture::parse(&text))
                    .map(|fixtures| fixtures.cases);
                FixtureFile { path, cases }
            }
            Err((path, reason)) => FixtureFile {
                path,
                cases: Err(reason),
            },
        })
        .collect()
}

/// The files `BURN_XENT_FIXTURES` names: the file itself, or a folder's `*.json` files in
/// name order. A missing path or a folder without fixtures is an error, not nothing.
fn extra_paths(path: &Path) -> Vec<Result<PathBuf, (PathBuf, String)>> {
    if path.is_file() {
        return vec![Ok(path.to_path_buf())];
    }
    if !path.is_dir() {
        return vec![Err((
            path.to_path_buf(),
            format!("{EXTRA_FIXTURES} names no file or folder"),
        ))];
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => return vec![Err((path.to_path_buf(), format!("cannot list: {e}")))],
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return vec![Err((
            path.to_path_buf(),
            format!("{EXTRA_FIXTURES} names a folder without *.json files"),
        ))];
    }
    files.into_iter().map(Ok).collect()
}

/// A backend of the matrix, as the parity test drives it.
struct Backend<'a> {
    /// `<backend> <path>`, e.g. `wgpu fused`.
    label: String,
    /// Whether f64 cases run in f64; if not, they run in f32 (or are counted as not
    /// representable in f32).
    has_f64: bool,
    /// Runs a case: f32 cases in f32, f64 cases in f64 or (without f64) in f32.
    run: &'a dyn Fn(&Case) -> Run,
}

/// The counts and failures of one backend.
#[derive(Default)]
struct Report {
    cases: usize,
    passed: usize,
    f64_in_f32: usize,
    f64_in_f32_passed: usize,
    /// f64 cases not run on an f32-only backend because a value overflows f32: `name (why)`.
    not_representable: Vec<String>,
    refused_by_types: Vec<String>,
    /// Cases of [`known_composite_deviation`] that failed: listed loudly, not counted as failed.
    known_deviations: Vec<String>,
    failures: Vec<String>,
    /// The first case that panicked other than by burn-xent's refusal, and how many cases
    /// failed after it: a panic inside a backend (Burn's fusion stream on wgpu) can leave the
    /// device unusable for the rest of the process, so those failures may be its echo.
    first_crash: Option<(String, usize)>,
}

impl Report {
    /// The summary line: `parity <label>: N cases, P passed[, K not representable in f32]`.
    fn summary(&self, label: &str) -> String {
        let mut line = format!(
            "parity {label}: {} cases, {} passed",
            self.cases, self.passed
        );
        if !self.not_representable.is_empty() {
            line.push_str(&format!(
                ", {} not representable in f32",
                self.not_representable.len()
            ));
        }
        line
    }

    /// Every case passed or was counted as not representable in f32, and nothing failed.
    fn all_passed(&self) -> bool {
        self.failures.is_empty()
            && self.passed + self.not_representable.len() + self.known_deviations.len()
                == self.cases
    }
}

/// The first value of `case` that is finite but overflows f32 (it would load as an
/// infinity), as `where = value`; `None` when every value fits. Checked: input, a float
/// target, weight, `pos_weight`, upstream, and the expected loss and gradient.
fn f32_overflow(case: &Case) -> Option<String> {
    let target = match &case.target {
        Target::Float(target) => Some(target),
        Target::Index(_) => None,
    };
    let expected = case.expected.as_ref();
    let tensors = [
        ("input", Some(&case.input)),
        ("target", target),
        ("weight", case.weight.as_ref()),
        ("pos_weight", case.pos_weight.as_ref()),
        ("upstream", case.upstream.as_ref()),
        ("expected.loss", expected.map(|e| &e.loss)),
        (
            "expected.grad_input",
            expected.and_then(|e| e.grad_input.as_ref()),
        ),
        (
            "expected.grad_target",
            expected.and_then(|e| e.grad_target.as_ref()),
        ),
    ];
    tensors.into_iter().find_map(|(what, tensor)| {
        let data = &tensor?.data;
        data.iter()
            .position(|&v| overflows_f32(v))
            .map(|i| format!("{what}[{i}] = {:e}", data[i]))
    })
}

/// A failure the composite path is known to have: BCE on probabilities of exactly 0 or 1,
/// whose target gradient PyTorch takes unclamped (`log(1 - p) - log p`, `±inf` there) while
/// its loss clamps the logarithms at -100. A loss built from Burn's generic operations has one
/// derivative per formula: the composite path gives the clamped loss's (`±100` per unit of
/// weight). Only failures of the target gradient alone, on such inputs, count; the fused
/// kernels match PyTorch there, and the case still runs and is listed, not hidden.
fn known_composite_deviation(label: &str, case: &Case, lines: &[String]) -> bool {
    label.ends_with("composite")
        && case.loss == Loss::Bce
        && case.input.data.iter().any(|&p| p == 0.0 || p == 1.0)
        && lines
            .iter()
            .all(|line| line.trim_start().starts_with("grad_target"))
}

/// `v` is finite but becomes an infinity in f32.
fn overflows_f32(v: f64) -> bool {
    v.is_finite() && (v as f32).is_infinite()
}

/// Runs every case of every file on one backend, prints the report, and returns whether
/// everything passed.
fn run_backend(backend: &Backend) -> bool {
    let label = backend.label.as_str();
    let started = Instant::now();
    let files = fixture_files();
    let mut report = Report::default();
    let mut read = Vec::new();
    for file in &files {
        let source = file.path.display().to_string();
        let cases = match &file.cases {
            Ok(cases) => cases,
            Err(reason) => {
                report.failures.push(format!(
                    "FAILED file {source}: {reason} (none of its cases ran)"
                ));
                read.push(format!("{source} (unreadable)"));
                continue;
            }
        };
        read.push(format!("{source} ({} cases)", cases.len()));
        for case in cases {
            report.cases += 1;
            let case = match case {
                Ok(case) => case,
                Err(bad) => {
                    report.failures.push(format!(
                        "FAILED {} [{source}]: not understood: {}",
                        bad.label, bad.reason
                    ));
                    continue;
                }
            };
            let in_f32 = case.dtype == Dtype::F64 && !backend.has_f64;
            if in_f32 && let Some(value) = f32_overflow(case) {
                report
                    .not_representable
                    .push(format!("{} ({value})", case.name));
                continue;
            }
            let run = (backend.run)(case);
            let crashed = match &run {
                Run::Panicked(message) => {
                    !case.expect_error || !message.contains(function_name(case.loss))
                }
                _ => false,
            };
            let verdict = judge(case, run, in_f32);
            if in_f32 {
                report.f64_in_f32 += 1;
            }
            match verdict {
                Verdict::Pass { refused_by_types } => {
                    report.passed += 1;
                    if in_f32 {
                        report.f64_in_f32_passed += 1;
                    }
                    if let Some(reason) = refused_by_types {
                        report
                            .refused_by_types
                            .push(format!("{} ({reason})", case.name));
                    }
                }
                Verdict::Fail(lines) if known_composite_deviation(label, case, &lines) => {
                    report.known_deviations.push(format!(
                        "{} ({})",
                        case.name,
                        lines.first().map_or("", String::as_str).trim()
                    ));
                }
                Verdict::Fail(lines) => {
                    if let Some((_, after)) = &mut report.first_crash {
                        *after += 1;
                    }
                    let note = if in_f32 { ", f64 case run in f32" } else { "" };
                    let mut text = format!("FAILED {} [{source}{note}]:", case.name);
                    for line in lines {
                        text.push_str("\n    ");
                        text.push_str(&line);
                    }
                    report.failures.push(text);
                }
            }
            if crashed && report.first_crash.is_none() {
                report.first_crash = Some((case.name.clone(), 0));
            }
        }
    }

    println!("parity {label}: fixtures {}", read.join(", "));
    if !report.known_deviations.is_empty() {
        // Written to the stream directly: libtest does not capture it, so plain `cargo test`
        // shows it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "KNOWN DEVIATION parity {label}: {} BCE case(s) with probabilities of exactly 0 or 1 \
             have the clamped loss's target gradient on the composite path, where PyTorch's is \
             unclamped (infinite); the fused path matches: {}",
            report.known_deviations.len(),
            report.known_deviations.join("; ")
        );
    }
    for failure in &report.failures {
        println!("{failure}");
    }
    if !report.refused_by_types.is_empty() {
        println!(
            "parity {label}: {} expect_error case(s) refused by the API's types (the call \
             does not compile, so it cannot run): {}",
            report.refused_by_types.len(),
            report.refused_by_types.join("; ")
        );
    }
    if let Some((case, after)) = &report.first_crash
        && *after > 0
    {
        println!(
            "parity {label}: note: {case} panicked unexpectedly, and {after} later case(s) \
             failed; a panic inside the backend can leave the device unusable for the rest of \
             the process, so fix {case} first"
        );
    }
    if report.f64_in_f32 > 0 {
        println!(
            "parity {label}: {} f64 cases ran in f32 (this backend has no f64) with the f32 \
             tolerance (rtol {:e}, atol {:e}, or the case's where looser); {} of them passed",
            report.f64_in_f32, F32_TOLERANCE.rtol, F32_TOLERANCE.atol, report.f64_in_f32_passed
        );
    }
    if !report.not_representable.is_empty() {
        println!(
            "parity {label}: {} f64 case(s) not representable in f32 (a value finite in f64 \
             overflows f32), not run on this f32-only backend (they run on ndarray in f64): {}",
            report.not_representable.len(),
            report.not_representable.join("; ")
        );
    }
    println!(
        "parity {label}: wall time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", report.summary(label));
    report.all_passed()
}

enum Verdict {
    /// `refused_by_types`: an `expect_error` case whose call the API's types cannot express.
    Pass {
        refused_by_types: Option<String>,
    },
    Fail(Vec<String>),
}

/// The function name burn-xent's refusals of bad input start with.
fn function_name(loss: Loss) -> &'static str {
    match loss {
        Loss::Bce => "binary_cross_entropy",
        Loss::BceWithLogits => "binary_cross_entropy_with_logits",
        Loss::CrossEntropy => "cross_entropy",
        Loss::Nll => "nll_loss",
    }
}

/// Whether a case's run matches the fixture. An `expect_error` case passes when burn-xent
/// refuses the input: a panic whose message names the function (as all of burn-xent's checks
/// do; a panic from elsewhere, e.g. a backend left broken by an earlier case, is not a
/// refusal), or a call the API's types cannot express.
fn judge(case: &Case, run: Run, in_f32: bool) -> Verdict {
    if case.expect_error {
        return match run {
            Run::Panicked(message) if message.contains(function_name(case.loss)) => Verdict::Pass {
                refused_by_types: None,
            },
            Run::Panicked(message) => Verdict::Fail(vec![format!(
                "expect_error: a panic, but not burn-xent's refusal (whose message names {}): \
                 {message}",
                function_name(case.loss)
            )]),
            Run::Inexpressible(reason) => Verdict::Pass {
                refused_by_types: Some(reason),
            },
            Run::Ran(outcome) => Verdict::Fail(vec![format!(
                "expect_error: the crate accepted the input; loss {:?} (shape {:?})",
                outcome.loss, outcome.loss_shape
            )]),
            Run::HarnessError(reason) => Verdict::Fail(vec![format!("could not run: {reason}")]),
        };
    }
    let outcome = match run {
        Run::Ran(outcome) => outcome,
        Run::Panicked(message) => {
            return Verdict::Fail(vec![format!("the crate panicked: {message}")]);
        }
        Run::Inexpressible(reason) => {
            return Verdict::Fail(vec![format!("cannot be called through the API: {reason}")]);
        }
        Run::HarnessError(reason) => {
            return Verdict::Fail(vec![format!("could not run: {reason}")]);
        }
    };
    let expected = case
        .expected
        .as_ref()
        .expect("the reader requires `expected` when expect_error is false");
    let tolerance = if in_f32 {
        Tolerance {
            rtol: case.tolerance.rtol.max(F32_TOLERANCE.rtol),
            atol: case.tolerance.atol.max(F32_TOLERANCE.atol),
        }
    } else {
        case.tolerance
    };
    let mut lines = Vec::new();
    // The dtype the case ran in must be the one intended (not silently another). An empty
    // input is exempt: burn-xent builds that result from host data in the device's default
    // dtype.
    let intended = match (case.dtype, in_f32) {
        (Dtype::F64, false) => DType::F64,
        _ => DType::F32,
    };
    if !case.input.data.is_empty() {
        for (what, dtype) in [
            ("loss", Some(outcome.loss_dtype)),
            ("grad_input", outcome.grad_dtype),
        ] {
            if let Some(dtype) = dtype.filter(|&d| d != intended) {
                lines.push(format!("{what}: computed in {dtype:?}, want {intended:?}"));
            }
        }
    }
    lines.extend(compare(
        "loss",
        &outcome.loss_shape,
        &outcome.loss,
        &expected.loss,
        tolerance,
    ));
    if let Some(want) = expected.grad_input.as_ref().filter(|_| outcome.tracked) {
        lines.extend(compare_grad(&outcome, want, tolerance));
    }
    if let Some(want) = expected.grad_target.as_ref().filter(|_| outcome.tracked) {
        match &outcome.grad_target {
            Some(got) => lines.extend(compare(
                "grad_target",
                &outcome.grad_shape,
                got,
                want,
                tolerance,
            )),
            None => lines.push("grad_target: expected, but the runner read none".to_string()),
        }
    }
    if lines.is_empty() {
        Verdict::Pass {
            refused_by_types: None,
        }
    } else {
        Verdict::Fail(lines)
    }
}

fn compare_grad(outcome: &Outcome, want: &FloatTensor, tolerance: Tolerance) -> Vec<String> {
    let mut lines = compare(
        "grad_input",
        &outcome.grad_shape,
        &outcome.grad,
        want,
        tolerance,
    );
    if outcome.grad_missing && !lines.is_empty() {
        lines.push("(Burn returned no gradient for the input; compared as zeros)".to_string());
    }
    lines
}

/// The mismatches between `got` and `want`: a shape mismatch, or one line per element out
/// of tolerance (the first [`LISTED_PER_TENSOR`] of them).
fn compare(
    what: &str,
    got_shape: &[usize],
    got: &[f64],
    want: &FloatTensor,
    tolerance: Tolerance,
) -> Vec<String> {
    if got_shape != loaded_shape(&want.shape).as_slice() || got.len() != want.data.len() {
        return vec![format!(
            "{what}: shape: got {got_shape:?} ({} values), want {:?} ({} values)",
            got.len(),
            want.shape,
            want.data.len()
        )];
    }
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !matches(got[i], want.data[i], tolerance))
        .collect();
    let mut lines: Vec<String> = bad
        .iter()
        .take(LISTED_PER_TENSOR)
        .map(|&i| {
            format!(
                "{what}[{i}]{}: got {:?}, want {:?} (rtol {:e}, atol {:e})",
                position(&want.shape, i),
                got[i],
                want.data[i],
                tolerance.rtol,
                tolerance.atol
            )
        })
        .collect();
    if bad.len() > LISTED_PER_TENSOR {
        lines.push(format!(
            "{what}: … and {} more elements out of tolerance",
            bad.len() - LISTED_PER_TENSOR
        ));
    }
    lines
}

/// ` at [i, j, …]` for a flat index into a tensor of rank 2 or more, else nothing.
fn position(shape: &[usize], flat: usize) -> String {
    if shape.len() < 2 {
        return String::new();
    }
    let mut rest = flat;
    let mut index = vec![0; shape.len()];
    for (d, &size) in shape.iter().enumerate().rev() {
        index[d] = rest % size;
        rest /= size;
    }
    format!(" at {index:?}")
}

/// The common tolerance rule, `abs(got - want) <= atol + rtol * abs(want)` (NaN matches only
/// NaN, an infinity only the same infinity), with a case's tolerance.
fn matches(got: f64, want: f64, tolerance: Tolerance) -> bool {
    common::close(got, want, tolerance.rtol, tolerance.atol)
}

/// `<backend> <path>` on an autodiff device, `<backend> plain <path>` on a plain one, e.g.
/// `wgpu fused`, `ndarray plain composite`.
fn label(backend: &TestBackend, path: LossPath) -> String {
    let plain = if backend.is_autodiff() { "" } else { " plain" };
    format!(
        "{}{plain} {}",
        backend.name,
        format!("{path:?}").to_lowercase()
    )
}

/// Runs every case on `backend` under `path` and fails when one failed.
fn check(label: String, path: LossPath, has_f64: bool, run: &dyn Fn(&Case) -> Run) {
    let backend = Backend {
        label,
        has_f64,
        run,
    };
    let passed = with_loss_path(path, || run_backend(&backend));
    assert!(
        passed,
        "parity {}: some cases failed (listed above)",
        backend.label
    );
}

/// The case's dtype as Burn's.
fn dtype_of(case: &Case) -> DType {
    match case.dtype {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
    }
}

/// Every case on `backend`'s device under `path`: ndarray and Flex in each case's dtype, wgpu
/// in f32 (f64 cases with the f32 tolerance, or counted as not representable in f32).
fn parity(backend: TestBackend, path: LossPath, test: &str) {
    if !backend.ready(test) {
        return;
    }
    let has_f64 = backend.name != "wgpu";
    let label = label(&backend, path);
    if !backend.is_autodiff() {
        println!("parity {label}: a plain device: the losses are compared, no gradient");
    }
    let device = backend.device;
    check(label, path, has_f64, &|case| {
        let dtype = if has_f64 { dtype_of(case) } else { DType::F32 };
        run_case(case, dtype, &device)
    });
}

/// One test per backend, device (autodiff or plain) and path.
macro_rules! parity_tests {
    ($($test:ident: $backend:ident $mode:ident $path:ident;)*) => {
        $(
            #[test]
            fn $test() {
                parity(TestBackend::$backend().$mode(), LossPath::$path, stringify!($test));
            }
        )*
    };
}

parity_tests! {
    ndarray_fused: ndarray_f32 autodiff Fused;
    ndarray_composite: ndarray_f32 autodiff Composite;
    ndarray_plain_fused: ndarray_f32 plain Fused;
    ndarray_plain_composite: ndarray_f32 plain Composite;
    flex_fused: flex_f32 autodiff Fused;
    flex_composite: flex_f32 autodiff Composite;
    flex_plain_fused: flex_f32 plain Fused;
    flex_plain_composite: flex_f32 plain Composite;
    wgpu_fused: wgpu autodiff Fused;
    wgpu_composite: wgpu autodiff Composite;
    wgpu_plain_fused: wgpu plain Fused;
    wgpu_plain_composite: wgpu plain Composite;
}

#[path = "parity/reader_tests.rs"]
mod reader;

#[path = "parity/harness_tests.rs"]
mod harness;
