#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Server benchmarks: knotd with the built module on 127.0.0.1.

One knotd serves four zones whose names have the same length (knotd's own
lookup cost depends on the names: www.plain.test vs www.enrolled.test put
~200 instructions per query of knotd's own into the A comparison):
  enrolled.test   (A) module: mod-mxfilter, legacy MX at the apex and at sub
  baseline.test   (B) "plain": identical zone data, not enrolled
  filtered.test   (C) "compliant": not enrolled, holds the filtering set
  conforms.test   (D) enrolled and already compliant (the module's cost
                      when there is nothing to rewrite)

Some instruction-count cases change only the module on baseline.test, so
that the comparison is the same query to the same zone in the same zone
set (knotd's zone and name lookups cost differently for other names):
mod-mxfilter, or mod-hookfloor with 1, 2 or 3 hooks that do nothing
(tests/bench/hookfloor.c, built next to the module: HOOKFLOOR_SO or
BUILD/tests/bench/hookfloor.so), which shows knotd's own cost of a zone
query plan, the floor under the module's cost for an A query.

1. Throughput (noisy): dnsperf rounds interleaved A/B/A/B, UDP and TCP;
   median QPS of each side and the ratio.
     (a)  www.enrolled.test A   vs  www.baseline.test A
     (b)  enrolled.test MX      vs  filtered.test MX      (apex)
          sub.enrolled.test MX  vs  sub.filtered.test MX  (subdomain)
2. Instructions per query (deterministic): knotd under valgrind
   --tool=callgrind, one warm-up query, callgrind_control -z (start-up
   dropped), N queries of one kind (dnsperf -n 1 -Q 1500 over a file of N
   lines), knotc stop, the "totals:" line; minus a run without queries that
   idles as long; divided by N.

Prints figures, never fails on them: exit 0 when the measurements ran, 77
(skipped) without knotd, dnsperf or the module, 1 if a run broke (knotd did
not start, queries were lost in the callgrind runs, ...).

    MXFILTER_SO=BUILD/module/mxfilter.so python3 tests/bench/server.py
        [--rounds 4] [--seconds 5] [--queries 3000] [--no-qps] [--no-callgrind]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import knotharness as kh  # noqa: E402

DNSPERF = shutil.which("dnsperf")
VALGRIND = shutil.which("valgrind")
CALLGRIND_ANNOTATE = shutil.which("callgrind_annotate")
CALLGRIND_CONTROL = shutil.which("callgrind_control")

BODY = """
@ MX {apex}
www A 192.0.2.80
mailgate A 192.0.2.25
sub MX {sub}
mx.sub A 192.0.2.26
"""

LEGACY_APEX = "5 mailgate\n@ MX 40 smtp.isp.net."
LEGACY_SUB = "5 mx.sub\nsub MX 40 smtp.isp.net."
FILTER = ("10 france.security-mail.net.\n{owner} MX 20 europe.security-mail.net.")


def hookfloor_so():
    """mod-hookfloor's shared object, or None."""
    so = os.environ.get("HOOKFLOOR_SO")
    if not so and kh.module_so():
        build = os.path.dirname(os.path.dirname(kh.module_so()))
        so = os.path.join(build, "tests", "bench", "hookfloor.so")
    return so if so and os.path.exists(so) else None


HOOKFLOOR_CONF = ("mod-hookfloor:\n  - id: one\n    hooks: 1\n  - id: two\n    hooks: 2\n"
                  "  - id: three\n    hooks: 3\n")


def zones(baseline=None):
    """The four zones; BASELINE changes baseline.test: {"module": id} runs a
    module on it, {"data": "compliant"} gives it the filtering set."""
    baseline = baseline or {}
    legacy = BODY.format(apex=LEGACY_APEX, sub=LEGACY_SUB)
    compliant = BODY.format(apex=FILTER.format(owner="@"),
                            sub=FILTER.format(owner="sub"))
    return [
        kh.Zone("enrolled.test", legacy, module="mod-mxfilter"),
        kh.Zone("baseline.test", compliant if baseline.get("data") == "compliant" else legacy,
                module=baseline.get("module")),
        kh.Zone("filtered.test", compliant),
        kh.Zone("conforms.test", compliant, module="mod-mxfilter"),
    ]


def knotd_args():
    """Keyword arguments for kh.Config: mod-hookfloor when it is built."""
    so = hookfloor_so()
    if not so:
        return {}
    return {"modules": [("mod-hookfloor", so)], "sections": HOOKFLOOR_CONF}


# Query cases: name -> (qname, qtype[, baseline.test variant, see zones()]).
ENROLLED = {"module": "mod-mxfilter"}
COMPLIANT = {"data": "compliant"}
CASES = {
    "A-enrolled": ("www.enrolled.test", "A"),
    "A-plain": ("www.baseline.test", "A"),
    "A-plain-enrolled": ("www.baseline.test", "A", ENROLLED),
    "MX-same-zone-enforced-apex": ("baseline.test", "MX", ENROLLED),
    "MX-same-zone-compliant-apex": ("baseline.test", "MX", COMPLIANT),
    "MX-same-zone-enforced-sub": ("sub.baseline.test", "MX", ENROLLED),
    "MX-same-zone-compliant-sub": ("sub.baseline.test", "MX", COMPLIANT),
    "MX-enforced-apex": ("enrolled.test", "MX"),
    "MX-enforced-sub": ("sub.enrolled.test", "MX"),
    "MX-compliant-apex": ("filtered.test", "MX"),
    "MX-compliant-sub": ("sub.filtered.test", "MX"),
    "MX-enrolled-compliant-apex": ("conforms.test", "MX"),
    "MX-enrolled-compliant-sub": ("sub.conforms.test", "MX"),
    "MX-plain-apex": ("baseline.test", "MX"),
}
FLOOR_CASES = {
    "A-plain-1-empty-hook": ("www.baseline.test", "A", {"module": "mod-hookfloor/one"}),
    "A-plain-2-empty-hooks": ("www.baseline.test", "A", {"module": "mod-hookfloor/two"}),
    "A-plain-3-empty-hooks": ("www.baseline.test", "A", {"module": "mod-hookfloor/three"}),
}

# (label, case, baseline, target ratio)
COMPARISONS = [
    ("(a) A, zone enrolled / not enrolled", "A-plain-enrolled", "A-plain", 1.01),
    ("(b) MX apex, same zone enforced / compliant", "MX-same-zone-enforced-apex",
     "MX-same-zone-compliant-apex", 1.10),
    ("(b) MX sub, same zone enforced / compliant", "MX-same-zone-enforced-sub",
     "MX-same-zone-compliant-sub", 1.10),
    ("    MX apex enforced / compliant (two zones)", "MX-enforced-apex",
     "MX-compliant-apex", None),
    ("    MX sub enforced / compliant (two zones)", "MX-enforced-sub",
     "MX-compliant-sub", None),
    ("    MX apex enrolled-compliant / compliant", "MX-enrolled-compliant-apex",
     "MX-compliant-apex", None),
    ("    MX sub enrolled-compliant / compliant", "MX-enrolled-compliant-sub",
     "MX-compliant-sub", None),
    ("    MX apex enforced / plain (legacy served)", "MX-enforced-apex",
     "MX-plain-apex", None),
    ("    A, enrolled.test / baseline.test", "A-enrolled", "A-plain", None),
]

FLOOR_COMPARISONS = [
    ("    A, 1 empty hook / not enrolled (knotd)", "A-plain-1-empty-hook", "A-plain", None),
    ("    A, 2 empty hooks / not enrolled (knotd)", "A-plain-2-empty-hooks", "A-plain", None),
    ("    A, 3 empty hooks / not enrolled (knotd)", "A-plain-3-empty-hooks", "A-plain", None),
    ("    A, enrolled / 3 empty hooks (module's own)", "A-plain-enrolled",
     "A-plain-3-empty-hooks", None),
]

QPS_PAIRS = [("A-enrolled", "A-plain"),
             ("MX-enforced-apex", "MX-compliant-apex"),
             ("MX-enforced-sub", "MX-compliant-sub")]


def out(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def query_file(directory, case, lines):
    qname, qtype = CASES[case][:2]
    path = os.path.join(directory, "%s.%d.txt" % (case, lines))
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(("%s %s\n" % (qname, qtype)) * lines)
    return path


def dnsperf(port, datafile, extra, timeout):
    cmd = [DNSPERF, "-s", "127.0.0.1", "-p", str(port), "-d", datafile] + extra
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=timeout)
    text = p.stdout

    def num(label):
        m = re.search(r"%s:\s+([0-9.]+)" % label, text)
        return float(m.group(1)) if m else None

    res = {"sent": num("Queries sent"), "completed": num("Queries completed"),
           "lost": num("Queries lost"), "qps": num("Queries per second"),
           "rc": p.returncode, "text": text}
    if res["qps"] is None:
        raise RuntimeError("dnsperf %s failed:\n%s" % (" ".join(cmd[1:]), text[-2000:]))
    return res


def check_answers(k):
    """Sanity: the module enforces where it should and nowhere else."""
    filt = [(10, "france.security-mail.net."), (20, "europe.security-mail.net.")]
    for case in ("MX-enforced-apex", "MX-enforced-sub", "MX-compliant-apex",
                 "MX-enrolled-compliant-sub"):
        qname = CASES[case][0]
        r = kh.wire_query(k.port, qname, "MX", timeout=30)
        if r.rcode != "NOERROR" or r.mx() != filt:
            raise RuntimeError("%s: unexpected answer %r" % (case, r))
    r = kh.wire_query(k.port, "baseline.test", "MX", timeout=30)
    if len(r.mx()) != 2 or r.mx()[0][0] != 5:
        raise RuntimeError("baseline.test MX: unexpected answer %r" % r)


# ----------------------------------------------------------------------------
# 1. Throughput

def qps_rounds(args, tmp):
    out("== throughput: dnsperf, %d interleaved rounds x %g s per side "
        "(noisy: +-4%% between identical rounds) ==" % (args.rounds, args.seconds))
    k = kh.Knotd(kh.Config(zones(), log_level="info", **knotd_args()))
    k.start()
    rows = []
    try:
        check_answers(k)
        for mode in ("udp", "tcp"):
            for case, base in QPS_PAIRS:
                qps = {case: [], base: []}
                lost = 0
                for rnd in range(args.rounds):
                    # A/B/A/B, the order swapped every round.
                    order = (case, base) if rnd % 2 == 0 else (base, case)
                    for c in order:
                        res = dnsperf(k.port, query_file(tmp, c, 1000),
                                      ["-m", mode, "-l", str(args.seconds),
                                       "-c", "4", "-T", "1", "-q", "100", "-t", "2"],
                                      timeout=args.seconds + 30)
                        qps[c].append(res["qps"])
                        lost += int(res["lost"] or 0)
                a = statistics.median(qps[case])
                b = statistics.median(qps[base])
                # Each round's two sides ran back to back: the median of the
                # per-round ratios resists drift better than a ratio of medians.
                paired = statistics.median(y / x for x, y in zip(qps[case], qps[base]) if x)
                rows.append((mode, case, base, a, b, lost, qps, paired))
                out("  %-3s %-18s %9.0f  %-18s %9.0f  ratio %.3f  paired %.3f" % (
                    mode, case, a, base, b, b / a if a else float("nan"), paired))
    finally:
        k.stop(check=False)

    out()
    out("%-4s %-18s %10s %-18s %10s %10s %8s %5s" % (
        "mode", "case", "QPS", "baseline", "QPS", "base/case", "paired", "lost"))
    for mode, case, base, a, b, lost, qps, paired in rows:
        out("%-4s %-18s %10.0f %-18s %10.0f %10.3f %8.3f %5d" % (
            mode, case, a, base, b, b / a if a else float("nan"), paired, lost))
    out("(base/case = median QPS of the baseline over that of the case: > 1 is a "
        "slowdown; paired = median of the per-round ratios)")
    out("rounds (case / baseline): " + "; ".join(
        "%s %s %s / %s" % (m, c, ",".join("%.0f" % x for x in q[c]),
                           ",".join("%.0f" % x for x in q[b]))
        for m, c, b, _, _, _, q, _ in rows))
    out()
    return rows


# ----------------------------------------------------------------------------
# 2. Instructions per query (callgrind)

class CallgrindKnotd(kh.Knotd):
    """knotd started under valgrind --tool=callgrind."""

    START_TIMEOUT = 240.0

    def __init__(self, out_file, tmp, baseline=None, **kw):
        super().__init__(kh.Config(zones(baseline), log_level="info", **knotd_args()),
                         wrapper=[VALGRIND, "--tool=callgrind",
                                  "--callgrind-out-file=" + out_file], **kw)
        self.out_file = out_file

    def stop_and_wait(self, timeout=240):
        """knotc stop, wait for the callgrind dump; return the log text."""
        self.stop(check=False, keep_dir=True, timeout=timeout)
        log = self.log_text()
        self.remove_dir()
        return log


def totals(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"(?:totals|summary):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError("no totals in %s" % path)


def callgrind_run(case, n, tmp, rate):
    """Total instructions of one knotd life with N queries of CASE (None:
    no queries, idling as long as the queries would take)."""
    cg = os.path.join(tmp, "callgrind.%s.out" % (case or "zero"))
    if os.path.exists(cg):
        os.unlink(cg)
    spec = CASES.get(case, ())
    k = CallgrindKnotd(cg, tmp, baseline=spec[2] if len(spec) > 2 else None)
    t0 = time.monotonic()
    k.start()
    started = time.monotonic() - t0
    lost = 0
    try:
        # Every run (zero included) sends the same warm-up query first.
        kh.wire_query(k.port, "www.baseline.test", "A", timeout=60)
        if CALLGRIND_CONTROL is not None:
            # Drop start-up from the counts (it varies by ~+-50k between
            # runs); what remains is the queries, idling and shut-down.
            kh.run([CALLGRIND_CONTROL, "-z", str(k.pid)], timeout=60)
        if case is None:
            time.sleep(n / rate)
        else:
            res = dnsperf(k.port, query_file(tmp, case, n),
                          ["-n", "1", "-Q", str(rate), "-c", "1", "-q", "20", "-t", "30"],
                          timeout=n / rate * 4 + 120)
            lost = int(res["lost"] or 0)
            if int(res["completed"] or 0) != n:
                lost = max(lost, n - int(res["completed"] or 0))
    finally:
        log = k.stop_and_wait()
    lines = len(re.findall(r"legacy MX blocked", log))
    return {"case": case, "ir": totals(cg), "lost": lost, "file": cg,
            "log_lines": lines, "start_s": started}


def profile(path, inclusive=False):
    """{function [object]: Ir} from callgrind_annotate (every object)."""
    if CALLGRIND_ANNOTATE is None:
        return {}
    cmd = [CALLGRIND_ANNOTATE, "--threshold=100",
           "--inclusive=%s" % ("yes" if inclusive else "no"), path]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       universal_newlines=True, timeout=120)
    prof = {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(\S+)\s+\[(.*)\]\s*$", line)
        if m:
            key = "%s [%s]" % (m.group(2).split(":", 1)[-1], os.path.basename(m.group(3)))
            prof[key] = prof.get(key, 0) + int(m.group(1).replace(",", ""))
    return prof


def profile_diff(case_file, base_file, n, top, total):
    """Largest per-query differences of self cost, function by function.
    After `callgrind_control -z` the thread roots (start_thread, clone, the
    worker's loop) show the whole difference as their own: rows within 10 %
    of TOTAL are such artefacts and left out."""
    a, b = profile(case_file), profile(base_file)
    rows = [((a.get(k, 0) - b.get(k, 0)) / n, k) for k in set(a) | set(b)]
    rows = [r for r in rows if abs(total) < 50 or abs(r[0]) < 0.9 * abs(total)]
    rows.sort(key=lambda r: -abs(r[0]))
    return rows[:top]


def annotate(path, inclusive):
    """callgrind_annotate rows for mxfilter.so and knotd_mod_log:
    [(Ir, function)]."""
    if CALLGRIND_ANNOTATE is None:
        return []
    cmd = [CALLGRIND_ANNOTATE, "--threshold=100",
           "--inclusive=%s" % ("yes" if inclusive else "no"), path]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       universal_newlines=True, timeout=120)
    rows = []
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(\S+)\s+\[(.*)\]\s*$", line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        func = m.group(2).split(":", 1)[-1]
        obj = os.path.basename(m.group(3))
        if obj.startswith("mxfilter") or func in ("knotd_mod_log",):
            rows.append((ir, func, obj))
    return rows


def callgrind_all(args, tmp):
    if VALGRIND is None:
        out("(valgrind not installed: no instruction counts)")
        return True
    n = args.queries
    out("== instructions per query: knotd under callgrind, %d queries per run at "
        "%d QPS, minus a run without queries ==" % (n, args.rate))
    runs = {}
    ok = True
    order = [None] + list(CASES) + ([None] if args.zero_twice else [])
    for i, case in enumerate(order):
        r = callgrind_run(case, n, tmp, args.rate)
        key = case or ("zero" if "zero" not in runs else "zero2")
        runs[key] = r
        out("  %-28s totals %14d  lost %d  log lines %d  (started in %.0f s)" % (
            key, r["ir"], r["lost"], r["log_lines"], r["start_s"]))
        if r["lost"]:
            ok = False
    zero = runs["zero"]["ir"]
    if "zero2" in runs:
        out("  zero-run spread: %d instructions = %.1f per query" % (
            runs["zero2"]["ir"] - zero, (runs["zero2"]["ir"] - zero) / n))
    per = {c: (runs[c]["ir"] - zero) / n for c in CASES}

    out()
    out("%-28s %12s" % ("case", "instr/query"))
    for c in CASES:
        out("%-28s %12.0f" % (c, per[c]))
    out()
    out("%-46s %10s %10s %8s %8s" % ("comparison", "case", "baseline", "ratio", "target"))
    for label, case, base, target in COMPARISONS:
        ratio = per[case] / per[base] if per[base] else float("nan")
        out("%-46s %10.0f %10.0f %8.3f %8s" % (
            label, per[case], per[base], ratio,
            ("<= %.2f %s" % (target, "ok" if ratio <= target else "OVER")) if target else ""))

    # Where the module's instructions go (per query), and the log line.
    out()
    for case in ("MX-enforced-apex", "MX-enforced-sub", "MX-enrolled-compliant-sub",
                 "A-enrolled"):
        incl = annotate(runs[case]["file"], True)
        self_ = dict((f, ir) for ir, f, o in annotate(runs[case]["file"], False))
        if not incl:
            continue
        out("-- %s: mxfilter.so functions, instructions per query "
            "(inclusive / self) --" % case)
        for ir, func, obj in sorted(incl, reverse=True)[:args.top]:
            out("  %9.1f %9.1f  %s (%s)" % (ir / n, self_.get(func, 0) / n, func, obj))
    for label, case, base, target in COMPARISONS[:3] + COMPARISONS[5:7]:
        rows = profile_diff(runs[case]["file"], runs[base]["file"], n, args.top,
                            per[case] - per[base])
        if not rows:
            continue
        out("-- %s: largest differences, self instructions per query "
            "(knotd is stripped: addresses) --" % label.strip())
        for v, k in rows:
            out("  %+8.1f  %s" % (v, k))
    out()
    zero_log = dict((f, ir) for ir, f, o in annotate(runs["zero"]["file"], True))
    for case in ("MX-enforced-apex", "MX-enforced-sub"):
        incl = dict((f, ir) for ir, f, o in annotate(runs[case]["file"], True))
        lines = runs[case]["log_lines"]
        if lines and "knotd_mod_log" in incl:
            cost = incl["knotd_mod_log"] - zero_log.get("knotd_mod_log", 0)
            fmt = incl.get("mxf_line_format", 0)
            out("log line cost (%s): %d lines; knotd_mod_log %.0f + mxf_line_format "
                "%.0f instructions per line = %.1f per query over %d queries" % (
                    case, lines, cost / lines, fmt / lines, (cost + fmt) / n, n))
    out()
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=1500)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--zero-twice", action="store_true",
                    help="a second run without queries, to show the noise")
    ap.add_argument("--no-qps", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep callgrind files")
    args = ap.parse_args()
    if not (1 <= args.rounds <= 20 and 0.5 <= args.seconds <= 60 and
            100 <= args.queries <= 100000 and 100 <= args.rate <= 100000):
        ap.error("value out of range")

    if kh.module_so() is None:
        out("skip: MXFILTER_SO not set or missing")
        return 77
    if DNSPERF is None or not os.path.exists(kh.KNOTD):
        out("skip: dnsperf or knotd missing (apt-get install dnsperf knot)")
        return 77

    if hookfloor_so():
        CASES.update(FLOOR_CASES)
        COMPARISONS.extend(FLOOR_COMPARISONS)
    else:
        out("(mod-hookfloor not built: no floor cases; see HOOKFLOOR_SO)")

    tmp = tempfile.mkdtemp(prefix="mxf-bench-")
    ok = True
    try:
        if not args.no_qps:
            qps_rounds(args, tmp)
        if not args.no_callgrind:
            ok = callgrind_all(args, tmp)
    finally:
        if args.keep:
            out("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
