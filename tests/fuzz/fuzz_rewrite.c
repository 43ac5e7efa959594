/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * libFuzzer harness of mxf_process(), the response rewriter.
 *
 * The input is decoded into a policy and a response packet, then
 * mxf_process() runs on it and the result is checked; any violation calls
 * abort(). Input layout:
 *
 *   byte 0      path: (b & 3) == 3 parses the rest of the input as a DNS
 *               message (knot_pkt_parse on a copy), otherwise a response is
 *               built with libknot the way knotd builds one
 *   policy      mode, scope, null-mx, ttl, 1-4 (or 32) exchanges, zone apex
 *   packet      raw wire (parse path) or a structured description: question,
 *               size, EDNS, stage at which the engine runs, then up to 48
 *               RRsets (MX, CNAME, RRSIG, A, AAAA, NS, TXT, SOA, private
 *               types; owners: QNAME, wildcard, names from a table or made
 *               of input bytes, glue of earlier exchangers, ...)
 *
 * Checks after every call:
 *  - the packet structure is sane (sections, wire counts, opt_rr, sizes);
 *  - the output wire re-parses with knot_pkt_parse;
 *  - enforce mode: (mxf_pkt_leak() >= 0) is false, and an independent check on
 *    the re-parsed packet finds no in-zone, in-scope MX owner (per section)
 *    holding anything but the filtering set or a kept lone null MX;
 *  - the re-parsed records equal what an independent model of the policy
 *    predicts from the input (per section, as multisets): MX groups that
 *    change hold exactly the filtering set, RRSIGs over removed MX and glue
 *    of blocked exchangers go, every other record stays as it was; on an
 *    error the output is a subset of that;
 *  - the result counters match the model;
 *  - audit mode, or nothing to change: the wire is byte for byte the same;
 *  - the packet can still be finished (OPT into the reserved space).
 * Allocation failures are injected into the packet's memory context during
 * mxf_process(); ASan/LSan catch memory errors and leaks.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libknot/libknot.h>

#include "engine/wire.h"
#include "engine/policy.h"
#include "engine/rewrite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { \
	fprintf(stderr, "fuzz_rewrite: invariant violated at line %d: ", __LINE__); \
	fprintf(stderr, __VA_ARGS__); \
	fprintf(stderr, "\n"); \
	abort(); \
} while (0)

#define CHECK(cond, ...) do { if (!(cond)) { FAIL(__VA_ARGS__); } } while (0)

/*** Input reader. ***/

typedef struct {
	const uint8_t *p;
	size_t n;
} rd_t;

static uint8_t u8(rd_t *r)
{
	if (r->n == 0) {
		return 0;
	}
	r->n--;
	return *r->p++;
}

static uint16_t u16(rd_t *r)
{
	uint16_t hi = u8(r);
	uint16_t lo = u8(r);
	return (uint16_t)(hi << 8 | lo);
}

/*** Memory: malloc with failure injection (armed during mxf_process). ***/

static long fail_countdown = -1;

/* FUZZ_DEBUG=1: print each packet before and after (to read a reproducer). */
static bool debug;

static void *fz_alloc(void *ctx, size_t len)
{
	(void)ctx;
	if (fail_countdown == 0) {
		return NULL;
	}
	if (fail_countdown > 0) {
		fail_countdown--;
	}
	return malloc(len);
}

static void fz_free(void *ptr)
{
	free(ptr);
}

/*** Names. ***/

static const char *const name_table[] = {
	"example.com.",
	"EXAMPLE.com.",
	"mail.example.com.",
	"sub.example.com.",
	"x.sub.example.com.",
	"*.example.com.",
	"*.sub.example.com.",
	"france.security-mail.net.",
	"europe.security-mail.net.",
	"FRANCE.Security-Mail.NET.",
	"smtp.isp.net.",
	".",
	"com.",
	"example.com.example.com.",
	"mx.example.org.",
	"mail.EXAMPLE.COM.",
	"a.example.com.",
	"www.example.com.",
	"mailgate.sub.example.com.",
	"example.org.",
	NULL, /* long: 253 bytes */
	NULL, /* many labels: 122 */
};
#define NAMES	(sizeof(name_table) / sizeof(name_table[0]))

static knot_dname_storage_t names[NAMES];
static const char *const zones[] = { "example.com.", "com.", ".", "sub.example.com." };
static knot_dname_storage_t zone_names[4];

/* Exchange values of policies (text, as in knot.conf). */
static const char *const ex_table[] = {
	"10 france.security-mail.net.",
	"20 europe.security-mail.net.",
	"5 mail.example.com.",
	"10 Mail.Example.COM",
	"30 mx.example.org.",
	"0 smtp.isp.net.",
	"65535 europe.security-mail.net.",
	"20 a.example.com.",
};
#define EXES	(sizeof(ex_table) / sizeof(ex_table[0]))

static void init_names(void)
{
	static bool done;
	if (done) {
		return;
	}
	done = true;
	debug = getenv("FUZZ_DEBUG") != NULL;
	for (size_t i = 0; i < NAMES; i++) {
		char txt[1024];
		if (name_table[i] != NULL) {
			snprintf(txt, sizeof(txt), "%s", name_table[i]);
		} else if (i == NAMES - 2) {
			/* 3 x 63 + 47 + example.com. = 253 bytes. */
			size_t o = 0;
			const char fill[4] = { 'a', 'B', 'c', 'd' };
			const int len[4] = { 63, 63, 63, 47 };
			for (int l = 0; l < 4; l++) {
				memset(txt + o, fill[l], len[l]);
				o += len[l];
				txt[o++] = '.';
			}
			strcpy(txt + o, "example.com.");
		} else {
			/* 120 labels "a." + example.com. */
			size_t o = 0;
			for (int l = 0; l < 120; l++) {
				txt[o++] = (l & 1) ? 'A' : 'a';
				txt[o++] = '.';
			}
			strcpy(txt + o, "example.com.");
		}
		if (knot_dname_from_str(names[i], txt, KNOT_DNAME_MAXLEN) == NULL) {
			abort();
		}
	}
	for (size_t i = 0; i < 4; i++) {
		if (knot_dname_from_str(zone_names[i], zones[i], KNOT_DNAME_MAXLEN) == NULL) {
			abort();
		}
	}
}

/* A name from the table, or made of input bytes below a table name. */
static void rd_name(rd_t *r, knot_dname_storage_t out)
{
	uint8_t sel = u8(r);
	if (sel < 0xE0) {
		memcpy(out, names[sel % NAMES], knot_dname_size(names[sel % NAMES]));
		return;
	}
	const knot_dname_t *suffix = names[u8(r) % NAMES];
	size_t suffix_len = knot_dname_size(suffix);
	size_t len = 0;
	unsigned labels = (sel & 0x7) + 1;
	for (unsigned l = 0; l < labels; l++) {
		uint8_t ll = u8(r) % 64;
		if (ll == 0) {
			ll = 1;
		}
		if (len + 1 + ll + suffix_len > KNOT_DNAME_MAXLEN) {
			break;
		}
		out[len] = ll;
		for (unsigned i = 1; i <= ll; i++) {
			uint8_t c = u8(r);
			/* Mostly letters (both cases), sometimes any byte. */
			out[len + i] = (c & 0x80) ? c : (uint8_t)(((c & 0x20) ? 'A' : 'a') + c % 26);
		}
		len += 1 + ll;
	}
	memcpy(out + len, suffix, suffix_len);
}

static void name_lower(knot_dname_storage_t out, const knot_dname_t *name)
{
	knot_dname_copy_lower(out, name);
}

/* Case-insensitive: is \a name at or below \a zone? (independent of the engine) */
static bool under(const knot_dname_t *name, const knot_dname_t *zone)
{
	knot_dname_storage_t a, b;
	name_lower(a, name);
	name_lower(b, zone);
	return knot_dname_in_bailiwick(a, b) >= 0;
}

static bool same_name(const knot_dname_t *a, const knot_dname_t *b)
{
	return knot_dname_is_case_equal(a, b);
}

/*** Harness-owned memory released after each input. ***/

#define ARENA_MAX	512

typedef struct {
	void *ptr[ARENA_MAX];
	size_t count;
	knot_rrset_t *sets[ARENA_MAX];
	size_t set_count;
} arena_t;

static void *arena_keep(arena_t *a, void *p)
{
	if (p == NULL || a->count >= ARENA_MAX) {
		free(p);
		return NULL;
	}
	a->ptr[a->count++] = p;
	return p;
}

static knot_dname_t *arena_name(arena_t *a, const knot_dname_t *name)
{
	size_t len = knot_dname_size(name);
	knot_dname_t *copy = arena_keep(a, malloc(len));
	if (copy != NULL) {
		memcpy(copy, name, len);
	}
	return copy;
}

static void arena_free(arena_t *a)
{
	for (size_t i = 0; i < a->set_count; i++) {
		knot_rdataset_clear(&a->sets[i]->rrs, NULL);
		free(a->sets[i]);
	}
	for (size_t i = 0; i < a->count; i++) {
		free(a->ptr[i]);
	}
	a->count = a->set_count = 0;
}

/*** Policy. ***/

static mxf_policy_t *rd_policy(rd_t *r, const knot_dname_t **zone)
{
	uint8_t f = u8(r);
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	conf.mode = (f & 1) ? MXF_MODE_AUDIT : MXF_MODE_ENFORCE;
	conf.scope = (f & 2) ? MXF_SCOPE_APEX : MXF_SCOPE_ZONE;
	conf.null_mx = (f & 4) ? MXF_NULLMX_REPLACE : MXF_NULLMX_KEEP;
	conf.ttl_set = (f & 8) != 0;
	conf.ttl = (uint32_t)u8(r) * 97;
	*zone = zone_names[(f >> 6) & 3];

	static char gen[MXF_MAX_EXCHANGES][64];
	const char *values[MXF_MAX_EXCHANGES];
	size_t count = ((f >> 4) & 3) + 1;
	uint8_t g = u8(r);
	if (g == 0xFF) {
		/* The largest set: 32 exchanges. */
		count = MXF_MAX_EXCHANGES;
		for (size_t i = 0; i < count; i++) {
			snprintf(gen[i], sizeof(gen[i]), "%zu mx%zu.filter.example.com.", i, i);
			values[i] = gen[i];
		}
	} else if (g < 0x40) {
		conf.exchange = NULL;
		conf.exchange_count = 0; /* The default set. */
		count = 0;
	} else {
		for (size_t i = 0; i < count; i++) {
			values[i] = ex_table[u8(r) % EXES];
		}
	}
	if (count > 0) {
		conf.exchange = values;
		conf.exchange_count = count;
	}
	const char *err = NULL;
	mxf_policy_t *policy = mxf_policy_new(&conf, &err);
	if (policy == NULL) {
		CHECK(err != NULL, "policy refused without a reason");
	}
	return policy;
}

/*** The model: what mxf_process() must do, computed independently. ***/

enum { M_KEEP = 0, M_REPLACE, M_DROP };

typedef struct {
	uint8_t act[KNOT_WIRE_MAX_PKTSIZE / KNOT_WIRE_RR_MIN_SIZE + 1];
	bool change;          /* Something is rewritten. */
	bool tsig;            /* A TSIG: the change is refused (writer.h, T). */
	mxf_result_t res;     /* Expected counters. */
} model_t;

static bool rd_nullmx(const knot_rdata_t *rd)
{
	return rd->len == 3 && rd->data[0] == 0 && rd->data[1] == 0 && rd->data[2] == 0;
}

static const knot_dname_t *rd_exchange(const knot_rdata_t *rd)
{
	if (rd->len < 3) {
		return NULL;
	}
	int sz = knot_dname_wire_check(rd->data + 2, rd->data + rd->len, NULL);
	return (sz > 0 && sz == rd->len - 2) ? rd->data + 2 : NULL;
}

static int pol_index(const mxf_policy_t *p, const knot_rdata_t *rd)
{
	const knot_dname_t *ex = rd_exchange(rd);
	if (ex == NULL) {
		return -1;
	}
	uint16_t pref = knot_wire_read_u16(rd->data);
	for (int i = 0; i < p->count; i++) {
		if (p->ex[i].pref == pref && same_name(p->ex[i].name, ex)) {
			return i;
		}
	}
	return -1;
}

static bool pol_has_name(const mxf_policy_t *p, const knot_dname_t *name)
{
	for (int i = 0; i < p->count; i++) {
		if (same_name(p->ex[i].name, name)) {
			return true;
		}
	}
	return false;
}

static int sec_of(const knot_pkt_t *pkt, uint16_t i)
{
	for (int s = KNOT_ANSWER; s <= KNOT_ADDITIONAL; s++) {
		const knot_pktsection_t *sec = &pkt->sections[s];
		if (sec->count > 0 && i >= sec->pos && i < sec->pos + sec->count) {
			return s;
		}
	}
	return -1;
}

static bool mx_candidate(const knot_pkt_t *pkt, uint16_t i, const mxf_policy_t *p,
                         const knot_dname_t *zone)
{
	const knot_rrset_t *rr = &pkt->rr[i];
	return rr->type == KNOT_RRTYPE_MX && rr->rrs.count > 0 &&
	       rr->rrs.rdata != p->rrs.rdata && under(rr->owner, zone);
}

static void model_compute(model_t *m, const knot_pkt_t *pkt, const mxf_policy_t *p,
                          const knot_dname_t *zone)
{
	memset(m, 0, sizeof(*m));
	uint16_t n = pkt->rrset_count;
	bool seen[sizeof(m->act)] = { false };
	bool enforce = p->mode == MXF_MODE_ENFORCE;

	for (uint16_t i = 0; i < n; i++) {
		if (seen[i] || !mx_candidate(pkt, i, p, zone)) {
			continue;
		}
		int sec = sec_of(pkt, i);
		if (sec < 0) {
			continue;
		}
		const knot_dname_t *owner = pkt->rr[i].owner;
		/* The group: candidates of the same section and owner. */
		uint32_t present = 0, records = 0, legacy = 0;
		bool first_null = false;
		for (uint16_t j = i; j < n; j++) {
			if (sec_of(pkt, j) != sec || !mx_candidate(pkt, j, p, zone) ||
			    seen[j] || !same_name(pkt->rr[j].owner, owner)) {
				continue;
			}
			seen[j] = true;
			const knot_rdata_t *rd = pkt->rr[j].rrs.rdata;
			for (uint16_t k = 0; k < pkt->rr[j].rrs.count; k++) {
				int idx = pol_index(p, rd);
				if (idx >= 0) {
					present |= (uint32_t)1 << idx;
				} else {
					legacy++;
				}
				if (records == 0) {
					first_null = rd_nullmx(rd);
				}
				records++;
				rd = knot_rdataset_next((knot_rdata_t *)rd);
			}
		}
		uint32_t all = p->count >= 32 ? UINT32_MAX : ((uint32_t)1 << p->count) - 1;
		bool compliant = legacy == 0 && present == all;
		bool nullmx = !compliant && records == 1 && first_null;
		if (compliant) {
			m->res.compliant++;
			continue;
		}
		if (nullmx && p->null_mx == MXF_NULLMX_KEEP) {
			continue;
		}
		bool scope = p->scope == MXF_SCOPE_ZONE || same_name(owner, zone);
		bool change = enforce && scope;
		if (change && sec == KNOT_ANSWER) {
			m->res.enforced++;
		}
		for (uint16_t j = i; j < n; j++) {
			if (sec_of(pkt, j) != sec || !mx_candidate(pkt, j, p, zone) ||
			    !same_name(pkt->rr[j].owner, owner)) {
				continue;
			}
			const knot_rdata_t *rd = pkt->rr[j].rrs.rdata;
			for (uint16_t k = 0; k < pkt->rr[j].rrs.count; k++) {
				if (pol_index(p, rd) < 0) {
					uint16_t pref = rd->len >= 2 ? knot_wire_read_u16(rd->data) : 0;
					if (change) {
						m->res.blocked[mxf_risk(p, pref)]++;
					} else {
						m->res.served++;
					}
				}
				rd = knot_rdataset_next((knot_rdata_t *)rd);
			}
			if (change) {
				m->act[j] = (j == i && sec == KNOT_ANSWER) ? M_REPLACE : M_DROP;
				m->change = true;
			}
		}
	}
	if (!m->change) {
		return;
	}

	/* Dependents: RRSIGs over removed MX, glue of blocked exchangers. */
	for (uint16_t i = 0; i < n; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		if (m->act[i] != M_KEEP) {
			continue;
		}
		if (rr->type == KNOT_RRTYPE_TSIG) {
			m->tsig = true;
			m->act[i] = M_DROP;
			continue;
		}
		bool sig = rr->type == KNOT_RRTYPE_RRSIG && rr->rrs.count > 0 &&
		           rr->rrs.rdata->len >= 2;
		uint16_t covered = sig ? knot_wire_read_u16(rr->rrs.rdata->data) : 0;
		if (sig && covered == KNOT_RRTYPE_MX) {
			for (uint16_t j = 0; j < n; j++) {
				if (pkt->rr[j].type == KNOT_RRTYPE_MX && m->act[j] != M_KEEP &&
				    same_name(pkt->rr[j].owner, rr->owner)) {
					m->act[i] = M_DROP;
					break;
				}
			}
			if (m->act[i] != M_KEEP) {
				continue;
			}
		}
		if (sec_of(pkt, i) != KNOT_ADDITIONAL) {
			continue;
		}
		bool addr = rr->type == KNOT_RRTYPE_A || rr->type == KNOT_RRTYPE_AAAA ||
		            (sig && (covered == KNOT_RRTYPE_A || covered == KNOT_RRTYPE_AAAA));
		if (!addr || knot_dname_size(rr->owner) <= 1 || pol_has_name(p, rr->owner)) {
			continue;
		}
		for (uint16_t j = 0; j < n && m->act[i] == M_KEEP; j++) {
			if (pkt->rr[j].type != KNOT_RRTYPE_MX || m->act[j] == M_KEEP) {
				continue;
			}
			const knot_rdata_t *rd = pkt->rr[j].rrs.rdata;
			for (uint16_t k = 0; k < pkt->rr[j].rrs.count; k++) {
				const knot_dname_t *ex = rd_exchange(rd);
				if (ex != NULL && same_name(ex, rr->owner)) {
					m->act[i] = M_DROP;
					break;
				}
				rd = knot_rdataset_next((knot_rdata_t *)rd);
			}
		}
	}
}

/*** Records of a parsed packet, as comparable text. ***/

#define REC_MAX	(KNOT_WIRE_MAX_PKTSIZE / KNOT_WIRE_RR_MIN_SIZE + 64)

typedef struct {
	uint8_t sec;
	uint32_t hash;    /* Of owner (lower), type, class, ttl, rdata (lower names). */
} rec_t;

typedef struct {
	rec_t *r;
	size_t n;
} recs_t;

static uint32_t fnv(uint32_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h = (h ^ p[i]) * 16777619u;
	}
	return h;
}

static uint32_t rec_hash(const knot_dname_t *owner, uint16_t type, uint16_t rclass,
                         uint32_t ttl, const knot_rdata_t *rd)
{
	knot_dname_storage_t low;
	name_lower(low, owner);
	uint32_t h = fnv(2166136261u, low, knot_dname_size(low));
	uint8_t hdr[8];
	knot_wire_write_u16(hdr, type);
	knot_wire_write_u16(hdr + 2, rclass);
	knot_wire_write_u32(hdr + 4, type == KNOT_RRTYPE_OPT ? 0 : ttl);
	h = fnv(h, hdr, sizeof(hdr));
	/* Rdata: names in MX/CNAME/NS compared case-insensitively. */
	uint8_t buf[65536];
	memcpy(buf, rd->data, rd->len);
	if (type == KNOT_RRTYPE_MX && rd_exchange(rd) != NULL) {
		knot_dname_to_lower(buf + 2);
	} else if ((type == KNOT_RRTYPE_CNAME || type == KNOT_RRTYPE_NS) &&
	           knot_dname_wire_check(rd->data, rd->data + rd->len, NULL) == rd->len) {
		knot_dname_to_lower(buf);
	}
	return fnv(h, buf, rd->len);
}

static void recs_add(recs_t *rs, uint8_t sec, uint32_t hash)
{
	CHECK(rs->n < REC_MAX, "too many records");
	rs->r[rs->n].sec = sec;
	rs->r[rs->n].hash = hash;
	rs->n++;
}

static int rec_cmp(const void *a, const void *b)
{
	const rec_t *x = a, *y = b;
	if (x->sec != y->sec) {
		return x->sec < y->sec ? -1 : 1;
	}
	return x->hash < y->hash ? -1 : (x->hash > y->hash ? 1 : 0);
}

/* Parses \a wire (a copy) into \a out; returns the packet or NULL. */
static knot_pkt_t *reparse(const uint8_t *wire, size_t size, uint8_t **copy)
{
	*copy = malloc(size ? size : 1);
	memcpy(*copy, wire, size);
	knot_pkt_t *p = knot_pkt_new(*copy, size, NULL);
	if (p == NULL) {
		free(*copy);
		return NULL;
	}
	int pret = knot_pkt_parse(p, KNOT_PF_KEEPWIRE);
	if (pret != KNOT_EOK) {
		if (debug) {
			fprintf(stderr, "parse: %s, size %zu\n", knot_strerror(pret), size);
			for (size_t i = 0; i < size; i++) fprintf(stderr, "%02x%s", wire[i], (i % 32 == 31) ? "\n" : " ");
			fprintf(stderr, "\n");
		}
		knot_pkt_free(p);
		free(*copy);
		return NULL;
	}
	return p;
}

static void reparse_free(knot_pkt_t *p, uint8_t *copy)
{
	knot_pkt_free(p);
	free(copy);
}

static void recs_of(recs_t *rs, const knot_pkt_t *p)
{
	for (uint16_t i = 0; i < p->rrset_count; i++) {
		const knot_rrset_t *rr = &p->rr[i];
		int sec = sec_of(p, i);
		const knot_rdata_t *rd = rr->rrs.rdata;
		for (uint16_t k = 0; k < rr->rrs.count; k++) {
			recs_add(rs, (uint8_t)sec, rec_hash(rr->owner, rr->type, rr->rclass,
			                                    rr->ttl, rd));
			rd = knot_rdataset_next((knot_rdata_t *)rd);
		}
	}
}

/*** Checks. ***/

static uint16_t wire_count(const uint8_t *wire, int sec)
{
	switch (sec) {
	case KNOT_ANSWER:     return knot_wire_get_ancount(wire);
	case KNOT_AUTHORITY:  return knot_wire_get_nscount(wire);
	default:              return knot_wire_get_arcount(wire);
	}
}

/* Structure of a packet in memory (libknot's own invariants). */
static void check_structure(const knot_pkt_t *pkt)
{
	uint16_t pos = 0;
	const knot_rrset_t *opt = NULL;
	for (int sec = KNOT_ANSWER; sec <= KNOT_ADDITIONAL; sec++) {
		const knot_pktsection_t *ps = &pkt->sections[sec];
		if (sec > (int)pkt->current) {
			CHECK(ps->count == 0, "section %d after current holds records", sec);
			continue;
		}
		if (ps->count > 0) {
			CHECK(ps->pos == pos, "section %d starts at %u, expected %u", sec,
			      ps->pos, pos);
		}
		unsigned records = 0;
		for (uint16_t i = 0; i < ps->count; i++) {
			const knot_rrset_t *rr = &pkt->rr[ps->pos + i];
			records += rr->rrs.count;
			if (rr->type == KNOT_RRTYPE_OPT) {
				CHECK(sec == KNOT_ADDITIONAL, "OPT outside ADDITIONAL");
				opt = rr;
			}
		}
		CHECK(wire_count(pkt->wire, sec) == records,
		      "section %d: wire count %u, records %u", sec,
		      wire_count(pkt->wire, sec), records);
		pos += ps->count;
	}
	CHECK(pkt->rrset_count == pos, "rrset_count %u, sections %u", pkt->rrset_count, pos);
	CHECK(pkt->opt_rr == opt, "opt_rr does not point at the OPT");
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		CHECK(pkt->rr_info[i].pos >= KNOT_WIRE_HEADER_SIZE && pkt->rr_info[i].pos < pkt->size,
		      "rr_info[%u].pos %u outside the wire", i, pkt->rr_info[i].pos);
		CHECK(i == 0 || pkt->rr_info[i].pos > pkt->rr_info[i - 1].pos,
		      "rr_info positions not increasing");
	}
	CHECK(pkt->size + pkt->reserved <= pkt->max_size, "size %u + reserved %u > max %u",
	      (unsigned)pkt->size, (unsigned)pkt->reserved, (unsigned)pkt->max_size);
}

/* Independent leak check on a parsed packet: per section, the MX records of
 * every in-zone, in-scope owner are the filtering set (all of it, nothing
 * else; a part of it when the engine failed) or a kept lone null MX. */
static void check_no_leak(const knot_pkt_t *p, const mxf_policy_t *pol,
                          const knot_dname_t *zone, bool complete)
{
	if (pol->mode != MXF_MODE_ENFORCE) {
		return;
	}
	for (uint16_t i = 0; i < p->rrset_count; i++) {
		const knot_rrset_t *rr = &p->rr[i];
		if (rr->type != KNOT_RRTYPE_MX || !under(rr->owner, zone)) {
			continue;
		}
		if (pol->scope == MXF_SCOPE_APEX && !same_name(rr->owner, zone)) {
			continue;
		}
		int sec = sec_of(p, i);
		uint32_t present = 0, records = 0, legacy = 0;
		bool null = false;
		for (uint16_t j = 0; j < p->rrset_count; j++) {
			const knot_rrset_t *o = &p->rr[j];
			if (o->type != KNOT_RRTYPE_MX || sec_of(p, j) != sec ||
			    !same_name(o->owner, rr->owner)) {
				continue;
			}
			const knot_rdata_t *rd = o->rrs.rdata;
			for (uint16_t k = 0; k < o->rrs.count; k++) {
				int idx = pol_index(pol, rd);
				if (idx >= 0) {
					present |= (uint32_t)1 << idx;
				} else {
					legacy++;
					null = rd_nullmx(rd);
				}
				records++;
				rd = knot_rdataset_next((knot_rdata_t *)rd);
			}
		}
		uint32_t all = pol->count >= 32 ? UINT32_MAX : ((uint32_t)1 << pol->count) - 1;
		/* After an error the packet may end inside a compliant group
		 * (the caller fails closed): no legacy record is the rule. */
		bool ok = (legacy == 0 && (present == all || !complete)) ||
		          (records == 1 && null && pol->null_mx == MXF_NULLMX_KEEP);
		char name[KNOT_DNAME_TXT_MAXLEN + 1] = "?";
		(void)knot_dname_to_str(name, rr->owner, sizeof(name));
		CHECK(ok, "legacy MX left at %s (section %d: %u records, %u legacy)", name,
		      sec, records, legacy);
	}
}

typedef struct {
	knot_rrset_t *sig[64];
	size_t count;
	bool fail;
} signer_t;

/* Fake signer: one RRSIG over MX per enforced RRset. */
static int fake_sign(void *data, const knot_rrset_t *set, knot_rrset_t *rrsig)
{
	signer_t *s = data;
	if (s->fail || s->count >= 64) {
		return KNOT_DNSSEC_ENOKEY;
	}
	knot_rrset_t *sig = knot_rrset_new(set->owner, KNOT_RRTYPE_RRSIG, KNOT_CLASS_IN,
	                                   set->ttl, NULL);
	if (sig == NULL) {
		return KNOT_ENOMEM;
	}
	uint8_t rd[18 + 32 + 16] = { 0 };
	knot_wire_write_u16(rd, KNOT_RRTYPE_MX);
	rd[2] = 13;
	rd[3] = knot_dname_labels(set->owner, NULL);
	knot_wire_write_u32(rd + 4, set->ttl);
	knot_wire_write_u32(rd + 8, 2000000000);
	knot_wire_write_u32(rd + 12, 1600000000);
	knot_wire_write_u16(rd + 16, 4242);
	memcpy(rd + 18, "\x07""example""\x03""com", 13);
	memset(rd + 31, 0x5a, 16);
	if (knot_rrset_add_rdata(sig, rd, 47, NULL) != KNOT_EOK) {
		knot_rrset_free(sig, NULL);
		return KNOT_ENOMEM;
	}
	s->sig[s->count++] = sig;
	*rrsig = *sig;
	return KNOT_EOK;
}

static void signer_clear(signer_t *s)
{
	for (size_t i = 0; i < s->count; i++) {
		knot_rrset_free(s->sig[i], NULL);
	}
	s->count = 0;
}

/*
 * Runs mxf_process() on \a pkt and checks everything against the model.
 * Returns the engine's return code.
 */
static int process_and_check(knot_pkt_t *pkt, const mxf_policy_t *pol,
                             const knot_dname_t *zone, signer_t *signer,
                             long fail_after, size_t wire_rrsets)
{
	/* Before: the records on the wire, per rr[] entry. */
	uint8_t *before_copy = NULL;
	knot_pkt_t *before = reparse(pkt->wire, pkt->size, &before_copy);
	CHECK(before != NULL, "input packet does not parse");
	uint8_t *snap = malloc(pkt->size);
	memcpy(snap, pkt->wire, pkt->size);
	size_t snap_size = pkt->size;
	uint16_t snap_count = pkt->rrset_count;

	static model_t m;
	model_compute(&m, pkt, pol, zone);
	if (debug) {
		char zn[KNOT_DNAME_TXT_MAXLEN + 1];
		knot_dname_to_str(zn, zone, sizeof(zn));
		fprintf(stderr, "zone %s mode %d scope %d nullmx %d count %u qname %s\n", zn,
		        pol->mode, pol->scope, pol->null_mx, pol->count,
		        knot_pkt_qname(pkt) ? "yes" : "no");
		for (uint16_t i = 0; i < pkt->rrset_count; i++) {
			const knot_rrset_t *rr = &pkt->rr[i];
			char on[KNOT_DNAME_TXT_MAXLEN + 1];
			knot_dname_to_str(on, rr->owner, sizeof(on));
			fprintf(stderr, " rr %u sec %d act %d owner %s type %u count %u ptr %u flags %x:", i,
			        sec_of(pkt, i), m.act[i], on, rr->type, rr->rrs.count,
			        pkt->rr_info[i].compress_ptr[0], pkt->rr_info[i].flags);
			const knot_rdata_t *rd = rr->rrs.rdata;
			for (uint16_t k = 0; k < rr->rrs.count; k++) {
				if (rr->type == KNOT_RRTYPE_MX && rd_exchange(rd)) {
					knot_dname_to_str(on, rd->data + 2, sizeof(on));
					fprintf(stderr, " [%u %s]", knot_wire_read_u16(rd->data), on);
				}
				rd = knot_rdataset_next((knot_rdata_t *)rd);
			}
			fprintf(stderr, "\n");
		}
	}

	/* Expected output records. */
	static rec_t exp_buf[REC_MAX], out_buf[REC_MAX];
	recs_t exp = { exp_buf, 0 }, out = { out_buf, 0 };
	uint16_t rec_idx = 0; /* Index into before's records. */
	uint16_t bi = 0, bk = 0; /* before rr index / record within it. */
	bool mappable = true;
	for (uint16_t i = 0; i < pkt->rrset_count && i < wire_rrsets; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		int sec = sec_of(pkt, i);
		for (uint16_t k = 0; k < rr->rrs.count; k++, rec_idx++) {
			/* The same record in the parsed wire. */
			while (bi < before->rrset_count && bk >= before->rr[bi].rrs.count) {
				bi++;
				bk = 0;
			}
			if (bi >= before->rrset_count) {
				mappable = false;
				break;
			}
			const knot_rrset_t *brr = &before->rr[bi];
			const knot_rdata_t *brd = knot_rdataset_at(&brr->rrs, bk);
			bk++;
			if (m.act[i] == M_KEEP) {
				recs_add(&exp, (uint8_t)sec, rec_hash(brr->owner, brr->type,
				                                      brr->rclass, brr->ttl, brd));
			} else if (m.act[i] == M_REPLACE && k == 0) {
				uint32_t ttl = pol->ttl_set ? pol->ttl : rr->ttl;
				const knot_rdata_t *prd = pol->rrs.rdata;
				for (uint16_t x = 0; x < pol->rrs.count; x++) {
					recs_add(&exp, (uint8_t)sec,
					         rec_hash(brr->owner, KNOT_RRTYPE_MX, KNOT_CLASS_IN,
					                  ttl, prd));
					prd = knot_rdataset_next((knot_rdata_t *)prd);
				}
				if (signer != NULL && !signer->fail) {
					/* Our fake RRSIG: same content for a given owner/ttl. */
					uint8_t rd[knot_rdata_size(47)];
					knot_rdata_t *srd = (knot_rdata_t *)rd;
					uint8_t sd[47] = { 0 };
					knot_wire_write_u16(sd, KNOT_RRTYPE_MX);
					sd[2] = 13;
					sd[3] = knot_dname_labels(rr->owner, NULL);
					knot_wire_write_u32(sd + 4, ttl);
					knot_wire_write_u32(sd + 8, 2000000000);
					knot_wire_write_u32(sd + 12, 1600000000);
					knot_wire_write_u16(sd + 16, 4242);
					memcpy(sd + 18, "\x07""example""\x03""com", 13);
					memset(sd + 31, 0x5a, 16);
					knot_rdata_init(srd, 47, sd);
					recs_add(&exp, (uint8_t)sec,
					         rec_hash(brr->owner, KNOT_RRTYPE_RRSIG, KNOT_CLASS_IN,
					                  ttl, srd));
				}
			}
		}
	}

	mxf_ctx_t ctx = {
		.policy = pol,
		.zone = zone,
		.sign = signer != NULL ? fake_sign : NULL,
		.sign_data = signer,
	};
	mxf_result_t res;
	fail_countdown = fail_after;
	int ret = mxf_process(pkt, &ctx, &res);
	fail_countdown = -1;

	check_structure(pkt);
	CHECK(!(mxf_pkt_leak(pkt, &ctx) >= 0), "mxf_pkt_leak after mxf_process (ret %s)",
	      knot_strerror(ret));

	uint8_t *after_copy = NULL;
	knot_pkt_t *after = reparse(pkt->wire, pkt->size, &after_copy);
	CHECK(after != NULL, "output does not re-parse (ret %s)", knot_strerror(ret));
	if (debug) {
		fprintf(stderr, "ret %s\n", knot_strerror(ret));
		for (uint16_t i = 0; i < after->rrset_count; i++) {
			char on[KNOT_DNAME_TXT_MAXLEN + 1];
			knot_dname_to_str(on, after->rr[i].owner, sizeof(on));
			fprintf(stderr, " out %u sec %d owner %s type %u\n", i, sec_of(after, i), on, after->rr[i].type);
		}
	}
	check_no_leak(after, pol, zone, ret == KNOT_EOK);

	if (!m.change) {
		/* The engine may give up before it knows (its work array comes
		 * from the packet's memory beyond 32 RRsets): fail closed. */
		CHECK(ret == KNOT_EOK || (ret == KNOT_ENOMEM && fail_after >= 0),
		      "nothing to change but %s", knot_strerror(ret));
		/* On that failure it cuts the packet from the first MX on
		 * (checked above: no leak, re-parses); otherwise nothing moves. */
		CHECK(ret != KNOT_EOK ||
		      (pkt->size == snap_size && memcmp(pkt->wire, snap, snap_size) == 0 &&
		       pkt->rrset_count == snap_count), "wire changed with nothing to change");
	}
	if (pol->mode == MXF_MODE_AUDIT) {
		CHECK(pkt->size == snap_size && memcmp(pkt->wire, snap, snap_size) == 0,
		      "audit mode changed the wire");
	}
	if (ret == KNOT_EOK) {
		CHECK(res.enforced == m.res.enforced && res.compliant == m.res.compliant &&
		      res.served == m.res.served &&
		      res.blocked[0] == m.res.blocked[0] && res.blocked[1] == m.res.blocked[1],
		      "counters: enforced %u/%u compliant %u/%u served %u/%u "
		      "blocked %u,%u/%u,%u",
		      res.enforced, m.res.enforced, res.compliant, m.res.compliant,
		      res.served, m.res.served,
		      res.blocked[0], res.blocked[1], m.res.blocked[0], m.res.blocked[1]);
	}
	if (m.tsig && ret == KNOT_EOK) {
		FAIL("a change in a packet holding a TSIG must be refused");
	}

	if (mappable) {
		recs_of(&out, after);
		qsort(exp.r, exp.n, sizeof(rec_t), rec_cmp);
		qsort(out.r, out.n, sizeof(rec_t), rec_cmp);
		if (ret == KNOT_EOK) {
			CHECK(exp.n == out.n && memcmp(exp.r, out.r, exp.n * sizeof(rec_t)) == 0,
			      "records differ from the model: %zu expected, %zu out", exp.n, out.n);
		} else {
			/* Failure: a subset of what was expected. */
			size_t e = 0;
			for (size_t o = 0; o < out.n; o++) {
				while (e < exp.n && rec_cmp(&exp.r[e], &out.r[o]) < 0) {
					e++;
				}
				CHECK(e < exp.n && rec_cmp(&exp.r[e], &out.r[o]) == 0,
				      "after %s the output holds a record not expected",
				      knot_strerror(ret));
				e++;
			}
		}
	}

	reparse_free(after, after_copy);
	reparse_free(before, before_copy);
	free(snap);
	return ret;
}

/*** Parse path. ***/

static void run_parsed(rd_t *r, const mxf_policy_t *pol, const knot_dname_t *zone)
{
	uint8_t opts = u8(r);
	uint16_t extra = u16(r);
	size_t size = r->n;
	if (size < KNOT_WIRE_HEADER_SIZE || size > KNOT_WIRE_MAX_PKTSIZE) {
		return;
	}
	/* The module runs on responses with one question. Knot never writes a
	 * compression pointer into the header; the engine rewrites the header
	 * counts, so such names would legitimately change. */
	if (knot_wire_get_qdcount(r->p) != 1) {
		return;
	}
	for (size_t i = 0; i + 1 < size; i++) {
		if (r->p[i] == 0xC0 && r->p[i + 1] < KNOT_WIRE_HEADER_SIZE) {
			return;
		}
	}
	size_t max = size + extra % 1024;
	if (max > KNOT_WIRE_MAX_PKTSIZE) {
		max = KNOT_WIRE_MAX_PKTSIZE;
	}
	uint8_t *wire = malloc(max);
	memcpy(wire, r->p, size);

	knot_mm_t mm = { .ctx = NULL, .alloc = fz_alloc, .free = fz_free };
	knot_pkt_t *pkt = knot_pkt_new(wire, (uint16_t)size, &mm);
	if (pkt == NULL) {
		free(wire);
		return;
	}
	unsigned flags = (opts & 1) ? 0 : KNOT_PF_KEEPWIRE;
	if (opts & 2) {
		flags |= KNOT_PF_NOCANON;
	}
	if (knot_pkt_parse(pkt, flags) == KNOT_EOK) {
		pkt->max_size = (uint16_t)max;
		size_t wire_rrsets = pkt->rrset_count;
		if (pkt->tsig_rr != NULL && !(flags & KNOT_PF_KEEPWIRE)) {
			wire_rrsets--; /* Stripped from the wire, still in rr[]. */
		}
		signer_t signer = { .fail = (opts & 0x10) != 0 };
		long fail_after = (opts & 0x20) ? (long)(opts >> 6) : -1;
		(void)process_and_check(pkt, pol, zone, (opts & 4) ? &signer : NULL,
		                        fail_after, wire_rrsets);
		signer_clear(&signer);
	}
	knot_pkt_free(pkt);
	free(wire);
}

/*** Build path: a response as knotd writes it. ***/

typedef struct {
	knot_pkt_t *pkt;
	knot_mm_t *mm;
	arena_t *arena;
	const mxf_policy_t *pol;
	const knot_dname_t *zone;
	knot_dname_t *qname;     /* As spelled in the question. */
	knot_dname_t *qowner;    /* rr owner of answers to QNAME (lower or wildcard). */
	bool own_owner_used;     /* mxf_write_set() at QNAME: no other MX there. */
	bool processed;
	bool stop;
	int stage;               /* Section after which the engine runs (3: at the end). */
	signer_t *signer;
	long fail_after;
	int ret;
} bld_t;

static void run_engine(bld_t *b)
{
	if (b->processed) {
		return;
	}
	b->processed = true;
	b->ret = process_and_check(b->pkt, b->pol, b->zone, b->signer, b->fail_after,
	                           b->pkt->rrset_count);
	if (b->ret != KNOT_EOK) {
		b->stop = true; /* knotd answers SERVFAIL or TC: nothing more. */
	}
}

static bool begin(bld_t *b, int sec)
{
	while ((int)b->pkt->current < sec) {
		if (!b->processed && (int)b->pkt->current >= b->stage) {
			run_engine(b);
			if (b->stop) {
				return false;
			}
		}
		if (knot_pkt_begin(b->pkt, b->pkt->current + 1) != KNOT_EOK) {
			FAIL("knot_pkt_begin failed");
		}
	}
	return true;
}

static void add_rdata(knot_rrset_t *rr, const uint8_t *data, size_t len, knot_mm_t *mm)
{
	if (len <= UINT16_MAX) {
		(void)knot_rrset_add_rdata(rr, data, (uint16_t)len, mm);
	}
}

static void rd_mx_rdata(rd_t *r, bld_t *b, knot_rrset_t *rr, knot_mm_t *mm)
{
	uint8_t sel = u8(r);
	uint8_t data[2 + KNOT_DNAME_MAXLEN];
	size_t len;
	if (sel < 0x90) {
		/* A filtering exchange, maybe in another spelling. */
		const mxf_exchange_t *ex = &b->pol->ex[sel % b->pol->count];
		knot_wire_write_u16(data, ex->pref);
		len = knot_dname_size(ex->name);
		memcpy(data + 2, ex->name, len);
		if (sel & 0x40) {
			for (size_t i = 0; i < len; i++) {
				if (data[2 + i] >= 'a' && data[2 + i] <= 'z' && ((i ^ sel) & 1)) {
					data[2 + i] -= 32;
				}
			}
		}
		len += 2;
	} else if (sel < 0xA0) {
		memset(data, 0, 3); /* 0 . */
		len = 3;
	} else {
		knot_wire_write_u16(data, (sel & 0x10) ? u16(r) : (uint16_t)(u8(r) % 41));
		knot_dname_storage_t n;
		rd_name(r, n);
		len = knot_dname_size(n);
		memcpy(data + 2, n, len);
		len += 2;
	}
	add_rdata(rr, data, len, mm);
}

static const uint16_t covered_types[] = {
	KNOT_RRTYPE_MX, KNOT_RRTYPE_A, KNOT_RRTYPE_AAAA, KNOT_RRTYPE_CNAME,
	KNOT_RRTYPE_NS, KNOT_RRTYPE_MX, KNOT_RRTYPE_TXT, KNOT_RRTYPE_SOA,
};

static void rd_rdata(rd_t *r, bld_t *b, knot_rrset_t *rr, knot_mm_t *mm, unsigned count)
{
	for (unsigned i = 0; i < count; i++) {
		uint8_t data[512];
		knot_dname_storage_t n;
		size_t len = 0;
		switch (rr->type) {
		case KNOT_RRTYPE_MX:
			rd_mx_rdata(r, b, rr, mm);
			continue;
		case KNOT_RRTYPE_CNAME:
		case KNOT_RRTYPE_NS:
			rd_name(r, n);
			len = knot_dname_size(n);
			memcpy(data, n, len);
			break;
		case KNOT_RRTYPE_A:
			len = 4;
			for (size_t k = 0; k < len; k++) {
				data[k] = u8(r);
			}
			break;
		case KNOT_RRTYPE_AAAA:
			len = 16;
			for (size_t k = 0; k < len; k++) {
				data[k] = u8(r);
			}
			break;
		case KNOT_RRTYPE_RRSIG:
			knot_wire_write_u16(data, covered_types[u8(r) % 8]);
			data[2] = 13;
			data[3] = knot_dname_labels(rr->owner, NULL);
			knot_wire_write_u32(data + 4, rr->ttl);
			knot_wire_write_u32(data + 8, 2000000000);
			knot_wire_write_u32(data + 12, 1600000000);
			knot_wire_write_u16(data + 16, u16(r));
			len = knot_dname_size(b->zone);
			memcpy(data + 18, b->zone, len);
			len += 18;
			memset(data + len, u8(r), 32);
			len += 32;
			break;
		case KNOT_RRTYPE_SOA: {
			knot_dname_storage_t n2;
			rd_name(r, n);
			rd_name(r, n2);
			len = knot_dname_size(n);
			memcpy(data, n, len);
			size_t l2 = knot_dname_size(n2);
			if (len + l2 + 20 > sizeof(data)) {
				continue;
			}
			memcpy(data + len, n2, l2);
			len += l2;
			for (size_t k = 0; k < 20; k++) {
				data[len++] = u8(r);
			}
			break;
		}
		default: /* TXT and private types: opaque bytes. */
			len = u8(r) % 64;
			data[0] = (uint8_t)(len > 0 ? len - 1 : 0);
			for (size_t k = 1; k < len; k++) {
				data[k] = u8(r);
			}
			if (len == 0) {
				len = 1;
			}
			break;
		}
		add_rdata(rr, data, len, mm);
	}
}

/* Adds one RRset described by the input. */
static void rd_rrset(rd_t *r, bld_t *b)
{
	knot_pkt_t *pkt = b->pkt;
	uint8_t sec_b = u8(r);
	int sec = pkt->current;
	if ((sec_b & 0xC0) == 0xC0 && sec < KNOT_ADDITIONAL) {
		sec++;
	}
	if (!begin(b, sec)) {
		return;
	}
	if (b->processed && b->ret != KNOT_EOK) {
		return;
	}

	static const uint16_t types[16] = {
		KNOT_RRTYPE_MX, KNOT_RRTYPE_MX, KNOT_RRTYPE_MX, KNOT_RRTYPE_MX,
		KNOT_RRTYPE_MX, KNOT_RRTYPE_MX, KNOT_RRTYPE_CNAME, KNOT_RRTYPE_RRSIG,
		KNOT_RRTYPE_RRSIG, KNOT_RRTYPE_A, KNOT_RRTYPE_AAAA, KNOT_RRTYPE_NS,
		KNOT_RRTYPE_TXT, KNOT_RRTYPE_SOA, 65280, KNOT_RRTYPE_A,
	};
	uint8_t tb = u8(r);
	uint16_t type = types[tb % 16];
	uint8_t om = u8(r);
	uint8_t fl = u8(r);
	uint32_t ttl = (uint32_t)u8(r) * 60;
	unsigned count = (fl & 0x80) ? (unsigned)(u8(r) % 128) + 1 : (unsigned)(fl % 4) + 1;

	/* Owner and compression hint, as knotd chooses them. */
	knot_dname_storage_t owner;
	uint16_t hint = KNOT_COMPR_HINT_NONE;
	bool copy = (fl & 0x10) != 0;
	switch (om % 8) {
	case 0:
	case 1:
		if (sec == KNOT_ANSWER) {
			memcpy(owner, b->qowner, knot_dname_size(b->qowner));
			hint = KNOT_COMPR_HINT_QNAME;
			if (knot_dname_is_wildcard(b->qowner)) {
				copy = false; /* Faked synthesis through the hint. */
			}
			break;
		}
		/* fall through */
	case 2:
	case 3:
		rd_name(r, owner);
		break;
	case 4: /* Same owner as the previous RRset (RRSIGs). */
		if (pkt->rrset_count > 0) {
			const knot_rrset_t *prev = &pkt->rr[pkt->rrset_count - 1];
			memcpy(owner, prev->owner, knot_dname_size(prev->owner));
			hint = pkt->rr_info[pkt->rrset_count - 1].compress_ptr[KNOT_COMPR_HINT_OWNER];
		} else {
			rd_name(r, owner);
		}
		break;
	case 5: { /* Glue: owner is an earlier exchange, hint into its rdata. */
		bool found = false;
		for (uint16_t i = 0; i < pkt->rrset_count && !found; i++) {
			uint16_t idx = (uint16_t)((i + u8(r)) % pkt->rrset_count);
			const knot_rrset_t *mx = &pkt->rr[idx];
			if (mx->type != KNOT_RRTYPE_MX) {
				continue;
			}
			uint16_t k = u8(r) % mx->rrs.count;
			const knot_dname_t *ex = rd_exchange(knot_rdataset_at(&mx->rrs, k));
			if (ex == NULL || *ex == '\0') {
				continue;
			}
			memcpy(owner, ex, knot_dname_size(ex));
			hint = knot_compr_hint(&pkt->rr_info[idx], KNOT_COMPR_HINT_RDATA + k);
			found = true;
		}
		if (!found) {
			rd_name(r, owner);
		} else if (type == KNOT_RRTYPE_MX || type == KNOT_RRTYPE_CNAME) {
			type = (tb & 1) ? KNOT_RRTYPE_AAAA : KNOT_RRTYPE_A;
		}
		break;
	}
	case 6: /* Wildcard expanded for a CNAME target: a private copy. */
		rd_name(r, owner);
		copy = true;
		break;
	default:
		memcpy(owner, b->zone, knot_dname_size(b->zone));
		break;
	}
	/* Where answers to QNAME come from a wildcard, every record written
	 * as QNAME is owned by the wildcard in rr[] and the other way round,
	 * as in knotd (the engine sees rr[], a resolver sees the wire). */
	if (knot_dname_is_wildcard(b->qowner) &&
	    (hint == KNOT_COMPR_HINT_QNAME || same_name(owner, b->qname) ||
	     same_name(owner, b->qowner))) {
		memcpy(owner, b->qowner, knot_dname_size(b->qowner));
		hint = KNOT_COMPR_HINT_QNAME;
	}
	/* After mxf_write_set() at QNAME no other MX shares that owner. */
	if (type == KNOT_RRTYPE_MX && b->own_owner_used && sec == KNOT_ANSWER &&
	    same_name(owner, b->qowner)) {
		type = KNOT_RRTYPE_TXT;
	}
	/* Knot never writes MX after the engine ran (AUTHORITY/ADDITIONAL). */
	if (type == KNOT_RRTYPE_MX && b->processed) {
		type = KNOT_RRTYPE_A;
	}

	uint16_t flags = 0;
	if (fl & 0x20) {
		flags |= KNOT_PF_NOTRUNC;
	}
	if (fl & 0x40) {
		flags |= KNOT_PF_CHECKDUP;
	}

	knot_rrset_t rr;
	if (copy) {
		knot_dname_t *o = knot_dname_copy(owner, &pkt->mm);
		if (o == NULL) {
			return;
		}
		knot_rrset_init(&rr, o, type, KNOT_CLASS_IN, ttl);
		rd_rdata(r, b, &rr, &pkt->mm, count);
		flags |= KNOT_PF_FREE;
	} else {
		knot_rrset_t *owned = calloc(1, sizeof(*owned));
		knot_dname_t *o = arena_name(b->arena, owner);
		if (owned == NULL || o == NULL || b->arena->set_count >= ARENA_MAX) {
			free(owned);
			return;
		}
		knot_rrset_init(owned, o, type, KNOT_CLASS_IN, ttl);
		b->arena->sets[b->arena->set_count++] = owned;
		rd_rdata(r, b, owned, NULL, count);
		rr = *owned;
	}
	if (rr.rrs.count == 0) {
		if (copy) {
			knot_rrset_clear(&rr, &pkt->mm);
		}
		return;
	}
	if (pkt->rrset_count >= 96) {
		b->stop = true;
	}
	int ret = b->stop ? KNOT_ESPACE : knot_pkt_put(pkt, hint, &rr, flags);
	if (ret != KNOT_EOK) {
		if (copy) {
			knot_rrset_clear(&rr, &pkt->mm);
		}
		b->stop = true; /* knotd stops at the first failure (TC). */
	}
}

static void run_built(rd_t *r, const mxf_policy_t *pol, const knot_dname_t *zone,
                      arena_t *arena)
{
	knot_mm_t mm = { .ctx = NULL, .alloc = fz_alloc, .free = fz_free };

	/* Question. */
	knot_dname_storage_t qname;
	uint8_t qsel = u8(r);
	if (qsel < 0x40) {
		memcpy(qname, zone, knot_dname_size(zone));
		if (qsel & 1) { /* 0x20 spelling of the apex. */
			for (size_t i = 0; qname[i] != 0; i += qname[i] + 1) {
				for (size_t k = 1; k <= qname[i]; k++) {
					if (qname[i + k] >= 'a' && qname[i + k] <= 'z' && (k & 1)) {
						qname[i + k] -= 32;
					}
				}
			}
		}
	} else {
		rd_name(r, qname);
	}
	static const uint16_t qtypes[8] = {
		KNOT_RRTYPE_MX, KNOT_RRTYPE_MX, KNOT_RRTYPE_ANY, KNOT_RRTYPE_MX,
		KNOT_RRTYPE_CNAME, KNOT_RRTYPE_A, KNOT_RRTYPE_MX, KNOT_RRTYPE_RRSIG,
	};
	uint16_t qtype = qtypes[u8(r) % 8];
	uint8_t sz = u8(r);
	static const uint16_t sizes[8] = { 512, 1232, 4096, 65535, 512, 1232, 65535, 0 };
	uint16_t max_size = sizes[sz % 8];
	if (max_size == 0) {
		max_size = (uint16_t)(KNOT_WIRE_HEADER_SIZE + 270 + (sz >> 3) * 16);
	}
	uint8_t opts = u8(r);

	knot_pkt_t *query = knot_pkt_new(NULL, 512, &mm);
	knot_pkt_t *pkt = knot_pkt_new(NULL, max_size, &mm);
	if (query == NULL || pkt == NULL ||
	    knot_pkt_put_question(query, qname, KNOT_CLASS_IN, qtype) != KNOT_EOK ||
	    knot_pkt_init_response(pkt, query) != KNOT_EOK) {
		knot_pkt_free(query);
		knot_pkt_free(pkt);
		return;
	}
	knot_wire_set_aa(pkt->wire);
	(void)knot_pkt_begin(pkt, KNOT_ANSWER);

	bld_t b = {
		.pkt = pkt, .mm = &mm, .arena = arena, .pol = pol, .zone = zone,
		.qname = qname, .stage = (opts >> 2) & 3,
		.fail_after = (opts & 0x40) ? (long)u8(r) % 8 : -1,
	};
	signer_t signer = { .fail = (opts & 0x20) != 0 };
	b.signer = (opts & 0x10) ? &signer : NULL;

	/* Answers to QNAME: the name itself, or a wildcard covering it (only
	 * where Knot could have one: the wildcard's parent in the same zone). */
	knot_dname_storage_t qowner;
	knot_dname_copy_lower(qowner, qname);
	if ((opts & 0x80) && knot_dname_labels(qname, NULL) >= 1) {
		const knot_dname_t *parent = mxf_dname_next_label(qname);
		if (under(parent, zone) == under(qname, zone) &&
		    knot_dname_size(parent) + 2 <= KNOT_DNAME_MAXLEN) {
			qowner[0] = 1;
			qowner[1] = '*';
			knot_dname_copy_lower(qowner + 2, parent);
		}
	}
	b.qowner = qowner;

	/* EDNS: reserve room for the OPT written at the end, as knotd does. */
	knot_rrset_t opt;
	bool has_opt = false;
	if ((opts & 1) && knot_edns_init(&opt, 1232, 0, 0, &mm) == KNOT_EOK) {
		if (opts & 2) {
			knot_edns_set_do(&opt);
		}
		if (knot_pkt_reserve(pkt, knot_edns_wire_size(&opt)) == KNOT_EOK) {
			has_opt = true;
		} else {
			knot_rrset_clear(&opt, &mm);
		}
	}

	/* PREANSWER: the apex answered with the filtering set. */
	uint8_t pre = u8(r);
	if ((pre & 3) == 3 && same_name(qname, zone)) {
		if (mxf_write_set(pkt, pol, zone, 3600, KNOT_COMPR_HINT_QNAME, 0) == KNOT_EOK) {
			b.own_owner_used = true;
		} else {
			/* TC: knotd writes nothing more (a failed put leaves
			 * libknot's compression suffix past the end). */
			b.stop = true;
		}
	}

	unsigned n = u8(r) % 49;
	for (unsigned i = 0; i < n && !b.stop && r->n > 0; i++) {
		rd_rrset(r, &b);
	}

	if (!b.stop || !b.processed) {
		if (b.stage <= KNOT_ADDITIONAL) {
			(void)begin(&b, b.stage);
			run_engine(&b);
		}
	}
	if (has_opt) {
		if (!b.processed || b.ret == KNOT_EOK) {
			/* The server finishes the packet in the space reserved. */
			CHECK(knot_pkt_reclaim(pkt, knot_edns_wire_size(&opt)) == KNOT_EOK,
			      "OPT reservation lost");
			if (pkt->current < KNOT_ADDITIONAL) {
				(void)knot_pkt_begin(pkt, KNOT_ADDITIONAL);
			}
			int ret = knot_pkt_put(pkt, KNOT_COMPR_HINT_NONE, &opt, 0);
			CHECK(ret == KNOT_EOK, "OPT does not fit its reserved space (%s)",
			      knot_strerror(ret));
		}
	}
	run_engine(&b); /* Stage "end": after the OPT. */

	/* The finished packet parses. */
	if (b.ret == KNOT_EOK) {
		check_structure(pkt);
		uint8_t *copy = NULL;
		knot_pkt_t *p = reparse(pkt->wire, pkt->size, &copy);
		CHECK(p != NULL, "finished packet does not parse");
		reparse_free(p, copy);
	}

	knot_pkt_free(pkt);
	knot_pkt_free(query);
	if (has_opt) {
		knot_rrset_clear(&opt, &mm);
	}
	signer_clear(&signer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_names();
	rd_t r = { data, size };
	uint8_t path = u8(&r);
	const knot_dname_t *zone = NULL;
	mxf_policy_t *pol = rd_policy(&r, &zone);
	if (pol == NULL) {
		return 0;
	}
	static arena_t arena;
	if ((path & 3) == 3) {
		run_parsed(&r, pol, zone);
	} else {
		run_built(&r, pol, zone, &arena);
	}
	arena_free(&arena);
	mxf_policy_free(pol);
	return 0;
}
