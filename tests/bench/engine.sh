#!/bin/bash
# Engine micro-benchmarks: ns/op natively (median of 5 runs), the audit
# limiter under 1, 2 and 8 threads, then, if valgrind is installed,
# instructions/op per case under callgrind (a fixed iteration count per
# case, only the timed loops collected).
#
#   tests/bench/engine.sh BUILD_DIR [CALLGRIND_ITERS]
#
# BUILD_DIR is the meson build directory (or the tests/bench directory in
# it) holding bench_engine. Prints figures; fails only if the benchmark
# itself fails (never on timing).
# SPDX-License-Identifier: GPL-3.0-or-later

set -u

build=${1:?usage: engine.sh BUILD_DIR [CALLGRIND_ITERS]}
iters=${2:-200}
bin=
for cand in "$build/bench_engine" "$build/tests/bench/bench_engine"; do
	if [ -x "$cand" ]; then
		bin=$cand
		break
	fi
done
if [ -z "$bin" ]; then
	echo "engine.sh: no bench_engine under $build (build it first)" >&2
	exit 1
fi

echo "== engine micro-benchmarks, native (ns/op, median of 5 runs) =="
timeout 600 "$bin" -r 5 || exit 1

echo
echo "== audit limiter, native: 1, 2 and 8 threads (ns/op as each thread sees it) =="
timeout 600 "$bin" --limiter || exit 1

if ! command -v valgrind >/dev/null 2>&1; then
	echo "(valgrind not installed: no instruction counts)"
	exit 0
fi

tmp=$(mktemp -d /tmp/mxf-bench-cg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo
echo "== engine micro-benchmarks, callgrind ($iters iterations per case) =="
if ! timeout 600 valgrind --tool=callgrind --collect-atstart=no \
	--callgrind-out-file="$tmp/cg.out" "$bin" --callgrind "$iters" \
	>"$tmp/cases" 2>"$tmp/valgrind.log"; then
	echo "engine.sh: callgrind run failed:" >&2
	tail -20 "$tmp/valgrind.log" >&2
	exit 1
fi

# One dump per case: "desc: Trigger: Client Request: CASE" and its
# "summary:"/"totals:" line (instructions, Ir).
for f in "$tmp"/cg.out*; do
	awk '/^desc: Trigger: Client Request: / { name = $NF }
	     /^(summary|totals):/ { ir = $2 }
	     END { if (name != "") print name, ir }' "$f"
done >"$tmp/counts"

awk -v iters="$iters" '
	FNR == NR { ir[$1] = $2; next }
	$1 == "CG" { name[++n] = $2; base[n] = $3 }
	END {
		printf "%-24s %12s %12s  %s\n", "case", "instr/op", "net instr/op", "(net = instr/op - base)"
		for (i = 1; i <= n; i++) {
			c = name[i]
			v = ir[c] / iters
			if (base[i] != "-") {
				printf "%-24s %12.1f %12.1f  base %s\n", c, v, v - ir[base[i]] / iters, base[i]
			} else {
				printf "%-24s %12.1f %12s\n", c, v, "-"
			}
		}
	}' "$tmp/counts" "$tmp/cases"
