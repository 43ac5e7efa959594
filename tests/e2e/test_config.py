#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Configuration: every invalid value is refused by `knotc conf-check` and
at knotd start with a message naming the item and the bad value; a valid
configuration passes; a bad configuration given to a running server by
`knotc reload` changes nothing (nothing is half-loaded)."""

import re
import unittest

from knotharness import (Config, Knotd, Zone, assert_enforced, conf_check, free_port,
                         knotd_try_start, main, require_module, summary)

# (item, value as written in knot.conf, the message: item and value, why)
INVALID = [
    ("exchange", '"5"', "item 'exchange', value '5' (missing exchange name)"),
    ("exchange", '"70000 a.example."',
     "item 'exchange', value '70000 a.example.' (preference out of range 0-65535)"),
    ("exchange", '"65536 a.example."',
     "item 'exchange', value '65536 a.example.' (preference out of range 0-65535)"),
    ("exchange", '"-1 a.example."',
     "item 'exchange', value '-1 a.example.' (preference is not a number 0-65535)"),
    ("exchange", '"10 ."', "item 'exchange', value '10 .' (null exchange '.' not allowed)"),
    # Checked over the whole id: the section is named, the reason names both.
    ("exchange", '[ "10 a.example.", "10 A.example" ]',
     "section 'mod-mxfilter[bad]' (invalid exchange '10 A.example' (duplicate exchange))"),
    ("exchange", '"ten a.example."',
     "item 'exchange', value 'ten a.example.' (preference is not a number 0-65535)"),
    # Knot prints no empty value.
    ("exchange", '""', "item 'exchange' (empty exchange)"),
    ("exchange", '[ "10 a.example.", "" ]', "item 'exchange' (empty exchange)"),
    ("exchange", '"10 a..b"', "item 'exchange', value '10 a..b' (invalid exchange name)"),
    ("exchange", '"10 a.example. extra"',
     "item 'exchange', value '10 a.example. extra' (unexpected text after exchange name)"),
    ("exchange", '"10 %s.example."' % ("x" * 64),
     "item 'exchange', value '10 %s.example.' (invalid exchange name)" % ("x" * 64)),
    ("mode", "block", "item 'mode', value 'block' (invalid parameter)"),
    ("scope", "subtree", "item 'scope', value 'subtree' (invalid parameter)"),
    ("null-mx", "drop", "item 'null-mx', value 'drop' (invalid parameter)"),
    ("transfer", "deny", "item 'transfer', value 'deny' (invalid parameter)"),
    ("ttl", "-5", "item 'ttl', value '-5' (value is out of range)"),
    ("log-interval", "forever", "item 'log-interval', value 'forever' (invalid parameter)"),
    ("synthesize", "maybe", "item 'synthesize', value 'maybe' (invalid parameter)"),
    ("counters", "maybe", "item 'counters', value 'maybe' (invalid parameter)"),
    ("counters", "2", "item 'counters', value '2' (invalid parameter)"),
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
        for item, value, message in INVALID:
            with self.subTest(item=item, value=value):
                rc, out = conf_check(conf(self.so, bad_policy(item, value), rundir="/tmp"))
                self.assertNotEqual(rc, 0, "%s: %s accepted:\n%s" % (item, value, out))
                self.assertRegex(out, r"(?m)^error: config, file '[^']+', line \d+, %s$"
                                 % re.escape(message), "message names item and value")
                rows.append("%-12s %-40s -> %s" % (item, value, out.strip().splitlines()[0]
                                                    if out.strip() else "(no output)"))
        summary("conf-check refusals", rows)

    def test_invalid_knotd_start(self):
        """knotd refuses to start on each invalid value, with a message."""
        for item, value, message in INVALID:
            with self.subTest(item=item, value=value):
                rc, out = knotd_try_start(conf(self.so, bad_policy(item, value)), timeout=8)
                self.assertIsNotNone(rc, "knotd kept running with %s: %s" % (item, value))
                self.assertNotEqual(rc, 0, out)
                self.assertRegex(out, r"(?m) error: config, file '[^']+', line \d+, %s$"
                                 % re.escape(message))

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
            assert_enforced(k.kdig("your-domain.com", "MX"), "your-domain.com.", ttl=600,
                            legacy=["mailgate"])
            k.config.policies = [{"id": "securemail", "ttl": 60,
                                  "exchange": ["10 a.example.", "10 A.example"]}]
            mark = k.mark()
            out = k.reload(check=False)
            # knotc says no, the server says why and keeps its configuration.
            self.assertEqual(out.strip(), "error: (invalid parameter)", out)
            self.assertTrue(k.wait_log(r"section 'mod-mxfilter\[securemail\]' \(invalid "
                                       r"exchange '10 A\.example' \(duplicate exchange\)\)",
                                       mark), "\n".join(k.log_lines(mark)))
            assert_enforced(k.kdig("your-domain.com", "MX"), "your-domain.com.", ttl=600,
                            legacy=["mailgate"], what="old policy still in force")
            self.assertTrue(k.alive())


if __name__ == "__main__":
    main()
