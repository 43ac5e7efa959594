#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Configuration: every invalid value is refused by `knotc conf-check` and
at knotd start with a message naming the item and the bad value; a valid
configuration passes; a bad configuration given to a running server by
`knotc reload` changes nothing (nothing is half-loaded)."""

import re
import unittest

from knotharness import (FILTER_SET, Config, Knotd, Zone, conf_check, free_port,
                         knotd_try_start, main, require_module, summary)

# (item, value as written in knot.conf, strings one of which the message
# must contain besides the item name)
INVALID = [
    ("exchange", '"5"', ["5"]),
    ("exchange", '"70000 a.example."', ["70000"]),
    ("exchange", '"65536 a.example."', ["65536"]),
    ("exchange", '"-1 a.example."', ["-1"]),
    ("exchange", '"10 ."', ["10 ."]),
    ("exchange", '[ "10 a.example.", "10 A.example" ]', ["10 A.example", "10 a.example"]),
    ("exchange", '"ten a.example."', ["ten"]),
    ("exchange", '""', ["''", '""', "empty"]),
    ("exchange", '[ "10 a.example.", "" ]', ["''", '""', "empty"]),
    ("exchange", '"10 a..b"', ["a..b"]),
    ("exchange", '"10 a.example. extra"', ["extra"]),
    ("exchange", '"10 %s.example."' % ("x" * 64), ["x" * 64]),
    ("mode", "block", ["block"]),
    ("scope", "subtree", ["subtree"]),
    ("null-mx", "drop", ["drop"]),
    ("transfer", "deny", ["deny"]),
    ("ttl", "-5", ["-5"]),
    ("log-interval", "forever", ["forever"]),
    ("synthesize", "maybe", ["maybe"]),
    ("counters", "maybe", ["maybe"]),
    ("counters", "2", ["2"]),
]

VALID_POLICY = """mod-mxfilter:
  - id: securemail
    exchange: [ "10 france.security-mail.net.", "20 europe.security-mail.net." ]
    mode: enforce
    scope: zone
    synthesize: on
    null-mx: keep
    ttl: 3600
    log-interval: 60
    transfer: log
    counters: on
  - id: custom
    exchange: [ "0 mx0.filter.example", "65535 MX1.Filter.Example." ]
    mode: audit
    scope: apex
    synthesize: off
    null-mx: replace
    log-interval: 0
    transfer: refuse
    counters: off
"""


def conf(so, policy, port=None, rundir="@RUNDIR@"):
    port = port or free_port()
    return """server:
  rundir: %(rundir)s
  listen: 127.0.0.1@%(port)d
database:
  storage: %(rundir)s
module:
  - id: mod-mxfilter
    file: %(so)s
%(policy)s
template:
  - id: default
    storage: %(rundir)s
zone:
  - domain: example.test
    module: mod-mxfilter/%(id)s
""" % {"so": so, "policy": policy, "port": port, "rundir": rundir,
       "id": "securemail" if "securemail" in policy else "bad"}


def bad_policy(item, value):
    return "mod-mxfilter:\n  - id: bad\n    %s: %s\n" % (item, value)


class Configuration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.so = require_module()

    def test_valid_passes(self):
        rc, out = conf_check(conf(self.so, VALID_POLICY, rundir="/tmp"))
        self.assertEqual(rc, 0, out)
        self.assertIn("Configuration is valid", out)
        rc, out = conf_check(conf(self.so, "mod-mxfilter:\n  - id: bad\n", rundir="/tmp"))
        self.assertEqual(rc, 0, "an id with every item at its default:\n" + out)

    def test_invalid_conf_check(self):
        """Each invalid value: conf-check fails, naming item and value."""
        rows = []
        for item, value, needles in INVALID:
            with self.subTest(item=item, value=value):
                rc, out = conf_check(conf(self.so, bad_policy(item, value), rundir="/tmp"))
                self.assertNotEqual(rc, 0, "%s: %s accepted:\n%s" % (item, value, out))
                self.assertRegex(out, r"\b%s\b" % re.escape(item), "message names the item")
                self.assertTrue(any(n in out for n in needles),
                                "message names the bad value %s:\n%s" % (value, out))
                rows.append("%-12s %-40s -> %s" % (item, value, out.strip().splitlines()[0]
                                                    if out.strip() else "(no output)"))
        summary("conf-check refusals", rows)

    def test_invalid_knotd_start(self):
        """knotd refuses to start on each invalid value, with a message."""
        for item, value, needles in INVALID:
            with self.subTest(item=item, value=value):
                rc, out = knotd_try_start(conf(self.so, bad_policy(item, value)), timeout=8)
                self.assertIsNotNone(rc, "knotd kept running with %s: %s" % (item, value))
                self.assertNotEqual(rc, 0, out)
                self.assertRegex(out, r"\b%s\b" % re.escape(item))
                self.assertTrue(any(n in out for n in needles), out)

    def test_valid_knotd_starts(self):
        rc, out = knotd_try_start(conf(self.so, VALID_POLICY), timeout=2)
        self.assertIsNone(rc, "knotd should keep running with a valid config:\n" + out)

    def test_bad_reload_keeps_running_config(self):
        """`knotc reload` of an invalid config is refused; the server keeps
        serving with the old one (nothing half-loaded)."""
        z = Zone("your-domain.com", "@ MX 5 mailgate\nmailgate A 192.0.2.25",
                 module="mod-mxfilter/securemail")
        k = Knotd(Config([z], policies=[{"id": "securemail", "ttl": 600}]))
        with k:
            r = k.kdig("your-domain.com", "MX")
            self.assertEqual((r.mx(), {a[1] for a in r.answer}), (FILTER_SET, {600}))
            k.config.policies = [{"id": "securemail", "ttl": 60,
                                  "exchange": ["10 a.example.", "10 A.example"]}]
            out = k.reload(check=False)
            self.assertRegex(out, r"(?i)error|invalid|duplicate", out)
            r = k.kdig("your-domain.com", "MX")
            self.assertEqual(r.mx(), FILTER_SET, r.text())
            self.assertEqual({a[1] for a in r.answer}, {600}, "old policy still in force")
            self.assertTrue(k.alive())


if __name__ == "__main__":
    main()
