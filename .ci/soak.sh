#!/usr/bin/env bash
# The 2-minute soak of benches/bounds.rs: the reference client (`bitsmock upload
# --concurrency 16`) through the `hostile` profile, batch after batch, checking every committed
# file byte for byte, that no temp file is left, and that the server's RSS stays flat. Runs
# the unoptimized build `cargo test` already made; exits non-zero if a bound is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS="${SOAK_SECONDS:-120}" cargo test --locked --bench bounds -- soak
