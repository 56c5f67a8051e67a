#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the VM state stream fuzzer (tests/fuzz/
# fuzz_stream.c) with clang, libFuzzer, ASan and UBSan into build-fuzz/,
# and runs it for SECONDS (default 60) on a temporary copy of the
# checked-in seed corpus, which it never writes to. Exits non-zero when the
# fuzzer finds a crash, a leak, undefined behaviour or an input slower
# than the timeout; the input that did it is kept in build-fuzz/artifacts/.
# Longer runs and reproducing a finding: tests/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
case $seconds in
'' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac

# clang with its libFuzzer runtime, and the libraries tern links against.
missing=()
command -v clang >/dev/null || missing+=(clang)
for p in libclang-rt-14-dev libxxhash-dev libfdt-dev libjansson-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	echo "== installing: ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

make -j"$(nproc)" build-fuzz/fuzz_stream

work=$(mktemp -d "${TMPDIR:-/tmp}/tern-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" build-fuzz/artifacts
cp tests/fuzz/corpus/* "$work/corpus/"

echo "== fuzzing the state stream decoder for ${seconds}s"
# -timeout: an input taking this long is a hang. New inputs go to the
# temporary corpus only; crashes to build-fuzz/artifacts/.
status=0
build-fuzz/fuzz_stream -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-dict=tests/fuzz/stream.dict -use_value_profile=1 -print_final_stats=1 \
	-artifact_prefix=build-fuzz/artifacts/ "$work/corpus" 2>"$work/log" || status=$?
grep -E '^#[0-9]+.*(DONE|pulse)|^stat::|ERROR|SUMMARY|Test unit written' "$work/log" | tail -25 || true
if ((status != 0)); then
	echo "== fuzz_stream FAILED (exit $status); full log follows" >&2
	tail -100 "$work/log" >&2
	exit 1
fi
echo "== fuzzing found nothing"
