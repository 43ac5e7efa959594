#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleet enrolment (DESIGN.md Scale): a catalog zone (RFC 9432) whose member
group maps to a `catalog-template` that loads the module. Members of group
`filtered` are enforced, the others are not; a member added to the catalog
later is enrolled by its group; a group change takes effect at `knotc reload`
(KNOT-NOTES.md)."""

import unittest

from knotharness import (COUNTERS, Config, Knotd, Raw, Zone, assert_enforced, main, summary,
                         zone_text)

LEGACY = "@ MX 5 mailgate\nmailgate A 192.0.2.25"
MEMBERS = ("member1.test", "member2.test", "member3.test", "member4.test")


def catalog(serial, entries):
    lines = ["$ORIGIN catalog.test.", "$TTL 0",
             "@ SOA invalid. invalid. %d 3600 900 604800 0" % serial,
             "@ NS invalid.", 'version TXT "2"']
    for i, (zone, group) in enumerate(entries):
        lines.append("m%d.zones PTR %s." % (i, zone))
        if group:
            lines.append('group.m%d.zones TXT "%s"' % (i, group))
    return "\n".join(lines) + "\n"


class Catalog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cat = Zone("catalog.test",
                   text=catalog(1, [("member1.test", "filtered"), ("member2.test", None)]),
                   extra={"catalog-role": "interpret",
                          "catalog-template": Raw("[ plain, filtered ]")})
        cls.k = Knotd(Config([cat], templates=[{"id": "plain"},
                                               {"id": "filtered", "module": "mod-mxfilter"}],
                             files={m: zone_text(m, LEGACY) for m in MEMBERS}))
        cls.k.start()
        try:
            cls.k.wait_zones_loaded(zones=["member1.test", "member2.test"])
        except Exception:
            cls.k.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def mx(self, zone):
        return self.k.kdig(zone, "MX").mx()

    def assert_enrolled(self, zone):
        """ZONE's MX answer is enforced and counted by the module."""
        d = self.k.stats_delta(zone, lambda: assert_enforced(
            self.k.kdig(zone, "MX", tcp=True), zone + ".", legacy=["mailgate"], what=zone))
        self.assertEqual(sorted(d), sorted(COUNTERS), "%s: the module's counters" % zone)
        self.assertEqual((d["enforced"], d["blocked[bypass]"]), (1, 1), d)

    def assert_untouched(self, zone):
        """ZONE's own MX, and no module counters for it."""
        self.assertEqual(self.mx(zone), [(5, "mailgate.%s." % zone)], zone)
        self.assertEqual(self.k.zone_stats(zone), {}, zone)

    def test_1_groups(self):
        self.assert_enrolled("member1.test")  # group filtered
        self.assert_untouched("member2.test")  # no group: template plain
        summary("catalog", [l for l in self.k.knotc("zone-status").splitlines() if l])

    def test_2_new_member(self):
        """A member added to the catalog with group filtered is enforced."""
        self.k.write_zone("catalog.test", catalog(2, [
            ("member1.test", "filtered"), ("member2.test", None),
            ("member3.test", "filtered"), ("member4.test", "plain")]))
        self.k.knotc("-b", "zone-reload", "catalog.test")
        self.k.wait_zones_loaded(zones=["member3.test", "member4.test"])
        self.assert_enrolled("member3.test")
        self.assert_untouched("member4.test")
        self.assert_enrolled("member1.test")

    def test_3_group_change_at_reload(self):
        """member2 moves to group filtered: enforced after `knotc reload`."""
        self.k.write_zone("catalog.test", catalog(3, [
            ("member1.test", "filtered"), ("member2.test", "filtered"),
            ("member3.test", "filtered"), ("member4.test", "plain")]))
        self.k.knotc("-b", "zone-reload", "catalog.test")
        self.k.reload()
        self.k.wait_zones_loaded(zones=list(MEMBERS))
        self.assert_enrolled("member2.test")
        self.assert_untouched("member4.test")


if __name__ == "__main__":
    main()
