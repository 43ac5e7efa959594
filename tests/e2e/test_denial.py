#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed zones: denial records never contradict an enforced answer
(DESIGN.md Behaviour 6, issue #15).

Zones signed by knotd (NSEC and NSEC3) with the module's defaults
(`synthesize: on`) and checked the way a mail server's resolver sees them:

- a real validating resolver, Debian's unbound (aggressive-nsec: yes, its
  default), run here in the foreground with a stub zone to knotd and the
  zone's KSK as trust anchor, a fresh cache per case: an apex without MX
  after an AAAA, a TXT or an NXDOMAIN query; a legacy apex MX; a legacy
  wildcard MX for two names; CNAMEs into enrolled names (in the zone, to
  the apex, from another zone): each resolves to the filtering set with
  AD set. Again after `knotc zone-key-rollover ZONE zsk`;
- delv validates every response carrying the apex's NSEC (or the NSEC3 of
  the apex's hash) — NODATA at the apex, NXDOMAIN, a query of type NSEC —
  whose bitmap lists MX and whose RRSIG is not the zone's own over the
  unedited record, shaped like the zone's SOA signature;
- DO=0 answers, and answers of an unsigned zone, are byte for byte those
  of a knotd without the module; a UDP answer truncated by Knot never holds
  the unedited record; an internal error answers SERVFAIL.
"""

import random
import re
import string
import unittest

from knotharness import (FAST_POLICIES, Config, Knotd, Unbound, Zone, assert_enforced,
                         delv_available, faulty_module, main, poll, rrsig, sigs, summary)

FLAVOURS = {"nsec": "fast", "nsec3": "fast3"}

# No MX at the apex, an address there (the zone).
NOMX_BODY = """@ A 192.0.2.1
www A 192.0.2.80
alias CNAME @
walias CNAME www
mailgate A 192.0.2.25
"""

LEGACY_BODY = """@ MX 5 mailgate
@ MX 40 smtp.isp.net.
@ A 192.0.2.1
mailgate A 192.0.2.25
sub MX 5 mailgate
*.wild MX 5 mailgate
*.wild MX 50 backup.legacy.example.
alias CNAME sub
"""

LEGACY = ("mailgate", "smtp.isp.net", "legacy.example")


def ztext(domain, body):
    """TTLs long enough for a resolver to keep the denial records between
    queries (the policies' zone-max-ttl: 1 keeps key rollovers quick)."""
    return ("$ORIGIN %s.\n$TTL 300\n"
            "@ SOA ns1 hostmaster 1 3600 900 604800 300\n"
            "@ NS ns1\nns1 A 127.0.0.1\n%s" % (domain, body))


def nomx(flavour):
    return "nomx-%s.test" % flavour


def legacy(flavour):
    return "legacy-%s.test" % flavour


PLAIN = "plain.test"  # Signed, not enrolled: CNAMEs into the enrolled zones.
PLAIN_BODY = """mail CNAME %s.
mail3 CNAME %s.
mx CNAME sub.%s.
""" % (nomx("nsec"), nomx("nsec3"), legacy("nsec"))
UNSIGNED = "unsigned.test"


def zones():
    out = []
    mod = "mod-mxfilter"
    for flavour, policy in sorted(FLAVOURS.items()):
        extra = {"dnssec-signing": "on", "dnssec-policy": policy}
        out.append(Zone(nomx(flavour), text=ztext(nomx(flavour), NOMX_BODY),
                        module=mod, extra=dict(extra)))
        out.append(Zone(legacy(flavour), text=ztext(legacy(flavour), LEGACY_BODY),
                        module=mod, extra=dict(extra)))
    out.append(Zone(PLAIN, text=ztext(PLAIN, PLAIN_BODY),
                    extra={"dnssec-signing": "on", "dnssec-policy": "fast"}))
    out.append(Zone(UNSIGNED, text=ztext(UNSIGNED, NOMX_BODY), module=mod))
    return out


def random_label(n=8):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def types_of(rec):
    """Types listed by an NSEC/NSEC3 record in kdig's text form."""
    f = rec[3].split()
    return f[1:] if rec[2] == "NSEC" else f[5:]


def apex_records(result, sections=("answer", "authority")):
    """The apex's NSEC / NSEC3-of-the-apex-hash records of RESULT (the only
    ones listing SOA)."""
    return [rec for sec in sections for rec in getattr(result, sec)
            if rec[2] in ("NSEC", "NSEC3") and "SOA" in types_of(rec)]


def wire_bitmap_types(rtype, hexdata):
    """Types of an NSEC/NSEC3 rdata given as hex (wire parse of a reply)."""
    d = bytes.fromhex(hexdata)
    if rtype == "NSEC":
        pos = 0
        while d[pos]:
            pos += 1 + d[pos]
        pos += 1
    else:
        pos = 5 + d[4]
        pos += 1 + d[pos]
    types = set()
    while pos + 2 <= len(d):
        win, blen = d[pos], d[pos + 1]
        for i in range(blen * 8):
            if d[pos + 2 + i // 8] & (0x80 >> (i % 8)):
                types.add(win * 256 + i)
        pos += 2 + blen
    return types


class Denial(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not Unbound.available():
            raise unittest.SkipTest("unbound not installed")
        cls.k = Knotd(Config(zones(), sections=FAST_POLICIES)).start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    # -- helpers
    def resolver(self, names, **kw):
        return Unbound(self.k, names, **kw)

    def assert_filtering(self, r, what, owner):
        """The resolver's answer: validated (AD), the filtering set at OWNER,
        no legacy exchanger."""
        assert_enforced(r, owner.rstrip(".") + ".", aa=None, ad=True, legacy=LEGACY, what=what)

    def resolve_after(self, zone, first, anchors=None):
        """A fresh resolver: FIRST ((name, type)) then MX at the apex of
        ZONE; both validated. Returns the two answers."""
        with self.resolver(anchors or [zone]) as u:
            name, rtype = first
            a = u.kdig(name, rtype, do=True)
            want = "NXDOMAIN" if rtype == "A" and name != zone else "NOERROR"
            try:
                self.assertEqual((a.rcode, a.ad), (want, True),
                                 "%s %s:\n%s" % (name, rtype, a.text()))
                if want == "NOERROR":
                    self.assertEqual([x for x in a.answer if x[2] == rtype], [], a.text())
                m = u.kdig(zone, "MX", do=True)
                self.assert_filtering(m, "%s MX after %s %s" % (zone, name, rtype), zone)
            except AssertionError:
                print(u.log_text()[-3000:])
                raise
        return a, m

    def zone_rrsigs(self, zone, owner, covered):
        """Signature blobs of the zone's own RRSIGs over COVERED at OWNER."""
        return {s["sig"] for s in sigs(self.k.zone_read(zone, owner, "RRSIG"), covered)}

    def delv(self, zone, name, rtype, anchor):
        if not delv_available():
            self.skipTest("delv not installed")
        return self.k.delv(zone, name, rtype, anchor).output

    def check_edited(self, zone, name, rtype, anchor, must=True):
        """kdig +dnssec NAME RTYPE: every apex denial record lists MX, none
        carries the zone's own RRSIG over the unedited record, each carries
        one RRSIG per SOA signature shaped like it; delv validates the
        response and shows the edited record. MUST: the response has one."""
        # The SOA signatures before and after: Knot may re-sign the zone
        # (a rollover) between two queries.
        for _ in range(10):
            soa = sigs(self.k.kdig(zone, "SOA", do=True, tcp=True).answer, "SOA")
            r = self.k.kdig(name, rtype, do=True, tcp=True)
            if sigs(self.k.kdig(zone, "SOA", do=True, tcp=True).answer, "SOA") == soa:
                break
        what = "%s %s:\n%s" % (name, rtype, r.text())
        recs = apex_records(r)
        if must:
            self.assertEqual(len(recs), 1, "want the apex's record: " + what)
        for rec in recs:
            self.assertIn("MX", types_of(rec), what)
            mine = [rrsig(x[3]) for x in r.answer + r.authority
                    if x[2] == "RRSIG" and x[0] == rec[0] and x[3].split()[0] == rec[2]]
            stale = self.zone_rrsigs(zone, rec[0], rec[2])
            self.assertTrue(stale, "no RRSIG %s at %s in the zone" % (rec[2], rec[0]))
            self.assertFalse(stale & {s["sig"] for s in mine},
                             "the zone's RRSIG over the unedited record: " + what)
            self.assertEqual(sorted(s["tag"] for s in mine), sorted(s["tag"] for s in soa),
                             "one RRSIG per SOA signature: " + what)
            for s in mine:
                like = [x for x in soa if x["tag"] == s["tag"]][0]
                self.assertEqual((s["alg"], s["inc"], s["exp"], s["signer"]),
                                 (like["alg"], like["inc"], like["exp"], zone + "."), what)
                self.assertEqual(s["labels"], rec[0].rstrip(".").count(".") + 1, what)
                self.assertEqual(s["ottl"], rec[1], what)
        text = self.delv(zone, name, rtype, anchor)
        self.assertIn("fully validated", text, "delv %s %s:\n%s" % (name, rtype, text))
        shown = [l for l in text.splitlines() if re.search(r"\sNSEC3?\s", l) and " SOA " in l]
        for line in shown:
            self.assertRegex(line, r" MX ", "delv %s %s:\n%s" % (name, rtype, text))
        if must:
            self.assertTrue(shown, "delv shows no apex record:\n" + text)
        return r, recs

    # -- tests
    def test_resolver_apex_without_mx(self):
        """unbound, aggressive-nsec: yes, fresh cache: AAAA, TXT or an
        NXDOMAIN name first, then MX at the apex: the filtering set, AD."""
        out = []
        for flavour in sorted(FLAVOURS):
            zone = nomx(flavour)
            for first in ((zone, "AAAA"), (zone, "TXT"),
                          ("%s.%s" % (random_label(), zone), "A")):
                a, m = self.resolve_after(zone, first)
                out.append("%-6s %s %s (%s, AD) then MX: filtering set, AD" %
                           (flavour, first[0], first[1], a.rcode))
        summary("resolver: apex without MX", out)

    def test_resolver_enforced_names(self):
        """unbound: legacy apex MX, a legacy wildcard MX for two names, a
        CNAME to a legacy name and to the apex without MX, CNAMEs from a
        zone without the module: the filtering set, AD."""
        out = []
        for flavour in sorted(FLAVOURS):
            zone, bare = legacy(flavour), nomx(flavour)
            with self.resolver([zone, bare]) as u:
                try:
                    self.assertEqual(u.kdig(zone, "AAAA", do=True).ad, True)
                    self.assert_filtering(u.kdig(zone, "MX", do=True), zone, zone)
                    for _ in range(2):
                        name = "%s.wild.%s" % (random_label(), zone)
                        self.assert_filtering(u.kdig(name, "MX", do=True), name, name)
                    r = u.kdig("alias." + zone, "MX", do=True)
                    self.assert_filtering(r, "alias." + zone, "sub." + zone)
                    self.assertEqual(r.records("answer", "CNAME"),
                                     [("alias.%s." % zone, 300, "CNAME", "sub.%s." % zone)],
                                     r.text())
                    self.assertEqual(u.kdig(bare, "AAAA", do=True).ad, True)
                    r = u.kdig("alias." + bare, "MX", do=True)
                    self.assert_filtering(r, "alias." + bare, bare)
                except AssertionError:
                    print(u.log_text()[-3000:])
                    raise
            out.append("%-6s legacy apex, wildcard x2, CNAME to sub, CNAME to the bare "
                       "apex: filtering set, AD" % flavour)
        with self.resolver([PLAIN, nomx("nsec"), nomx("nsec3"), legacy("nsec")]) as u:
            for name, owner, zone in (("mail." + PLAIN, nomx("nsec"), nomx("nsec")),
                                      ("mail3." + PLAIN, nomx("nsec3"), nomx("nsec3")),
                                      ("mx." + PLAIN, "sub." + legacy("nsec"), legacy("nsec"))):
                # The target zone's apex denial record in the cache first.
                self.assertEqual(u.kdig(zone, "TXT", do=True).ad, True)
                self.assert_filtering(u.kdig(name, "MX", do=True), name, owner)
                out.append("%s (CNAME from a zone without the module) MX: "
                           "filtering set at %s, AD" % (name, owner))
        summary("resolver: enforced names", out)

    def test_delv_edited_records(self):
        """Every response carrying the apex's NSEC/NSEC3: it lists MX,
        signed anew like the SOA, never with the zone's own RRSIG over the
        unedited record; delv validates it."""
        out = []
        for flavour in sorted(FLAVOURS):
            zone = nomx(flavour)
            anchor = self.k.trust_anchor(zone)
            cases = [(zone, "AAAA"), (zone, "TXT"), (zone, "NSEC"),
                     ("%s.%s" % (random_label(), zone), "A"),
                     ("%s.%s" % (random_label(), zone), "MX"),
                     ("%s.www.%s" % (random_label(), zone), "TXT")]
            for name, rtype in cases:
                # Below www the proofs hold the apex's record by chance only.
                must = not name.endswith(".www." + zone)
                r, recs = self.check_edited(zone, name, rtype, anchor, must=must)
                out.append("%-6s %-28s %-4s %s: %d apex record(s) with MX, delv "
                           "validated" % (flavour, name, rtype, r.rcode, len(recs)))
            # Other names' records stay Knot's own (the NSEC of www).
            r = self.k.kdig("www." + zone, "TXT", do=True, tcp=True)
            self.assertEqual(apex_records(r), [], r.text())
            # Zones with MX at the apex: nothing to edit.
            z = legacy(flavour)
            r = self.k.kdig(z, "AAAA", do=True, tcp=True)
            recs = apex_records(r)
            self.assertEqual([("MX" in types_of(x)) for x in recs], [True], r.text())
            mine = {s["sig"] for s in sigs(r.authority, recs[0][2])}
            self.assertEqual(mine, self.zone_rrsigs(z, recs[0][0], recs[0][2]),
                             "a zone with an apex MX keeps Knot's own RRSIG:\n" + r.text())
        summary("delv: edited denial records", out)

    def test_unchanged_without_dnssec(self):
        """DO=0 answers, and DNSSEC answers of an unsigned zone, are byte
        for byte those of the same zones served without the module."""
        with Knotd(self.k.config.without_module(), name="reference") as ref:
            cases = []
            for flavour in sorted(FLAVOURS):
                zone = nomx(flavour)
                cases += [(zone, "AAAA", False), (zone, "TXT", False),
                          ("nx." + zone, "A", False), (zone, "NSEC", False),
                          ("www." + zone, "A", False)]
            cases += [(UNSIGNED, "AAAA", True), ("nx." + UNSIGNED, "A", True),
                      (UNSIGNED, "AAAA", False)]
            # An MX query through a CNAME to an apex without MX is not
            # Knot's NODATA, with or without DO, signed or not: the alias
            # would otherwise take mail to the apex's address records.
            for name, do in [("alias." + nomx(f), False) for f in sorted(FLAVOURS)] + \
                            [("alias." + UNSIGNED, True), ("alias." + UNSIGNED, False)]:
                r = self.k.kdig(name, "MX", do=do)
                assert_enforced(r, name.split(".", 1)[1] + ".", what="%s DO=%s" % (name, do))
            for name, rtype, do in cases:
                for tcp in (False, True):
                    a = self.k.wire(name, rtype, do=do, tcp=tcp, qid=0x1515)
                    b = ref.wire(name, rtype, do=do, tcp=tcp, qid=0x1515)
                    self.assertEqual(a.raw.hex(), b.raw.hex(),
                                     "%s %s do %s tcp %s:\n%s\n---\n%s" %
                                     (name, rtype, do, tcp, a.text(), b.text()))
        summary("unchanged", ["%d queries x UDP/TCP: DO=0 and unsigned answers byte for "
                              "byte those of knotd without the module" % len(cases)])

    def test_truncated(self):
        """A DNSSEC answer truncated over UDP never holds the unedited apex
        record (Knot skips later hooks once it truncates); over TCP the
        edited one."""
        out = []
        for flavour in sorted(FLAVOURS):
            zone = nomx(flavour)
            # After www in NSEC order (two NSECs), long: 512 bytes truncate.
            name = "zzz-%s.%s" % ("t" * 50, zone)
            seen_tc = False
            for size in range(512, 1233, 40):
                w = self.k.wire(name, "A", do=True, bufsize=size)
                seen_tc |= w.tc
                for rec in w.answer + w.authority:
                    if rec[2] not in ("NSEC", "NSEC3"):
                        continue
                    types = wire_bitmap_types(rec[2], rec[3].split()[2])
                    if 6 in types:  # SOA: the apex's record
                        self.assertIn(15, types, "size %d, unedited record:\n%s" %
                                      (size, w.text()))
            self.assertTrue(seen_tc, "no truncated answer for %s" % name)
            r = self.k.kdig(name, "A", do=True, tcp=True)
            self.assertEqual([("MX" in types_of(x)) for x in apex_records(r)], [True], r.text())
            out.append("%-6s NXDOMAIN, payload 512..1232 over UDP: no unedited apex "
                       "record, TC seen; TCP: edited" % flavour)
        summary("truncation", out)

    def test_fail_closed(self):
        """An internal error while editing (fault injection: no memory)
        answers SERVFAIL, counted as failed; DO=0 answers are Knot's."""
        zone = nomx("nsec")
        z = [x for x in zones() if x.domain == zone]
        with Knotd(Config(z, sections=FAST_POLICIES, module=faulty_module()), name="faulty",
                   env={"MXFILTER_FAULT": "enomem"}, allow_module_errors=True) as k2:
            before = k2.zone_stats(zone).get("failed", 0)
            mark = k2.mark()
            for name, rtype, rcode in ((zone, "AAAA", "NOERROR"), ("nx." + zone, "A", "NXDOMAIN")):
                r = k2.kdig(name, rtype, do=True, tcp=True)
                self.assertEqual(r.rcode, "SERVFAIL", r.text())
                self.assertEqual(r.all_records(), [], r.text())
                r = k2.kdig(name, rtype, do=False, tcp=True)
                self.assertEqual(r.rcode, rcode, r.text())
            self.assertEqual(k2.zone_stats(zone).get("failed", 0) - before, 2,
                             k2.zone_stats(zone))
            # Both failures are the apex's record: one line (per minute).
            k2.wait_log(r"failed to enforce MX", mark)
            k2.settle_log()
            lines = k2.module_lines(mark, "failed to enforce MX")
            self.assertEqual(len(lines), 1, "\n".join(lines))
            self.assertRegex(lines[0], r" error: \[%s\.\] module 'mod-mxfilter', failed to "
                             r"enforce MX, owner %s\., answered SERVFAIL, suppressed 0 \(.+\)$"
                             % (re.escape(zone), re.escape(zone)))

    def test_zz_zsk_rollover(self):
        """After `knotc zone-key-rollover ZONE zsk` (no restart): the edited
        records are signed with the new ZSK, delv validates them, and a
        fresh unbound resolves MX to the filtering set after AAAA and after
        an NXDOMAIN (runs last: it changes the zones' keys)."""
        out = []
        for flavour in sorted(FLAVOURS):
            zone = nomx(flavour)
            self.resolve_after(zone, (zone, "AAAA"))  # Warm with the old key.
            old = {s["tag"] for s in sigs(self.k.kdig(zone, "SOA", do=True).answer, "SOA")}
            self.k.knotc("zone-key-rollover", zone, "zsk")

            def rolled():
                tags = {s["tag"] for s in sigs(self.k.kdig(zone, "SOA", do=True).answer,
                                               "SOA")}
                return tags if tags and not (tags & old) else None
            new = poll(rolled, timeout=90)
            self.assertTrue(new, "ZSK rollover of %s did not complete in 90 s" % zone)
            anchor = self.k.trust_anchor(zone)
            r, recs = self.check_edited(zone, zone, "AAAA", anchor)
            tags = {s["tag"] for s in sigs(r.authority, recs[0][2])
                    if s["signer"] == zone + "."}
            self.assertEqual(tags & new, new, r.text())
            self.check_edited(zone, "%s.%s" % (random_label(), zone), "A", anchor)
            for first in ((zone, "AAAA"), ("%s.%s" % (random_label(), zone), "A")):
                self.resolve_after(zone, first)
            out.append("%-6s ZSK %s -> %s: edited records signed with the new key, delv "
                       "validates, unbound resolves the filtering set" %
                       (flavour, sorted(old), sorted(new)))
        summary("ZSK rollover", out)


if __name__ == "__main__":
    main()
