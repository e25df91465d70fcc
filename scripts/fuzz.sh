#!/usr/bin/env bash
# Seeds the fuzz corpora from the protocol fixtures and the deployment's own files, then runs
# each fuzz target for SECONDS (default 60) on the stable toolchain. See FUZZING.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # every target when none is named
#
# FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS="-jobs=1 -print_final_stats=1").
# Exits 1 when a target found a crash or a timeout; its input is in fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "$0")/.."

ALL_TARGETS=(whatsapp twilio telegram bluebubbles webchat config)
seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${ALL_TARGETS[@]}")
fi
for target in "${targets[@]}"; do
    if [[ ! -f fuzz/fuzz_targets/$target.rs ]]; then
        echo "unknown target $target; one of: ${ALL_TARGETS[*]}" >&2
        exit 2
    fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The shared fixtures when this checkout sits beside them, and the copy in tests/.
fixture_dirs=()
for dir in ../shared/protocols/fixtures tests/fixtures/protocols; do
    [[ -d $dir ]] && fixture_dirs+=("$dir")
done

# seed TARGET NAME MODE FILE [SEPARATOR]: writes MODE, SEPARATOR, then FILE's bytes.
seed() {
    local target=$1 name=$2 mode=$3 file=$4 separator=${5:-}
    { printf '%s%b' "$mode" "$separator"; cat "$file"; } >"fuzz/corpus/$target/$name"
}

# Channel targets: each fixture with the right credentials (mode 0, reaches parse) and as a
# raw request without them (mode 1: no query, no headers, the body).
channel_seeds() {
    local target=$1 pattern=$2 dir file name
    for dir in "${fixture_dirs[@]}"; do
        for file in "$dir"/$pattern; do
            [[ -f $file ]] || continue
            name=$(basename "$file")
            seed "$target" "signed-$name" 0 "$file"
            seed "$target" "raw-$name" 1 "$file" '\n\n'
        done
    done
}

config_seeds() {
    local file
    seed config concierge.toml 0 concierge.toml
    for file in channels/*.toml examples/channels/*.toml; do
        [[ -f $file ]] || continue
        seed config "channel-$(basename "$file")" 1 "$file"
    done
    for file in prompts/*.md; do
        [[ -f $file ]] || continue
        if [[ $(basename "$file") == faq.md ]]; then
            seed config faq.md 2 "$file"
        else
            seed config "agent-$(basename "$file")" 3 "$file"
        fi
    done
}

for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    case $target in
        whatsapp) channel_seeds whatsapp 'whatsapp_*.json' ;;
        twilio) channel_seeds twilio 'twilio_*.form' ;;
        telegram) channel_seeds telegram 'telegram_*.json' ;;
        bluebubbles) channel_seeds bluebubbles 'bluebubbles_*.json' ;;
        webchat) ;; # no platform fixture: its seeds are all in tests/fixtures/fuzz/webchat/
        config) config_seeds ;;
    esac
    # The committed seeds and past crashes, as they are (they carry their mode byte).
    if [[ -d tests/fixtures/fuzz/$target ]]; then
        cp tests/fixtures/fuzz/"$target"/* "fuzz/corpus/$target/"
    fi
done

failed=()
for target in "${targets[@]}"; do
    log=fuzz/artifacts/$target/fuzz.log
    echo "== $target: ${seconds}s, $(find "fuzz/corpus/$target" -type f | wc -l) inputs in fuzz/corpus/$target"
    # --sanitizer none: AddressSanitizer needs nightly's -Zsanitizer; safe Rust does not need
    # it to find panics, overflows (debug assertions are on), hangs and runaway memory.
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    if cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 ${FUZZ_ARGS:-} 2>&1 | tee "$log"; then
        :
    else
        failed+=("$target")
    fi
    grep -E '(DONE|^stat::number_of_executed_units|^stat::peak_rss_mb)' "$log" || true
    echo "corpus: $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "findings in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
