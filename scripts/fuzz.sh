#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) in build-fuzz and runs them.
#   scripts/fuzz.sh [--long|--build] [TARGET...]
# Short (default): 30 s per target. --long: until 10^7 executions or 1 hour per target. --build: only
# configure and build (scripts/test.sh then runs the short runs as the meson suite 'fuzz').
# TARGET: safetensors hf_config llama2c gguf tok_spm tok_llama2c tok_bpe config_yaml config_override
# taskfile rotset results wstore (default: all). Prints per target the executions, crashes and the
# crash file, then a summary line; exits non-zero when any target crashed.
# Environment: BUILD (default build-fuzz), FUZZ_SECONDS (overrides the time per target),
# FUZZ_ARGS (extra libFuzzer arguments, e.g. "-jobs=2 -workers=2" or "-fork=2 -ignore_crashes=1").
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build-fuzz}
ALL="safetensors hf_config llama2c gguf tok_spm tok_llama2c tok_bpe config_yaml config_override taskfile rotset results wstore"
long=0 build_only=0
targets=()
for a in "$@"; do
  case "$a" in
    --long) long=1 ;;
    --build) build_only=1 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $a" >&2; exit 2 ;;
    *) case " $ALL " in *" $a "*) targets+=("$a") ;; *) echo "fuzz.sh: unknown target $a (one of: $ALL)" >&2; exit 2 ;; esac ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && read -r -a targets <<<"$ALL"

if ! command -v clang >/dev/null; then echo "fuzz.sh: clang not found (libFuzzer needs clang)" >&2; exit 2; fi
# -fsanitize=fuzzer-no-link instruments the library for coverage (without it libFuzzer sees the
# coverage of the fuzz_*.c files only and mutates blind); the executables add -fsanitize=fuzzer.
opts=(-Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=1
      -Dc_args=-fsanitize=fuzzer-no-link)
if [ -f "$BUILD/build.ninja" ]; then
  meson configure "$BUILD" "${opts[@]}" >/dev/null || exit 2
else
  CC=clang meson setup "$BUILD" "${opts[@]}" >/dev/null || exit 2
fi
ninja -C "$BUILD" $(for t in "${targets[@]}"; do printf 'tests/fuzz/fuzz_%s ' "$t"; done) >/dev/null || {
  echo "fuzz.sh: build failed (ninja -C $BUILD)" >&2; exit 2; }
[ $build_only -eq 1 ] && exit 0

if [ $long -eq 1 ]; then secs=${FUZZ_SECONDS:-3600}; extra=(-runs=10000000)
else secs=${FUZZ_SECONDS:-30}; extra=(); fi
# shellcheck disable=SC2206
extra+=(${FUZZ_ARGS:-})

failed=0 total_execs=0
lines=()
for t in "${targets[@]}"; do
  more=()
  case "$t" in rotset|results|wstore) more=(-detect_leaks=0) ;; esac # HDF5's own leaks (README.md)
  line=$(bash "$ROOT/tests/fuzz/run_fuzz.sh" "$BUILD/tests/fuzz/fuzz_$t" "$t" "$ROOT/tests/fuzz/corpus/$t" \
    "$BUILD/tests/fuzz/work/$t" "$secs" "${more[@]}" "${extra[@]}")
  rc=$?
  printf '%s\n' "$line"
  first=$(printf '%s\n' "$line" | head -n 1)
  e=$(printf '%s' "$first" | sed -n 's/.*executions \([0-9]*\).*/\1/p')
  total_execs=$((total_execs + ${e:-0}))
  [ $rc -ne 0 ] && failed=$((failed + 1))
done
echo "fuzz summary: ${#targets[@]} targets, $failed crashed, $total_execs executions ($([ $long -eq 1 ] && echo long || echo short) run, work dirs under $BUILD/tests/fuzz/work)"
[ $failed -eq 0 ]
