#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fleet (DESIGN.md "Scale"): enrolment travels with the zones.

Two knotd on loopback, each with its own port, rundir and storage, both
configured from configs/fleet/ (placeholders filled here):

  primary    primary.conf: the member zones (legacy MX) and the catalog zone
             (catalog.zone, RFC 9432 v2); no module; NOTIFY + transfer ACL
             for the secondary
  secondary  secondary.conf: the catalog with `catalog-role: interpret`,
             `catalog-template: [ plain, filtered ]`; template `filtered`
             loads mod-mxfilter (`transfer: refuse`); both have `master:`
             the primary

Checked: group filtered is enforced on the secondary, plain is not, the
primary serves the legacy data; an AXFR of a filtered member from the
secondary is REFUSED while the primary serves it; a member added to the
catalog in group filtered is enforced on the secondary from its first
answer. A group change (Knot 3.2.6, KNOT-NOTES.md): the catalog transfer
records the new group, but the member keeps its template (and modules),
also through `knotc zone-reload MEMBER`, until the secondary's
`knotc reload`; changing the member's unique id together with its group
applies the new template with the catalog transfer, the member being
purged and transferred again (not served for that moment, never legacy).

The primary starts first and logs a failed NOTIFY to the secondary that is
not running yet (harmless; the secondary transfers everything at start).
"""

import os
import re
import time
import unittest

from knotharness import (FILTER_SET, Config, Knotd, Zone, assert_enforced, free_port, main,
                         require_module, summary, wire_query, zone_text)

SRC = os.environ.get("MXFILTER_SRC") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
FLEET = os.path.join(SRC, "configs", "fleet")

CATALOG = "catalog.provider.net"
FILTERED = "your-domain.com"          # c1, group filtered in catalog.zone
PLAIN = "provider-internal.net"       # c2, group plain in catalog.zone
NEW = "new-customer.com"              # added by the test as c3, filtered

LEGACY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
shop MX 5 mailgate
"""

TRANSFER_WAIT = 20.0   # s: NOTIFY + catalog transfer + member transfer


def legacy(zone):
    return [(5, "mailgate.%s." % zone), (40, "smtp.isp.net.")]


def read(name):
    with open(os.path.join(FLEET, name)) as f:
        return f.read()


def fill(text, **values):
    """Replace the <PLACEHOLDER>s of a configs/fleet file; none may remain."""
    for k, v in values.items():
        text = text.replace("<%s>" % k, str(v))
    left = re.findall(r"<[A-Z_]+>", text)
    if left:
        raise AssertionError("unfilled placeholders %s" % sorted(set(left)))
    return text


# The catalog, edited the way an operator edits catalog.zone.

def cat_serial(text, serial):
    return re.sub(r"(?m)^(@\s+SOA\s+\S+\s+\S+\s+)\d+", r"\g<1>%d" % serial, text, count=1)


def cat_add(text, uid, zone, group):
    return text + "\n%s.zones PTR %s.\ngroup.%s.zones TXT \"%s\"\n" % (uid, zone, uid, group)


def cat_group(text, uid, group):
    new, n = re.subn(r'(?m)^(group\.%s\.zones\s+TXT\s+)"[^"]*"' % re.escape(uid),
                     r'\g<1>"%s"' % group, text)
    assert n == 1, "no group for %s in the catalog" % uid
    return new


def cat_rename(text, uid, new_uid):
    """A new unique id for a member (its PTR and its properties)."""
    new, n = re.subn(r"(?m)^((?:group\.)?)%s\.zones(\s)" % re.escape(uid),
                     r"\g<1>%s.zones\2" % new_uid, text)
    assert n >= 1, "no member %s in the catalog" % uid
    return new


class FleetKnotd(Knotd):
    """A Knotd whose knot.conf is a configs/fleet file (CONFIG gives the
    zone files to write and the zones to wait for; PORT, when given, is
    where its peer's configuration says it listens)."""

    def __init__(self, conf_file, values, config, **kw):
        super().__init__(config, **kw)
        self.conf_template = read(conf_file)
        self.values = dict(values)
        self.extra_zones = []  # Zones added to the file's `zone:` section.

    def render_conf(self):
        text = fill(self.conf_template, RUNDIR=self.dir, PORT=self.port, **self.values)
        # `zone:` is the last section: more zones are more list entries.
        return text + "".join("  - domain: %s\n" % z for z in self.extra_zones)


class Fleet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        so = require_module()
        cls.catalog = read("catalog.zone")
        cls.p = cls.s = None
        for _ in range(5):
            sport = free_port()
            cls.p = FleetKnotd(
                "primary.conf", {"SECONDARY_PORT": sport},
                Config([Zone(CATALOG, text=cls.catalog), Zone(FILTERED, LEGACY),
                        Zone(PLAIN, LEGACY)], module=False), name="primary")
            cls.p.start()
            if cls.p.port != sport:
                break
            cls.p.stop()  # the primary took the secondary's port: again
            cls.p = None
        if cls.p is None:
            raise RuntimeError("no distinct ports for the primary and the secondary")
        try:
            cls.s = FleetKnotd("secondary.conf",
                               {"PRIMARY_PORT": cls.p.port, "MODULE_FILE": so},
                               Config(module=False), port=sport, name="secondary")
            cls.s.start()
            cls.wait_served(cls.s, [FILTERED, PLAIN])
        except Exception:
            cls.tearDownClass(check=False)
            raise

    @classmethod
    def tearDownClass(cls, check=True):
        errors = []
        for k in (cls.s, cls.p):
            if k is None:
                continue
            try:
                k.stop(check=check)
            except AssertionError as e:
                errors.append("%s: %s" % (k.name, e))
        if errors:
            raise AssertionError("; ".join(errors))

    # -- helpers
    @staticmethod
    def answers(k, zone, rtype="SOA", name=None):
        """The server's answer for ZONE if it serves it (AA), else None."""
        try:
            r = wire_query(k.port, name or zone, rtype, timeout=1)
        except (OSError, ValueError):
            return None
        return r if r.rcode == "NOERROR" and r.aa else None

    @classmethod
    def wait_served(cls, k, zones, timeout=TRANSFER_WAIT):
        deadline = time.monotonic() + timeout
        pending = list(zones)
        while pending and time.monotonic() < deadline:
            pending = [z for z in pending if cls.answers(k, z) is None]
            if pending:
                time.sleep(0.1)
        if pending:
            raise AssertionError("%s does not serve %s after %.0f s; log tail:\n%s" % (
                k.name, pending, timeout, k.log_text()[-3000:]))

    def wait_serial(self, k, zone, serial, timeout=TRANSFER_WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if k.zone_serial(zone) == serial:
                return
            time.sleep(0.1)
        self.fail("%s: %s serial %s, expected %d; log tail:\n%s" % (
            k.name, zone, k.zone_serial(zone), serial, k.log_text()[-3000:]))

    def publish_catalog(self, text):
        """Write the primary's catalog and reload it: the primary NOTIFYs."""
        self.__class__.catalog = text
        self.p.write_zone(CATALOG, text)
        self.p.knotc("-b", "zone-reload", CATALOG)

    def mx(self, k, zone, name=None):
        return k.kdig(name or zone, "MX").mx()

    def assert_enrolled(self, zone, name=None):
        """The secondary enforces NAME (default ZONE), and counts it."""
        name = name or zone
        for tcp in (False, True):
            d = self.s.stats_delta(zone, lambda: assert_enforced(
                self.s.kdig(name, "MX", tcp=tcp), name + ".", legacy=["mailgate", "smtp.isp"],
                what="%s on the secondary" % name))
            self.assertEqual((d["enforced"], d["blocked[bypass]"]), (1, 1), d)

    def catalog_status(self, zone):
        out = self.s.knotc("zone-status", zone, check=False)
        m = re.search(r"catalog: (\S+)", out)
        return m.group(1) if m else None

    # -- tests
    def test_1_groups(self):
        """Group filtered is enforced on the secondary, plain is not; the
        primary (no module) serves the zone data."""
        for name in (FILTERED, "shop." + FILTERED):
            self.assert_enrolled(FILTERED, name)
        self.assertEqual(self.mx(self.s, PLAIN), legacy(PLAIN))
        self.assertEqual(self.mx(self.p, FILTERED), legacy(FILTERED))
        self.assertEqual(self.mx(self.p, PLAIN), legacy(PLAIN))
        self.assertEqual(self.s.zone_stats(PLAIN), {}, "plain: no module counters")
        self.assertEqual(self.catalog_status(FILTERED), CATALOG + ".#filtered")
        self.assertEqual(self.catalog_status(PLAIN), CATALOG + ".#plain")
        summary("fleet secondary", [l for l in self.s.knotc("zone-status").splitlines() if l])

    def test_2_transfer_refuse(self):
        """`transfer: refuse` on the secondary's filtered template: an AXFR
        of a filtered member from the secondary is REFUSED; the primary
        serves it, and the secondary serves plain members."""
        mark = self.s.mark()
        msgs = self.s.kdig(FILTERED, "AXFR")
        self.assertEqual([m.rcode for m in msgs], ["REFUSED"], msgs)
        self.assertEqual([r for m in msgs for r in m.answer], [], msgs)
        refused = r"\[%s\.\] module 'mod-mxfilter/securemail', outgoing transfer refused, " \
            r"type AXFR, client 127\.0\.0\.1, serial 1$" % re.escape(FILTERED)
        self.s.wait_log(refused, mark)
        self.s.settle_log()
        self.assertEqual(len(self.s.module_lines(mark, "outgoing transfer")), 1,
                         self.s.log_text()[-2000:])
        self.assertRegex(self.s.module_lines(mark, "outgoing transfer")[0], refused)
        for k, zone in ((self.p, FILTERED), (self.s, PLAIN)):
            msgs = k.kdig(zone, "AXFR")
            self.assertTrue(all(m.rcode == "NOERROR" for m in msgs), (k.name, msgs))
            mx = sorted(r[3] for m in msgs for r in m.answer
                        if r[2] == "MX" and r[0] == zone + ".")
            self.assertEqual(mx, ["40 smtp.isp.net.", "5 mailgate.%s." % zone], k.name)
        self.assertEqual(self.s.zone_stats(FILTERED).get("transfers[refused]"), 1)

    def test_3_new_member(self):
        """A member added on the primary to the catalog in group filtered:
        the secondary's first authoritative answer is already enforced."""
        self.p.write_zone(NEW, zone_text(NEW, LEGACY))
        self.p.extra_zones.append(NEW)
        self.p.reload()
        self.wait_served(self.p, [NEW])
        self.assertEqual(self.mx(self.p, NEW), legacy(NEW))
        self.assertIsNone(self.answers(self.s, NEW), "not in the catalog yet")

        text = cat_add(cat_serial(self.catalog, 2), "c3", NEW, "filtered")
        self.publish_catalog(text)
        # Bounded poll on the MX itself: every answer the secondary gives
        # for the new zone, from the first, is the filtering set.
        seen = []
        deadline = time.monotonic() + TRANSFER_WAIT
        while time.monotonic() < deadline and not seen:
            r = self.answers(self.s, NEW, "MX")
            if r is not None:
                seen.append(r.mx())
            else:
                time.sleep(0.05)
        self.assertTrue(seen, "secondary does not serve %s; log tail:\n%s" % (
            NEW, self.s.log_text()[-3000:]))
        self.assertEqual(seen[0], FILTER_SET, "first answer after the catalog transfer")
        self.assertEqual(self.catalog_status(NEW), CATALOG + ".#filtered")
        self.assertEqual(self.s.zone_serial(CATALOG), 2)
        self.assert_enrolled(NEW, "shop." + NEW)
        self.assertEqual(self.mx(self.p, NEW), legacy(NEW), "primary unchanged")

    def test_4_group_change(self):
        """PLAIN (c2) moves to filtered, FILTERED (c1) to plain. Knot 3.2.6:
        the catalog transfer records the new group (zone-status shows it)
        but the members keep their template and modules, also through
        `knotc zone-reload MEMBER`; the secondary's `knotc reload` applies
        the new templates."""
        text = cat_group(cat_group(cat_serial(self.catalog, 3), "c2", "filtered"),
                         "c1", "plain")
        self.publish_catalog(text)
        self.wait_serial(self.s, CATALOG, 3)
        # Give the secondary time to act on the catalog change, if it would.
        self.s.settle_log(quiet=1.0, timeout=5.0)
        time.sleep(1.0)
        before = (self.mx(self.s, PLAIN), self.mx(self.s, FILTERED))
        status = (self.catalog_status(PLAIN), self.catalog_status(FILTERED))
        self.s.knotc("-b", "zone-reload", PLAIN)
        self.s.knotc("-b", "zone-reload", FILTERED)
        self.wait_served(self.s, [FILTERED, PLAIN])
        zone_reload = (self.mx(self.s, PLAIN), self.mx(self.s, FILTERED))
        self.s.reload()
        self.wait_served(self.s, [FILTERED, PLAIN, NEW])
        after = (self.mx(self.s, PLAIN), self.mx(self.s, FILTERED))
        summary("fleet group change (MX of %s, %s)" % (PLAIN, FILTERED), [
            "after catalog transfer: %r, groups %r" % (before, status),
            "after zone-reload:      %r" % (zone_reload,),
            "after knotc reload:     %r" % (after,)])
        self.assertEqual(status, (CATALOG + ".#filtered", CATALOG + ".#plain"),
                         "the catalog transfer records the new groups")
        self.assertEqual(before, (legacy(PLAIN), FILTER_SET),
                         "catalog transfer alone: old templates still apply")
        self.assertEqual(zone_reload, before, "zone-reload of the members: no change")
        self.assertEqual(after, (FILTER_SET, legacy(FILTERED)),
                         "after `knotc reload` on the secondary: new templates")
        self.assertEqual(self.s.zone_stats(FILTERED), {}, "module gone")
        self.assertEqual(self.mx(self.s, NEW), FILTER_SET, "others unaffected")
        self.assertEqual(self.mx(self.p, PLAIN), legacy(PLAIN), "primary unchanged")

    def test_5_group_change_new_id(self):
        """Without a reload: the member gets a new unique id together with
        its new group (an RFC 9432 member reset). Knot purges the member, creates
        it again from the catalog with the group's template and transfers
        it: enforced with the catalog transfer, no legacy answer after it."""
        text = cat_group(cat_rename(cat_serial(self.catalog, 4), "c1", "c1b"),
                         "c1b", "filtered")
        self.assertIn("c1b.zones", text)
        self.assertEqual(self.mx(self.s, FILTERED), legacy(FILTERED), "plain since test_4")
        self.publish_catalog(text)
        self.wait_serial(self.s, CATALOG, 4)
        # The member is re-created and re-transferred right after the
        # catalog update (the serial is visible a moment before): wait for
        # the first enforced answer (bounded). Once the old member is gone,
        # the zone is not served until its transfer, then enforced: never
        # legacy again.
        seen = []
        deadline = time.monotonic() + TRANSFER_WAIT
        while time.monotonic() < deadline:
            r = self.answers(self.s, FILTERED, "MX")
            seen.append(r.mx() if r is not None else None)
            if seen[-1] == FILTER_SET:
                break
            time.sleep(0.05)
        self.assertEqual(seen[-1], FILTER_SET, "not enforced after the catalog transfer: "
                         "%r; log tail:\n%s" % (seen[-20:], self.s.log_text()[-3000:]))
        summary("fleet new unique id", ["answers after the catalog serial landed: %s" % (
            ", ".join("legacy" if a == legacy(FILTERED) else "enforced" if a == FILTER_SET
                      else "not served" if a is None else repr(a) for a in seen))])
        reset = next(i for i, a in enumerate(seen) if a != legacy(FILTERED))
        self.assertTrue(all(a in (None, FILTER_SET) for a in seen[reset:]), seen)
        later = [self.answers(self.s, FILTERED, "MX") for _ in range(10)]
        self.assertEqual([r.mx() if r else None for r in later], [FILTER_SET] * 10)
        self.assertEqual(self.catalog_status(FILTERED), CATALOG + ".#filtered")
        self.assert_enrolled(FILTERED)
        self.assertEqual(self.mx(self.s, PLAIN), FILTER_SET, "others unaffected")


if __name__ == "__main__":
    main()
