#!/usr/bin/env python3
"""Builds BENCHMARKS.md's tables from the results the benchmarks leave behind:

- target/criterion/**/new/{benchmark,estimates}.json  (cargo bench --bench losses)
- target/bench-results/memory.json, bandwidth.json      (cargo bench --bench memory)
- target/bench-results/torch.json                       (python tools/bench_torch.py)

    python tools/bench_tables.py                      # prints the tables (Markdown)
    python tools/bench_tables.py --write BENCHMARKS.md  # replaces the text between the
                                                      # <!-- tables:begin/end --> markers

Every number is a median (criterion's median of its samples for Burn, the median of the runs
for PyTorch) in milliseconds. The floor is (input bytes + target bytes + gradient bytes) /
copy bandwidth, with the copy bandwidth the best benches/memory.rs measured for a buffer of
the input's size (bytes read plus bytes written per second; small inputs live in cache); the
forward's floor has no gradient term. "×floor" is a time
divided by its floor.
"""

import argparse
import glob
import json
import os
import re
import sys

LOSSES = {
    "cross_entropy": ("CrossEntropyLoss", "`burn::nn::loss::CrossEntropyLoss`"),
    "nll_loss": ("NLLLoss", None),
    "bce": ("BCELoss", "`burn::nn::loss::BinaryCrossEntropyLoss` (`logits: false`, integer labels)"),
    "bce_with_logits": ("BCEWithLogitsLoss", "`burn::nn::loss::BinaryCrossEntropyLoss` (`logits: true`, integer labels)"),
}
SHAPES = {
    "cross_entropy": ["65536x10", "8192x1000", "4096x32000", "8x21x256x256"],
    "nll_loss": ["65536x10", "8192x1000", "4096x32000"],
    "bce": ["4096x1024", "4194304"],
    "bce_with_logits": ["4096x1024", "4194304"],
}
MODES = {"forward": "fwd", "forward_backward": "fwd+bwd"}
IMPLS = ["burn-xent", "burn-xent-step", "burn-xent-nocheck", "burn-xent-composite", "burn-nn"]
DEFAULT_IMPLS = {
    "cross_entropy": IMPLS,
    "nll_loss": ["burn-xent", "burn-xent-step", "burn-xent-nocheck", "burn-xent-composite"],
    "bce": IMPLS,
    "bce_with_logits": ["burn-xent", "burn-xent-step", "burn-xent-composite", "burn-nn"],
}
IMPL_TITLES = {
    "burn-xent": "burn-xent (fused, shared logits)",
    "burn-xent-step": "burn-xent in a step (loss on x · 1)",
    "burn-xent-nocheck": "burn-xent, no check",
    "burn-xent-composite": "burn-xent composite (before)",
    "burn-nn": "burn-nn",
}


def floor_bytes(loss, shape, mode):
    dims = [int(d) for d in shape.split("x")]
    elements = 1
    for d in dims:
        elements *= d
    # One class index per row: N, or N·d1⋯dk for a K-dimensional input.
    rows = elements // dims[1] if len(dims) > 1 else 1
    target = rows * 8 if loss in ("cross_entropy", "nll_loss") else elements * 4
    # NLL's forward reads only the picked log-probabilities.
    inputs = rows * 4 if loss == "nll_loss" else elements * 4
    gradient = elements * 4 if mode == "forward_backward" else 0
    return inputs + target + gradient


def load_criterion(root):
    """{(loss, shape, mode, impl, backend): median ms}"""
    out = {}
    for bench in glob.glob(os.path.join(root, "criterion", "**", "new", "benchmark.json"), recursive=True):
        with open(bench) as f:
            b = json.load(f)
        with open(os.path.join(os.path.dirname(bench), "estimates.json")) as f:
            e = json.load(f)
        parts = b["group_id"].split("/")
        if len(parts) != 3:
            continue
        loss, shape, mode = parts
        out[(loss, shape, mode, b["function_id"], b["value_str"])] = e["median"]["point_estimate"] / 1e6
    return out


def load_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        print(f"note: {path} missing", file=sys.stderr)
        return default


def ms(value):
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    if value >= 0.01:
        return f"{value:.3f}"
    return f"{value:.4f}"


def ratio(a, b, least=0.0):
    """a / b, or — when either is missing or b is at most `least` (nothing to divide by)."""
    return "—" if a is None or b is None or b <= least else f"{a / b:.2f}"


def times(x):
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"


def cell(value, floor):
    return "—" if value is None else f"{ms(value)} ({times(value / floor)})" if floor else ms(value)


def mib(value):
    return "—" if value is None else f"{value / 2**20:.1f}"


def tables(root, torch_json=None):
    times = load_criterion(root)
    results = os.path.join(root, "bench-results")
    torch = load_json(torch_json or os.path.join(results, "torch.json"), {"times": [], "memory": []})
    memory = load_json(os.path.join(results, "memory.json"), [])
    bandwidth = load_json(os.path.join(results, "bandwidth.json"), {})
    def gbs_for(loss, shape):
        """The best copy bandwidth measured at this shape's input size (else at 1 GiB)."""
        elements = 1
        for d in shape.split("x"):
            elements *= int(d)
        by_threads = bandwidth.get(str(elements * 4)) or bandwidth.get(str(1 << 30))
        return max(by_threads.values()) if by_threads else None

    torch_times = {(t["loss"], "x".join(map(str, t["shape"])), t["mode"]): t["median_ms"] for t in torch["times"]}
    torch_mem = {(m["loss"], "x".join(map(str, m["shape"])), m["mode"]): m["rss_extra_bytes"] for m in torch["memory"]}
    burn_mem = {(m["loss"], "x".join(map(str, m["shape"])), m["mode"], m["impl"]): m for m in memory}

    lines = []
    emit = lines.append
    if bandwidth:
        emit("Copy bandwidth (`bandwidth.json`; read + write bytes per second, best of one thread and "
             "all threads), by buffer size:")
        emit("")
        emit("| buffer | " + " | ".join(f"{int(b) / 1e6:.1f} MB" for b in sorted(bandwidth, key=int)) + " |")
        emit("|---|" + "---|" * len(bandwidth))
        for t in sorted(next(iter(bandwidth.values())), key=int):
            emit(f"| {t} thread(s), GB/s | " + " | ".join(f"{bandwidth[b][t]:.1f}" for b in sorted(bandwidth, key=int)) + " |")
        emit("")
    worst_gap = (0, "")
    emit("A ratio is \"—\" where its denominator is missing or under 0.1 MiB.")
    emit("")
    for loss, (torch_name, burn_nn) in LOSSES.items():
        impls = [i for i in IMPLS if any(k[0] == loss and k[3] == i for k in times)] or DEFAULT_IMPLS[loss]
        emit(f"### {torch_name} (`{loss}`)")
        emit("")
        emit(f"burn-nn counterpart: {burn_nn or 'none (`burn::nn::loss` has no NLL loss)'}.")
        emit("")
        emit("Time on `Autodiff<NdArray<f32>>` and PyTorch (CPU, same 2 threads): median ms, and in "
             "brackets the time over the floor:")
        emit("")
        step = "burn-xent-step" in impls
        head = ["shape", "pass", "floor"] + [IMPL_TITLES[i] for i in impls] + ["PyTorch"]
        head += ["PyTorch in a step"] if step else []
        head += ["burn-xent / burn-nn"] if "burn-nn" in impls else []
        head += ["burn-xent / PyTorch"]
        head += ["step / PyTorch step"] if step else []
        emit("| " + " | ".join(head) + " |")
        emit("|" + "---|" * len(head))
        for shape in SHAPES[loss]:
            for mode, short in MODES.items():
                gbs = gbs_for(loss, shape)
                floor = floor_bytes(loss, shape, mode) / (gbs * 1e9) * 1e3 if gbs else None
                row = [shape.replace("x", "×"), short, ms(floor)]
                got = {i: times.get((loss, shape, mode, i, "ndarray")) for i in impls}
                tt = torch_times.get((loss, shape, mode))
                # PyTorch's step (the loss on x * 1, forward + backward) pairs with the
                # fwd+bwd row.
                ts = torch_times.get((loss, shape, "step")) if mode == "forward_backward" else None
                if all(v is None for v in got.values()) and tt is None:
                    continue
                row += [cell(got[i], floor) for i in impls] + [cell(tt, floor)]
                row += [cell(ts, floor)] if step else []
                if "burn-nn" in impls:
                    row.append(ratio(got["burn-xent"], got["burn-nn"]))
                row.append(ratio(got["burn-xent"], tt))
                if step:
                    row.append(ratio(got["burn-xent-step"], ts))
                emit("| " + " | ".join(row) + " |")
        emit("")
        flex_rows = []
        for shape in SHAPES[loss]:
            for mode, short in MODES.items():
                got = {i: times.get((loss, shape, mode, i, "flex")) for i in impls}
                if all(v is None for v in got.values()):
                    continue
                nd = {i: times.get((loss, shape, mode, i, "ndarray")) for i in impls}
                gbs = gbs_for(loss, shape)
                floor = floor_bytes(loss, shape, mode) / (gbs * 1e9) * 1e3 if gbs else None
                row = [shape.replace("x", "×"), short, ms(floor)] + [cell(got[i], floor) for i in impls]
                row.append(ratio(got["burn-xent"], nd["burn-xent"]))
                if "burn-nn" in impls:
                    row.append(ratio(got["burn-nn"], nd["burn-nn"]))
                    best_burn = min((v for v in (got["burn-nn"], nd["burn-nn"]) if v is not None), default=None)
                    row.append(ratio(got["burn-xent"], best_burn))
                row.append(ratio(got["burn-xent"], torch_times.get((loss, shape, mode))))
                flex_rows.append(row)
        if flex_rows:
            emit("Time on `Autodiff<Flex>` (Burn's Flex CPU backend, same run and threads), median ms, and "
                 "in brackets the time over the floor; the ratios compare it with the ndarray rows above:")
            emit("")
            head = ["shape", "pass", "floor"] + [IMPL_TITLES[i] for i in impls]
            head += ["burn-xent flex / ndarray"]
            head += ["burn-nn flex / ndarray", "burn-xent flex / best burn-nn"] if "burn-nn" in impls else []
            head += ["burn-xent flex / PyTorch"]
            emit("| " + " | ".join(head) + " |")
            emit("|" + "---|" * len(head))
            for row in flex_rows:
                emit("| " + " | ".join(row) + " |")
            emit("")
        wgpu_rows = []
        for shape in SHAPES[loss]:
            for mode, short in MODES.items():
                got = {i: times.get((loss, shape, mode, i, "wgpu")) for i in impls}
                if all(v is None for v in got.values()):
                    continue
                row = [shape.replace("x", "×"), short] + [ms(got[i]) for i in impls]
                if "burn-nn" in impls:
                    row.append(ratio(got["burn-xent"], got["burn-nn"]))
                nd = times.get((loss, shape, mode, "burn-xent", "ndarray"))
                row.append(ratio(got["burn-xent"], nd))
                wgpu_rows.append(row)
        if wgpu_rows:
            emit("Time on `Autodiff<Wgpu>` **on lavapipe (Mesa's software Vulkan on the same 2 CPU "
                 "cores, not a GPU)**, median ms:")
            emit("")
            head = ["shape", "pass"] + [IMPL_TITLES[i] for i in impls]
            head += ["burn-xent / burn-nn"] if "burn-nn" in impls else []
            head += ["burn-xent wgpu / ndarray"]
            emit("| " + " | ".join(head) + " |")
            emit("|" + "---|" * len(head))
            for row in wgpu_rows:
                emit("| " + " | ".join(row) + " |")
            emit("")
        emit("Peak memory beyond the inputs (MiB, resident set, one process per case; ndarray for Burn):")
        emit("")
        head = ["shape", "pass", "inputs"] + [IMPL_TITLES[i] for i in impls] + ["PyTorch"]
        head += ["burn-xent / burn-nn"] if "burn-nn" in impls else []
        head += ["burn-xent / PyTorch"]
        emit("| " + " | ".join(head) + " |")
        emit("|" + "---|" * len(head))
        for shape in SHAPES[loss]:
            for mode, short in MODES.items():
                got = {i: burn_mem.get((loss, shape, mode, i)) for i in impls}
                tm = torch_mem.get((loss, shape, mode))
                if all(v is None for v in got.values()) and tm is None:
                    continue
                rss = {i: (g["rss_extra_bytes"] if g else None) for i, g in got.items()}
                for imp, g in got.items():
                    if g:
                        gap = abs(g["rss_extra_bytes"] - g["alloc_extra_bytes"])
                        if gap > worst_gap[0]:
                            worst_gap = (gap, f"{loss} {shape} {mode} {imp}")
                inputs = next((g["input_bytes"] for g in got.values() if g), None)
                row = [shape.replace("x", "×"), short, mib(inputs)] + [mib(rss[i]) for i in impls] + [mib(tm)]
                if "burn-nn" in impls:
                    row.append(ratio(rss["burn-xent"], rss["burn-nn"], 2**20 / 10))
                row.append(ratio(rss["burn-xent"], tm, 2**20 / 10))
                emit("| " + " | ".join(row) + " |")
        emit("")
    linear_tables(results, emit)
    emit(f"Burn's resident-set numbers and its counting allocator's (`alloc_extra_bytes` in `memory.json`) "
         f"differ by at most {worst_gap[0] / 2**20:.1f} MiB, in `{worst_gap[1]}`. Where they differ, the "
         "allocator counts a zero-filled gradient (`calloc`) of which the kernel maps only the pages "
         "written: NLL's gradient is zero but for one element per row.")
    return "\n".join(lines)


def linear_tables(results, emit):
    """Linear cross-entropy (`tools/bench_all.sh`'s linear step): the fused path's medians on
    each CPU backend, the composite path's memory, PyTorch's eager `cross_entropy(linear(…))`."""
    fused = load_json(os.path.join(results, "linear_fused.json"), [])
    composite = load_json(os.path.join(results, "linear_composite.json"), [])
    torch = load_json(os.path.join(results, "torch-linear.json"), {"times": [], "memory": []})
    if not fused:
        return
    key = lambda shape: "x".join(map(str, shape))
    torch_t = {key(t["shape"]): t["median_ms"] for t in torch["times"]}
    torch_m = {key(m["shape"]): m["rss_extra_bytes"] for m in torch["memory"]}
    fused_by = {(r["shape"], r["backend"]): r for r in fused}
    comp_by = {r["shape"]: r for r in composite if r["backend"] == "ndarray"}
    emit("### Linear cross-entropy (`linear_cross_entropy`)")
    emit("")
    emit("Forward + backward, hidden `[N, D]`, weight `[D, V]`, bias, mean loss; median ms of 3 "
         "(the composite path: one run); extra memory beyond the inputs and the three gradients, "
         "MiB (Burn: counting allocator; PyTorch: resident set):")
    emit("")
    head = ["N × D × V", "fused ndarray", "fused Flex", "PyTorch", "fused ndarray / PyTorch",
            "fused Flex / PyTorch", "composite ndarray", "fused extra", "composite extra",
            "PyTorch extra", "fused / composite extra"]
    emit("| " + " | ".join(head) + " |")
    emit("|" + "---|" * len(head))
    field = lambda record, name: record[name] if record else None
    for shape in dict.fromkeys(r["shape"] for r in fused):
        nd = fused_by.get((shape, "ndarray"))
        nd_ms, fx_ms = field(nd, "median_ms"), field(fused_by.get((shape, "flex")), "median_ms")
        comp, tt = comp_by.get(shape), torch_t.get(shape)
        extra, comp_extra = field(nd, "extra_bytes"), field(comp, "extra_bytes")
        row = [shape.replace("x", " × "), ms(nd_ms), ms(fx_ms), ms(tt), ratio(nd_ms, tt),
               ratio(fx_ms, tt), ms(field(comp, "median_ms")), mib(extra), mib(comp_extra),
               mib(torch_m.get(shape)), ratio(extra, comp_extra)]
        emit("| " + " | ".join(row) + " |")
    emit("")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    p.add_argument("--torch", help="PyTorch's results (default target/bench-results/torch.json)")
    p.add_argument("--write", help="a Markdown file whose <!-- tables:begin/end --> region is replaced")
    args = p.parse_args()
    text = tables(args.target, args.torch)
    if not args.write:
        print(text)
        return
    with open(args.write) as f:
        doc = f.read()
    new, count = re.subn(r"(<!-- tables:begin -->\n).*?(<!-- tables:end -->)",
                         lambda m: m.group(1) + text + "\n" + m.group(2), doc, flags=re.S)
    if count != 1:
        sys.exit(f"{args.write}: expected one <!-- tables:begin --> … <!-- tables:end --> region")
    with open(args.write, "w") as f:
        f.write(new)
    print(f"updated {args.write}")


if __name__ == "__main__":
    main()
