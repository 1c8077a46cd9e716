#!/usr/bin/env bash
# CI step: a bounded fuzzing pass over every target (called by .ci/run).
#
# Installs cargo-fuzz when missing, builds all targets (nightly when installed, otherwise
# stable with RUSTC_BOOTSTRAP=1) and runs each for FUZZ_SECONDS (default 45 s: seven targets,
# about 5.25 minutes of fuzzing). A crash fails the step; fuzz/run.sh prints the panic and
# the artifact's path (fuzz/artifacts/<target>/crash-...). To turn it into a regression,
# see fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

seconds="${FUZZ_SECONDS:-45}"
echo "== fuzzing every target for ${seconds}s"
bash fuzz/run.sh "$seconds"
