#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit trail as an operator reads it (docs/log-format.md): one line per
record and log-interval, at once, whatever the query rate, the worker thread
or a change of mode; `suppressed N` counts exactly what was not logged;
`missing MX` lines for every exchanger an answer gains; wildcard answers
logged by the wildcard; every line within Knot's 512 bytes with all its
fields; failures limited per zone and served owner; at the limiter's memory
bound, records logged rather than dropped. The 20,000-zone case is in
test_audit_scale.py."""

import random
import re
import threading
import time
import unittest

from knotharness import (FILTER_SET, Config, Knotd, Zone, assert_enforced, knot_series, main,
                         module_so, summary, zone_text)

LEGACY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
"""

LEGACY_NAMES = ("mailgate", "smtp.isp.net")

POLICIES = [
    {"id": "li2", "log-interval": 2},
    {"id": "li0", "log-interval": 0},
    {"id": "audit", "mode": "audit"},
]

WILD = """
@ MX 10 france.security-mail.net.
@ MX 20 europe.security-mail.net.
*.w MX 5 old.example.
d DNAME w
"""

ZONES = [
    Zone("burst.test", LEGACY, module="mod-mxfilter"),
    Zone("li2.test", LEGACY, module="mod-mxfilter/li2"),
    Zone("li0.test", LEGACY, module="mod-mxfilter/li0"),
    Zone("twin.test", LEGACY, module="mod-mxfilter"),
    # Answers that change without a legacy record to name.
    Zone("partial.test", "@ MX 10 france.security-mail.net.", module="mod-mxfilter"),
    Zone("nomx.test", "www A 192.0.2.1", module="mod-mxfilter"),
    Zone("compliant.test", "@ MX 10 france.security-mail.net.\n"
                           "@ MX 20 europe.security-mail.net.", module="mod-mxfilter"),
    Zone("partial-audit.test", "@ MX 20 europe.security-mail.net.",
         module="mod-mxfilter/audit"),
    Zone("nomx-audit.test", "www A 192.0.2.1", module="mod-mxfilter/audit"),
    Zone("compliant-audit.test", "@ MX 10 france.security-mail.net.\n"
                                 "@ MX 20 europe.security-mail.net.",
         module="mod-mxfilter/audit"),
    Zone("wild.test", WILD, module="mod-mxfilter"),
    # An alias of an apex without MX: the apex's answer, and its lines.
    Zone("alias.test", "@ A 192.0.2.1\nwww CNAME @", module="mod-mxfilter"),
    Zone("alias-audit.test", "@ A 192.0.2.1\nwww CNAME @", module="mod-mxfilter/audit"),
]


def line_re(zone, pref, exch, risk, suppressed=r"\d+", action="blocked", owner=None):
    return (r" (?:notice|warning): \[%s\.\] module 'mod-mxfilter(/[^']+)?', legacy MX %s, "
            r"owner %s\., preference %d, exchange %s, risk %s, client 127\.0\.0\.1, "
            r"suppressed (%s)$" % (re.escape(zone), action, re.escape(owner or zone), pref,
                                   re.escape(exch), risk, suppressed))


def missing_re(zone, pref, exch, action, level):
    return (r" %s: \[%s\.\] module 'mod-mxfilter(/[^']+)?', missing MX %s, owner %s\., "
            r"preference %d, exchange %s, client 127\.0\.0\.1, suppressed \d+$"
            % (level, re.escape(zone), action, re.escape(zone), pref, re.escape(exch)))


class Audit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # More workers than cores: the limiter must hold across threads.
        cls.k = Knotd(Config(ZONES, policies=POLICIES, log_level="info",
                             server={"udp-workers": 4, "tcp-workers": 4}))
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def burst(self, zone, n, threads=5, rtype="MX"):
        """N queries from THREADS concurrent clients, UDP and TCP mixed, so
        several knotd workers answer. Returns the replies."""
        replies, errors = [], []
        lock = threading.Lock()

        def worker(i):
            for j in range(i, n, threads):
                try:
                    r = self.k.wire(zone, rtype, tcp=(j % 3 == 0))
                    with lock:
                        replies.append(r)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(repr(e))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(replies), n)
        return replies

    def lines(self, zone, pref, exch, risk, since=0):
        rx = re.compile(line_re(zone, pref, exch, risk))
        return [l for l in self.k.log_lines(since) if rx.search(l)]

    def test_burst_one_line_per_record(self):
        """50 queries with log-interval 60: exactly one line per record."""
        mark = self.k.mark()
        for r in self.burst("burst.test", 50):
            assert_enforced(r, "burst.test.", legacy=LEGACY_NAMES)
        self.k.wait_log(line_re("burst.test", 40, "smtp.isp.net.", "fallback"), mark)
        self.k.settle_log()
        l5 = self.lines("burst.test", 5, "mailgate.burst.test.", "bypass", mark)
        l40 = self.lines("burst.test", 40, "smtp.isp.net.", "fallback", mark)
        allmod = self.k.module_lines(mark, "legacy MX")
        self.assertEqual(len(l5), 1, "\n".join(allmod))
        self.assertEqual(len(l40), 1, "\n".join(allmod))
        self.assertEqual(len(allmod), 2, "\n".join(allmod))
        for l in l5 + l40:
            self.assertTrue(l.endswith("suppressed 0"), l)
        # A second zone with the same records is rate-limited on its own.
        self.k.wire("twin.test", "MX", tcp=True)
        twin = [line_re("twin.test", 5, "mailgate.twin.test.", "bypass", "0"),
                line_re("twin.test", 40, "smtp.isp.net.", "fallback", "0")]
        self.k.wait_log("|".join(twin), mark, count=2)
        self.k.settle_log()
        lines = self.k.module_lines(mark, r"\[twin\.test\.\]")
        self.assertEqual([[bool(re.search(rx, l)) for rx in twin] for l in lines],
                         [[True, False], [False, True]], "\n".join(lines))
        summary("burst of 50, log-interval 60", l5 + l40)

    def test_interval_suppressed_count(self):
        """log-interval 2: 50 queries, wait past it, one more query: a line
        with `suppressed 49` for each record, and nothing more."""
        mark = self.k.mark()
        for r in self.burst("li2.test", 50):
            assert_enforced(r, "li2.test.", legacy=LEGACY_NAMES)
        self.k.wait_log(line_re("li2.test", 40, "smtp.isp.net.", "fallback"), mark)
        self.k.settle_log()
        first5 = self.lines("li2.test", 5, "mailgate.li2.test.", "bypass", mark)
        first40 = self.lines("li2.test", 40, "smtp.isp.net.", "fallback", mark)
        self.assertEqual(len(first5), 1, "\n".join(self.k.module_lines(mark)))
        self.assertEqual(len(first40), 1, "\n".join(self.k.module_lines(mark)))
        time.sleep(3.2)
        mark2 = self.k.mark()
        self.k.wire("li2.test", "MX", tcp=True)
        l5 = self.k.wait_log(line_re("li2.test", 5, "mailgate.li2.test.", "bypass", "49"), mark2)
        l40 = self.k.wait_log(line_re("li2.test", 40, "smtp.isp.net.", "fallback", "49"), mark2)
        self.assertEqual(len(l5), 1, "\n".join(self.k.module_lines(mark2)))
        self.assertEqual(len(l40), 1, "\n".join(self.k.module_lines(mark2)))
        # Counters count every blocked record, logged or not.
        s = self.k.zone_stats("li2.test")
        self.assertEqual(s.get("blocked[bypass]"), 51, s)
        self.assertEqual(s.get("blocked[fallback]"), 51, s)
        self.assertEqual(s.get("enforced"), 51, s)
        summary("log-interval 2", first5 + first40 + l5 + l40)

    def test_interval_zero_logs_everything(self):
        """log-interval 0: every occurrence logged, suppressed 0."""
        mark = self.k.mark()
        self.burst("li0.test", 20, threads=4)
        want = (line_re("li0.test", 5, "mailgate.li0.test.", "bypass", "0"),
                line_re("li0.test", 40, "smtp.isp.net.", "fallback", "0"))
        for rx in want:
            self.k.wait_log(rx, mark, count=20)
        self.k.settle_log()
        for rx in want:
            self.assertEqual(len([l for l in self.k.log_lines(mark) if re.search(rx, l)]), 20)
        self.assertEqual(len(self.k.module_lines(mark, "legacy MX")), 40)

    def test_missing_mx(self):
        """Answers enforce changes without a legacy record: a partial set,
        an apex without MX. Enforce adds the missing exchangers (`missing
        MX added`); audit mode serves the data and logs what enforce would
        add (`missing MX audit`), NODATA at the apex included; a compliant
        zone logs nothing."""
        mark = self.k.mark()
        for z in ("partial.test", "nomx.test", "compliant.test"):
            for _ in range(3):
                self.assertEqual(self.k.wire(z, "MX").mx(), FILTER_SET, z)
        r = self.k.wire("partial-audit.test", "MX")
        self.assertEqual(r.mx(), [(20, "europe.security-mail.net.")], r.text())
        r = self.k.wire("nomx-audit.test", "MX")
        self.assertEqual((r.rcode, r.answer), ("NOERROR", []), r.text())
        self.k.wire("compliant-audit.test", "MX")
        want = [
            missing_re("partial.test", 20, "europe.security-mail.net.", "added", "notice"),
            missing_re("nomx.test", 10, "france.security-mail.net.", "added", "notice"),
            missing_re("nomx.test", 20, "europe.security-mail.net.", "added", "notice"),
            missing_re("partial-audit.test", 10, "france.security-mail.net.", "audit",
                       "warning"),
            missing_re("nomx-audit.test", 10, "france.security-mail.net.", "audit",
                       "warning"),
            missing_re("nomx-audit.test", 20, "europe.security-mail.net.", "audit",
                       "warning"),
        ]
        for rx in want:
            self.assertTrue(self.k.wait_log(rx, mark), rx + "\n" +
                            "\n".join(self.k.module_lines(mark)))
        self.k.settle_log()
        lines = self.k.module_lines(mark, "missing MX|legacy MX")
        for rx in want:  # Once each: three answers, one interval.
            self.assertEqual(len([l for l in lines if re.search(rx, l)]), 1, rx)
        self.assertEqual(len(lines), len(want), "\n".join(lines))
        self.assertFalse([l for l in lines if "compliant" in l])
        # Counters: no legacy record was blocked or served.
        s = self.k.zone_stats("partial.test")
        self.assertEqual((s.get("enforced"), s.get("blocked[bypass]")), (3, 0), s)
        self.assertEqual(self.k.zone_stats("nomx.test").get("synthesized"), 3)
        self.assertEqual(self.k.zone_stats("partial-audit.test").get("audited"), 0)
        summary("missing MX", lines)

    def test_missing_mx_through_cname(self):
        """An MX query for `www CNAME @` in a zone without MX: enforce
        answers the CNAME and the synthesized set and logs its `missing MX
        added` lines under the apex; audit mode serves Knot's answer (the
        CNAME, no MX) and logs `missing MX audit`, the preview of it."""
        mark = self.k.mark()
        r = self.k.wire("www.alias.test", "MX")
        self.assertEqual(r.mx(owner="alias.test."), FILTER_SET, r.text())
        self.assertEqual([a[2] for a in r.answer], ["CNAME", "MX", "MX"], r.text())
        r = self.k.wire("www.alias-audit.test", "MX")
        self.assertEqual(([a[2] for a in r.answer], r.mx()), (["CNAME"], []), r.text())
        want = [missing_re(z, pref, ex, action, level)
                for z, action, level in (("alias.test", "added", "notice"),
                                         ("alias-audit.test", "audit", "warning"))
                for pref, ex in FILTER_SET]
        self.k.wait_log("|".join(want), mark, count=len(want))
        self.k.settle_log()
        lines = self.k.module_lines(mark, "missing MX|legacy MX")
        self.assertEqual(sorted([i for i, rx in enumerate(want) if re.search(rx, l)]
                                for l in lines), [[i] for i in range(len(want))],
                         "one line per exchanger and zone:\n" + "\n".join(lines))
        self.assertEqual(self.k.zone_stats("alias.test").get("synthesized"), 1)
        summary("missing MX through a CNAME", self.k.module_lines(mark, "missing MX"))

    def test_wildcard_owner(self):
        """Wildcard answers are logged and keyed by the wildcard, never by
        the name asked: 30 random names give one line. Through a DNAME the
        client chooses the name too: the line names the wildcard (Knot 3.4+)
        or the zone's `*.wild.test.` (Knot 3.2 cannot show which wildcard)."""
        mark = self.k.mark()
        names = ["%s.w.wild.test" % "".join(random.choice("abcdefghij") for _ in range(20))
                 for _ in range(30)]
        for n in names:
            assert_enforced(self.k.wire(n, "MX"), n + ".", legacy=["old.example"])
        rx = line_re("wild.test", 5, "old.example.", "bypass", owner="*.w.wild.test")
        self.assertTrue(self.k.wait_log(rx, mark), "\n".join(self.k.module_lines(mark)))
        dname = "%s.d.wild.test" % ("x" * 60)
        r = self.k.wire(dname, "MX")
        self.assertEqual(r.mx(owner=dname.replace(".d.", ".w.")), FILTER_SET, r.text())
        if knot_series() < (3, 4):
            rx = line_re("wild.test", 5, "old.example.", "bypass", owner="*.wild.test")
            self.assertTrue(self.k.wait_log(rx, mark), "\n".join(self.k.module_lines(mark)))
        self.k.settle_log()
        lines = self.k.module_lines(mark, "legacy MX")
        # Knot 3.4: the same record as the direct answers (held, no line).
        self.assertEqual(len(lines), 1 if knot_series() >= (3, 4) else 2, "\n".join(lines))
        self.assertFalse([l for l in lines if "x" * 60 in l or names[0] in l])
        summary("wildcard owner", lines)


class Rollout(unittest.TestCase):
    """The operator guide's rollout: 20 zones in audit mode with
    `log-interval: 3600`, each asked a few times; then `mode: enforce` and
    `knotc reload`: every record's `blocked` line at once."""

    ZONES = 20

    def test_audit_then_enforce(self):
        body = "@ MX 5 mailgate\n@ MX 40 smtp.isp.net.\n@ MX 50 old.example.\n"
        zones = [Zone("r%02d.test" % i, body, module="mod-mxfilter/rollout")
                 for i in range(self.ZONES)]
        with Knotd(Config(zones, policies=[{"id": "rollout", "mode": "audit",
                                            "log-interval": 3600}], log_level="info")) as k:
            for z in zones:
                for tcp in (False, True, False):
                    r = k.wire(z.domain, "MX", tcp=tcp)
                    self.assertEqual(len(r.mx()), 3, r.text())
            audit = k.wait_log(r" warning: .*legacy MX audit, ", count=3 * self.ZONES)
            k.settle_log()
            self.assertEqual(len(k.module_lines(0, "legacy MX audit")), 3 * self.ZONES)

            k.config.policies = [{"id": "rollout", "mode": "enforce", "log-interval": 3600}]
            mark = k.mark()
            k.reload()
            # The new instances keep the zones' records: the audit lines'
            # intervals run on, nothing is written at the reload.
            self.assertEqual(k.module_lines(mark, "legacy MX"), [])
            for z in zones:
                assert_enforced(k.wire(z.domain, "MX", tcp=True), z.domain + ".",
                                legacy=["mailgate", "smtp.isp.net", "old.example"])
            blocked = k.wait_log(r" notice: .*legacy MX blocked, .*suppressed 0$", mark,
                                 count=3 * self.ZONES)
            k.settle_log()
            self.assertEqual(len(blocked), 3 * self.ZONES,
                             "\n".join(k.module_lines(mark)))
            keys = {re.search(r"\[(\S+)\] .*preference (\d+)", l).groups() for l in blocked}
            self.assertEqual(len(keys), 3 * self.ZONES)
            summary("rollout", ["%d audit lines, then %d blocked lines after the reload"
                                % (len(audit), len(blocked))] + blocked[:3])


def long_name(fill, suffix):
    """A name of 255 bytes (wire) of FILL bytes, then SUFFIX: as latin-1
    text for the wire client, and in zone-file form (\\DDD escapes)."""
    labels = []
    size = len(_wire(suffix))
    while size + 64 <= 255:
        labels.append(fill * 63)
        size += 64
    if 255 - size - 1 > 0:
        labels.append(fill * (255 - size - 1))
    text = ".".join(labels) + "." + suffix
    zone = ".".join("".join("\\%03d" % ord(c) for c in lab) for lab in labels) + "." + suffix
    return text, zone


def _wire(name):
    return b"".join(bytes([len(l)]) + l.encode("latin-1")
                    for l in name.rstrip(".").split(".") if l) + b"\0"


class LongNames(unittest.TestCase):
    """Owner and exchange of maximal length, every byte escaped (`\\255` is
    four characters), a long module id: every line fits Knot's 512-byte
    buffer with all its fields, names shortened visibly (`...`)."""

    def test_every_field_present(self):
        zone = "long-names.example"
        owner, owner_zf = long_name("\xff", zone + ".")
        exch, exch_zf = long_name("\xfe", "example.")
        body = "%s MX 5 %s\n%s MX 40 smtp.isp.net.\nshort MX 7 %s\n" % (
            owner_zf, exch_zf, owner_zf, exch_zf)
        pid = "p" * 120
        text = zone_text(zone, "") + body
        with Knotd(Config([Zone(zone, text=text, module="mod-mxfilter/" + pid)],
                          policies=[{"id": pid, "log-interval": 0}], log_level="info")) as k:
            mark = k.mark()
            for name in (owner, "short." + zone):
                assert_enforced(k.wire(name, "MX", tcp=True), name.rstrip(".") + ".",
                                legacy=["smtp.isp.net", "\xfe" * 63])
            k.wait_log(r"legacy MX blocked", mark, count=3)
            k.settle_log()
            lines = k.module_lines(mark, "legacy MX")
            self.assertEqual(len(lines), 3, "\n".join(lines))
            full = re.compile(r" notice: \[%s\.\] module 'mod-mxfilter/%s', legacy MX blocked, "
                              r"owner (\S+), preference (5|7|40), exchange (\S+), "
                              r"risk (bypass|fallback), client 127\.0\.0\.1, suppressed 0$"
                              % (re.escape(zone), pid))
            for l in lines:
                msg = re.sub(r"^\S+T\S+ ", "", l)  # Knot's buffer: after the timestamp.
                self.assertLessEqual(len(msg.encode()), 511, msg)
                m = full.search(l)
                self.assertTrue(m, l)
                self.assertIn("...", m.group(1) + m.group(3), l)
            summary("long names", ["%d bytes: %s" % (len(re.sub(r"^\S+T\S+ ", "", l)), l)
                                   for l in lines])


PRESIGNED = """
@ RRSIG SOA 13 2 3600 20350101000000 20200101000000 12345 presigned.test. AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
*.w MX 5 old.example.
"""


class ErrorFlood(unittest.TestCase):
    """A pre-signed zone (no private key here) with a legacy wildcard MX:
    DO queries for 200 random names under it fail closed (SERVFAIL), and
    the error lines are keyed by the served owner, the wildcard: a few
    lines, not 200."""

    def test_few_error_lines(self):
        with Knotd(Config([Zone("presigned.test", PRESIGNED, module="mod-mxfilter")],
                          log_level="info"), allow_module_errors=True) as k:
            mark = k.mark()
            t0 = time.monotonic()
            for i in range(200):
                name = "%08x%d.w.presigned.test" % (random.getrandbits(32), i)
                r = k.wire(name, "MX", do=True, tcp=True)
                self.assertEqual(r.rcode, "SERVFAIL", r.text())
                self.assertEqual(r.all_records(), [], r.text())
            k.wait_log(r"failed to enforce MX", mark)
            k.settle_log()
            elapsed = time.monotonic() - t0
            errs = k.module_lines(mark, "failed to enforce MX")
            # The owner's first failure is logged at once, then at most one
            # line a minute (the module counts whole seconds): exactly one
            # line when it all took less than 59 s.
            self.assertRegex(errs[0] if errs else "", r", suppressed 0 \(", "\n".join(errs))
            if elapsed < 59:
                self.assertEqual(len(errs), 1, "\n".join(errs))
            else:
                self.assertLessEqual(len(errs), 1 + int(elapsed // 59), "\n".join(errs))
            for l in errs:
                self.assertRegex(l, r" error: \[presigned\.test\.\] module 'mod-mxfilter', "
                                 r"failed to enforce MX, owner \*\.w\.presigned\.test\., "
                                 r"answered SERVFAIL, suppressed \d+ \(.+\)$")
            self.assertEqual(k.zone_stats("presigned.test").get("failed"), 200)
            summary("error flood", errs)


@unittest.skipUnless(module_so("MXFILTER_FAULTY_SO"), "MXFILTER_FAULTY_SO not built")
class Bound(unittest.TestCase):
    """At the limiter's memory bound (lowered through the test build's
    MXFILTER_AUDIT_MEMORY) records are logged rather than dropped: every
    record has its lines, one notice says the bound was reached."""

    OWNERS = 1500

    def test_logged_not_dropped(self):
        body = "\n".join("h%d MX 5 old.example." % i for i in range(self.OWNERS))
        with Knotd(Config([Zone("bound.test", body, module="mod-mxfilter")], log_level="info",
                          module=module_so("MXFILTER_FAULTY_SO")),
                   env={"MXFILTER_AUDIT_MEMORY": str(96 << 10)}) as k:
            mark = k.mark()
            for rep in range(2):
                for i in range(self.OWNERS):
                    assert_enforced(k.wire("h%d.bound.test" % i, "MX", tcp=True),
                                    "h%d.bound.test." % i, legacy=["old.example"])
            k.wait_log(r"legacy MX blocked", mark, count=self.OWNERS)
            k.settle_log()
            lines = k.module_lines(mark, "legacy MX blocked")
            per = {}
            for l in lines:
                o = re.search(r"owner (h\d+)\.bound\.test\.", l).group(1)
                per[o] = per.get(o, 0) + 1
            self.assertEqual(len(per), self.OWNERS)  # None dropped.
            twice = [o for o, n in per.items() if n == 2]
            self.assertTrue(twice, "the bound was not reached")
            self.assertEqual(sum(per.values()), self.OWNERS + len(twice))
            notes = k.module_lines(mark, "audit limiter full")
            self.assertEqual(len(notes), 1, "\n".join(notes))
            self.assertRegex(notes[0], r" warning: \[bound\.test\.\] module 'mod-mxfilter', "
                             r"audit limiter full, entries \d+, memory \d+, limit 98304$")
            summary("bound", notes + ["%d records, %d with an entry (one line), %d logged "
                                      "at both occurrences" % (len(per), len(per) - len(twice),
                                                               len(twice))])


if __name__ == "__main__":
    main()
