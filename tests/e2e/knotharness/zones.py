# SPDX-License-Identifier: GPL-3.0-or-later
"""Zones and keys: the filtering set, zone files, and the DNSSEC records a
test reads (RRSIG fields, key tags, KSKs as trust anchors)."""

FILTER_SET = [(10, "france.security-mail.net."), (20, "europe.security-mail.net.")]


def mx_set(pairs):
    """(preference, exchange) pairs as Result.mx() gives them: sorted,
    exchanges lower-case and absolute."""
    return sorted((int(p), n.lower().rstrip(".") + ".") for p, n in pairs)


def zone_text(domain, body="", serial=1, ttl=3600):
    """A zone file with SOA and NS plus BODY (lines relative to the origin)."""
    origin = domain.rstrip(".") + "."
    return ("$ORIGIN %s\n$TTL %d\n"
            "@ SOA ns1 hostmaster %d 3600 900 604800 300\n"
            "@ NS ns1\n"
            "ns1 A 127.0.0.1\n" % (origin, ttl, serial)) + \
        "\n".join(l.strip() for l in body.strip("\n").splitlines()) + "\n"


class Zone:
    """A zone a test server serves.

    domain    the zone's name
    body      records relative to the origin, after zone_text()'s SOA and NS
    text      the whole zone file instead (BODY and SERIAL unused)
    module    the zone's `module:` item, e.g. "mod-mxfilter/securemail"
    template  the zone's `template:` item
    extra     more items of the zone's entry, e.g. {"dnssec-signing": "on"}
    acl       allow transfers from 127.0.0.0/8 (the harness's ACL)
    """

    def __init__(self, domain, body="", module=None, serial=1, text=None,
                 template=None, extra=None, acl=True):
        self.domain = domain.rstrip(".")
        self.text = text if text is not None else zone_text(domain, body, serial)
        self.module = module
        self.template = template
        self.extra = dict(extra or {})
        self.acl = acl

    def without_module(self):
        """The same zone, not enrolled (for a reference server)."""
        return Zone(self.domain, text=self.text, template=self.template, extra=self.extra,
                    acl=self.acl)


# ----------------------------------------------------------------------------
# DNSSEC

# Signing policies of tiny timings (keys roll within seconds), for
# Config(sections=...): `fast` (NSEC) and `fast3` (NSEC3, no iterations, no
# salt), ECDSA P-256.
_FAST = """    algorithm: ecdsap256sha256
    dnskey-ttl: 1
    zone-max-ttl: 1
    propagation-delay: 0
    rrsig-lifetime: 3600
    rrsig-refresh: 600
    rrsig-pre-refresh: 1
    delete-delay: 0
"""
FAST_POLICIES = ("policy:\n  - id: fast\n" + _FAST + "  - id: fast3\n" + _FAST +
                 "    nsec3: on\n    nsec3-iterations: 0\n    nsec3-salt-length: 0\n")

# Records, in kdig's (and knotc's) text form

def rrsig(rdata):
    """The fields of an RRSIG's rdata text."""
    f = rdata.split()
    return {"covered": f[0], "alg": int(f[1]), "labels": int(f[2]),
            "ottl": int(f[3]), "exp": f[4], "inc": f[5], "tag": int(f[6]),
            "signer": f[7].lower(), "sig": "".join(f[8:])}


def sigs(records, covered):
    """rrsig() of every RRSIG over COVERED among RECORDS ((owner, ttl,
    type, rdata) tuples, e.g. Result.answer)."""
    return [rrsig(r[3]) for r in records if r[2] == "RRSIG" and
            r[3].split()[0] == covered]


def key_tags(records, covered):
    """Key tags of the RRSIGs over COVERED among RECORDS."""
    return {s["tag"] for s in sigs(records, covered)}


def ksk_rdata(records):
    """The rdata of the DNSKEY 257 records (KSKs) among RECORDS."""
    return [r[3] for r in records if r[2] == "DNSKEY" and r[3].startswith("257 ")]


def delv_anchors(zone, ksks):
    """A delv `trust-anchors` file's text: ZONE's KSKS (DNSKEY rdata) as
    static keys."""
    out = ["trust-anchors {"]
    for k in ksks:
        flags, proto, alg, key = k.split(None, 3)
        out.append('  %s. static-key %s %s %s "%s";' %
                   (zone.rstrip("."), flags, proto, alg, key.replace(" ", "")))
    return "\n".join(out + ["};"]) + "\n"
