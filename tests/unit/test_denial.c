/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Denial records that agree with a synthesized apex MX (module/engine/denial.c):
 * the type bitmap edit against an independent model, the recognition of the
 * apex's NSEC/NSEC3, and the packet edit on responses built as knotd builds
 * them (NODATA, NXDOMAIN, a query of type NSEC), serialized, parsed back and
 * compared record by record. Packet memory goes through cmocka: whatever the
 * engine allocates must be freed with the packet, also when an allocation
 * fails half-way.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

/* The engine's denial edit compiled in: its recognition of the apex's
 * record (lacks()) is tested on its own. */
#include "engine/denial.c"
#include "pkt_helpers.h"

#define ZONE	"example.com."

/* Whether \a rr is the apex's record of \a zone without \a type. */
static bool denial_lacks(const knot_rrset_t *rr, const knot_dname_t *zone, uint16_t type)
{
	return lacks(rr, zone, knot_dname_size(zone), type);
}

/*** A model of type bitmaps: a set of types, encoded the RFC 4034 way. ***/

typedef struct {
	uint8_t bits[8192]; /* One bit per type. */
} typeset_t;

static void ts_add(typeset_t *t, uint16_t type)
{
	t->bits[type / 8] |= 0x80 >> (type % 8);
}

static bool ts_has(const typeset_t *t, uint16_t type)
{
	return t->bits[type / 8] & (0x80 >> (type % 8));
}

/* Encodes \a t: every non-empty window with its bytes up to the last one
 * holding a type. Returns the length. */
static size_t ts_encode(const typeset_t *t, uint8_t *out)
{
	size_t len = 0;
	for (unsigned win = 0; win < 256; win++) {
		int last = -1;
		for (int b = 0; b < 32; b++) {
			if (t->bits[win * 32 + b] != 0) {
				last = b;
			}
		}
		if (last < 0) {
			continue;
		}
		out[len++] = (uint8_t)win;
		out[len++] = (uint8_t)(last + 1);
		memcpy(out + len, t->bits + win * 32, last + 1);
		len += last + 1;
	}
	return len;
}

/* The largest bitmap: 256 windows of 32 bytes. */
#define BITMAP_MAX	(256 * 34)

static void assert_add(const typeset_t *before, uint16_t type)
{
	static uint8_t in[BITMAP_MAX], out[BITMAP_MAX + MXF_BITMAP_GROWTH], want[BITMAP_MAX];
	typeset_t after = *before;
	ts_add(&after, type);
	size_t in_len = ts_encode(before, in);
	size_t want_len = ts_encode(&after, want);

	assert_true(mxf_bitmap_valid(in, in_len));
	assert_int_equal(mxf_bitmap_has(in, in_len, type), ts_has(before, type));
	size_t out_len = 0;
	memset(out, 0xA5, sizeof(out));
	assert_int_equal(mxf_bitmap_add(in, in_len, type, out, &out_len), KNOT_EOK);
	assert_int_equal(out_len, want_len);
	assert_memory_equal(out, want, want_len);
	assert_true(out_len <= in_len + MXF_BITMAP_GROWTH);
	assert_true(mxf_bitmap_valid(out, out_len));
	assert_true(mxf_bitmap_has(out, out_len, type));
	for (unsigned t = 0; t < 65536; t += 97) { /* Nothing else changes. */
		assert_int_equal(mxf_bitmap_has(out, out_len, (uint16_t)t), ts_has(&after, (uint16_t)t));
	}
}

static typeset_t *ts_new(const uint16_t *types, size_t n)
{
	typeset_t *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	for (size_t i = 0; i < n; i++) {
		ts_add(t, types[i]);
	}
	return t;
}

/*** Bitmaps. ***/

/* An apex's bitmap: A NS SOA RRSIG NSEC DNSKEY (one window, 7 bytes). */
static void test_bitmap_apex(void **state)
{
	const uint16_t apex[] = { KNOT_RRTYPE_A, KNOT_RRTYPE_NS, KNOT_RRTYPE_SOA,
	                          KNOT_RRTYPE_RRSIG, KNOT_RRTYPE_NSEC, KNOT_RRTYPE_DNSKEY };
	typeset_t *t = ts_new(apex, 6);
	uint8_t in[64], out[64 + MXF_BITMAP_GROWTH];
	size_t len = ts_encode(t, in), out_len = 0;
	assert_int_equal(len, 2 + 7);
	assert_false(mxf_bitmap_has(in, len, KNOT_RRTYPE_MX));
	assert_int_equal(mxf_bitmap_add(in, len, KNOT_RRTYPE_MX, out, &out_len), KNOT_EOK);
	assert_int_equal(out_len, len); /* MX's bit is in the window's second byte. */
	assert_int_equal(out[2 + 1], in[2 + 1] | 0x01);
	assert_add(t, KNOT_RRTYPE_MX);
	free(t);
}

/* The type is listed already: the same bytes. */
static void test_bitmap_present(void **state)
{
	const uint16_t types[] = { KNOT_RRTYPE_A, KNOT_RRTYPE_MX, KNOT_RRTYPE_SOA, 257 };
	typeset_t *t = ts_new(types, 4);
	uint8_t in[64], out[64 + MXF_BITMAP_GROWTH];
	size_t len = ts_encode(t, in), out_len = 0;
	assert_true(mxf_bitmap_has(in, len, KNOT_RRTYPE_MX));
	assert_int_equal(mxf_bitmap_add(in, len, KNOT_RRTYPE_MX, out, &out_len), KNOT_EOK);
	assert_int_equal(out_len, len);
	assert_memory_equal(out, in, len);
	free(t);
}

/* Windows: the type's window grows, or a new one goes before, between or
 * after the others. */
static void test_bitmap_windows(void **state)
{
	struct {
		uint16_t types[4];
		size_t n;
		uint16_t add;
		size_t growth;
	} cases[] = {
		{ { KNOT_RRTYPE_A, KNOT_RRTYPE_NS, KNOT_RRTYPE_SOA }, 3, KNOT_RRTYPE_MX, 1 },
		{ { 257 }, 1, KNOT_RRTYPE_MX, 4 },                       /* before */
		{ { KNOT_RRTYPE_A, 1000 }, 2, 257, 3 },                  /* between */
		{ { KNOT_RRTYPE_A, 257 }, 2, 1000, 32 },                 /* after */
		{ { KNOT_RRTYPE_A }, 1, 255, 31 },                       /* last byte */
		{ { KNOT_RRTYPE_A }, 1, 65535, MXF_BITMAP_GROWTH },      /* worst case */
		{ { 0 }, 0, KNOT_RRTYPE_MX, 4 },                         /* empty */
		{ { 65535 }, 1, 0, 3 },                                  /* type 0 */
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		typeset_t *t = ts_new(cases[c].types, cases[c].n);
		uint8_t in[128], out[128 + MXF_BITMAP_GROWTH];
		size_t len = ts_encode(t, in), out_len = 0;
		assert_int_equal(mxf_bitmap_add(in, len, cases[c].add, out, &out_len), KNOT_EOK);
		assert_int_equal(out_len - len, cases[c].growth);
		assert_add(t, cases[c].add);
		free(t);
	}
}

/* Maximal bitmaps: every type (adding changes nothing), every type but one. */
static void test_bitmap_maximal(void **state)
{
	typeset_t *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	memset(t->bits, 0xff, sizeof(t->bits));
	static uint8_t in[BITMAP_MAX], out[BITMAP_MAX + MXF_BITMAP_GROWTH];
	size_t len = ts_encode(t, in), out_len = 0;
	assert_int_equal(len, BITMAP_MAX);
	assert_true(mxf_bitmap_valid(in, len));
	assert_true(mxf_bitmap_has(in, len, 65535));
	assert_int_equal(mxf_bitmap_add(in, len, KNOT_RRTYPE_MX, out, &out_len), KNOT_EOK);
	assert_int_equal(out_len, len);
	assert_memory_equal(out, in, len);

	const uint16_t holes[] = { 0, KNOT_RRTYPE_MX, 255, 256, 32768, 65535 };
	for (size_t h = 0; h < sizeof(holes) / sizeof(holes[0]); h++) {
		typeset_t *u = calloc(1, sizeof(*u));
		assert_non_null(u);
		memset(u->bits, 0xff, sizeof(u->bits));
		u->bits[holes[h] / 8] &= ~(0x80 >> (holes[h] % 8));
		assert_add(u, holes[h]);
		free(u);
	}
	free(t);
}

/* Random type sets against the model (fixed seed: repeatable). */
static void test_bitmap_model(void **state)
{
	srandom(15);
	for (int round = 0; round < 300; round++) {
		typeset_t *t = calloc(1, sizeof(*t));
		assert_non_null(t);
		int n = random() % 12;
		for (int i = 0; i < n; i++) {
			/* Mostly low windows, as in real zones. */
			uint16_t type = (random() % 4 == 0) ? (uint16_t)random() :
			                (uint16_t)(random() % 300);
			ts_add(t, type);
		}
		uint16_t add = (random() % 2) ? KNOT_RRTYPE_MX : (uint16_t)random();
		assert_add(t, add);
		free(t);
	}
}

static void test_bitmap_malformed(void **state)
{
	const struct {
		uint8_t data[8];
		size_t len;
	} bad[] = {
		{ { 0x00 }, 1 },                       /* window without length */
		{ { 0x00, 0x00 }, 2 },                 /* empty window */
		{ { 0x00, 0x21 }, 2 },                 /* longer than 32 */
		{ { 0x00, 0x02, 0x40 }, 3 },           /* truncated */
		{ { 0x01, 0x01, 0x40, 0x00, 0x01, 0x40 }, 6 }, /* decreasing */
		{ { 0x00, 0x01, 0x40, 0x00, 0x01, 0x40 }, 6 }, /* repeated */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t out[8 + MXF_BITMAP_GROWTH];
		size_t out_len = 0;
		assert_false(mxf_bitmap_valid(bad[i].data, bad[i].len));
		assert_int_equal(mxf_bitmap_add(bad[i].data, bad[i].len, KNOT_RRTYPE_MX,
		                                out, &out_len), KNOT_EMALF);
	}
	assert_true(mxf_bitmap_valid(NULL, 0));
}

/*** Records. ***/

static const uint16_t APEX_TYPES[] = {
	KNOT_RRTYPE_A, KNOT_RRTYPE_NS, KNOT_RRTYPE_SOA, KNOT_RRTYPE_RRSIG,
	KNOT_RRTYPE_NSEC, KNOT_RRTYPE_DNSKEY, KNOT_RRTYPE_CDS, KNOT_RRTYPE_CDNSKEY,
};
#define APEX_N	(sizeof(APEX_TYPES) / sizeof(APEX_TYPES[0]))

static const uint16_t APEX3_TYPES[] = {
	KNOT_RRTYPE_A, KNOT_RRTYPE_NS, KNOT_RRTYPE_SOA, KNOT_RRTYPE_RRSIG,
	KNOT_RRTYPE_DNSKEY, KNOT_RRTYPE_NSEC3PARAM,
};
#define APEX3_N	(sizeof(APEX3_TYPES) / sizeof(APEX3_TYPES[0]))

static const uint16_t LEAF_TYPES[] = { KNOT_RRTYPE_A, KNOT_RRTYPE_RRSIG, KNOT_RRTYPE_NSEC };

/* Appends an NSEC rdata: next owner, then the bitmap of \a types. */
static void add_nsec(knot_rrset_t *rr, const char *next, const uint16_t *types,
                     size_t n, knot_mm_t *mm)
{
	uint8_t data[KNOT_DNAME_MAXLEN + BITMAP_MAX];
	knot_dname_t *name = knot_dname_from_str(data, next, KNOT_DNAME_MAXLEN);
	assert_non_null(name);
	knot_dname_to_lower(name);
	size_t len = knot_dname_size(name);
	typeset_t *t = ts_new(types, n);
	len += ts_encode(t, data + len);
	free(t);
	assert_int_equal(knot_rrset_add_rdata(rr, data, (uint16_t)len, mm), KNOT_EOK);
}

/* Appends an NSEC3 rdata (SHA-1, no salt, 0 iterations) with next hash
 * bytes \a h. */
static void add_nsec3(knot_rrset_t *rr, uint8_t h, const uint16_t *types, size_t n,
                      knot_mm_t *mm)
{
	uint8_t data[6 + 20 + BITMAP_MAX] = { 1, 0, 0, 0, 0, 20 };
	memset(data + 6, h, 20);
	typeset_t *t = ts_new(types, n);
	size_t len = 26 + ts_encode(t, data + 26);
	free(t);
	assert_int_equal(knot_rrset_add_rdata(rr, data, (uint16_t)len, mm), KNOT_EOK);
}

#define HASH_APEX	"0p9mhaveqvm6t7vbl5lop2u3t2rp3tom." ZONE
#define HASH_A		"35mthgpgcu1qg68fab165klnsnk3dpvl." ZONE
#define HASH_B		"b4um86eghhds6nea196smvmlo4ors995." ZONE

static void test_recognise(void **state)
{
	th_scn_t s;
	th_scn_init(&s, ZONE, KNOT_RRTYPE_AAAA, 1232);
	knot_dname_storage_t zbuf;
	const knot_dname_t *zone = th_dname(zbuf, ZONE);
	const uint16_t with_mx[] = { KNOT_RRTYPE_NS, KNOT_RRTYPE_SOA, KNOT_RRTYPE_MX };

	knot_rrset_t *apex = th_rrset(&s, "ExAmple.COM.", KNOT_RRTYPE_NSEC, 300);
	add_nsec(apex, "a.example.com.", APEX_TYPES, APEX_N, &s.mm);
	assert_true(denial_lacks(apex, zone, KNOT_RRTYPE_MX));
	assert_false(denial_lacks(apex, zone, KNOT_RRTYPE_A));

	knot_rrset_t *has = th_rrset(&s, ZONE, KNOT_RRTYPE_NSEC, 300);
	add_nsec(has, "a.example.com.", with_mx, 3, &s.mm);
	assert_false(denial_lacks(has, zone, KNOT_RRTYPE_MX));

	/* Another owner, or the apex's name in another zone. */
	knot_rrset_t *leaf = th_rrset(&s, "a.example.com.", KNOT_RRTYPE_NSEC, 300);
	add_nsec(leaf, "b.example.com.", LEAF_TYPES, 3, &s.mm);
	assert_false(denial_lacks(leaf, zone, KNOT_RRTYPE_MX));
	knot_rrset_t *other = th_rrset(&s, "example.org.", KNOT_RRTYPE_NSEC, 300);
	add_nsec(other, "a.example.org.", APEX_TYPES, APEX_N, &s.mm);
	assert_false(denial_lacks(other, zone, KNOT_RRTYPE_MX));

	/* NSEC3: the apex's hash is the one owner one label down with SOA. */
	knot_rrset_t *n3 = th_rrset(&s, HASH_APEX, KNOT_RRTYPE_NSEC3, 300);
	add_nsec3(n3, 0x11, APEX3_TYPES, APEX3_N, &s.mm);
	assert_true(denial_lacks(n3, zone, KNOT_RRTYPE_MX));
	knot_rrset_t *n3leaf = th_rrset(&s, HASH_A, KNOT_RRTYPE_NSEC3, 300);
	add_nsec3(n3leaf, 0x22, LEAF_TYPES, 2, &s.mm);
	assert_false(denial_lacks(n3leaf, zone, KNOT_RRTYPE_MX));
	knot_rrset_t *deep = th_rrset(&s, "x.0p9mhaveqvm6t7vbl5lop2u3t2rp3tom." ZONE,
	                              KNOT_RRTYPE_NSEC3, 300);
	add_nsec3(deep, 0x11, APEX3_TYPES, APEX3_N, &s.mm);
	assert_false(denial_lacks(deep, zone, KNOT_RRTYPE_MX));
	/* An NSEC with the NSEC3's owner is no apex record. */
	knot_rrset_t *wrong = th_rrset(&s, HASH_APEX, KNOT_RRTYPE_NSEC, 300);
	add_nsec(wrong, "a.example.com.", APEX_TYPES, APEX_N, &s.mm);
	assert_false(denial_lacks(wrong, zone, KNOT_RRTYPE_MX));

	/* Malformed rdata: left alone. */
	knot_rrset_t *bad = th_rrset(&s, ZONE, KNOT_RRTYPE_NSEC, 300);
	const uint8_t junk[] = { 1, 'a', 0, 0x00, 0x00 };
	assert_int_equal(knot_rrset_add_rdata(bad, junk, sizeof(junk), &s.mm), KNOT_EOK);
	assert_false(denial_lacks(bad, zone, KNOT_RRTYPE_MX));
	size_t off;
	const uint8_t nsec3_short[] = { 1, 0, 0, 0, 4, 1 };
	knot_rdata_t *rd = test_malloc(knot_rdata_size(sizeof(nsec3_short)));
	knot_rdata_init(rd, sizeof(nsec3_short), nsec3_short);
	assert_int_equal(mxf_denial_bitmap(KNOT_RRTYPE_NSEC3, rd, &off), KNOT_EMALF);
	test_free(rd);

	th_scn_clean(&s);
}

/*** Responses. ***/

/* A signer that hands out fixed RRSIGs (tag byte 0xEE) and checks what it is
 * asked to sign. */
typedef struct {
	knot_rdataset_t rrs[MXF_DENIAL_MAX];
	size_t calls;
	int fail;                /* Return this instead (0: sign). */
	size_t sig_len;          /* Signature bytes (64 like P-256). */
	knot_mm_t *mm;
} signer_t;

static int fake_sign(void *data, const knot_rrset_t *set, knot_rrset_t *rrsig)
{
	signer_t *sg = data;
	if (sg->fail != 0) {
		return sg->fail;
	}
	assert_true(sg->calls < MXF_DENIAL_MAX);
	assert_true(set->type == KNOT_RRTYPE_NSEC || set->type == KNOT_RRTYPE_NSEC3);
	size_t off;
	const knot_rdata_t *rd = set->rrs.rdata;
	for (uint16_t i = 0; i < set->rrs.count; i++, rd = knot_rdataset_next((knot_rdata_t *)rd)) {
		assert_int_equal(mxf_denial_bitmap(set->type, rd, &off), KNOT_EOK);
		assert_true(mxf_bitmap_has(rd->data + off, rd->len - off, KNOT_RRTYPE_MX));
	}

	knot_rrset_t made;
	knot_rrset_init(&made, set->owner, KNOT_RRTYPE_RRSIG, set->rclass, set->ttl);
	th_add_rrsig_len(&made, set->type, ZONE, 0xEE, sg->sig_len, sg->mm);
	sg->rrs[sg->calls++] = made.rrs;
	*rrsig = made; /* Owned by the signer, like the signer's cache. */
	return KNOT_EOK;
}

static void signer_init(signer_t *sg, th_scn_t *s)
{
	memset(sg, 0, sizeof(*sg));
	sg->sig_len = 64;
	sg->mm = &s->mm;
}

static void signer_clear(signer_t *sg)
{
	for (size_t i = 0; i < MXF_DENIAL_MAX; i++) {
		knot_rdataset_clear(&sg->rrs[i], sg->mm);
	}
}

/* An RRSIG entry over entry \a idx as knotd appends it: a private copy
 * with the RRset's owner, written with that owner's compression pointer. */
static void put_sig_of(th_scn_t *s, uint16_t idx, uint8_t tag)
{
	const knot_rrset_t *rr = &s->resp->rr[idx];
	knot_dname_t *owner = knot_dname_copy(rr->owner, &s->resp->mm);
	assert_non_null(owner);
	knot_rrset_t sig;
	knot_rrset_init(&sig, owner, KNOT_RRTYPE_RRSIG, KNOT_CLASS_IN, rr->ttl);
	th_add_rrsig(&sig, rr->type, ZONE, tag, &s->resp->mm);
	uint16_t hint = s->resp->rr_info[idx].compress_ptr[KNOT_COMPR_HINT_OWNER];
	assert_int_equal(knot_pkt_put(s->resp, hint, &sig, KNOT_PF_FREE | KNOT_PF_ORIGTTL),
	                 KNOT_EOK);
}

static knot_rrset_t *soa(th_scn_t *s)
{
	knot_rrset_t *rr = th_rrset(s, ZONE, KNOT_RRTYPE_SOA, 300);
	uint8_t data[64];
	size_t len = 0;
	len += knot_dname_size(knot_dname_from_str(data, "ns1." ZONE, 64));
	len += knot_dname_size(knot_dname_from_str(data + len, "hostmaster." ZONE, 64 - len));
	memset(data + len, 0, 20);
	knot_wire_write_u32(data + len + 16, 300); /* minimum */
	assert_int_equal(knot_rrset_add_rdata(rr, data, (uint16_t)(len + 20), &s->mm), KNOT_EOK);
	return rr;
}

/* NODATA at the apex as knotd writes it: SOA, NSEC, then their RRSIGs. */
static void nodata_nsec(th_scn_t *s, uint16_t max_size)
{
	th_scn_init(s, "ExAmple.Com.", KNOT_RRTYPE_AAAA, max_size);
	th_begin(s, KNOT_AUTHORITY);
	th_put(s, KNOT_COMPR_HINT_NONE, soa(s), KNOT_PF_NOTRUNC | KNOT_PF_SOAMINTTL);
	knot_rrset_t *nsec = th_rrset(s, ZONE, KNOT_RRTYPE_NSEC, 300);
	add_nsec(nsec, "a.example.com.", APEX_TYPES, APEX_N, &s->mm);
	th_put(s, KNOT_COMPR_HINT_NONE, nsec, KNOT_PF_CHECKDUP);
	put_sig_of(s, 0, 0x50);
	put_sig_of(s, 1, 0x51);
}

/*
 * The rebuild on demand, by link-time substitution (tests/unit/meson.build
 * links this test with -Wl,--wrap=mxf_write_replace): while rebuild_only is
 * set, the edit goes through mxf_write_rebuild() as mxf_write_replace()
 * does when the sizes differ, never in place.
 */
static bool rebuild_only;

int __real_mxf_write_replace(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count);
int __wrap_mxf_write_replace(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count);

int __wrap_mxf_write_replace(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count)
{
	if (!rebuild_only) {
		return __real_mxf_write_replace(pkt, subst, count);
	}
	uint8_t act[64];
	assert_true(pkt->rrset_count <= sizeof(act));
	memset(act, MXF_W_KEEP, sizeof(act));
	for (uint16_t k = 0; k < count; k++) {
		act[subst[k].idx] = knot_rrset_empty(&subst[k].rr) ? MXF_W_DROP : MXF_W_SUBST;
	}
	int ret = mxf_write_rebuild(pkt, act, subst, count, NULL);
	for (uint16_t k = 0; k < count; k++) {
		if (subst[k].owned) {
			knot_rrset_clear(&subst[k].rr, &pkt->mm);
		}
	}
	return ret;
}

static int edit_how(th_scn_t *s, signer_t *sg, size_t want_found, bool general)
{
	knot_dname_storage_t zbuf;
	uint16_t idx[MXF_DENIAL_MAX];
	size_t n = mxf_denial_find(s->resp, th_dname(zbuf, ZONE), KNOT_RRTYPE_MX, idx,
	                           MXF_DENIAL_MAX);
	assert_int_equal(n, want_found);
	mxf_denial_ctx_t ctx = { .type = KNOT_RRTYPE_MX, .sign = fake_sign, .sign_data = sg };
	rebuild_only = general;
	int ret = mxf_denial_rewrite(s->resp, &ctx, idx, n);
	rebuild_only = false;
	return ret;
}

static int edit(th_scn_t *s, signer_t *sg, size_t want_found)
{
	return edit_how(s, sg, want_found, false);
}

#define APEX_NSEC(owner) \
	owner " 300 NSEC a.example.com. A NS SOA MX RRSIG NSEC DNSKEY CDS CDNSKEY"

/* NXDOMAIN in an NSEC3 zone: closest encloser (the apex), next closer and
 * wildcard. */
static void nxdomain_nsec3(th_scn_t *s, uint16_t max_size)
{
	th_scn_init(s, "nx.example.com.", KNOT_RRTYPE_A, max_size);
	th_begin(s, KNOT_AUTHORITY);
	th_put(s, KNOT_COMPR_HINT_NONE, soa(s), KNOT_PF_NOTRUNC | KNOT_PF_SOAMINTTL);
	knot_rrset_t *apex = th_rrset(s, HASH_APEX, KNOT_RRTYPE_NSEC3, 300);
	add_nsec3(apex, 0x11, APEX3_TYPES, APEX3_N, &s->mm);
	knot_rrset_t *a = th_rrset(s, HASH_A, KNOT_RRTYPE_NSEC3, 300);
	add_nsec3(a, 0x22, LEAF_TYPES, 2, &s->mm);
	knot_rrset_t *b = th_rrset(s, HASH_B, KNOT_RRTYPE_NSEC3, 300);
	add_nsec3(b, 0x33, LEAF_TYPES, 2, &s->mm);
	th_put(s, KNOT_COMPR_HINT_NONE, a, KNOT_PF_CHECKDUP);
	th_put(s, KNOT_COMPR_HINT_NONE, apex, KNOT_PF_CHECKDUP);
	th_put(s, KNOT_COMPR_HINT_NONE, b, KNOT_PF_CHECKDUP);
	for (uint16_t i = 0; i < 4; i++) {
		put_sig_of(s, i, (uint8_t)(0x60 + i));
	}
}

/* NXDOMAIN in an NSEC zone: the apex's NSEC covers the wildcard. */
static void nxdomain_nsec(th_scn_t *s, uint16_t max_size)
{
	th_scn_init(s, "nx.example.com.", KNOT_RRTYPE_A, max_size);
	th_begin(s, KNOT_AUTHORITY);
	th_put(s, KNOT_COMPR_HINT_NONE, soa(s), KNOT_PF_NOTRUNC | KNOT_PF_SOAMINTTL);
	knot_rrset_t *cover = th_rrset(s, "ns1.example.com.", KNOT_RRTYPE_NSEC, 300);
	add_nsec(cover, "www.example.com.", LEAF_TYPES, 3, &s->mm);
	knot_rrset_t *apex = th_rrset(s, ZONE, KNOT_RRTYPE_NSEC, 300);
	add_nsec(apex, "a.example.com.", APEX_TYPES, APEX_N, &s->mm);
	th_put(s, KNOT_COMPR_HINT_NONE, cover, KNOT_PF_CHECKDUP);
	th_put(s, KNOT_COMPR_HINT_NONE, apex, KNOT_PF_CHECKDUP);
	for (uint16_t i = 0; i < 3; i++) {
		put_sig_of(s, i, (uint8_t)(0x70 + i));
	}
}

/* A query of type NSEC at the apex: the record and its RRSIG in the answer,
 * the owner keeping the query's spelling. */
static void answer_nsec(th_scn_t *s, uint16_t max_size)
{
	th_scn_init(s, "EXample.cOM.", KNOT_RRTYPE_NSEC, max_size);
	knot_rrset_t *apex = th_rrset(s, ZONE, KNOT_RRTYPE_NSEC, 300);
	add_nsec(apex, "a.example.com.", APEX_TYPES, APEX_N, &s->mm);
	th_put(s, KNOT_COMPR_HINT_QNAME, apex, KNOT_PF_ORIGTTL);
	put_sig_of(s, 0, 0x80);
	th_begin(s, KNOT_AUTHORITY);
}

/* Every shape: one edit, then the sections as expected, the same size (same
 * bitmap length, same pointers), nothing more to find. */
typedef struct {
	const char *name;
	void (*build)(th_scn_t *, uint16_t);
	knot_section_t sec;       /* Where the records are. */
	const char *want[8];
} shape_t;

static const shape_t SHAPES[] = {
	{ "NODATA, NSEC", nodata_nsec, KNOT_AUTHORITY, {
		"example.com. 300 SOA len 61",
		APEX_NSEC("example.com."),
		"example.com. 300 RRSIG SOA 50",
		"example.com. 300 RRSIG NSEC ee" } },
	{ "NXDOMAIN, NSEC3: only the apex's hash changes", nxdomain_nsec3, KNOT_AUTHORITY, {
		"example.com. 300 SOA len 61",
		HASH_A " 300 NSEC3 hash-length 20 A RRSIG",
		HASH_APEX " 300 NSEC3 hash-length 20 A NS SOA MX RRSIG DNSKEY NSEC3PARAM",
		HASH_B " 300 NSEC3 hash-length 20 A RRSIG",
		"example.com. 300 RRSIG SOA 60",
		HASH_A " 300 RRSIG NSEC3 61",
		HASH_APEX " 300 RRSIG NSEC3 ee",
		HASH_B " 300 RRSIG NSEC3 63" } },
	{ "NXDOMAIN, NSEC: the apex's covers the wildcard", nxdomain_nsec, KNOT_AUTHORITY, {
		"example.com. 300 SOA len 61",
		"ns1.example.com. 300 NSEC www.example.com. A RRSIG NSEC",
		APEX_NSEC("example.com."),
		"example.com. 300 RRSIG SOA 70",
		"ns1.example.com. 300 RRSIG NSEC 71",
		"example.com. 300 RRSIG NSEC ee" } },
	{ "type NSEC: in the answer", answer_nsec, KNOT_ANSWER, {
		APEX_NSEC("example.com."),
		"example.com. 300 RRSIG NSEC ee" } },
};

static void test_shapes(void **state)
{
	for (size_t i = 0; i < sizeof(SHAPES) / sizeof(SHAPES[0]); i++) {
		const shape_t *sh = &SHAPES[i];
		th_scn_t s;
		signer_t sg;
		sh->build(&s, 1232);
		signer_init(&sg, &s);
		size_t size = s.resp->size;
		knot_section_t current = s.resp->current;

		assert_int_equal(edit(&s, &sg, 1), KNOT_EOK);
		assert_int_equal(sg.calls, 1);
		th_assert_sane(&s);
		size_t n = 0;
		while (n < 8 && sh->want[n] != NULL) {
			n++;
		}
		th_expect_section(s.parsed, sh->sec, sh->want, n);
		th_expect_none(s.parsed, sh->sec == KNOT_ANSWER ? KNOT_AUTHORITY : KNOT_ANSWER);
		th_expect_none(s.parsed, KNOT_ADDITIONAL);
		assert_int_equal(s.resp->size, size);
		assert_int_equal(s.resp->current, current);

		/* Every RRSIG owner is still a pointer to its record's owner. */
		const knot_pktsection_t *ps = &s.resp->sections[sh->sec];
		for (uint16_t k = ps->pos; k < ps->pos + ps->count; k++) {
			if (s.resp->rr[k].type != KNOT_RRTYPE_RRSIG || sh->sec == KNOT_ANSWER) {
				continue;
			}
			uint16_t pos = s.resp->rr_info[k].pos;
			assert_int_equal(s.resp->wire[pos] & 0xC0, 0xC0);
		}

		knot_dname_storage_t zbuf;
		uint16_t idx[MXF_DENIAL_MAX];
		assert_int_equal(mxf_denial_find(s.resp, th_dname(zbuf, ZONE), KNOT_RRTYPE_MX,
		                                 idx, MXF_DENIAL_MAX), 0);
		signer_clear(&sg);
		th_scn_clean(&s);
	}

	/* The query's spelling stays on the answer's owners. */
	th_scn_t s;
	signer_t sg;
	answer_nsec(&s, 1232);
	signer_init(&sg, &s);
	assert_int_equal(edit(&s, &sg, 1), KNOT_EOK);
	th_assert_sane(&s);
	knot_dname_storage_t q;
	uint8_t raw[KNOT_DNAME_MAXLEN];
	for (uint16_t i = 0; i < 2; i++) {
		size_t len = th_owner_raw(s.parsed, KNOT_ANSWER, i, raw);
		th_assert_spelling(raw, len, th_dname(q, "EXample.cOM."));
	}
	signer_clear(&sg);
	th_scn_clean(&s);
}

/* In place and rebuilt, every shape: the same bytes, the same rr[]; the
 * in-place edit leaves libknot's compression state as it was (no cut). */
static void test_in_place_equals_rebuild(void **state)
{
	for (size_t i = 0; i < sizeof(SHAPES) / sizeof(SHAPES[0]); i++) {
		th_scn_t a, b;
		signer_t sa, sb;
		SHAPES[i].build(&a, 1232);
		SHAPES[i].build(&b, 1232);
		signer_init(&sa, &a);
		signer_init(&sb, &b);
		knot_compr_t compr = a.resp->compr;
		assert_int_equal(edit_how(&a, &sa, 1, false), KNOT_EOK);
		assert_int_equal(edit_how(&b, &sb, 1, true), KNOT_EOK);
		assert_int_equal(a.resp->compr.suffix.pos, compr.suffix.pos);
		th_assert_sane(&a);
		th_assert_sane(&b);
		assert_int_equal(a.resp->size, b.resp->size);
		assert_memory_equal(a.resp->wire, b.resp->wire, a.resp->size);
		assert_int_equal(a.resp->rrset_count, b.resp->rrset_count);
		for (uint16_t k = 0; k < a.resp->rrset_count; k++) {
			char ta[TH_TXT], tb[TH_TXT];
			th_rr_text(&a.resp->rr[k], a.resp->rr[k].owner, 0, ta, sizeof(ta));
			th_rr_text(&b.resp->rr[k], b.resp->rr[k].owner, 0, tb, sizeof(tb));
			assert_string_equal(ta, tb);
			assert_int_equal(a.resp->rr_info[k].flags & KNOT_PF_FREE,
			                 b.resp->rr_info[k].flags & KNOT_PF_FREE);
		}
		signer_clear(&sa);
		signer_clear(&sb);
		th_scn_clean(&a);
		th_scn_clean(&b);
	}
}

/* No RRSIG over the record in the packet: the new one follows it; a second
 * RRSIG entry over it goes. */
static void test_rrsig_placement(void **state)
{
	th_scn_t s;
	signer_t sg;
	th_scn_init(&s, ZONE, KNOT_RRTYPE_AAAA, 1232);
	signer_init(&sg, &s);
	th_begin(&s, KNOT_AUTHORITY);
	th_put(&s, KNOT_COMPR_HINT_NONE, soa(&s), KNOT_PF_NOTRUNC);
	knot_rrset_t *nsec = th_rrset(&s, ZONE, KNOT_RRTYPE_NSEC, 300);
	add_nsec(nsec, "a.example.com.", APEX_TYPES, APEX_N, &s.mm);
	th_put(&s, KNOT_COMPR_HINT_NONE, nsec, KNOT_PF_CHECKDUP);
	put_sig_of(&s, 0, 0x90);
	assert_int_equal(edit(&s, &sg, 1), KNOT_EOK);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_AUTHORITY, "example.com. 300 SOA len 61",
	          APEX_NSEC("example.com."), "example.com. 300 RRSIG NSEC ee",
	          "example.com. 300 RRSIG SOA 90");
	signer_clear(&sg);
	th_scn_clean(&s);

	nodata_nsec(&s, 1232);
	signer_init(&sg, &s);
	put_sig_of(&s, 1, 0x52); /* Another RRSIG entry over the NSEC. */
	assert_int_equal(edit(&s, &sg, 1), KNOT_EOK);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_AUTHORITY, "example.com. 300 SOA len 61",
	          APEX_NSEC("example.com."), "example.com. 300 RRSIG SOA 50",
	          "example.com. 300 RRSIG NSEC ee");
	signer_clear(&sg);
	th_scn_clean(&s);
}

/* Nothing to edit: the packet is not touched (a positive answer, an apex
 * NSEC listing MX, a non-apex NSEC). */
static void test_untouched(void **state)
{
	th_scn_t s;
	th_scn_init(&s, "www.example.com.", KNOT_RRTYPE_A, 1232);
	knot_rrset_t *a = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a, "192.0.2.1", &s.mm);
	th_put(&s, KNOT_COMPR_HINT_QNAME, a, 0);
	th_begin(&s, KNOT_AUTHORITY);
	knot_rrset_t *apex = th_rrset(&s, ZONE, KNOT_RRTYPE_NSEC, 300);
	const uint16_t with_mx[] = { KNOT_RRTYPE_NS, KNOT_RRTYPE_SOA, KNOT_RRTYPE_MX };
	add_nsec(apex, "a.example.com.", with_mx, 3, &s.mm);
	th_put(&s, KNOT_COMPR_HINT_NONE, apex, KNOT_PF_CHECKDUP);
	knot_rrset_t *leaf = th_rrset(&s, "a.example.com.", KNOT_RRTYPE_NSEC, 300);
	add_nsec(leaf, "b.example.com.", LEAF_TYPES, 3, &s.mm);
	th_put(&s, KNOT_COMPR_HINT_NONE, leaf, KNOT_PF_CHECKDUP);
	th_snap_t snap;
	th_snap(&snap, s.resp);
	size_t allocs = s.allocs;

	knot_dname_storage_t zbuf;
	uint16_t idx[MXF_DENIAL_MAX];
	assert_int_equal(mxf_denial_find(s.resp, th_dname(zbuf, ZONE), KNOT_RRTYPE_MX, idx,
	                                 MXF_DENIAL_MAX), 0);
	signer_t sg;
	signer_init(&sg, &s);
	mxf_denial_ctx_t ctx = { .type = KNOT_RRTYPE_MX, .sign = fake_sign, .sign_data = &sg };
	assert_int_equal(mxf_denial_rewrite(s.resp, &ctx, idx, 0), KNOT_EOK);
	th_snap_same(&snap, s.resp);
	assert_int_equal(s.allocs, allocs);
	th_scn_clean(&s);
}

/* A signing error: reported, nothing leaks (cmocka), the caller fails
 * closed. */
static void test_sign_error(void **state)
{
	th_scn_t s;
	signer_t sg;
	nodata_nsec(&s, 1232);
	signer_init(&sg, &s);
	sg.fail = KNOT_DNSSEC_ENOKEY;
	assert_int_equal(edit(&s, &sg, 1), KNOT_DNSSEC_ENOKEY);
	th_scn_clean(&s);
}

/* The edited response does not fit (here: a longer signature than the
 * zone's): ESPACE, TC, and neither the original record nor its RRSIG. */
static void test_espace(void **state)
{
	th_scn_t s;
	signer_t sg;
	nodata_nsec(&s, 1232);
	uint16_t size = (uint16_t)s.resp->size;
	th_scn_clean(&s);

	for (uint16_t max = size; max < size + 32; max += 7) { /* 32 more needed */
		nodata_nsec(&s, max);
		signer_init(&sg, &s);
		sg.sig_len = 96;
		assert_int_equal(edit(&s, &sg, 1), KNOT_ESPACE);
		assert_true(knot_wire_get_tc(s.resp->wire));
		th_assert_sane(&s);
		knot_dname_storage_t zbuf;
		uint16_t idx[MXF_DENIAL_MAX];
		assert_int_equal(mxf_denial_find(s.resp, th_dname(zbuf, ZONE), KNOT_RRTYPE_MX,
		                                 idx, MXF_DENIAL_MAX), 0);
		const knot_pktsection_t *auth = knot_pkt_section(s.parsed, KNOT_AUTHORITY);
		for (uint16_t i = 0; i < auth->count; i++) {
			const knot_rrset_t *rr = knot_pkt_rr(auth, i);
			if (rr->type == KNOT_RRTYPE_RRSIG &&
			    knot_rrsig_type_covered(rr->rrs.rdata) == KNOT_RRTYPE_NSEC) {
				assert_int_equal(rr->rrs.rdata->data[rr->rrs.rdata->len - 1], 0xEE);
			}
		}
		signer_clear(&sg);
		th_scn_clean(&s);
	}
}

/* Allocation failures at every step: an error or the edit, never a leak,
 * never the original record. */
typedef struct {
	size_t left;
} budget_t;

static void *budget_alloc(void *ctx, size_t len)
{
	budget_t *b = ctx;
	if (b->left == 0) {
		return NULL;
	}
	b->left--;
	return test_malloc(len);
}

static void alloc_failures(bool general)
{
	bool succeeded = false;
	for (size_t budget = 0; budget < 32 && !succeeded; budget++) {
		th_scn_t s;
		signer_t sg;
		nodata_nsec(&s, 1232);
		signer_init(&sg, &s);
		budget_t b = { .left = budget };
		knot_mm_t saved = s.resp->mm;
		s.resp->mm.ctx = &b;
		s.resp->mm.alloc = budget_alloc;
		int ret = edit_how(&s, &sg, 1, general);
		s.resp->mm = saved;
		if (ret == KNOT_EOK) {
			succeeded = true;
			th_assert_sane(&s);
			th_expect(s.parsed, KNOT_AUTHORITY, "example.com. 300 SOA len 61",
			          APEX_NSEC("example.com."), "example.com. 300 RRSIG SOA 50",
			          "example.com. 300 RRSIG NSEC ee");
		} else {
			assert_int_equal(ret, KNOT_ENOMEM);
		}
		signer_clear(&sg);
		th_scn_clean(&s);
	}
	assert_true(succeeded);
}

/* In place and rebuilt. */
static void test_alloc_failures(void **state)
{
	alloc_failures(false);
	alloc_failures(true);
}

/*** mxf_write_replace() on its own. ***/

/* Replace an answer entry and drop another with OPT in the additional
 * section (I6); a packet holding a TSIG refuses (writer.h, T): cut at the
 * first change, owned replacements freed. */
static void test_replace(void **state)
{
	th_scn_t s;
	th_scn_init(&s, "www.example.com.", KNOT_RRTYPE_A, 1232);
	knot_rrset_t *a = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a, "192.0.2.1", &s.mm);
	knot_rrset_t *txt = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(txt, "192.0.2.2", &s.mm);
	th_put(&s, KNOT_COMPR_HINT_QNAME, a, 0);
	th_put(&s, KNOT_COMPR_HINT_QNAME, txt, 0);
	th_put_opt(&s);

	knot_rrset_t *b = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(b, "192.0.2.9", &s.mm);
	mxf_subst_t sub[2] = {
		{ .idx = 0, .rr = *b },
		{ .idx = 1 },
	};
	knot_rrset_init_empty(&sub[1].rr);
	assert_int_equal(mxf_write_replace(s.resp, sub, 2), KNOT_EOK);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, "www.example.com. 300 A 192.0.2.9");
	assert_non_null(s.resp->opt_rr);
	assert_int_equal(s.resp->current, KNOT_ADDITIONAL);
	th_scn_clean(&s);

	/* TSIG: refused, cut at the first change, owned replacements freed. */
	th_scn_init(&s, "www.example.com.", KNOT_RRTYPE_A, 1232);
	a = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a, "192.0.2.1", &s.mm);
	th_put(&s, KNOT_COMPR_HINT_QNAME, a, 0);
	th_begin(&s, KNOT_ADDITIONAL);
	knot_rrset_t *tsig = th_rrset(&s, "key.", KNOT_RRTYPE_TSIG, 0);
	const uint8_t tdata[] = { 0 };
	assert_int_equal(knot_rrset_add_rdata(tsig, tdata, 1, &s.mm), KNOT_EOK);
	th_put(&s, KNOT_COMPR_HINT_NONE, tsig, 0);
	knot_rrset_t own;
	knot_rrset_init(&own, knot_dname_copy(a->owner, &s.resp->mm), KNOT_RRTYPE_A,
	                KNOT_CLASS_IN, 300);
	th_add_addr(&own, "192.0.2.3", &s.resp->mm);
	mxf_subst_t one = { .idx = 0, .rr = own, .owned = true };
	assert_int_equal(mxf_write_replace(s.resp, &one, 1), KNOT_EDENIED);
	assert_int_equal(s.resp->rrset_count, 0);
	assert_int_equal(knot_wire_get_ancount(s.resp->wire), 0);
	assert_int_equal(knot_wire_get_arcount(s.resp->wire), 0);
	th_assert_sane(&s);
	th_scn_clean(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bitmap_apex),
		cmocka_unit_test(test_bitmap_present),
		cmocka_unit_test(test_bitmap_windows),
		cmocka_unit_test(test_bitmap_maximal),
		cmocka_unit_test(test_bitmap_model),
		cmocka_unit_test(test_bitmap_malformed),
		cmocka_unit_test(test_recognise),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_in_place_equals_rebuild),
		cmocka_unit_test(test_rrsig_placement),
		cmocka_unit_test(test_untouched),
		cmocka_unit_test(test_sign_error),
		cmocka_unit_test(test_espace),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_replace),
	};
	return cmocka_run_group_tests_name("denial", tests, NULL, NULL);
}
