/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief Shared helpers of the unit tests: cmocka-tracked memory, packets
 *        built the way knotd builds them, and checks on the result.
 *
 * Include after <cmocka.h>. Everything is static inline so each test file
 * uses what it needs without unused-function warnings.
 */

#pragma once

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <libknot/libknot.h>

/*
 * Memory: every packet allocation goes through cmocka, so a block the
 * engine (or a test) forgets to free with the packet fails the test.
 */

static inline void *th_mm_alloc(void *ctx, size_t len)
{
	if (ctx != NULL) {
		*(size_t *)ctx += 1; /* Allocation counter, if any. */
	}
	return test_malloc(len);
}

static inline void th_mm_free(void *ptr)
{
	if (ptr != NULL) {
		test_free(ptr);
	}
}

static inline void th_mm_init(knot_mm_t *mm)
{
	mm->ctx = NULL;
	mm->alloc = th_mm_alloc;
	mm->free = th_mm_free;
}

/* Names. */

/*! Presentation name to wire (case kept) in \a buf; fails the test if bad. */
static inline knot_dname_t *th_dname(knot_dname_storage_t buf, const char *str)
{
	knot_dname_t *name = knot_dname_from_str(buf, str, KNOT_DNAME_MAXLEN);
	assert_non_null(name);
	return name;
}

/*! Wire name to lower-case text. */
static inline void th_dname_str(const knot_dname_t *name, char *buf, size_t size)
{
	if (name == NULL) {
		snprintf(buf, size, "(null)");
		return;
	}
	knot_dname_storage_t lower;
	knot_dname_copy_lower(lower, name);
	assert_non_null(knot_dname_to_str(buf, lower, size));
}

/*!
 * Copies the (possibly compressed) name at \a pos of \a wire into \a out,
 * byte for byte (case kept). Returns the uncompressed size.
 */
static inline size_t th_wire_name(const uint8_t *wire, size_t wire_size,
                                  size_t pos, uint8_t *out)
{
	size_t len = 0;
	int jumps = 0;
	while (true) {
		assert_true(pos < wire_size);
		uint8_t lab = wire[pos];
		if ((lab & 0xC0) == 0xC0) {
			assert_true(pos + 1 < wire_size);
			pos = ((lab & 0x3F) << 8) | wire[pos + 1];
			assert_true(++jumps < 128);
			continue;
		}
		assert_true((lab & 0xC0) == 0);
		assert_true(pos + 1 + lab <= wire_size);
		assert_true(len + 1 + lab <= KNOT_DNAME_MAXLEN);
		memcpy(out + len, wire + pos, 1 + lab);
		len += 1 + lab;
		if (lab == 0) {
			return len;
		}
		pos += 1 + lab;
	}
}

/* Record data. */

/*! Appends one MX rdata. */
static inline void th_add_mx(knot_rrset_t *rr, uint16_t pref, const char *ex,
                             knot_mm_t *mm)
{
	uint8_t data[2 + KNOT_DNAME_MAXLEN];
	knot_wire_write_u16(data, pref);
	knot_dname_t *name = knot_dname_from_str(data + 2, ex, KNOT_DNAME_MAXLEN);
	assert_non_null(name);
	uint16_t len = 2 + knot_dname_size(name);
	assert_int_equal(knot_rrset_add_rdata(rr, data, len, mm), KNOT_EOK);
}

/*! Appends one name rdata (CNAME, NS, PTR). */
static inline void th_add_name(knot_rrset_t *rr, const char *target, knot_mm_t *mm)
{
	knot_dname_storage_t data;
	knot_dname_t *name = th_dname(data, target);
	assert_int_equal(knot_rrset_add_rdata(rr, name, knot_dname_size(name), mm),
	                 KNOT_EOK);
}

/*! Appends one A or AAAA rdata, by the set's type. */
static inline void th_add_addr(knot_rrset_t *rr, const char *addr, knot_mm_t *mm)
{
	uint8_t data[16];
	int af = rr->type == KNOT_RRTYPE_AAAA ? AF_INET6 : AF_INET;
	assert_int_equal(inet_pton(af, addr, data), 1);
	uint16_t len = af == AF_INET6 ? 16 : 4;
	assert_int_equal(knot_rrset_add_rdata(rr, data, len, mm), KNOT_EOK);
}

/*! Appends one (fake) RRSIG rdata covering \a covered, signed by \a signer,
 *  whose \a sig_len signature bytes are all \a tag. */
static inline void th_add_rrsig_len(knot_rrset_t *rr, uint16_t covered,
                                    const char *signer, uint8_t tag, size_t sig_len,
                                    knot_mm_t *mm)
{
	uint8_t data[18 + KNOT_DNAME_MAXLEN + 256];
	assert_true(sig_len <= 256);
	knot_wire_write_u16(data, covered);
	data[2] = 13;                               /* ECDSAP256SHA256 */
	data[3] = knot_dname_labels(rr->owner, NULL);
	knot_wire_write_u32(data + 4, rr->ttl);
	knot_wire_write_u32(data + 8, 2000000000);  /* expiration */
	knot_wire_write_u32(data + 12, 1600000000); /* inception */
	knot_wire_write_u16(data + 16, 12345);      /* key tag */
	knot_dname_t *name = knot_dname_from_str(data + 18, signer, KNOT_DNAME_MAXLEN);
	assert_non_null(name);
	size_t len = 18 + knot_dname_size(name);
	memset(data + len, tag, sig_len);
	len += sig_len;
	assert_int_equal(knot_rrset_add_rdata(rr, data, len, mm), KNOT_EOK);
}

/*! th_add_rrsig_len() with a P-256-sized signature (64 bytes). */
static inline void th_add_rrsig(knot_rrset_t *rr, uint16_t covered,
                                const char *signer, uint8_t tag, knot_mm_t *mm)
{
	th_add_rrsig_len(rr, covered, signer, tag, 64, mm);
}

/* Text form of records: "owner ttl TYPE rdata", names lower-case. */

/*! Types of an NSEC/NSEC3 type bitmap, " A NS SOA ..." (parsed here, not by
 *  the engine), or " malformed". */
static inline void th_bitmap_text(const uint8_t *bm, size_t len, char *buf, size_t size)
{
	size_t off = 0, pos = 0;
	buf[0] = '\0';
	while (pos < len) {
		if (len - pos < 2 || bm[pos + 1] == 0 || bm[pos + 1] > 32 ||
		    len - pos - 2 < bm[pos + 1]) {
			snprintf(buf, size, " malformed");
			return;
		}
		for (unsigned i = 0; i < bm[pos + 1] * 8u; i++) {
			if (bm[pos + 2 + i / 8] & (0x80 >> (i % 8))) {
				char type[32];
				knot_rrtype_to_string((uint16_t)(bm[pos] * 256 + i), type, sizeof(type));
				off += snprintf(buf + off, off < size ? size - off : 0, " %s", type);
			}
		}
		pos += 2 + bm[pos + 1];
	}
}

static inline void th_rdata_text(uint16_t type, const knot_rdata_t *rd,
                                 char *buf, size_t size)
{
	char name[KNOT_DNAME_TXT_MAXLEN + 1];
	char addr[INET6_ADDRSTRLEN];

	switch (type) {
	case KNOT_RRTYPE_MX:
		if (rd->len < 3) {
			snprintf(buf, size, "malformed");
			return;
		}
		th_dname_str(rd->data + 2, name, sizeof(name));
		snprintf(buf, size, "%u %s", knot_wire_read_u16(rd->data), name);
		return;
	case KNOT_RRTYPE_CNAME:
	case KNOT_RRTYPE_NS:
	case KNOT_RRTYPE_PTR:
		th_dname_str(rd->data, name, sizeof(name));
		snprintf(buf, size, "%s", name);
		return;
	case KNOT_RRTYPE_A:
	case KNOT_RRTYPE_AAAA:
		assert_non_null(inet_ntop(type == KNOT_RRTYPE_A ? AF_INET : AF_INET6,
		                          rd->data, addr, sizeof(addr)));
		snprintf(buf, size, "%s", addr);
		return;
	case KNOT_RRTYPE_NSEC: {
		/* Next owner name (flat), then the bitmap. */
		size_t n = 0;
		while (n < rd->len && rd->data[n] != 0) {
			n += 1 + rd->data[n];
		}
		if (n >= rd->len) {
			snprintf(buf, size, "malformed");
			return;
		}
		char types[1024];
		th_dname_str(rd->data, name, sizeof(name));
		th_bitmap_text(rd->data + n + 1, rd->len - n - 1, types, sizeof(types));
		snprintf(buf, size, "%s%s", name, types);
		return;
	}
	case KNOT_RRTYPE_NSEC3: {
		/* Hash length and salt are skipped: "hash-length N" and the types. */
		size_t n = 5 + (rd->len >= 5 ? rd->data[4] : 0);
		if (rd->len < 5 || n >= rd->len || n + 1 + rd->data[n] > rd->len) {
			snprintf(buf, size, "malformed");
			return;
		}
		char types[1024];
		size_t hlen = rd->data[n];
		th_bitmap_text(rd->data + n + 1 + hlen, rd->len - n - 1 - hlen, types,
		               sizeof(types));
		snprintf(buf, size, "hash-length %zu%s", hlen, types);
		return;
	}
	case KNOT_RRTYPE_RRSIG: {
		char covered[32];
		knot_rrtype_to_string(knot_wire_read_u16(rd->data), covered,
		                      sizeof(covered));
		snprintf(buf, size, "%s %02x", covered, rd->data[rd->len - 1]);
		return;
	}
	default:
		snprintf(buf, size, "len %u", rd->len);
		return;
	}
}

/*! Text of record \a i of \a rr, with \a owner (may differ from rr->owner). */
static inline void th_rr_text(const knot_rrset_t *rr, const knot_dname_t *owner,
                              uint16_t i, char *buf, size_t size)
{
	char name[KNOT_DNAME_TXT_MAXLEN + 1];
	char type[32];
	char rdata[KNOT_DNAME_TXT_MAXLEN + 64];

	if (rr->type == KNOT_RRTYPE_OPT) {
		snprintf(buf, size, "OPT %u", rr->rclass);
		return;
	}
	th_dname_str(owner, name, sizeof(name));
	knot_rrtype_to_string(rr->type, type, sizeof(type));
	th_rdata_text(rr->type, knot_rdataset_at(&rr->rrs, i), rdata, sizeof(rdata));
	snprintf(buf, size, "%s %u %s %s", name, rr->ttl, type, rdata);
}

/* A response under construction, as knotd builds it. */

#define TH_MAX_OWNED 64
#define TH_TXT 2200

typedef struct {
	knot_mm_t mm;
	knot_pkt_t *query;
	knot_pkt_t *resp;
	knot_pkt_t *parsed;       /*!< th_reparse() result. */
	uint8_t *parsed_wire;
	knot_rrset_t *owned[TH_MAX_OWNED];
	size_t owned_count;
	knot_rrset_t opt;
	bool has_opt;
	size_t allocs;            /*!< Allocations made through mm so far. */
} th_scn_t;

/*!
 * Query for \a qname (spelled as given) / \a qtype and its response with
 * room for \a max_size bytes, positioned at the ANSWER section.
 */
static inline void th_scn_init(th_scn_t *s, const char *qname, uint16_t qtype,
                               uint16_t max_size)
{
	memset(s, 0, sizeof(*s));
	th_mm_init(&s->mm);
	s->mm.ctx = &s->allocs;

	knot_dname_storage_t buf;
	knot_dname_t *name = th_dname(buf, qname);

	s->query = knot_pkt_new(NULL, KNOT_WIRE_MAX_PKTSIZE, &s->mm);
	assert_non_null(s->query);
	knot_wire_set_id(s->query->wire, 0x1234);
	assert_int_equal(knot_pkt_put_question(s->query, name, KNOT_CLASS_IN, qtype),
	                 KNOT_EOK);

	s->resp = knot_pkt_new(NULL, max_size, &s->mm);
	assert_non_null(s->resp);
	assert_int_equal(knot_pkt_init_response(s->resp, s->query), KNOT_EOK);
	knot_wire_set_aa(s->resp->wire);
	assert_int_equal(knot_pkt_begin(s->resp, KNOT_ANSWER), KNOT_EOK);
}

/*! New zone-data RRset owned by the scenario (freed by th_scn_clean()). */
static inline knot_rrset_t *th_rrset(th_scn_t *s, const char *owner, uint16_t type,
                                     uint32_t ttl)
{
	knot_dname_storage_t buf;
	assert_true(s->owned_count < TH_MAX_OWNED);
	knot_rrset_t *rr = knot_rrset_new(th_dname(buf, owner), type,
	                                  KNOT_CLASS_IN, ttl, &s->mm);
	assert_non_null(rr);
	s->owned[s->owned_count++] = rr;
	return rr;
}

/*! MX RRset from "PREF NAME" pairs given as (pref, name, pref, name, ...). */
static inline knot_rrset_t *th_mx(th_scn_t *s, const char *owner, uint32_t ttl,
                                  size_t n, const uint16_t *prefs,
                                  const char *const *names)
{
	knot_rrset_t *rr = th_rrset(s, owner, KNOT_RRTYPE_MX, ttl);
	for (size_t i = 0; i < n; i++) {
		th_add_mx(rr, prefs[i], names[i], &s->mm);
	}
	return rr;
}

/*! knot_pkt_put() that must succeed. */
static inline void th_put(th_scn_t *s, uint16_t hint, const knot_rrset_t *rr,
                          uint16_t flags)
{
	assert_int_equal(knot_pkt_put(s->resp, hint, rr, flags), KNOT_EOK);
}

/*!
 * Puts a copy of \a rr owned by \a owner with KNOT_PF_FREE, allocated from
 * the packet's memory, as knotd does for a synthesized (wildcard) answer.
 */
static inline void th_put_copy(th_scn_t *s, uint16_t hint, const knot_rrset_t *rr,
                               const char *owner)
{
	knot_dname_storage_t buf;
	knot_rrset_t to_add;
	knot_dname_t *copy = knot_dname_copy(th_dname(buf, owner), &s->resp->mm);
	assert_non_null(copy);
	knot_rrset_init(&to_add, copy, rr->type, rr->rclass, rr->ttl);
	assert_int_equal(knot_rdataset_copy(&to_add.rrs, &rr->rrs, &s->resp->mm),
	                 KNOT_EOK);
	assert_int_equal(knot_pkt_put(s->resp, hint, &to_add, KNOT_PF_FREE), KNOT_EOK);
}

/*!
 * Moves to \a section (at or after the current one), beginning every
 * section on the way as knotd does (it never skips AUTHORITY).
 */
static inline void th_begin(th_scn_t *s, knot_section_t section)
{
	for (knot_section_t sec = s->resp->current + 1; sec < section; sec++) {
		assert_int_equal(knot_pkt_begin(s->resp, sec), KNOT_EOK);
	}
	assert_int_equal(knot_pkt_begin(s->resp, section), KNOT_EOK);
}

/*! Appends an OPT RR (EDNS, payload 1232, DO if \a dnssec) to ADDITIONAL. */
static inline void th_put_opt_do(th_scn_t *s, bool dnssec)
{
	assert_false(s->has_opt);
	assert_int_equal(knot_edns_init(&s->opt, 1232, 0, 0, &s->mm), KNOT_EOK);
	if (dnssec) {
		knot_edns_set_do(&s->opt);
	}
	s->has_opt = true;
	if (s->resp->current != KNOT_ADDITIONAL) {
		th_begin(s, KNOT_ADDITIONAL);
	}
	th_put(s, KNOT_COMPR_HINT_NONE, &s->opt, 0);
}

static inline void th_put_opt(th_scn_t *s)
{
	th_put_opt_do(s, false);
}

/*! Parses the response wire into a fresh packet (s->parsed). */
static inline knot_pkt_t *th_reparse(th_scn_t *s)
{
	if (s->parsed != NULL) {
		knot_pkt_free(s->parsed);
		th_mm_free(s->parsed_wire);
	}
	s->parsed_wire = test_malloc(s->resp->size);
	memcpy(s->parsed_wire, s->resp->wire, s->resp->size);
	s->parsed = knot_pkt_new(s->parsed_wire, s->resp->size, &s->mm);
	assert_non_null(s->parsed);
	assert_int_equal(knot_pkt_parse(s->parsed, 0), KNOT_EOK);
	assert_int_equal(s->parsed->parsed, s->resp->size);
	return s->parsed;
}

static inline void th_scn_clean(th_scn_t *s)
{
	if (s->parsed != NULL) {
		knot_pkt_free(s->parsed);
		th_mm_free(s->parsed_wire);
	}
	knot_pkt_free(s->resp);
	knot_pkt_free(s->query);
	if (s->has_opt) {
		knot_rrset_clear(&s->opt, &s->mm);
	}
	for (size_t i = 0; i < s->owned_count; i++) {
		knot_rrset_free(s->owned[i], &s->mm);
	}
	memset(s, 0, sizeof(*s));
}

/* Checks. */

static inline uint16_t th_wire_count(const uint8_t *wire, knot_section_t section)
{
	switch (section) {
	case KNOT_ANSWER:     return knot_wire_get_ancount(wire);
	case KNOT_AUTHORITY:  return knot_wire_get_nscount(wire);
	case KNOT_ADDITIONAL: return knot_wire_get_arcount(wire);
	default:              fail(); return 0;
	}
}

/*!
 * Checks the invariants of a response built (or rebuilt) in memory:
 * contiguous sections, wire counts equal to the records in rr[], increasing
 * rr_info positions, opt_rr pointing at the OPT in rr[], and the wire
 * parsing back to the same records section by section (types and rdata;
 * owners may legitimately differ, e.g. "*" owners written as QNAME).
 * Leaves the parsed packet in s->parsed.
 */
static inline void th_assert_sane(th_scn_t *s)
{
	const knot_pkt_t *pkt = s->resp;
	uint16_t pos = 0;
	const knot_rrset_t *opt = NULL;

	for (knot_section_t sec = KNOT_ANSWER; sec <= KNOT_ADDITIONAL; sec++) {
		const knot_pktsection_t *ps = &pkt->sections[sec];
		if (sec > pkt->current) {
			assert_int_equal(ps->count, 0);
			continue;
		}
		/* An empty section's position is never read: libknot itself
		 * leaves it at 0 when a section is skipped. */
		if (ps->count > 0) {
			assert_ptr_equal(ps->pkt, pkt);
			assert_int_equal(ps->pos, pos);
		} else {
			assert_true(ps->pos <= pkt->rrset_count);
		}
		unsigned records = 0;
		for (uint16_t i = 0; i < ps->count; i++) {
			const knot_rrset_t *rr = knot_pkt_rr(ps, i);
			records += rr->rrs.count;
			if (rr->type == KNOT_RRTYPE_OPT) {
				assert_int_equal(sec, KNOT_ADDITIONAL);
				opt = rr;
			}
		}
		assert_int_equal(th_wire_count(pkt->wire, sec), records);
		pos += ps->count;
	}
	assert_int_equal(pkt->rrset_count, pos);
	assert_ptr_equal(pkt->opt_rr, opt);
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		assert_true(pkt->rr_info[i].pos >= KNOT_WIRE_HEADER_SIZE);
		assert_true(pkt->rr_info[i].pos < pkt->size);
		if (i > 0) {
			assert_true(pkt->rr_info[i].pos > pkt->rr_info[i - 1].pos);
		}
	}
	assert_true(pkt->size + pkt->reserved <= pkt->max_size);

	/* The wire holds what rr[] says, in the same order. */
	const knot_pkt_t *p = th_reparse(s);
	for (knot_section_t sec = KNOT_ANSWER; sec <= KNOT_ADDITIONAL; sec++) {
		const knot_pktsection_t *ps = &pkt->sections[sec];
		const knot_pktsection_t *pp = &p->sections[sec];
		assert_int_equal(pp->count, th_wire_count(pkt->wire, sec));
		uint16_t k = 0;
		for (uint16_t i = 0; sec <= pkt->current && i < ps->count; i++) {
			const knot_rrset_t *rr = knot_pkt_rr(ps, i);
			for (uint16_t j = 0; j < rr->rrs.count; j++, k++) {
				const knot_rrset_t *prr = knot_pkt_rr(pp, k);
				assert_int_equal(prr->type, rr->type);
				if (rr->type == KNOT_RRTYPE_OPT) {
					continue;
				}
				char a[TH_TXT], b[TH_TXT];
				th_rdata_text(rr->type, knot_rdataset_at(&rr->rrs, j),
				              a, sizeof(a));
				th_rdata_text(prr->type, prr->rrs.rdata, b, sizeof(b));
				assert_string_equal(b, a);
			}
		}
		assert_int_equal(k, pp->count);
	}
}

/*! Asserts the parsed section holds exactly \a expected, in order. */
static inline void th_expect_section(const knot_pkt_t *p, knot_section_t sec,
                                     const char *const *expected, size_t n)
{
	const knot_pktsection_t *ps = knot_pkt_section(p, sec);
	for (uint16_t i = 0; i < ps->count && i < n; i++) {
		const knot_rrset_t *rr = knot_pkt_rr(ps, i);
		char txt[TH_TXT];
		th_rr_text(rr, rr->owner, 0, txt, sizeof(txt));
		assert_string_equal(txt, expected[i]);
	}
	assert_int_equal(ps->count, n);
	assert_int_equal(th_wire_count(p->wire, sec), n);
}

#define TH_STRS(...) ((const char *const []){ __VA_ARGS__ })
#define TH_NSTRS(...) (sizeof(TH_STRS(__VA_ARGS__)) / sizeof(const char *))

/*! th_expect(parsed, KNOT_ANSWER, "example.com. 300 MX 10 a.example.", ...) */
#define th_expect(p, sec, ...) \
	th_expect_section((p), (sec), TH_STRS(__VA_ARGS__), TH_NSTRS(__VA_ARGS__))

#define th_expect_none(p, sec) th_expect_section((p), (sec), NULL, 0)

/*! Raw owner bytes of record \a i of section \a sec of a parsed packet. */
static inline size_t th_owner_raw(const knot_pkt_t *p, knot_section_t sec,
                                  uint16_t i, uint8_t *out)
{
	const knot_pktsection_t *ps = knot_pkt_section(p, sec);
	assert_true(i < ps->count);
	return th_wire_name(p->wire, p->size, knot_pkt_rr_offset(ps, i), out);
}

/*! Asserts the raw question name of \a p is \a qname's spelling. */
static inline void th_assert_spelling(const uint8_t *raw, size_t len,
                                      const knot_dname_t *spelling)
{
	assert_int_equal(len, knot_dname_size(spelling));
	assert_memory_equal(raw, spelling, len);
}

/* Byte snapshots of a packet. */

typedef struct {
	uint8_t *wire;
	size_t size;
	uint16_t rrset_count;
	uint16_t counts[KNOT_PKT_SECTIONS];
} th_snap_t;

static inline void th_snap(th_snap_t *snap, const knot_pkt_t *pkt)
{
	snap->wire = test_malloc(pkt->size);
	memcpy(snap->wire, pkt->wire, pkt->size);
	snap->size = pkt->size;
	snap->rrset_count = pkt->rrset_count;
	for (int i = 0; i < KNOT_PKT_SECTIONS; i++) {
		snap->counts[i] = pkt->sections[i].count;
	}
}

/*! Asserts \a pkt is byte for byte (and rr[] count) what \a snap saw; frees it. */
static inline void th_snap_same(th_snap_t *snap, const knot_pkt_t *pkt)
{
	assert_int_equal(pkt->size, snap->size);
	assert_memory_equal(pkt->wire, snap->wire, snap->size);
	assert_int_equal(pkt->rrset_count, snap->rrset_count);
	for (int i = 0; i < KNOT_PKT_SECTIONS; i++) {
		assert_int_equal(pkt->sections[i].count, snap->counts[i]);
	}
	test_free(snap->wire);
	snap->wire = NULL;
}
