#!/usr/bin/env bash
# The one command the GPU machine runs (issue 11): environment, the GPU tests, compute-sanitizer, the
# benchmark sweep and a determinism check, each under a hard deadline, within 6 minutes in all.
#
#   bash bench/gpu_check.sh                 # everything; results under $OUT (see bench/gpu_check.py)
#   bash bench/gpu_check.sh --rerun         # only what failed in the run whose files are in --previous
#                                           # (default .gpu_check/previous), plus the headline benchmarks
#   bash bench/gpu_check.sh --dry-run       # on a machine without a GPU: resolve every step, run stubs
#   bash bench/gpu_check.sh --deadlines     # print each step's deadline in seconds and stop
#
# The device tool's exact invocation is in bench/GPU.md. Each step runs under `timeout` (SIGINT at its
# deadline, SIGKILL 3 s later), so a hang costs that step alone; the summary table is printed last.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ---- deadlines (seconds): with a KILL_AFTER each, their sum stays under 350 s, which leaves the
# bookkeeping 10 s of the 6 minutes (tests/test_gpu_check.py checks it) -----------------------------------
DEADLINE_ENVIRONMENT=35
DEADLINE_PYTEST=115
DEADLINE_MEMCHECK=30
DEADLINE_RACECHECK=20
DEADLINE_BENCH=105
DEADLINE_DETERMINISM=20
STEPS="environment pytest sanitizer-memcheck sanitizer-racecheck bench determinism"
KILL_AFTER=3

MODE=full
DRY=0
PREVIOUS="$ROOT/.gpu_check/previous"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --rerun) MODE=rerun ;;
        --previous) PREVIOUS="$2"; shift ;;
        --deadlines)
            echo "environment $DEADLINE_ENVIRONMENT"; echo "pytest $DEADLINE_PYTEST"
            echo "sanitizer-memcheck $DEADLINE_MEMCHECK"; echo "sanitizer-racecheck $DEADLINE_RACECHECK"
            echo "bench $DEADLINE_BENCH"; echo "determinism $DEADLINE_DETERMINISM"; echo "kill-after $KILL_AFTER"
            exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

OUT="${OUT:-$ROOT/.gpu_check/out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"  # scratch that must not land in $OUT (the device tool returns 8 files at most)
PY="${PYTHON:-python3}"
if [ "$MODE" = rerun ] && [ ! -f "$PREVIOUS/state.json" ]; then
    echo "gpu_check.sh: --rerun needs the previous run's files in $PREVIOUS (state.json missing)" >&2
    exit 2
fi
[ "$MODE" = rerun ] || PREVIOUS=""
SITE=/tmp/site
[ "$DRY" = 1 ] && SITE="$WORK/site"
export ROOT OUT WORK PY MODE DRY PREVIOUS SITE KILL_AFTER DEADLINE_PYTEST DEADLINE_BENCH
INNER_GRACE=8
export INNER_GRACE  # pytest and the benchmark get their own SIGINT this much earlier, to write their files
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-/tmp/cupy_kernel_cache}"  # one NVRTC cache for every pytest worker

# helper SUBCOMMAND ARGS...: bench/gpu_check.py, with --previous on a rerun and --stub on a dry run
helper() {
    local command=$1
    shift
    local extra=()
    [ -n "$PREVIOUS" ] && extra+=(--previous "$PREVIOUS")
    [ "$DRY" = 1 ] && extra+=(--stub)
    "$PY" bench/gpu_check.py "$command" --out "$OUT" --mode "$MODE" "${extra[@]}" "$@"
}

exec > >(tee -a "$OUT/log.txt") 2>&1
echo "gpu_check.sh: mode $MODE, dry run $DRY, output $OUT, started $(date -u +%FT%TZ)"

# run_step NAME DEADLINE FUNCTION [ARGS...]: runs FUNCTION in its own shell under the deadline (timeout
# signals the whole process group) and records its status and seconds in state.json.
run_step() {
    local name=$1 deadline=$2
    shift 2
    echo
    echo "==== [$name] deadline ${deadline} s"
    local start=$SECONDS status
    timeout --signal=INT --kill-after="$KILL_AFTER" "$deadline" bash -c '"$@"' step "$@"
    status=$?
    if [ $status -eq 124 ] || [ $status -eq 137 ]; then echo "==== [$name] TIMED OUT after ${deadline} s"; fi
    echo "==== [$name] exit status $status after $((SECONDS - start)) s"
    "$PY" bench/gpu_check.py record --out "$OUT" -- "$name" "$status" "$((SECONDS - start))" "$deadline"
    return 0
}

# ---- 1. environment, and the carried wheels ----------------------------------------------------------------
step_environment() {
    local wheels=(.whl/*.whl) missing=0
    for name in array_api_compat liger_kernel cut_cross_entropy; do
        ls .whl/${name}-*.whl >/dev/null 2>&1 || { echo "missing wheel in .whl/: $name (bench/GPU.md)"; missing=1; }
    done
    if [ "$DRY" = 1 ]; then  # CI has no .whl/: a dry run only says what a GPU run would lack
        echo "would install: ${wheels[*]} into $SITE"
    else
        [ $missing = 0 ] || return 1
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "${wheels[@]}" || return 1
        nvidia-smi || true
    fi
    if ! "$PY" -c "import lossk._kernels.cuda" 2>/dev/null; then
        echo "lossk._kernels is not importable from the checkout: installing lossk in editable mode"
        [ "$DRY" = 1 ] || "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || return 1
    fi
    helper environment
}

# ---- 2. pytest -m gpu ----------------------------------------------------------------------------------------
step_pytest() {
    local arguments="$WORK/pytest_arguments.txt" status
    helper pytest-args -- "$arguments"
    status=$?
    [ $status -eq 3 ] && { echo "nothing failed before: no test to rerun"; return 0; }
    [ $status -ne 0 ] && return $status
    local options=(-m gpu -o addopts= -p no:cacheprovider -q -rf "--junitxml=$OUT/junit.xml")
    "$PY" -c "import xdist" 2>/dev/null && options+=(-n 8)  # NVRTC compiles in 8 processes at once
    "$PY" -c "import pytest_timeout" 2>/dev/null && options+=(--timeout 60)
    local tests
    mapfile -t tests <"$arguments"  # node ids (or the test file), one per line
    if [ "$DRY" = 1 ]; then
        "$PY" -m pytest --collect-only "${tests[@]}" -m gpu -o addopts= -p no:cacheprovider -q | tail -1
        [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
        echo "would run: $PY -m pytest <${#tests[@]} test ids> ${options[*]}"
        helper stub-junit
        status=1  # the stub holds one failure
    else
        PYTHONUNBUFFERED=1 timeout --signal=INT "$((DEADLINE_PYTEST - INNER_GRACE))" \
            "$PY" -m pytest "${tests[@]}" "${options[@]}"
        status=$?
    fi
    helper failures
    return $status
}

# ---- 3. compute-sanitizer --------------------------------------------------------------------------------------
step_sanitizer() {
    local tool=$1 cases
    cases=$(helper sanitize-cases) || return 1
    [ -z "$cases" ] && { echo "nothing failed before"; return 0; }
    local command=(compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20)
    [ "$tool" = memcheck ] && command+=(--leak-check no)
    command+=("$PY" bench/gpu_check.py sanitize --out "$OUT" -- $cases)
    echo "---- $tool: $cases" >>"$OUT/sanitizer.txt"
    if [ "$DRY" = 1 ]; then
        echo "would run: ${command[*]}" | tee -a "$OUT/sanitizer.txt"
        command -v compute-sanitizer >/dev/null || echo "(compute-sanitizer is not on this machine's PATH)"
        return 0
    fi
    command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found" | tee -a "$OUT/sanitizer.txt"; return 1; }
    "${command[@]}" >"$WORK/$tool.txt" 2>&1
    local status=$?
    tail -c 400000 "$WORK/$tool.txt" >>"$OUT/sanitizer.txt"
    tail -20 "$WORK/$tool.txt"
    if [ $status -ne 0 ]; then
        grep -m 20 -E "^========= (Invalid|Race|Error|Program hit|Uninitialized|.*hazard)" "$WORK/$tool.txt" \
            | sed "s/^/SANITIZER $tool: /" >>"$OUT/failures.txt"
        [ $status -eq 124 ] || echo "SANITIZER $tool: exit status $status" >>"$OUT/failures.txt"
    fi
    return $status
}

# ---- 4. benchmarks -----------------------------------------------------------------------------------------------
step_bench() {
    local options=(--json "$OUT/bench.json" --png "$OUT/bench.png")
    [ "$MODE" = rerun ] && options+=(--headline)
    [ "$DRY" = 1 ] && options+=(--dry-run)
    PYTHONUNBUFFERED=1 timeout --signal=INT "$((DEADLINE_BENCH - INNER_GRACE))" \
        "$PY" bench/gpu_benchmark.py "${options[@]}"
}

# ---- 5. determinism -----------------------------------------------------------------------------------------------
step_determinism() {
    helper determinism
}

export -f helper step_environment step_pytest step_sanitizer step_bench step_determinism

run_step environment "$DEADLINE_ENVIRONMENT" step_environment
run_step pytest "$DEADLINE_PYTEST" step_pytest
run_step sanitizer-memcheck "$DEADLINE_MEMCHECK" step_sanitizer memcheck
run_step sanitizer-racecheck "$DEADLINE_RACECHECK" step_sanitizer racecheck
run_step bench "$DEADLINE_BENCH" step_bench
run_step determinism "$DEADLINE_DETERMINISM" step_determinism

touch "$OUT/failures.txt" "$OUT/sanitizer.txt"
"$PY" bench/gpu_check.py summary --out "$OUT"
rm -rf "$WORK"
echo
echo "Next (bench/GPU.md): copy these files into .gpu_check/previous/, then run bench/gpu_check.sh --rerun."
exec 1>&- 2>&-  # let tee finish log.txt before the device tool collects $OUT
sleep 1
