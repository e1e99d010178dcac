#!/usr/bin/env bash
# fuzz/run.sh [SECONDS]: runs every cargo-fuzz (libFuzzer) target of otpgated
# for SECONDS each (default 60), starting from the seed corpus committed in
# fuzz/corpus/TARGET. Exits non-zero if any target crashes; the crashing
# input is then in fuzz/artifacts/TARGET/ (keep it: copy it into the seed
# corpus and add a regression test next to the code that crashed).
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them. cargo-fuzz itself is installed
# if missing (`cargo install cargo-fuzz`, about 25 s on 2 cores).
# New inputs found go to fuzz/work/TARGET, never into the committed seeds.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
case "$seconds" in
  ''|*[!0-9]*) echo "usage: fuzz/run.sh [SECONDS]" >&2; exit 2 ;;
esac
targets=(config record import normalise journal)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz"
  started=$(date +%s)
  cargo install --locked cargo-fuzz
  echo "fuzz/run.sh: cargo-fuzz installed in $(( $(date +%s) - started )) s"
fi

export RUSTC_BOOTSTRAP=1
# Builds every target (release, debug assertions, AddressSanitizer).
cargo fuzz build

failed=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  log="work/$t.log"
  echo "fuzz/run.sh: $t for ${seconds} s"
  if cargo fuzz run "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -max_len=16384 \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n 1 || true)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || true)
    echo "fuzz/run.sh: $t ok: ${runs:-?} (${cov:-no coverage line}), corpus $(ls "work/$t" | wc -l) inputs"
  else
    echo "fuzz/run.sh: $t FAILED; the end of its log ($log):" >&2
    tail -n 40 "$log" >&2
    ls -l "artifacts/$t" >&2 || true
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz/run.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz/run.sh: all ${#targets[@]} targets ran ${seconds} s each without a crash"
