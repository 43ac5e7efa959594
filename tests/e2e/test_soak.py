#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Soak and memory checks of knotd with mod-mxfilter.

Soak (about 45 s): dnsperf loads enrolled zones over UDP and TCP while a
loop edits their zone files (adds and removes legacy MX records, sometimes
makes a zone compliant or drops its MX) and runs `knotc zone-reload` and
`knotc reload`, and two checkers query over UDP and TCP all the time. No
answer may ever hold a legacy MX; knotd must stay up. Prints queries
served, reloads, checks, legacy MX seen, SERVFAILs, and knotd's RSS
before and after.

Memcheck: knotd runs under valgrind memcheck with the module through a
short scenario (every kind of MX answer, UDP and TCP, an audit zone with
`counters: off`, a zone reload, a configuration reload); valgrind must report no invalid access at all and
no definite leak from mxfilter.so (knotd's own leaks are only counted).
Skipped without valgrind or in a sanitizer build.

    python3 test_soak.py            # both
    python3 test_soak.py Soak       # one of them
    MXF_SOAK_SECONDS=300 python3 test_soak.py Soak   # longer
"""

import os
import random
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from knotharness import (FILTER_SET, Config, Knotd, Zone, main, make_query, mx_groups,
                         opt_rr, parse_strict, require_module, sanitized, summary, tcp_exchange,
                         udp_exchange, zone_text)

FILTER = sorted((p, n.lower()) for p, n in FILTER_SET)
SOAK_SECONDS = min(int(os.environ.get("MXF_SOAK_SECONDS", "40")), 3600)
NZONES = 12


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
            return int(m.group(1)) if m else -1
    except OSError:
        return -1


class ZoneState:
    """What one soak zone holds now; text() renders it with a new serial."""

    def __init__(self, i):
        self.domain = "soak%d.test" % i
        self.serial = 1
        self.apex = [(5, "mailgate"), (40, "smtp.isp.net.")]
        self.sub = [(7, "mailgate")]
        self.wild = [(8, "old-mx.example.")]

    def mutate(self, rnd):
        r = rnd.random()
        if r < 0.15:
            self.apex = [(10, "france.security-mail.net."), (20, "europe.security-mail.net.")]
        elif r < 0.25:
            self.apex = []
        elif r < 0.6:
            self.apex = self.apex + [(rnd.randrange(0, 100), "legacy%d.example." % rnd.randrange(50))]
        elif self.apex:
            self.apex = self.apex[1:]
        if rnd.random() < 0.3:
            self.sub = [] if self.sub and rnd.random() < 0.3 else \
                [(rnd.randrange(0, 50), "mailgate")] + self.sub[:3]
        if rnd.random() < 0.2:
            self.wild = [(rnd.randrange(0, 50), "w%d.example." % rnd.randrange(9))]
        self.serial += 1

    def text(self):
        body = ["mailgate A 192.0.2.25", "www A 192.0.2.80", "alias CNAME sub"]
        body += ["@ MX %d %s" % mx for mx in dict(((p, n), None) for p, n in self.apex)]
        body += ["sub MX %d %s" % mx for mx in dict(((p, n), None) for p, n in self.sub)]
        body += ["sub TXT \"soak\""]
        body += ["*.wild MX %d %s" % mx for mx in self.wild]
        return zone_text(self.domain, "\n".join(body), serial=self.serial)


def check_reply(reply):
    """Returns (legacy records, rcode) for one parsed reply."""
    legacy = 0
    for (_, owner), recs in mx_groups(reply).items():
        if sorted(recs) != FILTER and recs != [(0, ".")]:  # null MX: kept
            legacy += sum(1 for r in recs if r not in FILTER) or 1
    return legacy, reply["rcode"]


class Checker(threading.Thread):
    """Queries the zones without pause until stopped (bounded by deadline)."""

    NAMES = ["%s", "sub.%s", "x.wild.%s", "alias.%s", "SuB.%s"]

    def __init__(self, port, zones, tcp, deadline):
        super().__init__(daemon=True)
        self.port, self.zones, self.tcp, self.deadline = port, zones, tcp, deadline
        self.stop_flag = threading.Event()
        self.checks = self.legacy = self.servfail = self.timeouts = self.errors = 0
        self.bad = []
        self.rnd = random.Random(61 + tcp)

    def run(self):
        while not self.stop_flag.is_set() and time.monotonic() < self.deadline:
            zone = self.rnd.choice(self.zones)
            name = self.rnd.choice(self.NAMES) % (zone + ".")
            qtype = 15 if self.rnd.random() < 0.85 else 255
            edns = opt_rr(self.rnd.choice([512, 1232, 4096])) if self.rnd.random() < 0.7 else None
            msg = make_query(name, qtype, edns=edns)
            try:
                data = self.send(msg)
            except (OSError, ValueError):
                self.timeouts += 1
                continue
            if data is None:
                self.timeouts += 1
                continue
            try:
                reply = parse_strict(data)
            except (ValueError, IndexError, struct.error):
                self.errors += 1
                continue
            legacy, rcode = check_reply(reply)
            self.checks += 1
            self.legacy += legacy
            if legacy and len(self.bad) < 5:
                self.bad.append((name, qtype, "tcp" if self.tcp else "udp", reply["records"][:6]))
            if rcode == 2:
                self.servfail += 1

    def send(self, msg):
        if self.tcp:
            return tcp_exchange(self.port, msg, timeout=2)
        return udp_exchange(self.port, msg, timeout=1)


def dnsperf_figures(out):
    done = re.search(r"Queries completed:\s+(\d+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    codes = {}
    if "Response codes:" in out:
        codes = dict((c, int(n)) for c, n in re.findall(
            r"(\w+) (\d+) \(", out.split("Response codes:")[1].splitlines()[0]))
    return (int(done.group(1)) if done else 0, int(lost.group(1)) if lost else 0, codes)


@unittest.skipUnless(shutil.which("dnsperf"), "dnsperf not installed")
class Soak(unittest.TestCase):
    def test_soak(self):
        rnd = random.Random(int(os.environ.get("MXF_SOAK_SEED", "45")))
        states = [ZoneState(i) for i in range(NZONES)]
        zones = [Zone(s.domain, text=s.text(), module="mod-mxfilter") for s in states]
        # A zone outside the module, also edited and queried.
        plain = ZoneState(99)
        plain.domain = "plain.test"
        zones.append(Zone(plain.domain, text=plain.text()))
        k = Knotd(Config(zones, log_level="notice",
                         server={"udp-workers": 2, "tcp-workers": 2}))
        k.start()
        tmp = tempfile.mkdtemp(prefix="mxf-soak-")
        procs = []
        try:
            qfile = os.path.join(tmp, "queries")
            with open(qfile, "w") as f:
                for s in states + [plain]:
                    for q in ("%s MX", "sub.%s MX", "x.wild.%s MX", "alias.%s MX",
                              "www.%s A", "%s SOA", "sub.%s ANY"):
                        f.write(q % s.domain + "\n")
            k.wire(states[0].domain, "MX")  # warm up
            rss_before = rss_kb(k.pid)
            start = time.monotonic()
            deadline = start + SOAK_SECONDS + 20
            perf = []
            for mode, qps, clients in (("udp", 2500, 4), ("tcp", 400, 2)):
                out = open(os.path.join(tmp, "dnsperf-" + mode), "w+")
                p = subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(k.port),
                                      "-m", mode, "-d", qfile, "-c", str(clients), "-T", "1",
                                      "-l", str(SOAK_SECONDS), "-Q", str(qps), "-t", "3"],
                                     stdout=out, stderr=subprocess.STDOUT)
                procs.append(p)
                perf.append((mode, p, out))
            checkers = [Checker(k.port, [s.domain for s in states], tcp, deadline)
                        for tcp in (False, True)]
            for c in checkers:
                c.start()

            zone_reloads = conf_reloads = compliant_edits = 0
            next_conf = start + 4
            while time.monotonic() - start < SOAK_SECONDS:
                self.assertTrue(k.alive(), "knotd died during the soak")
                s = rnd.choice(states + [plain])
                s.mutate(rnd)
                compliant_edits += s.apex == [(10, "france.security-mail.net."),
                                              (20, "europe.security-mail.net.")]
                k.write_zone(s.domain, s.text())
                k.knotc("zone-reload", s.domain)
                zone_reloads += 1
                if time.monotonic() > next_conf:
                    k.knotc("reload")
                    conf_reloads += 1
                    next_conf = time.monotonic() + 4
                time.sleep(0.2)

            results = {}
            for mode, p, out in perf:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
                out.seek(0)
                text = out.read()
                out.close()
                results[mode] = dnsperf_figures(text) + (text,)
            for c in checkers:
                c.stop_flag.set()
            for c in checkers:
                c.join(timeout=10)
            self.assertTrue(k.alive(), "knotd died during the soak")
            k.wait_zones_loaded()
            rss_after = rss_kb(k.pid)
            st = {}
            for s in states:
                for key, v in k.zone_stats(s.domain).items():
                    st[key] = st.get(key, 0) + v

            served = sum(r[0] for r in results.values())
            servfail = sum(r[2].get("SERVFAIL", 0) for r in results.values())
            checks = sum(c.checks for c in checkers)
            legacy = sum(c.legacy for c in checkers)
            chk_servfail = sum(c.servfail for c in checkers)
            lines = [
                "duration: %d s, %d enrolled zones + 1 plain" % (SOAK_SECONDS, NZONES),
                "dnsperf udp: %d completed, %d lost, codes %s" % results["udp"][:3],
                "dnsperf tcp: %d completed, %d lost, codes %s" % results["tcp"][:3],
                "queries served (dnsperf): %d" % served,
                "reloads: %d zone-reload, %d reload (config), %d edits made a zone compliant"
                % (zone_reloads, conf_reloads, compliant_edits),
                "checks: %d (udp %d, tcp %d), unanswered %d, unparsable %d"
                % (checks, checkers[0].checks, checkers[1].checks,
                   sum(c.timeouts for c in checkers), sum(c.errors for c in checkers)),
                "legacy MX seen: %d" % legacy,
                "SERVFAIL: %d from dnsperf, %d from the checkers" % (servfail, chk_servfail),
                "knotd VmRSS: %d kB before, %d kB after (%+d kB)"
                % (rss_before, rss_after, rss_after - rss_before),
                "module counters: %s" % ", ".join("%s %d" % kv for kv in sorted(st.items())),
            ]
            summary("soak", lines)
            self.assertEqual(legacy, 0, "legacy MX served: %s" % [c.bad for c in checkers])
            self.assertGreater(checks, 100, "the checkers hardly ran")
            self.assertGreater(served, 1000, results["udp"][3][-2000:])
            self.assertEqual(st.get("failed", 0), 0, st)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=5)
            shutil.rmtree(tmp, ignore_errors=True)
            k.stop()


# ----------------------------------------------------------------------------
# valgrind memcheck

MEMCHECK_BODY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
mailgate AAAA 2001:db8::25
sub MX 7 mailgate
sub MX 10 france.security-mail.net.
*.wild MX 8 mailgate
alias CNAME sub
compliant MX 10 france.security-mail.net.
compliant MX 20 europe.security-mail.net.
null MX 0 .
www A 192.0.2.80
"""


class ValgrindKnotd(Knotd):
    START_TIMEOUT = 120.0


def valgrind_report(log):
    """(invalid accesses, definite leak blocks from mxfilter, knotd's own
    definite leak blocks, error summary line)."""
    invalid = len(re.findall(r"^==\d+== (Invalid (read|write|free)|Mismatched free|"
                             r"Source and destination overlap|"
                             r"Conditional jump or move depends on uninitialised|"
                             r"Use of uninitialised value|Syscall param .* uninitialised)",
                             log, re.M))
    ours = theirs = 0
    blocks = re.split(r"^==\d+== \n", log, flags=re.M)
    for b in blocks:
        if "definitely lost in loss record" in b:
            if re.search(r"mxfilter|rewrite\.c|policy\.c|audit\.c|sign\.c", b):
                ours += 1
            else:
                theirs += 1
    m = re.search(r"ERROR SUMMARY: .*", log)
    lost = re.search(r"definitely lost: .*", log)
    return invalid, ours, theirs, "%s; %s" % (
        m.group(0) if m else "no valgrind summary",
        lost.group(0) if lost else "no leak summary")


@unittest.skipUnless(shutil.which("valgrind"), "valgrind not installed")
@unittest.skipIf(sanitized(), "sanitizer build: valgrind cannot run it")
class Memcheck(unittest.TestCase):
    def test_memcheck(self):
        require_module()
        tmp = tempfile.mkdtemp(prefix="mxf-vg-")
        log_path = os.path.join(tmp, "valgrind.log")
        config = Config([Zone("vg.test", MEMCHECK_BODY, module="mod-mxfilter/vg"),
                         Zone("signed.test", MEMCHECK_BODY, module="mod-mxfilter/vg",
                              extra={"dnssec-signing": True}),
                         Zone("audit.test", MEMCHECK_BODY, module="mod-mxfilter/au"),
                         Zone("plain.test", MEMCHECK_BODY)],
                        policies=[{"id": "vg", "log-interval": 0},
                                  {"id": "au", "mode": "audit", "scope": "apex",
                                   "counters": "off"}],
                        log_level="info", server={"udp-workers": 1, "tcp-workers": 1})
        k = ValgrindKnotd(config, wrapper=[
            "valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite", "--num-callers=40", "--log-file=" + log_path])
        queries = signed = 0
        try:
            k.start()
            t0 = time.monotonic()
            names = ["%s", "sub.%s", "x.wild.%s", "alias.%s", "compliant.%s", "null.%s",
                     "www.%s", "nx.%s", "MaIlGaTe.%s"]
            for rnd in range(3):
                for zone in ("vg.test.", "signed.test.", "audit.test.", "plain.test."):
                    for n in names:
                        for qtype in (15, 255, 1):
                            for tcp in (False, True):
                                msg = make_query(n % zone, qtype,
                                                 edns=opt_rr(512 if tcp else 1232,
                                                             do=bool(queries % 2)))
                                r = parse_strict(k.exchange(msg, tcp=tcp, timeout=10))
                                if zone in ("vg.test.", "signed.test."):
                                    self.assertEqual(check_reply(r)[0], 0, n % zone)
                                if zone == "signed.test." and any(
                                        t == 46 for sec, _, t, _, _ in r["records"] if sec == "an") \
                                        and any(t == 15 for _, _, t, _, _ in r["records"]):
                                    signed += 1
                                queries += 1
                if rnd == 1:
                    k.write_zone("vg.test", zone_text("vg.test", MEMCHECK_BODY +
                                                      "\nsub MX 9 other.example.", serial=2))
                    k.knotc("zone-reload", "vg.test")
                    k.knotc("reload")
                    k.wait_zones_loaded(timeout=60)
            elapsed = time.monotonic() - t0
            # Stop and let valgrind write its report (a signal: no report,
            # and an exit status that fails below).
            rc = k.stop(check=False, timeout=180)
        finally:
            k.stop(check=False)
        with open(log_path, errors="replace") as f:
            log = f.read()
        shutil.rmtree(tmp, ignore_errors=True)
        self.assertIn("Memcheck", log[:2000], "no valgrind report")
        invalid, ours, theirs, errsum = valgrind_report(log)
        summary("memcheck", [
            "knotd under valgrind memcheck: %d queries (%d signed MX answers) in %.1f s, "
            "zone-reload and reload, exit %s" % (queries, signed, elapsed, rc),
            "invalid accesses / uninitialised uses: %d" % invalid,
            "definite leaks from mxfilter.so: %d, from knotd itself: %d" % (ours, theirs),
            errsum,
        ])
        if invalid or ours:
            print(log[-20000:])
        self.assertEqual(rc, 0, "knotd exit status under valgrind")
        self.assertGreater(signed, 0, "no signed MX answer: the signer was not exercised")
        self.assertEqual(invalid, 0, "valgrind reported invalid accesses")
        self.assertEqual(ours, 0, "valgrind reported definite leaks from mxfilter.so")


if __name__ == "__main__":
    main()
