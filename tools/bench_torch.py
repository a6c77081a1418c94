#!/usr/bin/env python3
"""PyTorch's side of burn-xent's benchmarks (BENCHMARKS.md): the same four losses at the same
shapes, f32 on the CPU, with the thread count of the Burn run.

    python tools/bench_torch.py                 # times, then peak memory, then copy bandwidth
    python tools/bench_torch.py --quick         # fewer runs (a few seconds per case at most)
    python tools/bench_torch.py --shapes small  # all but 4096x32000 (or labels: 65536x10,4194304)
    python tools/bench_torch.py --no-memory --no-bandwidth

Times: for each case, one untimed run, runs for `--warm-up` seconds, then runs until at least
`--runs` runs and `--time` seconds; each run is timed on its own with time.perf_counter and the
median is printed in milliseconds, as criterion prints Burn's. A run is what
benches/losses.rs times: for forward + backward, a fresh leaf
`x = input.detach().requires_grad_()` from inputs already made, the loss (reduction mean),
`loss.backward()` and one element of `x.grad` read; for step, the same with the loss on
`x * 1` (the input owned by the loss, as in a training step); for forward, the loss on the inputs, which
do not require grad (no graph), and `loss.item()`. Freeing the graph and the gradient is part
of the run.

Peak memory (forward + backward and forward): each case in its own process, which runs the
case once on a tiny input, makes the inputs, resets the kernel's peak resident set
(/proc/self/clear_refs), runs the case once and reports the peak resident set minus the
resident set after making the inputs. MALLOC_MMAP_THRESHOLD_=65536 makes freed large blocks
go back to the kernel at once, so the resident set follows the live memory (benches/memory.rs
measures Burn the same way).

Bandwidth: the best of five copies (Tensor.copy_) of a 1 GiB tensor, counted as bytes read
plus bytes written per second, on one thread and on --threads threads.

Results are printed and written to target/bench-results/torch.json (--json).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # torch warns when numpy is missing; it is not needed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# The shapes, as in benches/common/mod.rs.
SHAPES = {
    "cross_entropy": [(65536, 10), (8192, 1000), (4096, 32000), (8, 21, 256, 256)],
    "nll_loss": [(65536, 10), (8192, 1000), (4096, 32000)],
    "bce": [(4096, 1024), (4194304,)],
    "bce_with_logits": [(4096, 1024), (4194304,)],
    # hidden [N, D] and V classes: F.cross_entropy(F.linear(h, W, b), t), as
    # benches/linear_cross_entropy.rs measures burn-xent's linear_cross_entropy.
    "linear_cross_entropy": [(4096, 1024, 32000), (2048, 2048, 128256), (4096, 1024, 128256)],
}
TINY = {"cross_entropy": (128, 10), "nll_loss": (128, 10), "bce": (64, 16), "bce_with_logits": (64, 16),
        "linear_cross_entropy": (64, 16, 100)}
# "step": forward + backward with the loss's input made by an operation on the tracked leaf
# (`x * 1`), timed with it, as in a training step (benches/common/mod.rs's burn-xent-step).
MODES = ["forward", "forward_backward", "step"]
# The linear loss is measured forward + backward only (the target).
LOSS_MODES = {"linear_cross_entropy": ["forward_backward"]}


def label(shape):
    return "x".join(str(d) for d in shape)


def selected(shape, spec):
    items = [s.strip() for s in spec.split(",")]
    return any(i == "all" or (i == "small" and label(shape) != "4096x32000") or i == label(shape) for i in items)


def make_inputs(loss, shape, seed=0):
    """Logits (CE, BCE with logits), log-probabilities (NLL) or probabilities (BCE), and class
    indices or hard 0/1 labels (as floats), drawn as benches/common/mod.rs draws them; for the
    linear loss, hidden states [N, D], a weight in nn.Linear's layout [V, D], a bias and class
    indices."""
    g = torch.Generator().manual_seed(seed)
    if loss == "linear_cross_entropy":
        n, d, v = shape
        hidden = torch.rand((n, d), generator=g) * 2 - 1
        weight = (torch.rand((v, d), generator=g) * 2 - 1) / d ** 0.5
        bias = (torch.rand((v,), generator=g) * 2 - 1) * 0.1
        target = torch.randint(0, v, (n,), generator=g, dtype=torch.int64)
        return (hidden, weight, bias), target
    x = torch.randn(shape, generator=g, dtype=torch.float32)
    if loss in ("cross_entropy", "nll_loss"):
        rows = (shape[0],) + tuple(shape[2:])
        target = torch.randint(0, shape[1], rows, generator=g, dtype=torch.int64)
        if len(shape) > 2:
            # The segmentation batch: every tenth target is ignore_index = 255.
            target.view(-1)[::10] = SEGMENTATION_IGNORE
        if loss == "nll_loss":
            x = torch.log_softmax(x, dim=1)
    else:
        target = torch.randint(0, 2, shape, generator=g).to(torch.float32)
        if loss == "bce":
            x = torch.sigmoid(x)
    return x, target


SEGMENTATION_IGNORE = 255

LOSSES = {
    # ignore_index = 255 for the segmentation batch only (a 2-D case may have class 255).
    "cross_entropy": lambda x, t: F.cross_entropy(
        x, t, ignore_index=SEGMENTATION_IGNORE if x.dim() > 2 else -100
    ),
    "nll_loss": F.nll_loss,
    "bce": F.binary_cross_entropy,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
}


def run(loss, mode, inputs):
    """One run: what benches/losses.rs times, ending with a read of one value."""
    x0, target = inputs
    if loss == "linear_cross_entropy":
        h, w, b = (t.detach().requires_grad_() for t in x0)
        value = F.cross_entropy(F.linear(h, w, b), target)
        if mode == "forward":
            return value.item()
        value.backward()
        return h.grad.view(-1)[0].item() + w.grad.view(-1)[0].item() + b.grad[0].item()
    if mode == "forward":
        return LOSSES[loss](x0, target).item()
    x = x0.detach().requires_grad_()
    value = LOSSES[loss](x * 1 if mode == "step" else x, target)
    value.backward()
    return x.grad.view(-1)[0].item()


def time_case(loss, shape, mode, args):
    inputs = make_inputs(loss, shape)
    run(loss, mode, inputs)  # untimed: first-call costs
    start = time.perf_counter()
    while time.perf_counter() - start < args.warm_up:
        run(loss, mode, inputs)
    times = []
    start = time.perf_counter()
    while len(times) < args.runs or time.perf_counter() - start < args.time:
        t0 = time.perf_counter()
        run(loss, mode, inputs)
        times.append(time.perf_counter() - t0)
    return times


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def memory_child(loss, shape_label, mode):
    """--case: one case in this fresh process; prints one JSON line."""
    shape = tuple(int(d) for d in shape_label.split("x"))
    run(loss, mode, make_inputs(loss, TINY[loss]))  # load code pages, start the thread pool
    rss_before_inputs = status_kib("VmRSS:")
    inputs = make_inputs(loss, shape)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kib("VmRSS:")
    t0 = time.perf_counter()
    value = run(loss, mode, inputs)
    seconds = time.perf_counter() - t0
    peak = status_kib("VmHWM:")
    # The linear loss's extra memory is counted beyond the three gradients too (N·D + V·D + V
    # values), which every implementation returns.
    gradients = 4 * (shape[0] * shape[1] + shape[2] * shape[1] + shape[2]) if loss == "linear_cross_entropy" else 0
    print(json.dumps({
        "loss": loss, "shape": list(shape), "mode": mode, "impl": "pytorch", "backend": "cpu",
        "input_rss_bytes": (base - rss_before_inputs) * 1024,
        "rss_extra_bytes": max(max(peak - base, 0) * 1024 - gradients, 0),
        "seconds": seconds, "value": value,
    }))


def bandwidth(threads):
    n = (1 << 30) // 4
    src = torch.arange(n, dtype=torch.float32)
    dst = torch.ones(n, dtype=torch.float32)
    out = {}
    for t in sorted({1, threads}):
        torch.set_num_threads(t)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            dst.copy_(src)
            best = min(best, time.perf_counter() - t0)
        out[str(t)] = 2 * n * 4 / best / 1e9
        print(f"  {t} thread(s): {out[str(t)]:.2f} GB/s (copy of 1024 MiB in {best * 1e3:.1f} ms)")
    torch.set_num_threads(threads)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2: the Burn run's rayon threads on this machine)")
    p.add_argument("--shapes", default=os.environ.get("BURN_XENT_BENCH_SHAPES", "all"), help="all, small, or labels like 65536x10,4194304")
    p.add_argument("--losses", default="all", help="comma list of cross_entropy,nll_loss,bce,bce_with_logits,linear_cross_entropy (all: the first four)")
    p.add_argument("--runs", type=int, default=10, help="at least this many timed runs (default 10, as criterion's samples)")
    p.add_argument("--time", type=float, default=3.0, help="and at least this many seconds of timed runs (default 3)")
    p.add_argument("--warm-up", type=float, default=1.0, help="seconds of untimed runs first (default 1)")
    p.add_argument("--quick", action="store_true", help="3 runs, no time minimum, no warm-up beyond one run")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-bandwidth", action="store_true")
    p.add_argument("--json", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "bench-results", "torch.json"))
    p.add_argument("--case", nargs=3, metavar=("LOSS", "SHAPE", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    if args.case:
        memory_child(*args.case)
        return
    if args.quick:
        args.runs, args.time, args.warm_up = 3, 0.0, 0.0
    losses = [l for l in SHAPES if l != "linear_cross_entropy"] if args.losses == "all" else args.losses.split(",")
    cases = [(loss, shape) for loss in losses for shape in SHAPES[loss] if selected(shape, args.shapes)]

    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, f32, CPU; median of "
          f">= {args.runs} runs and >= {args.time} s")
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "times": [], "memory": [], "bandwidth_gbs": None}
    print(f"{'case':<44} {'median ms':>10} {'min ms':>10} {'runs':>6}")
    for loss, shape in cases:
        for mode in LOSS_MODES.get(loss, MODES):
            times = time_case(loss, shape, mode, args)
            median = statistics.median(times) * 1e3
            case = f"{loss}/{label(shape)}/{mode}"
            print(f"{case:<44} {median:>10.3f} {min(times) * 1e3:>10.3f} {len(times):>6}", flush=True)
            results["times"].append({"loss": loss, "shape": list(shape), "mode": mode, "median_ms": median,
                                     "min_ms": min(times) * 1e3, "runs": len(times)})

    if not args.no_memory:
        print("\nPeak memory beyond the inputs, one process per case (MiB, resident set)")
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        for loss, shape in cases:
            for mode in LOSS_MODES.get(loss, MODES):
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--case", loss, label(shape), mode],
                                     env=env, capture_output=True, text=True)
                case = f"{loss}/{label(shape)}/{mode}"
                line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
                if out.returncode != 0 or line is None:
                    print(f"{case:<44} FAILED: {out.stderr.strip()[-500:]}")
                    continue
                r = json.loads(line)
                print(f"{case:<44} {r['rss_extra_bytes'] / 2**20:>10.1f}", flush=True)
                results["memory"].append(r)

    if not args.no_bandwidth:
        print("\nCopy bandwidth, 1024 MiB tensor, best of 5 (read + write bytes per second):")
        results["bandwidth_gbs"] = bandwidth(args.threads)

    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
