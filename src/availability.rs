//! Whether a backend can run on this machine, asked once per backend and device, quietly.
//!
//! Some backends cannot start everywhere: Burn's wgpu backend panics when the machine has no
//! GPU adapter (no Vulkan, Metal or DirectX driver), from inside the thread that drives the
//! device. [`backend_unavailable`] runs one tiny operation on the backend, on a thread of
//! its own, with the panic messages of that moment kept off the terminal, and turns a failure
//! into a one-line reason. [`run_or_skip`] builds the test-suite protocol on it: run, print
//! one `SKIPPED` line, or fail when the backend is required. libtest captures a passing
//! test's output, so the process also prints, when it exits, one line per backend that
//! libtest does not capture: `SKIPPED 42 checks on wgpu (not run, reported as passed): <reason>`.
//!
//! The crate's own tests, examples and benches use these functions for every wgpu check, and
//! [`crate::gradcheck`]'s users can use them for theirs:
//!
//! ```
//! use burn::tensor::Device;
//! use burn_xent::availability::{REQUIRE_WGPU, required_by_env, run_or_skip};
//! let device = Device::ndarray();
//! // PyTorch has no counterpart; the nearest is `torch.cuda.is_available()`.
//! if run_or_skip("my_check", &device, required_by_env(REQUIRE_WGPU)) {
//!     // … the check, on `device` …
//! }
//! ```

use std::collections::HashMap;
use std::panic::{self, PanicHookInfo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use burn::tensor::{Device, Tensor, TensorData};

/// The environment variable that turns a missing wgpu adapter from a skip into a failure in
/// this crate's tests when it is `1` (CI sets it).
pub const REQUIRE_WGPU: &str = "BURN_XENT_REQUIRE_WGPU";

/// Why the backend of `device` cannot run on it, or `None` when it can.
///
/// The first call for a device runs one small operation (two numbers
/// summed and read back) on a separate thread; later calls return the remembered answer. Any
/// panic during that probe, on the probe's thread or inside the GPU stack (a `cubecl` or
/// `wgpu` source file), is caught and kept off the terminal (a driver thread's panic would
/// otherwise print a message and a backtrace that read like a crash); every other panic
/// prints as usual, also one raised by a test running beside the probe. Probes run one at a
/// time and take well under a second.
///
/// The reason is one line, e.g. `Autodiff<Cube(…)>: no usable adapter (No possible adapter
/// available for backend. Falling back to first available.); on Debian install
/// mesa-vulkan-drivers` for wgpu.
pub fn backend_unavailable(device: &Device) -> Option<String> {
    type Answers = Mutex<HashMap<String, Option<String>>>;
    static ANSWERS: OnceLock<Answers> = OnceLock::new();
    let key = format!("{device:?}");
    // Held across the probe: one probe at a time, and a second caller waits for the answer.
    let mut answers = ANSWERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    answers.entry(key).or_insert_with(|| probe(device)).clone()
}

/// True when the backend of `device` runs on it. Otherwise prints one line,
/// `SKIPPED <what>: <reason>`, and returns false, or, when `required`, panics with that
/// reason.
///
/// This is the protocol of every wgpu test of this crate (with `required` from
/// [`required_by_env`]`(`[`REQUIRE_WGPU`]`)`), so that a machine without a GPU driver passes
/// the suite with `SKIPPED` lines and CI, which installs a driver, cannot skip silently.
pub fn run_or_skip(what: &str, device: &Device, required: bool) -> bool {
    let Some(reason) = backend_unavailable(device) else {
        return true;
    };
    if required {
        panic!("{what}: the backend is required here but cannot run: {reason}");
    }
    println!("SKIPPED {what}: {reason}");
    count_skip(what, &reason);
    false
}

/// Skipped checks of this process, by backend (the part of `what` before `::`): the count
/// and the first reason.
static SKIPS: Mutex<Vec<(String, usize, String)>> = Mutex::new(Vec::new());

/// Counts one skip, and on the first one registers [`report_skips`] to run at exit.
fn count_skip(what: &str, reason: &str) {
    let backend = what.split("::").next().unwrap_or(what).to_string();
    let mut skips = SKIPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if skips.is_empty() {
        // SAFETY: `report_skips` is a plain `extern "C"` function that does not unwind.
        unsafe {
            libc::atexit(report_skips);
        }
    }
    match skips.iter_mut().find(|(b, _, _)| *b == backend) {
        Some((_, count, _)) => *count += 1,
        None => skips.push((backend, 1, reason.to_string())),
    }
}

/// At exit: one line per backend with skipped checks, written to the process's standard error
/// directly (libtest captures `print!`, not the stream), so that plain `cargo test` shows
/// them under the binary's `test result` line.
extern "C" fn report_skips() {
    use std::io::Write;
    let Ok(skips) = SKIPS.lock() else { return };
    let mut stderr = std::io::stderr().lock();
    for (backend, count, reason) in skips.iter() {
        let checks = if *count == 1 { "check" } else { "checks" };
        let _ = writeln!(
            stderr,
            "SKIPPED {count} {checks} on {backend} (not run, reported as passed): {reason}"
        );
    }
}

/// True when the environment variable `var` is set to `1`.
pub fn required_by_env(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// Number of probes running now; while it is not 0, the probe thread's panics and those raised
/// inside the GPU stack (a `cubecl` or `wgpu` source file: the driver thread's) are not
/// printed. Any other thread's panic (a test failing beside the probe) prints as usual.
static PROBES_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The name of the thread a probe runs on.
const PROBE_THREAD: &str = "burn-xent-probe";

/// The first panic message raised inside the GPU stack on another thread while a probe ran:
/// the backend's own driver thread, whose message says more than the probe thread's.
static FIRST_PROBE_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Installs, once, a panic hook that keeps the probe's panics quiet (see [`PROBES_RUNNING`])
/// and hands every other panic to the hook that was there before.
fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let on_probe = std::thread::current().name() == Some(PROBE_THREAD);
            let in_gpu_stack = info
                .location()
                .is_some_and(|l| l.file().contains("cubecl") || l.file().contains("wgpu"));
            if PROBES_RUNNING.load(Ordering::SeqCst) == 0 || !(on_probe || in_gpu_stack) {
                previous(info);
            } else if !on_probe && let Ok(mut first) = FIRST_PROBE_PANIC.lock() {
                first.get_or_insert_with(|| panic_text(info.payload()));
            }
        }));
    });
}

/// Runs the probe operation on its own thread; `Some(reason)` when it failed.
fn probe(device: &Device) -> Option<String> {
    install_quiet_hook();
    PROBES_RUNNING.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut first) = FIRST_PROBE_PANIC.lock() {
        *first = None;
    }
    let name = device_name(device);
    let device = device.clone();
    let outcome = std::thread::Builder::new()
        .name(PROBE_THREAD.to_string())
        .spawn(move || {
            // f32, which every backend has. (Burn 0.22 fixes a device's default dtypes at its
            // first tensor even with an explicit dtype, as `Device::configure` says: a program
            // that configures its device does so before its first loss.)
            let data = TensorData::from([1.0f32, 2.0]);
            Tensor::<1>::from_data(data, (&device, burn::tensor::DType::F32))
                .sum()
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
        })
        .expect("spawning the probe thread")
        .join();
    PROBES_RUNNING.fetch_sub(1, Ordering::SeqCst);
    match outcome {
        Ok(Ok(sum)) if sum == [3.0] => None,
        Ok(Ok(sum)) => Some(format!("{name}: the probe summed [1, 2] to {sum:?}")),
        Ok(Err(error)) => Some(format!(
            "{name}: the probe's result was unreadable: {error:?}"
        )),
        Err(panic) => {
            let first = FIRST_PROBE_PANIC
                .lock()
                .ok()
                .and_then(|mut first| first.take());
            let message = first.unwrap_or_else(|| panic_text(&*panic));
            let first_line = message.lines().next().unwrap_or_default().trim();
            Some(if name.contains("Cube") {
                format!(
                    "{name}: no usable wgpu adapter ({first_line}); on Debian install \
                     mesa-vulkan-drivers"
                )
            } else {
                format!("{name}: {first_line}")
            })
        }
    }
}

/// The text of a panic payload (`panic!` gives a `String` or a `&str`).
pub(crate) fn panic_text(payload: &(dyn core::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// A short name of `device`'s backend, e.g. `NdArray(Cpu)` or `Autodiff<Cube(…)>`; it names
/// backends in availability reasons and in [`crate::backend_check`]'s reports.
pub(crate) fn device_name(device: &Device) -> String {
    let inner = format!("{:?}", device.clone().inner().as_dispatch());
    if device.is_autodiff() {
        format!("Autodiff<{inner}>")
    } else {
        inner
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: Burn 0.22 deprecates burn-ndarray.
mod tests {
    use super::*;

    #[cfg(feature = "fused-ndarray")]
    #[test]
    fn device_names_say_the_backend_and_autodiff() {
        assert_eq!(device_name(&Device::ndarray()), "NdArray(Cpu)");
        assert_eq!(
            device_name(&Device::ndarray().autodiff()),
            "Autodiff<NdArray(Cpu)>"
        );
    }

    #[cfg(feature = "fused-ndarray")]
    #[test]
    fn ndarray_is_available_and_remembered() {
        let device = Device::ndarray();
        assert_eq!(backend_unavailable(&device), None);
        assert_eq!(backend_unavailable(&device), None);
        assert!(run_or_skip("ndarray", &device, true));
    }
}
