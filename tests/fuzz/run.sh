#!/usr/bin/env bash
# Builds the fuzz harnesses with clang + AddressSanitizer + UBSan + libFuzzer
# in a build directory of their own and runs each for SECONDS (default 60)
# from the committed seed corpus. Fails on any finding; a crashing input is
# saved as tests/fuzz/crashes/<harness>-crash-<sha1> (see README.md).
#
#   tests/fuzz/run.sh [SECONDS]
#
# Environment: MXF_FUZZ_BUILD (build dir, default $TMPDIR/mxfilter-fuzz).
# SPDX-License-Identifier: GPL-3.0-or-later

set -euo pipefail

secs="${1:-60}"
case "$secs" in
	''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fuzz="$src/tests/fuzz"
build="${MXF_FUZZ_BUILD:-${TMPDIR:-/tmp}/mxfilter-fuzz}"
harnesses=(rewrite config)

command -v clang >/dev/null || { echo "fuzz: clang not found" >&2; exit 1; }

echo "==== fuzz: build ($build)"
rm -rf "$build"
CC=clang meson setup "$build" "$src" -Db_sanitize=address,undefined \
	-Db_lundef=false -Dbuildtype=debugoptimized >"$build.setup.log" 2>&1 || {
	tail -n 40 "$build.setup.log"; exit 1; }
targets=()
for h in "${harnesses[@]}"; do
	targets+=("tests/fuzz/fuzz_$h")
done
if ! ninja -C "$build" "${targets[@]}" >"$build.ninja.log" 2>&1; then
	tail -n 40 "$build.ninja.log"
	echo "fuzz: harnesses did not build (is subdir('fuzz') in tests/meson.build," \
	     "and does clang link -fsanitize=fuzzer? apt-get install libclang-rt-14-dev)" >&2
	exit 1
fi

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$fuzz/crashes"
work="$(mktemp -d "${TMPDIR:-/tmp}/mxfilter-fuzz-corpus.XXXXXX")"
trap 'rm -rf "$work"' EXIT

status=0
summary=()
for h in "${harnesses[@]}"; do
	echo "==== fuzz: $h for ${secs} s"
	# New inputs go to a scratch corpus, the committed seeds stay as they are.
	mkdir -p "$work/$h"
	log="$work/$h.log"
	rc=0
	timeout -k 10 $((secs + 120)) "$build/tests/fuzz/fuzz_$h" \
		-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
		-print_final_stats=1 -artifact_prefix="$fuzz/crashes/$h-" \
		"$work/$h" "$fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
	execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
	rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
	cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)"
	if [ "$rc" -ne 0 ]; then
		status=1
		echo "fuzz: $h FAILED (exit $rc); last lines:"
		grep -E 'invariant violated|ERROR:|runtime error|SUMMARY|Test unit written' "$log" | head -n 20 || true
		tail -n 5 "$log"
		summary+=("$h: FAILED after ${execs:-?} executions")
	else
		summary+=("$h: ${execs:-?} executions in ${secs} s (${rate:-?}/s, ${cov:-cov ?}), no finding")
	fi
done

echo "==== fuzz: summary"
for l in "${summary[@]}"; do
	echo "  $l"
done
exit "$status"
