#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed zone with an offline KSK (Knot's KSR/SKR ceremony): the server
holds only the ZSK, the DNSKEY set and its signature come from the KSK
side. The module signs enforced answers with the ZSK, shaped like the
zone's SOA signature, and a validating resolver accepts them.

The ceremony, as in Knot's documentation ("DNSSEC Offline KSK"): KSK side
`keymgr generate ksk=yes`; ZSK side (the server's KASP database)
`keymgr generate ksk=no`, `generate-ksr`; KSK side `sign-ksr`; ZSK side
`import-skr`; then knotd starts and signs.
"""

import os
import re
import shutil
import tempfile
import unittest

from knotharness import (KEYMGR, Config, Knotd, Zone, assert_enforced, assert_validated,
                         delv_available, key_tags, knot_argv, main, run, sanitizer_env, sigs)

ZONE = "offline.test"
LEGACY = ("mailgate", "smtp.isp.net")

POLICY = """policy:
  - id: offline
    algorithm: ecdsap256sha256
    manual: on
    offline-ksk: on
    dnskey-ttl: 1
    zone-max-ttl: 1
"""

TEXT = """$ORIGIN offline.test.
$TTL 1
@ 1 SOA ns1 hostmaster 1 3600 900 604800 1
@ NS ns1
ns1 A 127.0.0.1
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
sub MX 5 mailgate
"""


def keymgr(conf, *args):
    # keymgr reads knot.conf, so it loads the module like knotd does.
    rc, out, err = run(knot_argv([KEYMGR, "-c", conf, ZONE + "."] + list(args)), timeout=60,
                       env=sanitizer_env())
    if rc != 0:
        raise RuntimeError("keymgr %s: %s%s" % (" ".join(args), out, err))
    return out


class OfflineKsk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(KEYMGR):
            raise unittest.SkipTest("keymgr not installed")
        cls.tmp = tempfile.mkdtemp(prefix="mxf-oksk-")
        # The KSK side: a KASP database of its own, never seen by knotd.
        cls.ksk_conf = os.path.join(cls.tmp, "ksk.conf")
        with open(cls.ksk_conf, "w") as f:
            f.write("database:\n  storage: %s\n%szone:\n  - domain: %s\n"
                    "    dnssec-signing: on\n    dnssec-policy: offline\n"
                    % (cls.tmp, POLICY, ZONE))
        keymgr(cls.ksk_conf, "generate", "ksk=yes", "algorithm=13")

        def ceremony(k):
            keymgr(k.conf_path, "generate", "ksk=no", "algorithm=13")
            ksr = os.path.join(cls.tmp, "ksr")
            skr = os.path.join(cls.tmp, "skr")
            with open(ksr, "w") as f:
                f.write(keymgr(k.conf_path, "generate-ksr", "+0", "+14d"))
            with open(skr, "w") as f:
                f.write(keymgr(cls.ksk_conf, "sign-ksr", ksr))
            keymgr(k.conf_path, "import-skr", skr)

        zone = Zone(ZONE, text=TEXT, module="mod-mxfilter",
                    extra={"dnssec-signing": "on", "dnssec-policy": "offline"})
        cls.k = Knotd(Config([zone], sections=POLICY), before_start=ceremony)
        try:
            cls.k.start()
        except Exception:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.k.stop()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def keys(self, conf):
        """(key tag, 'KSK'|'ZSK') of the keys in CONF's KASP database."""
        out = keymgr(conf, "list")
        # "ID  TAG KSK|ZSK ALGORITHM ...", the tag padded to five places.
        found = re.findall(r"^\S+\s+(\d+)\s+(KSK|ZSK)\s", out, re.M)
        self.assertTrue(found, "keymgr list:\n" + out)
        return found

    def test_server_holds_no_ksk(self):
        server = self.keys(self.k.conf_path)
        self.assertEqual([t for _, t in server], ["ZSK"], server)
        ksk_tags = {int(tag) for tag, _ in self.keys(self.ksk_conf)}
        r = self.k.kdig(ZONE, "DNSKEY", do=True, tcp=True)
        published = [a[3] for a in r.answer if a[2] == "DNSKEY"]
        self.assertTrue(any(p.startswith("257 ") for p in published), r.text())
        self.assertEqual(key_tags(r.answer, "DNSKEY"), ksk_tags,
                         "DNSKEY signed by the offline KSK\n" + r.text())

    def test_enforced_answers_signed_by_the_zsk(self):
        zsk = int(self.keys(self.k.conf_path)[0][0])
        soa = sigs(self.k.kdig(ZONE, "SOA", do=True, tcp=True).answer, "SOA")
        self.assertEqual(len(soa), 1, soa)
        for name in (ZONE, "sub." + ZONE):
            r = self.k.kdig(name, "MX", do=True, tcp=True)
            assert_enforced(r, name + ".", legacy=LEGACY, signed=True)
            s = sigs(r.answer, "MX")
            self.assertEqual(s[0]["tag"], zsk, r.text())
            self.assertEqual((s[0]["exp"], s[0]["inc"]), (soa[0]["exp"], soa[0]["inc"]),
                             "validity of the SOA's\n" + r.text())

    def test_delv_validates(self):
        if not delv_available():
            self.skipTest("delv not installed")
        anchor = self.k.trust_anchor(ZONE)
        for name in (ZONE, "sub." + ZONE):
            assert_validated(self.k.delv(ZONE, name, anchor=anchor), name + ".", legacy=LEGACY,
                             what="delv %s MX" % name)


if __name__ == "__main__":
    main()
