#!/usr/bin/env bash
# Runs every benchmark behind BENCHMARKS.md and rewrites its tables:
#   bash tools/bench_all.sh            # the full run (about 40 minutes on 2 cores)
#   bash tools/bench_all.sh --quick    # timings only: criterion's --quick and PyTorch's
#                                      # --quick on the small shapes (about 2 minutes); prints
#                                      # the tables instead of writing BENCHMARKS.md (it does
#                                      # replace the full run's criterion results in target/)
# Extra environment (BURN_XENT_BENCH_SHAPES, BURN_XENT_BENCH_BACKENDS, ...) is passed on.
# The load average before and after each step goes to target/bench-results/load.log.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
if [ "${1:-}" = "--quick" ]; then
  quick=(--quick)
  export BURN_XENT_BENCH_SHAPES="${BURN_XENT_BENCH_SHAPES:-small}"
fi
# lavapipe (the software Vulkan driver) warns on every start without a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"

mkdir -p target/bench-results
log=target/bench-results/load.log
load() { echo "$(date -Is) $1: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"; }

cargo bench --no-run
# Fresh criterion results, so the tables hold this run only.
rm -rf target/criterion/cross_entropy_* target/criterion/nll_loss_* \
  target/criterion/bce_* target/criterion/bce_with_logits_*

load "start, cargo bench --bench losses ${quick[*]}"
time cargo bench --bench losses -- "${quick[@]}"
if [ ${#quick[@]} -gt 0 ]; then
  quick_json=target/bench-results/torch-quick.json
  load "after losses; python tools/bench_torch.py --quick --no-memory --no-bandwidth"
  time python tools/bench_torch.py --quick --no-memory --no-bandwidth --json "$quick_json"
  load "end"
  python tools/bench_tables.py --torch "$quick_json"
  exit 0
fi
load "after losses; python tools/bench_torch.py"
time python tools/bench_torch.py
load "after bench_torch; cargo bench --bench memory"
time cargo bench --bench memory
# Linear cross-entropy (benches/linear_cross_entropy.rs): the fused path on both CPU backends,
# medians of 3; the composite path once, for its memory (tens of seconds a run at 128k).
lce=target/bench-results
load "after memory; linear_cross_entropy fused"
time BURN_XENT_LCE_IMPLS=fused cargo bench --bench linear_cross_entropy -- --no-criterion
cp "$lce/linear_cross_entropy.json" "$lce/linear_fused.json"
load "after linear fused; linear_cross_entropy composite (ndarray, one run)"
time BURN_XENT_LCE_IMPLS=composite BURN_XENT_LCE_RUNS=1 BURN_XENT_LCE_WARM_UP=0 \
  BURN_XENT_LCE_BACKENDS=ndarray cargo bench --bench linear_cross_entropy -- --no-criterion
cp "$lce/linear_cross_entropy.json" "$lce/linear_composite.json"
load "after linear composite; python tools/bench_torch.py --losses linear_cross_entropy"
time python tools/bench_torch.py --losses linear_cross_entropy --runs 3 --time 0 --warm-up 0 \
  --no-bandwidth --json "$lce/torch-linear.json"
load "end"
python tools/bench_tables.py --write BENCHMARKS.md
