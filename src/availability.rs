//! Whether a backend can run on this machine, asked once per backend and device, quietly.
//!
//! Some backends cannot start everywhere: Burn's wgpu backend panics when the machine has no
//! GPU adapter (no Vulkan, Metal or DirectX driver), from inside the thread that drives the
//! device. [`backend_unavailable`] runs one tiny operation on the backend, on a thread of
//! its own, with the panic messages of that moment kept off the terminal, and turns a failure
//! into a one-line reason. [`run_or_skip`] builds the test-suite protocol on it: run, print
//! one `SKIPPED` line, or fail when the backend is required.
//!
//! The crate's own tests, examples and benches use these functions for every wgpu check, and
//! [`crate::gradcheck`]'s users can use them for theirs:
//!
//! ```
//! use burn_xent::availability::{REQUIRE_WGPU, required_by_env, run_or_skip};
//! type B = burn_ndarray::NdArray<f32>;
//! // PyTorch has no counterpart; the nearest is `torch.cuda.is_available()`.
//! if run_or_skip::<B>("my_check", &Default::default(), required_by_env(REQUIRE_WGPU)) {
//!     // … the check, on B …
//! }
//! ```

use std::collections::HashMap;
use std::panic::{self, PanicHookInfo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use burn::tensor::backend::Backend;
use burn::tensor::{Element, Tensor, TensorData};

/// The environment variable that turns a missing wgpu adapter from a skip into a failure in
/// this crate's tests when it is `1` (CI sets it).
pub const REQUIRE_WGPU: &str = "BURN_XENT_REQUIRE_WGPU";

/// Why backend `B` cannot run on `device`, or `None` when it can.
///
/// The first call for a backend type and device runs one small operation (two numbers
/// summed and read back) on a separate thread; later calls return the remembered answer. Any
/// panic during that probe, on any thread, is caught and kept off the terminal (a driver
/// thread's panic would otherwise print a message and a backtrace that read like a crash);
/// panics outside the probe print as usual. Probes run one at a time and take well under a
/// second; a panic of another thread in that window is not printed either.
///
/// The reason is one line, e.g. `Autodiff<Wgpu>: no usable adapter (No possible adapter
/// available for backend. Falling back to first available.); on Debian install
/// mesa-vulkan-drivers` for wgpu.
pub fn backend_unavailable<B: Backend>(device: &B::Device) -> Option<String> {
    type Answers = Mutex<HashMap<(core::any::TypeId, String), Option<String>>>;
    static ANSWERS: OnceLock<Answers> = OnceLock::new();
    let key = (core::any::TypeId::of::<B>(), format!("{device:?}"));
    // Held across the probe: one probe at a time, and a second caller waits for the answer.
    let mut answers = ANSWERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    answers
        .entry(key)
        .or_insert_with(|| probe::<B>(device))
        .clone()
}

/// True when backend `B` runs on `device`. Otherwise prints one line,
/// `SKIPPED <what>: <reason>`, and returns false, or, when `required`, panics with that
/// reason.
///
/// This is the protocol of every wgpu test of this crate (with `required` from
/// [`required_by_env`]`(`[`REQUIRE_WGPU`]`)`), so that a machine without a GPU driver passes
/// the suite with `SKIPPED` lines and CI, which installs a driver, cannot skip silently.
pub fn run_or_skip<B: Backend>(what: &str, device: &B::Device, required: bool) -> bool {
    let Some(reason) = backend_unavailable::<B>(device) else {
        return true;
    };
    if required {
        panic!("{what}: the backend is required here but cannot run: {reason}");
    }
    println!("SKIPPED {what}: {reason}");
    false
}

/// True when the environment variable `var` is set to `1`.
pub fn required_by_env(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// Number of probes running now; while it is not 0, panic messages are not printed.
static PROBES_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The name of the thread a probe runs on.
const PROBE_THREAD: &str = "burn-xent-probe";

/// The first panic message seen on another thread while a probe ran: usually the backend's
/// own driver thread, whose message says more than the probe thread's.
static FIRST_PROBE_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Installs, once, a panic hook that stays silent while a probe runs and hands every other
/// panic to the hook that was there before.
fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            if PROBES_RUNNING.load(Ordering::SeqCst) == 0 {
                previous(info);
            } else if std::thread::current().name() != Some(PROBE_THREAD)
                && let Ok(mut first) = FIRST_PROBE_PANIC.lock()
            {
                first.get_or_insert_with(|| panic_text(info.payload()));
            }
        }));
    });
}

/// Runs the probe operation on its own thread; `Some(reason)` when it failed.
fn probe<B: Backend>(device: &B::Device) -> Option<String> {
    install_quiet_hook();
    PROBES_RUNNING.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut first) = FIRST_PROBE_PANIC.lock() {
        *first = None;
    }
    let device = device.clone();
    let outcome = std::thread::Builder::new()
        .name(PROBE_THREAD.to_string())
        .spawn(move || {
            // An explicit dtype: Burn 0.21 fixes a device type's default float dtype at its first
            // tensor, and a probe must not choose it for the program.
            let dtype = <B::FloatElem as Element>::dtype();
            let data = TensorData::from([1.0f32, 2.0]).convert_dtype(dtype);
            Tensor::<B, 1>::from_data(data, (&device, dtype))
                .sum()
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
        })
        .expect("spawning the probe thread")
        .join();
    PROBES_RUNNING.fetch_sub(1, Ordering::SeqCst);
    let name = short_type_name::<B>();
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
            Some(if name.contains("Wgpu") || name.contains("Cube") {
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

/// `B`'s type name without module paths, e.g. `Autodiff<NdArray<f32>>` or
/// `Autodiff<Fusion<CubeBackend<…>>>`; it names backends in availability reasons and in
/// [`crate::backend_check`]'s reports.
pub(crate) fn short_type_name<B>() -> String {
    let full = core::any::type_name::<B>();
    let mut short = String::with_capacity(full.len());
    let mut segment = String::new();
    for ch in full.chars() {
        match ch {
            ':' => segment.clear(),
            '<' | '>' | ',' | ' ' => {
                short.push_str(&segment);
                segment.clear();
                short.push(ch);
            }
            _ => segment.push(ch),
        }
    }
    short.push_str(&segment);
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_module_paths() {
        assert_eq!(
            short_type_name::<Option<std::vec::Vec<u8>>>(),
            "Option<Vec<u8>>"
        );
    }

    #[cfg(feature = "fused-ndarray")]
    #[test]
    fn ndarray_is_available_and_remembered() {
        type B = burn_ndarray::NdArray<f32>;
        assert_eq!(backend_unavailable::<B>(&Default::default()), None);
        assert_eq!(backend_unavailable::<B>(&Default::default()), None);
        assert!(run_or_skip::<B>("ndarray", &Default::default(), true));
    }
}
