#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed enforced answers: knotd with the built module on 127.0.0.1.

One knotd serves two zones, both `dnssec-signing: on`, whose names have the
same length (knotd's own lookup cost depends on the names):
  enforced.test  module: mod-mxfilter, legacy MX at the apex and at sub:
                 DO queries get the filtering set signed by the module
                 (signed once per owner/TTL, then served from its cache)
  complies.test  not enrolled, already holds the filtering set at the apex
                 and at sub: Knot's own pre-signed answer (the baseline)
Every query is MX with the DO bit, EDNS payload 1232, over UDP (dnsperf
reads prebuilt wire queries, -B: its -D would ask for 4096).

The same knotd serves two more zones without MX at the apex, for the
denial records (docs/dnssec.md): nomx.test (NSEC) and nomx3.test (NSEC3),
enrolled, whose apex NSEC/NSEC3 the module edits to list MX and signs (once
per zone signature state, then cached); the baseline is the same zones in a
knotd where they are not enrolled (same names, so the same proofs, also
with NSEC3). Their cases are NODATA (AAAA at the apex) and NXDOMAIN (A at
nx.ZONE), with DO.

0. Checks every reply once before measuring (kdig +dnssec: NOERROR, the
   filtering set, one RRSIG MX whose signer, algorithm, key tag and validity
   follow the zone's SOA signature; delv validates the enforced answers when
   installed). A broken setup fails the run instead of printing figures.
1. Throughput (noisy): dnsperf rounds interleaved A/B/A/B of an apex+sub mix,
   median QPS of each side and the ratio; the first (cache-miss) answer's
   round trip next to warm ones.
2. Instructions per query (deterministic): knotd under valgrind
   --tool=callgrind as in server.py: warm-up queries (which fill the
   module's signature cache), callgrind_control -z, N queries of one kind
   (dnsperf -n 1 -Q RATE), knotc stop, "totals:"; minus a run without
   queries; divided by N. Then the cost of a cache miss: a run whose warm-up
   leaves the cache empty, one dump (callgrind_control -d) per query:
   first apex (key load + signing), first sub (signing), apex again (hit).
3. Instructions per NODATA / NXDOMAIN answer as in 2., enrolled zone vs the
   same zone without the module, NSEC and NSEC3 (--no-denial skips them,
   --denial-only runs nothing else).
4. The owner-count axis: a zone of N names with one legacy MX each, with
   the module and, in another knotd, without it; instructions per MX + DO
   query cycling over all N owners, before and after `knotc zone-sign`
   (knotd under callgrind with instrumentation on only while measuring;
   the module's debug lines prove every owner is signed once per zone
   signing state and never while measured).

Prints figures, never fails on them: exit 0 when the measurements ran, 77
(skipped) without knotd, dnsperf or the module, 1 if the setup is broken
(a wrong or unsigned answer, knotd did not start, queries lost or answered
with an error in a callgrind run, ...).

    MXFILTER_SO=BUILD/module/mxfilter.so python3 tests/bench/signed.py
        [--rounds 4] [--seconds 5] [--queries 3000] [--rate 1500]
        [--no-qps] [--no-callgrind] [--no-denial | --denial-only] [--no-cases]
        [--owners 1,10,100,2000,20000] [--keep]
"""

import argparse
import glob
import os
import re
import shutil
import statistics
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import knotharness as kh  # noqa: E402
import server as srv  # noqa: E402  (tests/bench/server.py: shared helpers)

out = srv.out

ENFORCED = "enforced.test"
COMPLIANT = "complies.test"
assert len(ENFORCED) == len(COMPLIANT)

BUFSIZE = 1232
SIGNED = {"dnssec-signing": "on"}

# Zones without MX at the apex, enrolled or not (denial_module).
DENIAL = {"nsec": "nomx.test", "nsec3": "nomx3.test"}
NSEC3_POLICY = """policy:
  - id: bench-nsec3
    nsec3: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
"""
NOMX_BODY = "@ A 192.0.2.1\nwww A 192.0.2.80\nmailgate A 192.0.2.25\n"


def zones(denial_module=True):
    legacy = srv.BODY.format(apex=srv.LEGACY_APEX, sub=srv.LEGACY_SUB)
    compliant = srv.BODY.format(apex=srv.FILTER.format(owner="@"),
                                sub=srv.FILTER.format(owner="sub"))
    out = [kh.Zone(ENFORCED, legacy, module="mod-mxfilter", extra=dict(SIGNED)),
           kh.Zone(COMPLIANT, compliant, extra=dict(SIGNED))]
    for flavour, zone in sorted(DENIAL.items()):
        extra = dict(SIGNED)
        if flavour == "nsec3":
            extra["dnssec-policy"] = "bench-nsec3"
        out.append(kh.Zone(zone, NOMX_BODY, extra=extra,
                           module="mod-mxfilter" if denial_module else None))
    return out


# Query cases: name -> qnames (MX, DO, EDNS 1232), cycled through.
CASES = {
    "enforced-apex": [ENFORCED],
    "enforced-sub": ["sub." + ENFORCED],
    "compliant-apex": [COMPLIANT],
    "compliant-sub": ["sub." + COMPLIANT],
    "enforced-mix": [ENFORCED, "sub." + ENFORCED],
    "compliant-mix": [COMPLIANT, "sub." + COMPLIANT],
}
CALLGRIND_CASES = ["enforced-apex", "enforced-sub", "compliant-apex", "compliant-sub"]
COMPARISONS = [("apex enforced / compliant", "enforced-apex", "compliant-apex"),
               ("sub  enforced / compliant", "enforced-sub", "compliant-sub")]
QPS_PAIR = ("enforced-mix", "compliant-mix")

# Denial cases: name -> (qname, qtype, rcode, enrolled), with DO.
DENIAL_CASES = {}
DENIAL_COMPARISONS = []
for _fl, _zone in sorted(DENIAL.items()):
    for _kind, _q, _t, _rc in (("nodata", "", "AAAA", "NOERROR"),
                               ("nxdomain", "nx.", "A", "NXDOMAIN")):
        DENIAL_CASES["%s-%s-enrolled" % (_fl, _kind)] = (_q + _zone, _t, _rc, True)
        DENIAL_CASES["%s-%s-plain" % (_fl, _kind)] = (_q + _zone, _t, _rc, False)
        DENIAL_COMPARISONS.append(("%-5s %-8s enrolled / plain" % (_fl, _kind),
                                   "%s-%s-enrolled" % (_fl, _kind),
                                   "%s-%s-plain" % (_fl, _kind)))


def wire_do(qname, qtype="MX"):
    """One query with EDNS payload BUFSIZE and DO, in dnsperf's -B format
    (2-byte length, then the message; dnsperf sets the IDs)."""
    msg = struct.pack("!6H", 0, 0, 1, 0, 0, 1) + kh._qname_wire(qname)
    msg += struct.pack("!HH", kh.TYPES[qtype], 1)
    msg += b"\0" + struct.pack("!HHIH", kh.TYPES["OPT"], BUFSIZE, 0x8000, 0)
    return struct.pack("!H", len(msg)) + msg


def query_file(directory, case, lines):
    path = os.path.join(directory, "%s.%d.bin" % (case, lines))
    if not os.path.exists(path):
        if case in DENIAL_CASES:
            names, qtype = [DENIAL_CASES[case][0]], DENIAL_CASES[case][1]
        else:
            names, qtype = CASES[case], "MX"
        with open(path, "wb") as f:
            for i in range(lines):
                f.write(wire_do(names[i % len(names)], qtype))
    return path


def dnsperf(port, datafile, extra, timeout, rcode="NOERROR"):
    """server.py's dnsperf on a -B file; raise if any answer is not RCODE
    (signing failures answer SERVFAIL)."""
    res = srv.dnsperf(port, datafile, ["-B"] + extra, timeout)
    m = re.search(r"Response codes:\s+(.*)", res["text"])
    codes = re.findall(r"([A-Z]+) \d+", m.group(1)) if m else []
    if res["completed"] and codes != [rcode]:
        raise RuntimeError("dnsperf got answers other than %s: %s"
                           % (rcode, m.group(0) if m else res["text"][-1500:]))
    return res


# ----------------------------------------------------------------------------
# 0. Checks

def rrsig(rdata):
    """Fields of an RRSIG in kdig text form."""
    f = rdata.split()
    return {"covered": f[0], "alg": int(f[1]), "labels": int(f[2]),
            "exp": f[4], "inc": f[5], "tag": int(f[6]), "signer": f[7].lower()}


def sigs(records, covered):
    return [rrsig(r[3]) for r in records if r[2] == "RRSIG" and
            r[3].split()[0] == covered]


def check_wire(r, qname):
    """A reply as dnsperf gets it (wire parse): NOERROR, AA, not truncated,
    the filtering set and an RRSIG over MX. Return a problem or None."""
    # The wire parse gives RRSIG rdata as "\\# LEN HEX": type covered first.
    covers_mx = [a for a in r.answer if a[2] == "RRSIG" and
                 a[3].split()[2].upper().startswith("%04X" % kh.TYPES["MX"])]
    if r.rcode != "NOERROR" or not r.aa or r.tc or r.mx() != kh.FILTER_SET \
            or len(covers_mx) != 1:
        return "%s MX +dnssec (wire): %r" % (qname, r)
    return None


def check_answers(k):
    """kdig +dnssec +bufsize=1232 on every name: NOERROR, the filtering set,
    exactly one RRSIG MX shaped like the zone's SOA signature; delv (when
    installed) validates the enforced answers with the zone's KSK."""
    lines = []
    for case in CALLGRIND_CASES:
        qname = CASES[case][0]
        zone = ENFORCED if case.startswith("enforced") else COMPLIANT
        r = k.kdig(qname, "MX", do=True, bufsize=BUFSIZE)
        soa = k.kdig(zone, "SOA", do=True, bufsize=BUFSIZE)
        mx_sigs, soa_sigs = sigs(r.answer, "MX"), sigs(soa.answer, "SOA")
        problems = []
        if (r.rcode, r.aa, r.tc) != ("NOERROR", True, False):
            problems.append("rcode %s aa %s tc %s" % (r.rcode, r.aa, r.tc))
        if r.mx() != kh.FILTER_SET:
            problems.append("not the filtering set")
        if len(mx_sigs) != 1 or len(soa_sigs) != 1:
            problems.append("%d RRSIG MX, %d RRSIG SOA (want 1 and 1)"
                            % (len(mx_sigs), len(soa_sigs)))
        else:
            s, z = mx_sigs[0], soa_sigs[0]
            want_labels = qname.count(".") + 1
            if s["signer"] != zone + "." or s["labels"] != want_labels or \
                    (s["alg"], s["tag"]) != (z["alg"], z["tag"]):
                problems.append("RRSIG MX %r vs RRSIG SOA %r" % (s, z))
            if case.startswith("enforced") and (s["inc"], s["exp"]) != (z["inc"], z["exp"]):
                problems.append("validity %s-%s, SOA's %s-%s" % (s["inc"], s["exp"],
                                                                z["inc"], z["exp"]))
        bad = [a for a in r.all_records() if re.search(r"mailgate|smtp\.isp|mx\.sub",
                                                        (a[0] + " " + a[3]).lower())]
        if bad:
            problems.append("legacy records: %r" % bad)
        if problems:
            raise RuntimeError("%s MX +dnssec: %s\n%s" % (qname, "; ".join(problems), r.text()))
        lines.append("%-20s NOERROR, filtering set, RRSIG MX alg %d tag %d labels %d" % (
            qname, mx_sigs[0]["alg"], mx_sigs[0]["tag"], mx_sigs[0]["labels"]))
    # The same names as dnsperf's queries (wire, EDNS 1232, DO).
    for case in CALLGRIND_CASES:
        qname = CASES[case][0]
        problem = check_wire(k.wire(qname, "MX", do=True, bufsize=BUFSIZE, timeout=30), qname)
        if problem:
            raise RuntimeError(problem)
    delv = shutil.which("delv")
    if delv:
        keys = k.kdig(ENFORCED, "DNSKEY", tcp=True)
        ksk = [a[3] for a in keys.answer if a[2] == "DNSKEY" and a[3].startswith("257 ")]
        if not ksk:
            raise RuntimeError("no KSK in %s DNSKEY:\n%s" % (ENFORCED, keys.text()))
        flags, proto, alg, key = ksk[0].split(None, 3)
        d = tempfile.mkdtemp(prefix="mxf-delv-")
        try:
            anchor = os.path.join(d, "anchor")
            with open(anchor, "w") as f:
                f.write('trust-anchors {\n  %s. static-key %s %s %s "%s";\n};\n' %
                        (ENFORCED, flags, proto, alg, key.replace(" ", "")))
            for qname in CASES["enforced-mix"]:
                rc, o, e = kh.run([delv, "@127.0.0.1", "-p", str(k.port), "-a", anchor,
                                   "+root=" + ENFORCED, qname, "MX"], timeout=30)
                if "; fully validated" not in o + e:
                    raise RuntimeError("delv does not validate %s MX:\n%s" % (qname, o + e))
                lines.append("%-20s delv: fully validated" % qname)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return lines


def apex_denial(records):
    """The apex's NSEC / NSEC3 of the apex hash (the records listing SOA)
    in kdig text form: [(owner, types)]."""
    out = []
    for r in records:
        if r[2] in ("NSEC", "NSEC3"):
            types = r[3].split()[1 if r[2] == "NSEC" else 5:]
            if "SOA" in types:
                out.append((r[0], types))
    return out


def check_denial(k, enrolled_zones=True):
    """kdig +dnssec +bufsize=1232 on every denial case of K (whose denial
    zones are enrolled or not): the rcode, not truncated, the apex's record
    listing MX exactly when enrolled; delv (when installed) validates the
    enrolled answers."""
    lines = []
    delv = shutil.which("delv")
    anchors = {}
    for case, (qname, qtype, rcode, enrolled) in sorted(DENIAL_CASES.items()):
        if enrolled != enrolled_zones:
            continue
        r = k.kdig(qname, qtype, do=True, bufsize=BUFSIZE)
        apex = apex_denial(r.authority)
        if (r.rcode, r.tc) != (rcode, False) or len(apex) != 1 or \
                ("MX" in apex[0][1]) != enrolled:
            raise RuntimeError("%s %s +dnssec: want %s, the apex's record %s MX:\n%s" % (
                qname, qtype, rcode, "with" if enrolled else "without", r.text()))
        w = k.wire(qname, qtype, do=True, bufsize=BUFSIZE, timeout=30)
        if w.rcode != rcode or w.tc:
            raise RuntimeError("%s %s +dnssec (wire): %r" % (qname, qtype, w))
        line = "%-20s %-4s %s, apex %s %s MX" % (qname, qtype, rcode, apex[0][0].split(".")[0][:8],
                                                  "with" if enrolled else "without")
        if delv and enrolled:
            zone = qname.split(".", 1)[1] if qname.startswith("nx.") else qname
            if zone not in anchors:
                anchors[zone] = k.trust_anchor(zone)
            rc, o, e = kh.run([delv, "@127.0.0.1", "-p", str(k.port), "-a", anchors[zone],
                               "+root=" + zone, qname, qtype], timeout=30)
            if "fully validated" not in o + e:
                raise RuntimeError("delv does not validate %s %s:\n%s" % (qname, qtype, o + e))
            line += ", delv: fully validated"
        lines.append(line)
    return lines


# ----------------------------------------------------------------------------
# 1. Throughput

def rtt(k, qname):
    t0 = time.perf_counter()
    r = k.wire(qname, "MX", do=True, bufsize=BUFSIZE, timeout=30)
    return (time.perf_counter() - t0) * 1e6, r


def qps_rounds(args, tmp):
    out("== throughput: dnsperf UDP, MX + DO, EDNS %d, apex/sub mix, %d interleaved "
        "rounds x %g s per side (noisy: +-4%% between identical rounds) ==" % (
            BUFSIZE, args.rounds, args.seconds))
    k = kh.Knotd(zones(), log_level="info", extra_conf=NSEC3_POLICY)
    k.start()
    try:
        # The very first DO answers of enforced.test: signature cache misses
        # (apex: key load + signing; sub: signing). Checked like the rest.
        cold = {}
        for qname in CASES["enforced-mix"]:
            us, r = rtt(k, qname)
            problem = check_wire(r, qname)
            if problem:
                raise RuntimeError("first answer: " + problem)
            cold[qname] = us
        for line in check_answers(k) + check_denial(k):
            out("  check: " + line)
        warm = {}
        for qname in CASES["enforced-mix"] + CASES["compliant-mix"]:
            warm[qname] = statistics.median(rtt(k, qname)[0] for _ in range(50))
        out("  client round trip (python, one query at a time; the first includes "
            "the cache miss):")
        for qname in CASES["enforced-mix"]:
            out("    %-20s first %6.0f us   warm median %5.0f us" % (qname, cold[qname],
                                                                  warm[qname]))
        for qname in CASES["compliant-mix"]:
            out("    %-20s                 warm median %5.0f us" % (qname, warm[qname]))

        case, base = QPS_PAIR
        qps = {case: [], base: []}
        lost = 0
        for rnd in range(args.rounds):
            order = (case, base) if rnd % 2 == 0 else (base, case)
            for c in order:
                res = dnsperf(k.port, query_file(tmp, c, 1000),
                              ["-m", "udp", "-l", str(args.seconds), "-c", "4", "-T", "1",
                               "-q", "100", "-t", "2"],
                              timeout=args.seconds + 30)
                qps[c].append(res["qps"])
                lost += int(res["lost"] or 0)
        stats = k.zone_stats(ENFORCED)
    finally:
        k.stop(check=False)
    if stats.get("failed", 0):
        raise RuntimeError("the module counted %d failures: %r" % (stats["failed"], stats))
    a, b = statistics.median(qps[case]), statistics.median(qps[base])
    paired = statistics.median(y / x for x, y in zip(qps[case], qps[base]) if x)
    out()
    out("%-34s %10s" % ("side (MX + DO, apex/sub mix)", "median QPS"))
    out("%-34s %10.0f" % ("signed enforced   (%s)" % ENFORCED, a))
    out("%-34s %10.0f" % ("pre-signed compliant (%s)" % COMPLIANT, b))
    out("ratio compliant/enforced %.3f (> 1: enforced is slower), paired %.3f; lost %d"
        % (b / a if a else float("nan"), paired, lost))
    out("rounds enforced: %s" % ", ".join("%.0f" % x for x in qps[case]))
    out("rounds compliant: %s" % ", ".join("%.0f" % x for x in qps[base]))
    out("module counters (%s): %s" % (ENFORCED, ", ".join(
        "%s %d" % kv for kv in sorted(stats.items()) if kv[1])))
    out()
    return a, b


# ----------------------------------------------------------------------------
# 2. Instructions per query (callgrind)

class CallgrindKnotd(srv.CallgrindKnotd):
    """server.py's knotd under callgrind, serving the two signed zones."""

    def __init__(self, out_file, tmp, denial_module=True, **kw):
        super().__init__(out_file, tmp, **kw)
        self.zones = zones(denial_module)
        self.extra_conf = (self.extra_conf + "\n" if self.extra_conf else "") + NSEC3_POLICY


def warm_up(k, fill_cache):
    """Every run's queries before callgrind_control -z. FILL_CACHE: MX + DO
    to every name (the module signs and caches the enforced sets); else the
    enforced names without DO (enforced, logged, nothing signed) and the
    compliant names with DO, leaving the signature cache empty."""
    for case in CALLGRIND_CASES:
        qname = CASES[case][0]
        do = fill_cache or case.startswith("compliant")
        r = k.wire(qname, "MX", do=do, bufsize=BUFSIZE, timeout=60)
        if r.rcode != "NOERROR" or r.mx() != kh.FILTER_SET:
            raise RuntimeError("warm-up %s MX do=%s: %r" % (qname, do, r))
    # The denial records' signatures (one per enrolled zone) as well.
    for case, (qname, qtype, rcode, _) in sorted(DENIAL_CASES.items()):
        r = k.wire(qname, qtype, do=fill_cache, bufsize=BUFSIZE, timeout=60)
        if r.rcode != rcode:
            raise RuntimeError("warm-up %s %s: %r" % (qname, qtype, r))


def callgrind_run(case, n, tmp, rate):
    """Total instructions of one knotd life: warm-up, zero, N queries of
    CASE (None: idle as long as the queries would take)."""
    cg = os.path.join(tmp, "callgrind.%s.out" % (case or "zero"))
    k = CallgrindKnotd(cg, tmp, denial_module=DENIAL_CASES.get(case, (0, 0, 0, True))[3])
    t0 = time.monotonic()
    k.start()
    started = time.monotonic() - t0
    lost = 0
    try:
        warm_up(k, True)
        kh.run([srv.CALLGRIND_CONTROL, "-z", str(k.proc.pid)], timeout=60)
        if case is None:
            time.sleep(n / rate)
        else:
            res = dnsperf(k.port, query_file(tmp, case, n),
                          ["-n", "1", "-Q", str(rate), "-c", "1", "-q", "20", "-t", "30"],
                          timeout=n / rate * 4 + 120,
                          rcode=DENIAL_CASES[case][2] if case in DENIAL_CASES else "NOERROR")
            lost = int(res["lost"] or 0)
            lost = max(lost, n - int(res["completed"] or 0))
    finally:
        k.stop_and_wait()
    return {"case": case, "ir": srv.totals(cg), "lost": lost, "file": cg,
            "start_s": started}


def callgrind_miss(tmp, idle):
    """One knotd life with an empty signature cache: zero, then one query at
    a time, each followed by IDLE seconds and a dump (the first dump without
    a query): [(label, Ir, dump file)]."""
    cg = os.path.join(tmp, "callgrind.miss.out")
    k = CallgrindKnotd(cg, tmp)
    steps = [("idle", None),
             ("first apex (key load + sign)", ENFORCED),
             ("first sub  (sign)", "sub." + ENFORCED),
             ("apex again (cache hit)", ENFORCED)]
    rows = []
    k.start()
    try:
        warm_up(k, False)
        kh.run([srv.CALLGRIND_CONTROL, "-z", str(k.proc.pid)], timeout=60)
        for label, qname in steps:
            before = set(glob.glob(cg + "*"))
            if qname:
                r = k.wire(qname, "MX", do=True, bufsize=BUFSIZE, timeout=60)
                problem = check_wire(r, qname)
                if problem:
                    raise RuntimeError("cache-miss run: " + problem)
            time.sleep(idle)
            kh.run([srv.CALLGRIND_CONTROL, "--dump=" + label.split()[0],
                    str(k.proc.pid)], timeout=60)
            new = sorted(set(glob.glob(cg + "*")) - before)
            if len(new) != 1:
                raise RuntimeError("callgrind_control -d: dump files %r" % new)
            rows.append((label, srv.totals(new[0]), new[0]))
    finally:
        k.stop_and_wait()
    return rows


def callgrind_denial(args, tmp, zero):
    """3. Instructions per NODATA / NXDOMAIN answer with DO, enrolled zone
    vs the same zone without the module (ZERO: a run without queries)."""
    n = args.queries
    for enrolled in (True, False):
        k = kh.Knotd(zones(enrolled), log_level="info", extra_conf=NSEC3_POLICY)
        k.start()
        try:
            for line in check_denial(k, enrolled):
                out("  check: " + line)
        finally:
            k.stop(check=False)
    out("== denial records: knotd under callgrind, DO, EDNS %d, %d queries per run at "
        "%d QPS, minus a run without queries ==" % (BUFSIZE, n, args.rate))
    runs = {}
    ok = True
    for case in sorted(DENIAL_CASES):
        r = callgrind_run(case, n, tmp, args.rate)
        runs[case] = r
        out("  %-24s totals %14d  lost %d  (started in %.0f s)" % (
            case, r["ir"], r["lost"], r["start_s"]))
        ok = ok and not r["lost"]
    per = {c: (runs[c]["ir"] - zero) / n for c in runs}
    out()
    out("%-26s %-22s %-5s %12s" % ("case (DO, UDP)", "query", "", "instr/query"))
    for c in sorted(DENIAL_CASES):
        qname, qtype = DENIAL_CASES[c][:2]
        out("%-26s %-22s %-5s %12.0f" % (c, qname, qtype, per[c]))
    out()
    out("%-32s %10s %10s %8s %8s" % ("comparison", "enrolled", "plain", "ratio", "extra"))
    for label, case, base in DENIAL_COMPARISONS:
        out("%-32s %10.0f %10.0f %8.3f %+8.0f" % (label, per[case], per[base],
                                                 per[case] / per[base] if per[base] else
                                                 float("nan"), per[case] - per[base]))
    out()
    for case in ("nsec-nodata-enrolled", "nsec3-nxdomain-enrolled"):
        incl = srv.annotate(runs[case]["file"], True)
        self_ = dict((f, ir) for ir, f, o in srv.annotate(runs[case]["file"], False))
        if incl:
            out("-- %s: mxfilter.so functions, instructions per query (inclusive / self) --"
                % case)
            for ir, func, obj in sorted(incl, reverse=True)[:args.top]:
                out("  %9.1f %9.1f  %s (%s)" % (ir / n, self_.get(func, 0) / n, func, obj))
    out()
    return ok


def callgrind_all(args, tmp):
    if srv.VALGRIND is None or srv.CALLGRIND_CONTROL is None:
        out("(valgrind not installed: no instruction counts)")
        return True
    n = args.queries
    if args.denial_only:
        zero = callgrind_run(None, n, tmp, args.rate)
        out("  %-24s totals %14d" % ("zero", zero["ir"]))
        return callgrind_denial(args, tmp, zero["ir"])
    out("== instructions per query: knotd under callgrind, MX + DO, %d queries per run "
        "at %d QPS, minus a run without queries ==" % (n, args.rate))
    runs = {}
    ok = True
    for case in [None] + CALLGRIND_CASES:
        r = callgrind_run(case, n, tmp, args.rate)
        runs[case or "zero"] = r
        out("  %-16s totals %14d  lost %d  (started in %.0f s)" % (
            case or "zero", r["ir"], r["lost"], r["start_s"]))
        if r["lost"]:
            ok = False
    zero = runs["zero"]["ir"]
    per = {c: (runs[c]["ir"] - zero) / n for c in CALLGRIND_CASES}
    out()
    out("%-34s %12s" % ("case (MX + DO, EDNS %d, UDP)" % BUFSIZE, "instr/query"))
    for c in CALLGRIND_CASES:
        out("%-34s %12.0f" % ("%s (%s)" % (c, CASES[c][0]), per[c]))
    out()
    out("%-28s %10s %10s %8s" % ("comparison", "enforced", "compliant", "ratio"))
    for label, case, base in COMPARISONS:
        out("%-28s %10.0f %10.0f %8.3f" % (label, per[case], per[base],
                                           per[case] / per[base] if per[base] else float("nan")))
    out()
    for case in ("enforced-apex", "enforced-sub"):
        incl = srv.annotate(runs[case]["file"], True)
        self_ = dict((f, ir) for ir, f, o in srv.annotate(runs[case]["file"], False))
        if not incl:
            continue
        out("-- %s: mxfilter.so functions, instructions per query (inclusive / self) --"
            % case)
        for ir, func, obj in sorted(incl, reverse=True)[:args.top]:
            out("  %9.1f %9.1f  %s (%s)" % (ir / n, self_.get(func, 0) / n, func, obj))
    for label, case, base in COMPARISONS:
        rows = srv.profile_diff(runs[case]["file"], runs[base]["file"], n, args.top,
                                per[case] - per[base])
        if rows:
            out("-- %s: largest differences, self instructions per query "
                "(knotd is stripped: addresses) --" % label)
            for v, key in rows:
                out("  %+8.1f  %s" % (v, key))
    out()

    # The cache miss: one query per dump, each dump idling as long as the
    # first, query-less one (subtracted).
    out("== signature cache miss: empty cache, one MX + DO query per callgrind dump, "
        "minus a dump without a query ==")
    miss = callgrind_miss(tmp, 0.5)
    # The last query (a hit) is the reference for the misses: a lone query
    # can cost knotd ~2k instructions more than one of dnsperf's steady stream.
    idle_ir = miss[0][1]
    hit = miss[-1][1] - idle_ir
    out("  %-30s %10d instructions" % (miss[0][0], idle_ir))
    for label, ir, path in miss[1:-1]:
        net = ir - idle_ir
        out("  %-30s %10d instructions  (miss: %+d over the hit, %.0f x)" % (
            label, net, net - hit, net / hit if hit else float("nan")))
    out("  %-30s %10d instructions  (warm figure above, dnsperf stream: %.0f)" % (
        miss[-1][0], hit, per["enforced-apex"]))
    miss = miss[1:]
    incl = srv.annotate(miss[0][2], True)
    if incl:
        out("-- first apex: mxfilter.so functions, instructions (inclusive) --")
        for ir, func, obj in sorted(incl, reverse=True)[:args.top]:
            out("  %10d  %s (%s)" % (ir, func, obj))
    out()
    if not args.no_denial:
        ok = callgrind_denial(args, tmp, zero) and ok
    return ok


# ----------------------------------------------------------------------------
# 3. The owner-count axis (issue 19)

OWNERS_ZONE = "owners.test"
OWNER_AXIS = "1,10,100,2000,20000"
SIGNED_LINE = re.compile(r"module 'mod-mxfilter(?:/[^']*)?', signed RRset, owner ")


def owner_name(i):
    return "h%05d.%s" % (i, OWNERS_ZONE)


def owners_zone(n, enrolled):
    """N names with one legacy MX each; the same zone with or without the
    module. log-interval is a day, so every query takes the limiter's
    silent path (a record is logged once, in the warm-up)."""
    body = "".join("h%05d MX 5 mx%d.legacy.example.\n" % (i, i) for i in range(n))
    return kh.Zone(OWNERS_ZONE, body, module="mod-mxfilter/bench" if enrolled else None,
                   extra=dict(SIGNED))


def owners_file(directory, n, lines):
    """LINES MX + DO queries cycling over the N owners (dnsperf -B)."""
    path = os.path.join(directory, "owners.%d.%d.bin" % (n, lines))
    if not os.path.exists(path):
        with open(path, "wb") as f:
            for i in range(lines):
                f.write(wire_do(owner_name(i % n)))
    return path


class OwnersKnotd(srv.CallgrindKnotd):
    """knotd under callgrind with instrumentation off until asked
    (--instr-atstart=no): zone signing, warm-ups and `knotc zone-sign` run
    at valgrind's uninstrumented speed; only the measured windows count."""

    START_TIMEOUT = 1200.0

    def __init__(self, out_file, tmp, n, enrolled):
        super().__init__(out_file, tmp)
        self.zones = [owners_zone(n, enrolled)]
        self.log_level = "debug"  # the module's "signed RRset" lines
        self.mod_mxfilter = [{"id": "bench", "log-interval": 86400}]
        self.extra_modules = []
        self.extra_conf = ""
        with open(self.wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s --tool=callgrind --instr-atstart=no "
                    "--callgrind-out-file=%s %s \"$@\"\n" % (srv.VALGRIND, out_file, kh.KNOTD))

    def control(self, *args):
        kh.run([srv.CALLGRIND_CONTROL] + list(args) + [str(self.proc.pid)], timeout=120)

    def signed(self):
        return sum(1 for l in self.log_lines() if SIGNED_LINE.search(l))

    def soa_inception(self):
        r = self.wire(OWNERS_ZONE, "SOA", do=True, bufsize=BUFSIZE, timeout=60)
        sig = [a[3] for a in r.answer if a[2] == "RRSIG"]
        if len(sig) != 1:
            raise RuntimeError("%s SOA +dnssec: %r" % (OWNERS_ZONE, r))
        return bytes.fromhex("".join(sig[0].split()[2:]))[12:16]


def owners_warm(k, tmp, n, enrolled):
    """Every owner once (MX + DO), the first and last checked: NOERROR, one
    RRSIG MX, the filtering set (module) or the legacy MX (plain); dnsperf
    raises on any other rcode."""
    for i in sorted({0, n - 1}):
        r = k.wire(owner_name(i), "MX", do=True, bufsize=BUFSIZE, timeout=600)
        if enrolled:
            problem = check_wire(r, owner_name(i))
        else:
            sigs = [a for a in r.answer if a[2] == "RRSIG"]
            ok = (r.rcode, r.aa, r.tc, len(sigs)) == ("NOERROR", True, False, 1) and \
                r.mx() == [(5, "mx%d.legacy.example." % i)]
            problem = None if ok else "%s MX +dnssec (plain): %r" % (owner_name(i), r)
        if problem:
            raise RuntimeError("owner axis: " + problem)
    res = dnsperf(k.port, owners_file(tmp, n, n),
                  ["-n", "1", "-c", "1", "-q", "10", "-t", "120"], timeout=n * 2 + 600)
    if int(res["completed"] or 0) != n:
        raise RuntimeError("owner axis warm-up: %s of %d answered" % (res["completed"], n))


def owners_measure(k, tmp, n, queries, rate, label):
    """Instructions of QUERIES queries cycling over the N owners, minus an
    idle window as long; instrumentation on for both windows only."""
    cg = k.out_file
    k.control("-i", "on")
    k.control("-z")
    dumps = []
    for what in ("idle", "run"):
        before = set(glob.glob(cg + "*"))
        if what == "idle":
            time.sleep(queries / rate)
        else:
            # One query outstanding at a time: knotd then reads one per
            # wake-up whatever the machine's load (batches would share
            # its per-wake-up cost by chance).
            res = dnsperf(k.port, owners_file(tmp, n, queries),
                          ["-n", "1", "-Q", str(rate), "-c", "1", "-q", "1", "-t", "30"],
                          timeout=queries / rate * 4 + 120)
            if int(res["completed"] or 0) != queries or int(res["lost"] or 0):
                raise RuntimeError("owner axis %s: %s" % (label, res["text"][-800:]))
        k.control("--dump=%s-%s" % (label, what))
        new = sorted(set(glob.glob(cg + "*")) - before)
        if len(new) != 1:
            raise RuntimeError("callgrind_control --dump: files %r" % new)
        dumps.append(srv.totals(new[0]))
    k.control("-i", "off")
    return (dumps[1] - dumps[0]) / queries


def owners_life(tmp, n, enrolled, args):
    """One knotd: warm-up, measure, zone-sign, warm-up, measure. Returns
    (before, after, signatures per phase)."""
    side = "module" if enrolled else "plain"
    cg = os.path.join(tmp, "callgrind.owners.%d.%s.out" % (n, side))
    k = OwnersKnotd(cg, tmp, n, enrolled)
    queries = max(args.queries, n)
    k.start()
    try:
        signs = []
        owners_warm(k, tmp, n, enrolled)
        signs.append(k.signed())
        before = owners_measure(k, tmp, n, queries, args.rate, "%s-%d" % (side, n))
        signs.append(k.signed())
        inc = k.soa_inception()
        time.sleep(1.1)  # A new inception (whole seconds).
        k.knotc("zone-sign", OWNERS_ZONE, timeout=120)
        deadline = time.monotonic() + 1200
        while k.soa_inception() == inc:
            if time.monotonic() > deadline:
                raise RuntimeError("zone-sign of %s did not finish" % OWNERS_ZONE)
            time.sleep(1)
        owners_warm(k, tmp, n, enrolled)
        signs.append(k.signed())
        after = owners_measure(k, tmp, n, queries, args.rate, "%s-%d-resigned" % (side, n))
        signs.append(k.signed())
    finally:
        k.stop_and_wait(timeout=1200)
    return before, after, signs


def owners_axis(args, tmp):
    counts = [int(x) for x in args.owners.split(",") if x.strip()]
    out("== owner-count axis: %s, N names with one legacy MX each, signed by Knot; "
        "MX + DO queries cycling over all N (max(%d, N) per window at %d QPS), "
        "instructions per query, with the module vs the same zone without it; "
        "then knotc zone-sign, every owner asked again, measured again ==" % (
            OWNERS_ZONE, args.queries, args.rate))
    rows = []
    for n in counts:
        t0 = time.monotonic()
        plain = owners_life(tmp, n, False, args)
        module = owners_life(tmp, n, True, args)
        s = module[2]
        if s != [n, n, 2 * n, 2 * n]:
            raise RuntimeError("owner axis N=%d: signatures after warm-up, window, "
                               "re-warm, window: %r (want %r)" % (n, s, [n, n, 2 * n, 2 * n]))
        rows.append((n, plain[0], module[0], plain[1], module[1]))
        out("  N=%-6d plain %7.0f  module %7.0f   after zone-sign: plain %7.0f  module %7.0f"
            "   (signed: %d in the warm-up, 0 while measured, %d after zone-sign; %.0f s)" % (
                n, plain[0], module[0], plain[1], module[1], s[0], s[2] - s[1],
                time.monotonic() - t0))
    out()
    out("%8s %10s %10s %7s   %10s %10s %7s   %s" % (
        "owners", "no module", "module", "ratio", "no module", "module", "ratio", "target"))
    out("%8s %29s   %29s" % ("", "", "after knotc zone-sign"))
    for n, pb, mb, pa, ma in rows:
        rb, ra = mb / pb, ma / pa
        out("%8d %10.0f %10.0f %7.3f   %10.0f %10.0f %7.3f   <= 1.50 %s" % (
            n, pb, mb, rb, pa, ma, ra, "ok" if max(rb, ra) <= 1.5 else "OVER"))
    out()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=1500)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--no-qps", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-denial", action="store_true",
                    help="no NODATA/NXDOMAIN cases (denial records)")
    ap.add_argument("--denial-only", action="store_true",
                    help="only the NODATA/NXDOMAIN cases (implies --no-qps)")
    ap.add_argument("--no-cases", action="store_true",
                    help="callgrind: only the owner-count axis")
    ap.add_argument("--owners", default=OWNER_AXIS,
                    help="owner counts of the axis (comma-separated; '' = none)")
    ap.add_argument("--keep", action="store_true", help="keep callgrind files")
    args = ap.parse_args()
    if not (1 <= args.rounds <= 20 and 0.5 <= args.seconds <= 60 and
            100 <= args.queries <= 100000 and 100 <= args.rate <= 100000 and
            1 <= args.top <= 100):
        ap.error("value out of range")
    if args.denial_only and args.no_denial:
        ap.error("--denial-only and --no-denial exclude each other")
    if args.denial_only:
        args.no_qps = True

    if kh.module_so() is None:
        out("skip: MXFILTER_SO not set or missing")
        return 77
    if srv.DNSPERF is None or not os.path.exists(kh.KNOTD):
        out("skip: dnsperf or knotd missing (apt-get install dnsperf knot)")
        return 77

    tmp = tempfile.mkdtemp(prefix="mxf-bench-signed-")
    ok = True
    try:
        if not args.no_qps:
            qps_rounds(args, tmp)
        if not args.no_callgrind and not args.no_cases:
            ok = callgrind_all(args, tmp)
        if not args.no_callgrind and args.owners.strip() and srv.VALGRIND and \
                srv.CALLGRIND_CONTROL:
            owners_axis(args, tmp)
    except RuntimeError as e:
        out("SETUP BROKEN: %s" % e)
        ok = False
    finally:
        if args.keep:
            out("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
