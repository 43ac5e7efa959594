#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed zones: enforced answers that validate (DESIGN.md Behaviour 6, 7).

Zones signed by knotd itself (NSEC and NSEC3, a test policy of tiny
timings) and checked from outside:

- delv with the zone's KSK as trust anchor prints `; fully validated` and
  exactly the filtering set for every way an MX reaches an answer: apex,
  subdomain, wildcard expansion (random mixed-case label), CNAME chain,
  CNAME to a wildcard name, MX-only node (ANY is checked with kdig, since
  its MX RRSIG is the one delv validated for MX), the synthesized apex set
  of a zone without MX, and a compliant RRset (Knot's signature kept);
- kdig +dnssec: one RRSIG over the enforced MX per key signing the SOA,
  with the SOA signature's algorithm, key tag, inception and expiration;
  none of the zone's own RRSIGs over the legacy MX; DO=0 carries no RRSIG;
- key changes without a restart: ZSK rollover, `knotc zone-sign`, KSK
  rollover (confirmed with `zone-ksk-submitted`);
- fail closed: a pre-signed zone (dumped from a signing knotd) served by a
  knotd that does not sign: DO queries needing enforcement get SERVFAIL and
  count as `failed`; DO=0 gets the filtering set.
"""

import os
import random
import re
import shutil
import string
import tempfile
import time
import unittest

from knotharness import (FAST_POLICIES, FILTER_SET, Config, Knotd, Zone, assert_enforced,
                         assert_validated, delv_available, main, poll, sigs, summary)

BODY = """@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
sub MX 5 mailgate
sub MX 30 old.legacy.example.
*.wild MX 5 mailgate
*.wild MX 50 backup.legacy.example.
alias CNAME alias2
alias2 CNAME sub
walias CNAME Foo.wild
only MX 7 only.legacy.example.
ok MX 10 france.security-mail.net.
ok MX 20 europe.security-mail.net.
www A 192.0.2.80
"""

LEGACY = ("mailgate", "smtp.isp.net", "legacy.example")


def ztext(domain, body):
    """Zone text with every TTL 1 (SOA and negative TTL included)."""
    return ("$ORIGIN %s.\n$TTL 1\n"
            "@ 1 SOA ns1 hostmaster 1 3600 900 604800 1\n"
            "@ NS ns1\nns1 A 127.0.0.1\n%s" % (domain, body))


def signed_zone(domain, policy, body=BODY):
    return Zone(domain, text=ztext(domain, body), module="mod-mxfilter",
                extra={"dnssec-signing": "on", "dnssec-policy": policy})


# Zones whose keys never change in this file, per denial flavour.
STATIC = {"nsec": ("val-nsec.test", "nomx-nsec.test", "fast"),
          "nsec3": ("val-nsec3.test", "nomx-nsec3.test", "fast3")}
ROLL = {"nsec": ("roll-nsec.test", "fast"), "nsec3": ("roll-nsec3.test", "fast3")}
PRESIGNED = "pre.test"

ZONES = []
for _z, _n, _p in STATIC.values():
    ZONES.append(signed_zone(_z, _p))
    ZONES.append(signed_zone(_n, _p, "www A 192.0.2.1\n"))
for _z, _p in ROLL.values():
    ZONES.append(signed_zone(_z, _p))
ZONES.append(signed_zone(PRESIGNED, "fast"))


def random_label(n=8):
    return "".join(random.choice(string.ascii_letters) for _ in range(n))


class Validate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(Config(ZONES, sections=FAST_POLICIES)).start()
        cls.tmp = tempfile.mkdtemp(prefix="mxf-val-")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.k.stop()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers
    def dig(self, name, rtype="MX", do=True, **kw):
        kw.setdefault("tcp", True)
        return self.k.kdig(name, rtype, do=do, **kw)

    def soa_sigs(self, zone):
        r = self.dig(zone, "SOA")
        s = sigs(r.answer, "SOA")
        self.assertTrue(s, "zone %s is not signed:\n%s" % (zone, r.text()))
        return s

    def zone_sigs(self, zone, owner, covered="MX"):
        """The zone's own RRSIGs over COVERED at OWNER (knotc zone-read)."""
        return sigs(self.k.zone_read(zone, owner, "RRSIG"), covered)

    def assert_delv(self, zone, name, owner=None, anchor=None):
        """delv with the zone's KSK: the filtering set at OWNER (default
        NAME), fully validated."""
        if not delv_available():
            self.skipTest("delv not installed")
        d = self.k.delv(zone, name, anchor=anchor)
        assert_validated(d, (owner or name).lower().rstrip(".") + ".", legacy=LEGACY,
                         what="delv %s MX" % name)
        return d.output

    def assert_enforced_sigs(self, zone, name, owner=None, wildcard=False,
                             legacy_owner=None, rtype="MX"):
        """kdig +dnssec: the enforced MX at OWNER carries one RRSIG per SOA
        signature, shaped like it; none of the zone's own legacy RRSIGs."""
        # The SOA signatures are read before and after the answer: during a
        # rollover Knot may re-sign the zone between two queries, and the
        # answer must then be compared with the state it was made from.
        for _ in range(10):
            soa = self.soa_sigs(zone)
            r = self.dig(name, rtype)
            if self.soa_sigs(zone) == soa:
                break
            time.sleep(0.5)
        owner = (owner or name).lower().rstrip(".") + "."
        assert_enforced(r, owner, legacy=LEGACY, any_case=True, what="%s %s" % (name, rtype))
        mx = sigs(r.answer, "MX")
        stale = {s["sig"] for s in self.zone_sigs(zone, legacy_owner or owner)}
        self.assertTrue(stale, "expected the zone to sign its legacy MX at %s" %
                        (legacy_owner or owner))
        self.assertFalse(stale & {s["sig"] for s in mx},
                         "the zone's own RRSIG over the legacy MX at %s was served:\n%s" %
                         (legacy_owner or owner, r.text()))
        self.assertEqual(len(mx), len(soa), "one RRSIG MX per SOA signature:\n" + r.text())
        self.assertEqual(sorted(s["tag"] for s in mx), sorted(s["tag"] for s in soa), r.text())
        labels = owner.rstrip(".").count(".") + 1
        # A wildcard answer is signed as such (labels - 1). Reached through a
        # CNAME, Knot hands over the expanded owner; a signature over that
        # name as is (full label count) validates as well.
        allowed = {labels - 1} if wildcard == "direct" else \
            {labels - 1, labels} if wildcard else {labels}
        ttl = [rec[1] for rec in r.answer if rec[2] == "MX"][0]
        for s in mx:
            like = [x for x in soa if x["tag"] == s["tag"]][0]
            self.assertEqual((s["alg"], s["inc"], s["exp"], s["signer"]),
                             (like["alg"], like["inc"], like["exp"], zone + "."), r.text())
            self.assertIn(s["labels"], allowed, r.text())
            self.assertEqual(s["ottl"], ttl, r.text())
        own = [rec for rec in r.answer if rec[2] == "RRSIG" and rec[3].startswith("MX ")]
        self.assertTrue(all(rec[0].lower() == owner for rec in own), r.text())
        # DO=0: the same set, no RRSIG anywhere.
        plain = self.dig(name, rtype, do=False)
        assert_enforced(plain, owner, legacy=LEGACY, signed=False, any_case=True, what="DO=0")
        self.assertEqual([x for x in plain.all_records() if x[2] == "RRSIG"], [], plain.text())
        return r, mx

    def cases(self, zone):
        """(query name, MX owner, wildcard, legacy owner in the zone)."""
        wild = "%s.WiLd.%s" % (random_label(), zone)
        return [(zone, zone, False, zone),
                ("sub." + zone, "sub." + zone, False, "sub." + zone),
                (wild, wild, "direct", "*.wild." + zone),
                ("alias." + zone, "sub." + zone, False, "sub." + zone),
                ("walias." + zone, "foo.wild." + zone, True, "*.wild." + zone),
                ("only." + zone, "only." + zone, False, "only." + zone)]

    # -- tests
    def test_delv_validates_enforced(self):
        """delv fully validates the filtering set at every kind of owner,
        NSEC and NSEC3."""
        out = []
        for flavour, (zone, _, _) in sorted(STATIC.items()):
            anchor = self.k.trust_anchor(zone)
            for name, owner, _, _ in self.cases(zone):
                self.assert_delv(zone, name, owner, anchor)
                out.append("%-6s %s MX: fully validated, filtering set" % (flavour, name))
        summary("delv enforced", out)

    def test_rrsig_shape(self):
        """kdig +dnssec: one RRSIG MX per SOA signature with its alg, tag,
        inception, expiration; labels (wildcard: owner labels - 1) and
        original TTL right; none of the zone's RRSIGs over the legacy MX;
        DO=0 answers carry no RRSIG."""
        for zone, _, _ in STATIC.values():
            for name, owner, wildcard, legacy in self.cases(zone):
                with self.subTest(name=name):
                    self.assert_enforced_sigs(zone, name, owner, wildcard, legacy)

    def test_cname_keeps_its_rrsig(self):
        """The CNAMEs of a chain keep Knot's own RRSIGs."""
        for zone, _, _ in STATIC.values():
            r = self.dig("alias." + zone)
            for owner in ("alias." + zone, "alias2." + zone):
                got = {s["sig"] for s in sigs(r.records("answer", owner=owner), "CNAME")}
                want = {s["sig"] for s in self.zone_sigs(zone, owner, "CNAME")}
                self.assertTrue(want and got == want, "%s:\n%s" % (owner, r.text()))
            self.assertEqual(r.mx(owner="sub." + zone), FILTER_SET, r.text())

    def test_any_at_mx_only_node(self):
        """ANY at a node holding only MX: the filtering set signed with the
        same RRSIG that delv validates for the MX query."""
        for zone, _, _ in STATIC.values():
            name = "only." + zone
            r, any_sigs = self.assert_enforced_sigs(zone, name, rtype="ANY")
            mx = sigs(self.dig(name).answer, "MX")
            self.assertEqual({s["sig"] for s in any_sigs}, {s["sig"] for s in mx},
                             "ANY and MX answers carry different RRSIGs:\n" + r.text())
            self.assert_delv(zone, name)

    def test_synthesized_apex(self):
        """Zone without MX: the apex MX query answers the filtering set,
        signed, a positive answer with no NSEC/NSEC3 denial."""
        out = []
        for _, zone, _ in STATIC.values():
            r = self.dig(zone)
            assert_enforced(r, zone + ".", signed=True, what="synthesized")
            denial = [x for x in r.authority if x[2] in ("NSEC", "NSEC3", "SOA") or
                      (x[2] == "RRSIG" and x[3].split()[0] in ("NSEC", "NSEC3", "SOA"))]
            self.assertEqual(denial, [], "denial records in a positive answer:\n" + r.text())
            soa = self.soa_sigs(zone)
            mx = sigs(r.answer, "MX")
            self.assertEqual(sorted((s["tag"], s["inc"], s["exp"]) for s in mx),
                             sorted((s["tag"], s["inc"], s["exp"]) for s in soa), r.text())
            plain = self.dig(zone, do=False)
            assert_enforced(plain, zone + ".", signed=False, what="synthesized, DO=0")
            self.assertEqual([x for x in plain.all_records() if x[2] == "RRSIG"], [])
            self.assert_delv(zone, zone)
            out.append("%s MX: synthesized, signed, fully validated" % zone)
        summary("synthesized apex", out)

    def test_compliant_keeps_knot_signature(self):
        """A compliant RRset passes with the zone's own RRSIG."""
        for zone, _, _ in STATIC.values():
            name = "ok." + zone
            r = self.dig(name)
            self.assertEqual(r.mx(), FILTER_SET, r.text())
            got = {s["sig"] for s in sigs(r.answer, "MX")}
            want = {s["sig"] for s in self.zone_sigs(zone, name)}
            self.assertTrue(want and got == want, "Knot's RRSIG not kept:\n" + r.text())
            self.assert_delv(zone, name)

    def test_zsk_rollover_and_resign(self):
        """ZSK rollover, then zone-sign, without restarting knotd: the
        enforced RRSIG follows the SOA's key tag and validity; delv keeps
        validating."""
        out = []
        for flavour, (zone, _) in sorted(ROLL.items()):
            names = [zone, "sub." + zone, "x%s.wild.%s" % (random_label(4), zone)]

            def check_all():
                got = []
                for n in names:
                    wild = "direct" if ".wild." in n else False
                    _, mx = self.assert_enforced_sigs(
                        zone, n, wildcard=wild,
                        legacy_owner=("*.wild." + zone) if wild else None)
                    got.append(mx)
                return got

            check_all()  # Warm the signer's cache with the old key.
            old = {s["tag"] for s in self.soa_sigs(zone)}
            self.k.knotc("zone-key-rollover", zone, "zsk")

            def rolled():
                tags = {s["tag"] for s in self.soa_sigs(zone)}
                return tags if tags and not (tags & old) else None
            new = poll(rolled)
            self.assertTrue(new, "ZSK rollover of %s did not complete in 60 s:\n%s" %
                            (zone, "\n".join(self.k.log_lines()[-30:])))
            anchor = self.k.trust_anchor(zone)
            for mx in check_all():
                self.assertEqual({s["tag"] for s in mx}, new)
            for n in names:
                self.assert_delv(zone, n, anchor=anchor)
            out.append("%s: ZSK %s -> %s, enforced RRSIG follows, delv validates" %
                       (flavour, sorted(old), sorted(new)))

            before = {b["inc"] for b in self.soa_sigs(zone)}
            time.sleep(1.1)  # New inception/expiration (whole seconds).
            self.k.knotc("zone-sign", zone)
            changed = poll(lambda: not ({s["inc"] for s in self.soa_sigs(zone)} & before))
            self.assertTrue(changed, "zone-sign of %s did not change the SOA RRSIG" % zone)
            for mx in check_all():
                self.assertFalse({s["inc"] for s in mx} & before)
            for n in names:
                self.assert_delv(zone, n, anchor=anchor)
            out.append("%s: zone-sign, inception %s -> %s followed" %
                       (flavour, sorted(before), self.soa_sigs(zone)[0]["inc"]))
        summary("key changes", out)

    def test_zz_ksk_rollover(self):
        """KSK rollover confirmed with zone-ksk-submitted: with the new KSK
        as trust anchor delv validates the enforced answers (runs last: it
        changes the keys of a rollover zone)."""
        out = []
        for flavour, (zone, _) in sorted(ROLL.items()):
            def ksks():
                r = self.dig(zone, "DNSKEY", do=False)
                return {a[3] for a in r.answer if a[2] == "DNSKEY" and a[3].startswith("257 ")}
            old = ksks()
            self.k.knotc("zone-key-rollover", zone, "ksk")
            ready = poll(lambda: len(ksks() - old) > 0 and
                         self.k.wait_log(r"\[%s\.\] DNSSEC, KSK submission, waiting" %
                                         re.escape(zone), timeout=0))
            if not ready:
                self.skipTest("KSK rollover of %s did not reach submission in 60 s" % zone)

            def submitted():
                # Confirm until the new KSK is ready and the old one gone.
                self.k.knotc("zone-ksk-submitted", zone, check=False)
                cur = ksks()
                return cur and not (cur & old)
            done = poll(submitted)
            if not done:
                self.skipTest("KSK rollover of %s did not complete in 60 s" % zone)
            anchor = self.k.trust_anchor(zone)
            for n in (zone, "sub." + zone):
                self.assert_enforced_sigs(zone, n)
                self.assert_delv(zone, n, anchor=anchor)
            out.append("%s: KSK rolled, enforced answers validate with the new anchor" % flavour)
        summary("KSK rollover", out)

    def test_fail_closed_presigned(self):
        """A zone signed in its zone file, served by a knotd that does not
        sign: DO queries needing enforcement get SERVFAIL (never the legacy
        MX, never an unsigned set), `failed` counts them; DO=0 gets the
        filtering set; a compliant RRset still passes with its RRSIG."""
        outdir = os.path.join(self.tmp, "presigned")
        os.makedirs(outdir, exist_ok=True)
        self.k.knotc("-b", "zone-flush", PRESIGNED, "+outdir", outdir)
        path = os.path.join(outdir, PRESIGNED + ".zone")

        def dump():
            if os.path.exists(path):
                with open(path) as f:
                    t = f.read()
                return t if "RRSIG" in t else None
            return None
        text = poll(dump, timeout=10)
        self.assertTrue(text, "no signed dump of %s" % PRESIGNED)
        self.assertRegex(text, r"RRSIG\s+SOA", "dump has no SOA RRSIG")

        z = Zone(PRESIGNED, text=text, module="mod-mxfilter")
        with Knotd([z], name="presigned", allow_module_errors=True) as k2:
            mark = k2.mark()
            self.assertTrue(sigs(k2.kdig(PRESIGNED, "SOA", do=True, tcp=True).answer, "SOA"),
                            "served zone is not signed")
            before = k2.zone_stats(PRESIGNED).get("failed", 0)
            queries = 0
            names = [PRESIGNED, "sub." + PRESIGNED, "alias." + PRESIGNED,
                     "%s.wild.%s" % (random_label(), PRESIGNED)]
            for name in names:
                for tcp in (False, True):
                    r = k2.kdig(name, "MX", do=True, tcp=tcp)
                    queries += 1
                    self.assertEqual(r.rcode, "SERVFAIL", "%s tcp %s:\n%s" % (name, tcp, r.text()))
                    self.assertEqual(r.mx(), [], r.text())
                    self.assertEqual(r.all_records(), [], r.text())
                w = k2.wire(name, "MX", do=True, bufsize=1232)
                queries += 1
                self.assertEqual((w.rcode, w.mx()), ("SERVFAIL", []), w.text())
            after = poll(lambda: k2.zone_stats(PRESIGNED).get("failed", 0) - before >= queries
                         and k2.zone_stats(PRESIGNED), timeout=5)
            self.assertTrue(after, "failed counter: %s" % k2.zone_stats(PRESIGNED))
            self.assertEqual(after.get("failed", 0) - before, queries, after)
            # One error line per served owner (the alias serves sub's).
            k2.wait_log(r"failed to enforce MX", mark, count=3)
            k2.settle_log()
            owners = sorted(re.search(r", owner (\S+), answered SERVFAIL, ", l).group(1)
                            for l in k2.module_lines(mark, "failed to enforce MX"))
            self.assertEqual(owners, sorted(["*.wild.%s." % PRESIGNED, PRESIGNED + ".",
                                             "sub.%s." % PRESIGNED]),
                             "\n".join(k2.module_lines(mark)))

            for name in names:
                r = k2.kdig(name, "MX", do=False, tcp=True)
                assert_enforced(r, legacy=LEGACY, signed=False, what=name + " DO=0")
                self.assertEqual([x for x in r.all_records() if x[2] == "RRSIG"], [], r.text())
            ok = k2.kdig("ok." + PRESIGNED, "MX", do=True, tcp=True)
            self.assertEqual((ok.rcode, ok.mx()), ("NOERROR", FILTER_SET), ok.text())
            self.assertEqual(len(sigs(ok.answer, "MX")), 1, ok.text())
            summary("fail closed (pre-signed zone, signing off)",
                    ["%d DO queries needing enforcement: SERVFAIL, failed +%d" %
                     (queries, after.get("failed", 0) - before),
                     "DO=0: filtering set, no RRSIG; compliant RRset keeps its RRSIG"])


if __name__ == "__main__":
    main()
