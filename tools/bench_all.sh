#!/usr/bin/env bash
# Runs every benchmark behind BENCHMARKS.md and rewrites its tables:
#   bash tools/bench_all.sh            # the full run (about 40 minutes on 2 cores)
#   bash tools/bench_all.sh --quick    # criterion's --quick, PyTorch's --quick, small shapes
# Extra environment (BURN_XENT_BENCH_SHAPES, BURN_XENT_BENCH_BACKENDS, ...) is passed on.
# The load average before and after each step goes to target/bench-results/load.log.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
torch_quick=()
if [ "${1:-}" = "--quick" ]; then
  quick=(--quick)
  torch_quick=(--quick)
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
load "after losses; python tools/bench_torch.py ${torch_quick[*]}"
time python tools/bench_torch.py "${torch_quick[@]}"
load "after bench_torch; cargo bench --bench memory"
time cargo bench --bench memory
load "end"
python tools/bench_tables.py --write BENCHMARKS.md
