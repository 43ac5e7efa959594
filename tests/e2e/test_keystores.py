#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed zones whose keys are not in Knot's default key store (Behaviour 6).

The module reads the private key that signs the zone's SOA from the zone's
PEM key store, found the way Knot finds it. Checked from outside (delv with
the zone's KSK as trust anchor prints `; fully validated` and the filtering
set, kdig shows the RRSIG MX made with the SOA's key):

- every Knot series: a policy whose `keystore` is a PEM store in a
  directory of its own (`config`, relative to the KASP database);
- Knot 3.5 and later (a policy names a list of key stores, `ksk-only`
  keeps ZSKs out of a store): the KSK in a `ksk-only` store and the ZSK in
  the next one; a new store put in front of the one that holds the keys,
  then `knotc reload` (Knot keeps finding the old keys, so must the
  module); a PKCS #11 store that holds only KSKs is accepted at load, one
  that would get the ZSKs is refused (`only the PEM key store is
  supported`). Skipped on Knot 3.2 and 3.4, which refuse such a
  configuration.
"""

import os
import unittest

from knotharness import (TRY_START_CONF, Config, Knotd, Zone, assert_enforced, assert_validated,
                         conf_check, delv_available, key_tags, knotd_try_start, main, summary)

FAST = """    algorithm: ecdsap256sha256
"""

BODY = """@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
sub MX 5 mailgate
"""

LEGACY = ("mailgate", "smtp.isp.net")

# Every series: one PEM store with a directory of its own.
ONE_STORE = """keystore:
  - id: custom
    config: custom-keys
policy:
  - id: custom
    keystore: custom
""" + FAST

# Knot 3.5+: lists of stores.
LISTS = """keystore:
  - id: kskonly
    config: ksk-keys
    ksk-only: on
  - id: zsk
    config: zsk-keys
  - id: old
    config: old-keys
  - id: new
    config: new-keys
policy:
  - id: split
    keystore: [ kskonly, zsk ]
%s  - id: moved
    keystore: [ @MOVED@ ]
%s""" % (FAST, FAST)

# PKCS #11 stores (the library does not exist: knotd cannot sign these zones,
# the module's load-time judgement is what is checked).
PKCS11_CONF = TRY_START_CONF + """keystore:
  - id: pem
  - id: hsm-ksk
    backend: pkcs11
    config: "pkcs11:token=knot;pin-value=1234 /nonexistent/libpkcs11.so"
    ksk-only: on
  - id: hsm
    backend: pkcs11
    config: "pkcs11:token=knot;pin-value=1234 /nonexistent/libpkcs11.so"
policy:
  - id: hsmksk
    keystore: [ hsm-ksk, pem ]
  - id: hsmzsk
    keystore: [ hsm, pem ]
zone:
  - domain: hsmksk.test
    storage: @RUNDIR@
    dnssec-signing: on
    dnssec-policy: hsmksk
    module: mod-mxfilter
  - domain: hsmzsk.test
    storage: @RUNDIR@
    dnssec-signing: on
    dnssec-policy: hsmzsk
    module: mod-mxfilter
"""


def signed(domain, policy):
    return Zone(domain, BODY, module="mod-mxfilter",
                extra={"dnssec-signing": "on", "dnssec-policy": policy})


def has_keystore_lists():
    """Whether the installed Knot knows `ksk-only` (Knot 3.5+)."""
    rc, _ = conf_check("keystore:\n  - id: k\n    ksk-only: on\n")
    return rc == 0


def pem_files(k, store):
    d = os.path.join(k.dir, "storage", "keys", store)
    return sorted(f for f in os.listdir(d) if f.endswith(".pem")) if os.path.isdir(d) else []


class Checks(unittest.TestCase):
    def assert_validates(self, k, zone):
        """Apex and `sub`: the signed filtering set, delv fully validates."""
        if not delv_available():
            self.skipTest("delv not installed")
        anchor = k.trust_anchor(zone)
        soa = k.kdig(zone, "SOA", tcp=True, do=True)
        soa_tags = key_tags(soa.answer, "SOA")
        self.assertEqual(len(soa_tags), 1, "zone %s is signed by its ZSK:\n%s" % (zone, soa.text()))
        for name in (zone, "sub." + zone):
            r = k.kdig(name, tcp=True, do=True)
            assert_enforced(r, name + ".", legacy=LEGACY, signed=True)
            self.assertEqual(key_tags(r.answer, "MX"), soa_tags,
                             "RRSIG MX not made with the SOA's key:\n" + r.text())
            assert_validated(k.delv(zone, name, anchor=anchor), name + ".", legacy=LEGACY,
                             what="delv %s MX" % name)
        self.assertEqual(k.module_lines(pattern="cannot sign|failed to enforce"), [])


class Stores(Checks):
    def test_own_directory(self):
        """A PEM key store in a directory of its own: keys there, none in
        the default store, and the enforced answer validates."""
        with Knotd(Config([signed("custom.test", "custom")], sections=ONE_STORE)) as k:
            # A KSK and a ZSK (Knot's default: no single-type signing).
            self.assertEqual(len(pem_files(k, "custom-keys")), 2, pem_files(k, "custom-keys"))
            self.assertEqual(pem_files(k, "keys"), [])
            self.assert_validates(k, "custom.test")
            summary("own key store", ["custom.test: keys in custom-keys, enforced MX "
                                      "signed, delv fully validates"])


@unittest.skipUnless(has_keystore_lists(), "this Knot has one key store per policy")
class StoreLists(Checks):
    @classmethod
    def setUpClass(cls):
        zones = [signed("split.test", "split"), signed("moved.test", "moved")]
        cls.k = Knotd(Config(zones, sections=LISTS.replace("@MOVED@", "old"))).start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def test_ksk_only_store(self):
        """KSK in a `ksk-only` store, ZSK in the next: the module signs
        with the ZSK, delv validates."""
        ksk, zsk = pem_files(self.k, "ksk-keys"), pem_files(self.k, "zsk-keys")
        self.assertEqual((len(ksk), len(zsk)), (1, 1), (ksk, zsk))
        self.assertNotEqual(ksk, zsk)
        self.assertEqual(pem_files(self.k, "keys"), [])
        self.assert_validates(self.k, "split.test")
        summary("ksk-only store", ["split.test: KSK %s, ZSK %s, delv fully validates" %
                                   (ksk, zsk)])

    def test_store_put_in_front(self):
        """`keystore: [ new, old ]` after the keys were made in `old`, then
        reload: the keys stay in `old`, the enforced answer validates."""
        self.assert_validates(self.k, "moved.test")
        keys = pem_files(self.k, "old-keys")
        self.assertEqual(len(keys), 2, keys)
        self.k.config.sections = LISTS.replace("@MOVED@", "new, old")
        self.k.reload()
        self.assertEqual(pem_files(self.k, "old-keys"), keys)
        self.assertEqual(pem_files(self.k, "new-keys"), [])
        self.assert_validates(self.k, "moved.test")
        summary("store put in front", ["moved.test: keys %s stay in old-keys after "
                                       "[ new, old ], delv fully validates" % keys])

    def test_pkcs11_stores(self):
        """A PKCS #11 store for KSKs only is accepted at load; one that gets
        the ZSKs makes the module log that only PEM is supported."""
        rc, out = knotd_try_start(PKCS11_CONF, timeout=3)
        lines = [l for l in out.splitlines() if "cannot sign enforced answers" in l]
        self.assertEqual([l for l in lines if "[hsmksk.test.]" in l], [], out)
        zsk = [l for l in lines if "[hsmzsk.test.]" in l]
        self.assertEqual(len(zsk), 1, out)
        self.assertIn("(only the PEM key store is supported)", zsk[0], out)
        summary("PKCS #11 stores", lines)


if __name__ == "__main__":
    main()
