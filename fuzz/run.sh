#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60), one after another.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Corpus: fuzz/corpus/<target>/ (grows, git-ignored) plus the committed seeds and regression
# inputs. Dictionary: fuzz/bits.dict. A crash is saved under fuzz/artifacts/<target>/; the
# script keeps going with the other targets, then lists every crash and exits 1.
# Per-target logs (with libFuzzer's final stats) go to fuzz/artifacts/<target>.log.
#
# Environment: JOBS=N runs N targets at a time (default 1); FUZZ_ARGS adds libFuzzer flags.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
# libFuzzer needs nightly-only flags; without a nightly toolchain, let stable pretend.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi

# Build flags, the same for `build` and `run` (a mismatch would rebuild): release code
# without debug assertions (std's debug-only precondition checks cost a fifth of the
# throughput and guard unsafe code safe Rust cannot misuse); overflow checks stay on through
# fuzz/Cargo.toml, since arithmetic overflow is a bug class the fuzzers do find.
build_flags=(-O)
# The C++ compiler (through the cc crate) would instrument libFuzzer itself with ASan because
# the Rust code is; libFuzzer's own bookkeeping then ran at a fraction of its speed. Only the
# code under test needs the sanitizer, as with clang's -fsanitize=fuzzer.
export CXXFLAGS="${CXXFLAGS:-} -fno-sanitize=address"

"${fuzz[@]}" build "${build_flags[@]}"

# Stack-use-after-return detection puts every frame on a fake heap stack; safe Rust cannot
# have that bug, and it cost a third of the throughput (fuzz/README.md, "Speed").
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_stack_use_after_return=0}"

# Longest input per target: a request head, a range or a short operation list fits in far
# less than libFuzzer's 4 KiB default, and shorter inputs run faster.
max_len() {
    case "$1" in
        content_range) echo 128 ;;
        session_machine) echo 512 ;;
        # A whole short run's journal (the `run` seed) is about 10 KiB.
        journal) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

run_one() {
    local target="$1"
    mkdir -p "corpus/$target" "artifacts/$target"
    local inputs=("corpus/$target" "seeds/$target")
    [ -d "regressions/$target" ] && inputs+=("regressions/$target")
    # -timeout: one input may take at most 30 s (the connection target bounds itself to 10 s).
    # shellcheck disable=SC2086
    "${fuzz[@]}" run "${build_flags[@]}" "$target" "${inputs[@]}" -- \
        -dict=bits.dict \
        -max_total_time="$seconds" \
        -max_len="$(max_len "$target")" \
        -timeout=30 \
        -rss_limit_mb=4096 \
        -print_final_stats=1 \
        ${FUZZ_ARGS:-} \
        >"artifacts/$target.log" 2>&1
}

status=0
rm -f artifacts/.failed
mkdir -p artifacts
jobs="${JOBS:-1}"
running=0
for target in "${targets[@]}"; do
    echo "fuzzing $target for ${seconds}s"
    (run_one "$target" || echo "$target" >>"artifacts/.failed") &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

printf '\n%-16s %12s %12s %8s\n' target executions exec/s cov
for target in "${targets[@]}"; do
    log="artifacts/$target.log"
    execs=$(grep -o 'stat::number_of_executed_units:[[:space:]]*[0-9]*' "$log" | tail -1 | awk '{print $2}')
    rate=$(grep -o 'stat::average_exec_per_sec:[[:space:]]*[0-9]*' "$log" | tail -1 | awk '{print $2}')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    printf '%-16s %12s %12s %8s\n' "$target" "${execs:--}" "${rate:--}" "${cov:--}"
done

if [ -f artifacts/.failed ]; then
    echo
    while read -r target; do
        echo "CRASH in $target (log: fuzz/artifacts/$target.log):"
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "artifacts/$target.log" | head -5 | sed 's/^/    /'
        for artifact in $(grep -o 'Test unit written to [^ ]*' "artifacts/$target.log" | awk '{print $5}'); do
            echo "    artifact: $artifact"
        done
    done <artifacts/.failed
    rm -f artifacts/.failed
    status=1
fi
exit "$status"
