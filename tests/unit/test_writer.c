/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * The writer's fast path, the filtering set's wire image (W1-W3 of
 * module/engine/writer.h), against libknot: the same
 * packet is built twice, once with mxf_image_put() (knot_pkt_put() where the
 * image declines, as mxf_write_set() does) and once with knot_pkt_put() only.
 * Every byte, every counter, the rr and rr_info entries and the compression
 * state must be equal, and stay equal when more names are written after the
 * set (glue through the RDATA hints, a name compressed against the suffix
 * the set left behind). Sweeps policies, QNAMEs (case, shared last label),
 * owner hints, what precedes the set, sections, space and flags.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/policy.h"
#include "engine/rewrite.h"
#include "engine/writer.h"
#include "pkt_helpers.h"

static const char *const set_default[] = {
	"10 france.security-mail.net.", "20 europe.security-mail.net.",
};
static const char *const set_tld_a[] = { "10 mx.a." };
/* "example.net." is written as a bare pointer into "two.example.net.". */
static const char *const set_nested[] = {
	"5 one.example.net.", "5 two.example.net.", "7 example.net.",
};
static const char *const set_long[] = {
	"1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
	"ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.org.",
	"2 mx.org.",
};
static char big_names[MXF_MAX_EXCHANGES][40];
static const char *set_big[MXF_MAX_EXCHANGES];

typedef struct {
	const char *const *ex;
	size_t count;
} set_t;

static mxf_policy_t *policy_of(const set_t *set)
{
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	conf.exchange = set->ex;
	conf.exchange_count = set->count;
	const char *err = NULL;
	mxf_policy_t *p = mxf_policy_new(&conf, &err);
	assert_non_null(p);
	return p;
}

/* What precedes the set. */
enum { PRE_NONE, PRE_A, PRE_CNAME, PRE_COUNT };

typedef struct {
	const char *qname;
	int pre;
	knot_section_t section;
	size_t max_size;
	uint16_t reserved;
	uint32_t ttl;
	uint16_t flags;
	bool hint_qname; /* Else: the hint is the owner of the record before. */
} case_t;

/* Builds the packet up to where the set goes; returns the owner hint. */
static uint16_t prepare(knot_pkt_t *pkt, const case_t *c, knot_dname_storage_t owner)
{
	/* Static: the packets' rr[] keep pointing at the owners. */
	static knot_dname_storage_t q;
	th_dname(q, c->qname);
	assert_int_equal(knot_pkt_put_question(pkt, q, KNOT_CLASS_IN, KNOT_RRTYPE_MX),
	                 KNOT_EOK);
	assert_int_equal(knot_pkt_begin(pkt, KNOT_ANSWER), KNOT_EOK);
	memcpy(owner, q, knot_dname_size(q));

	uint16_t hint = KNOT_COMPR_HINT_QNAME;
	if (c->pre == PRE_A) {
		/* An owner of its own, written as labels: the set may point there. */
		static knot_dname_storage_t www;
		th_dname(www, "Www.Example.Com.");
		knot_rrset_t a;
		knot_rrset_init(&a, www, KNOT_RRTYPE_A, KNOT_CLASS_IN, 60);
		assert_int_equal(knot_rrset_add_rdata(&a, (const uint8_t *)"\xc0\x00\x02\x01",
		                                      4, NULL), KNOT_EOK);
		int ret = knot_pkt_put(pkt, KNOT_COMPR_HINT_NONE, &a, KNOT_PF_NOTRUNC);
		knot_rdataset_clear(&a.rrs, NULL);
		if (ret != KNOT_EOK) {
			return KNOT_COMPR_HINT_NONE; /* Does not fit: no such case. */
		}
		if (!c->hint_qname) {
			hint = pkt->rr_info[0].compress_ptr[KNOT_COMPR_HINT_OWNER];
			memcpy(owner, www, knot_dname_size(www));
		}
	} else if (c->pre == PRE_CNAME) {
		/* The CNAME target moves the compression suffix off the QNAME. */
		static knot_dname_storage_t target;
		th_dname(target, "mail.example.com.");
		knot_rrset_t cn;
		knot_rrset_init(&cn, q, KNOT_RRTYPE_CNAME, KNOT_CLASS_IN, 60);
		assert_int_equal(knot_rrset_add_rdata(&cn, target, knot_dname_size(target),
		                                      NULL), KNOT_EOK);
		int ret = knot_pkt_put(pkt, KNOT_COMPR_HINT_QNAME, &cn, KNOT_PF_NOTRUNC);
		knot_rdataset_clear(&cn.rrs, NULL);
		if (ret != KNOT_EOK) {
			return KNOT_COMPR_HINT_NONE;
		}
		hint = pkt->rr_info[0].compress_ptr[KNOT_COMPR_HINT_RDATA];
		memcpy(owner, target, knot_dname_size(target));
	}
	if (c->section != KNOT_ANSWER) {
		assert_int_equal(knot_pkt_begin(pkt, c->section), KNOT_EOK);
	}
	return hint;
}

/* Names after the set: glue of the first exchange through its RDATA hint,
 * then a name compressed against whatever suffix the set left. */
static void put_after(knot_pkt_t *pkt, const mxf_policy_t *policy, int *rets)
{
	if (pkt->rrset_count == 0 || pkt->rr[pkt->rrset_count - 1].type != KNOT_RRTYPE_MX) {
		rets[0] = rets[1] = 1;
		return;
	}
	uint16_t last = pkt->rrset_count - 1;
	(void)knot_pkt_begin(pkt, KNOT_ADDITIONAL);
	knot_rrset_t glue;
	knot_rrset_init(&glue, (knot_dname_t *)policy->ex[0].name, KNOT_RRTYPE_A,
	                KNOT_CLASS_IN, 30);
	assert_int_equal(knot_rrset_add_rdata(&glue, (const uint8_t *)"\xc0\x00\x02\x19",
	                                      4, NULL), KNOT_EOK);
	rets[0] = knot_pkt_put(pkt, pkt->rr_info[last].compress_ptr[KNOT_COMPR_HINT_RDATA],
	                       &glue, 0);
	knot_rdataset_clear(&glue.rrs, NULL);

	static knot_dname_storage_t other;
	th_dname(other, "relay.security-mail.net.");
	knot_rrset_t aaaa;
	knot_rrset_init(&aaaa, other, KNOT_RRTYPE_AAAA, KNOT_CLASS_IN, 30);
	assert_int_equal(knot_rrset_add_rdata(&aaaa, (const uint8_t *)
	                                      "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x19",
	                                      16, NULL), KNOT_EOK);
	rets[1] = knot_pkt_put(pkt, KNOT_COMPR_HINT_NONE, &aaaa, 0);
	knot_rdataset_clear(&aaaa.rrs, NULL);
}

static void assert_same(const knot_pkt_t *a, const knot_pkt_t *b)
{
	assert_int_equal(a->size, b->size);
	assert_memory_equal(a->wire, b->wire, a->size);
	assert_int_equal(a->rrset_count, b->rrset_count);
	assert_int_equal(a->current, b->current);
	for (int s = KNOT_ANSWER; s <= KNOT_ADDITIONAL; s++) {
		assert_int_equal(a->sections[s].pos, b->sections[s].pos);
		assert_int_equal(a->sections[s].count, b->sections[s].count);
	}
	for (uint16_t i = 0; i < a->rrset_count; i++) {
		assert_int_equal(a->rr_info[i].pos, b->rr_info[i].pos);
		assert_int_equal(a->rr_info[i].flags, b->rr_info[i].flags);
		assert_memory_equal(a->rr_info[i].compress_ptr, b->rr_info[i].compress_ptr,
		                    sizeof(a->rr_info[i].compress_ptr));
		assert_int_equal(a->rr[i].type, b->rr[i].type);
		assert_int_equal(a->rr[i].ttl, b->rr[i].ttl);
		assert_int_equal(a->rr[i].rrs.count, b->rr[i].rrs.count);
		assert_true(knot_dname_is_equal(a->rr[i].owner, b->rr[i].owner));
	}
	assert_int_equal(a->compr.suffix.pos, b->compr.suffix.pos);
	assert_int_equal(a->compr.suffix.labels, b->compr.suffix.labels);
}

/* One case; returns whether the image was used (-1: case not possible). */
static int run_case(const mxf_policy_t *policy, const case_t *c)
{
	knot_pkt_t *a = knot_pkt_new(NULL, c->max_size, NULL);
	knot_pkt_t *b = knot_pkt_new(NULL, c->max_size, NULL);
	assert_non_null(a);
	assert_non_null(b);
	knot_dname_storage_t owner_a, owner_b;
	uint16_t hint = prepare(a, c, owner_a);
	assert_int_equal(prepare(b, c, owner_b), hint);
	if (hint == KNOT_COMPR_HINT_NONE || a->size + c->reserved > c->max_size) {
		/* Never so in knotd (libknot itself would overrun). */
		knot_pkt_free(a);
		knot_pkt_free(b);
		return -1;
	}
	a->reserved = b->reserved = c->reserved;

	knot_rrset_t rr;
	knot_rrset_init(&rr, owner_a, KNOT_RRTYPE_MX, KNOT_CLASS_IN, c->ttl);
	rr.rrs = policy->rrs;
	bool used = mxf_image_put(a, policy, &rr, hint, c->flags);
	int ret_a = used ? KNOT_EOK : knot_pkt_put(a, hint, &rr, c->flags);
	rr.owner = owner_b;
	int ret_b = knot_pkt_put(b, hint, &rr, c->flags);
	assert_int_equal(ret_a, ret_b);
	assert_int_equal(knot_wire_get_tc(a->wire), knot_wire_get_tc(b->wire));
	assert_same(a, b);
	if (ret_a == KNOT_EOK) {
		/* mxf_write_set() gives the same packet again. */
		knot_pkt_t *c2 = knot_pkt_new(NULL, c->max_size, NULL);
		knot_dname_storage_t owner_c;
		(void)prepare(c2, c, owner_c);
		c2->reserved = c->reserved;
		assert_int_equal(mxf_write_set(c2, policy, owner_c, c->ttl, hint, c->flags),
		                 KNOT_EOK);
		assert_same(c2, b);
		knot_pkt_free(c2);
	}

	int after_a[2], after_b[2];
	put_after(a, policy, after_a);
	put_after(b, policy, after_b);
	assert_memory_equal(after_a, after_b, sizeof(after_a));
	assert_same(a, b);

	knot_pkt_free(a);
	knot_pkt_free(b);
	return used;
}

static void test_image_equals_libknot(void **state)
{
	(void)state;
	for (int i = 0; i < MXF_MAX_EXCHANGES; i++) {
		(void)snprintf(big_names[i], sizeof(big_names[i]), "%d mx%d.filter.example.",
		               100 + i, i);
		set_big[i] = big_names[i];
	}
	const set_t sets[] = {
		{ set_default, 2 }, { set_tld_a, 1 }, { set_nested, 3 }, { set_long, 2 },
		{ set_big, MXF_MAX_EXCHANGES },
	};
	const char *qnames[] = {
		"example.com.", "ExAmPlE.CoM.", "example.net.", "EXAMPLE.NET.", "a.", "A.",
		"x.y.z.w.v.example.org.", "org.", "net.example.", ".", "b.",
	};
	const size_t sizes[] = { KNOT_WIRE_MAX_PKTSIZE, 512, 96, 60 };
	const uint16_t reserves[] = { 0, 11, 400 };
	const uint16_t flags[] = { KNOT_PF_NULL, KNOT_PF_NOTRUNC };
	const knot_section_t sections[] = { KNOT_ANSWER, KNOT_AUTHORITY, KNOT_ADDITIONAL };

	size_t cases = 0, used = 0;
	for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
		mxf_policy_t *policy = policy_of(&sets[s]);
		size_t used_here = 0;
		for (size_t q = 0; q < sizeof(qnames) / sizeof(qnames[0]); q++)
		for (int pre = PRE_NONE; pre < PRE_COUNT; pre++)
		for (int hq = 0; hq < 2; hq++)
		for (size_t sec = 0; sec < 3; sec++)
		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++)
		for (size_t r = 0; r < sizeof(reserves) / sizeof(reserves[0]); r++)
		for (size_t f = 0; f < 2; f++) {
			case_t c = {
				.qname = qnames[q], .pre = pre, .section = sections[sec],
				.max_size = sizes[z], .reserved = reserves[r],
				.ttl = (uint32_t)(q * 1000003u + 7), .flags = flags[f],
				.hint_qname = hq,
			};
			int u = run_case(policy, &c);
			if (u < 0) {
				continue;
			}
			cases++;
			used += u;
			used_here += u;
		}
		assert_true(used_here > 0); /* Every policy has an image. */
		mxf_policy_free(policy);
	}
	print_message("%zu cases, image used in %zu\n", cases, used);
	assert_true(cases > 5000);
	assert_true(used > cases / 10);
}

/* Where libknot would point the first exchange into the QNAME, or the
 * suffix is not the QNAME, the image is not used. */
static void test_image_declines(void **state)
{
	(void)state;
	set_t set = { set_default, 2 };
	mxf_policy_t *policy = policy_of(&set);
	case_t c = { .qname = "example.com.", .max_size = KNOT_WIRE_MAX_PKTSIZE,
	             .ttl = 300, .hint_qname = true };
	assert_int_equal(run_case(policy, &c), 1);
	c.qname = "example.NET.";
	assert_int_equal(run_case(policy, &c), 0);
	c.qname = "example.com.";
	c.pre = PRE_CNAME;
	assert_int_equal(run_case(policy, &c), 0);
	c.pre = PRE_NONE;
	c.max_size = 60; /* Does not fit: libknot truncates. */
	assert_int_equal(run_case(policy, &c), 0);
	mxf_policy_free(policy);
}

/* A zone's compliant RRset (its own rdata, additional pointer and all) is
 * written from the image exactly as knot_pkt_put() writes it; any other
 * RRset is refused. */
static void test_verbatim(void **state)
{
	(void)state;
	set_t set = { set_default, 2 };
	mxf_policy_t *policy = policy_of(&set);
	case_t c = { .qname = "Example.COM.", .max_size = KNOT_WIRE_MAX_PKTSIZE };
	knot_dname_storage_t owner_a, owner_b;
	knot_pkt_t *a = knot_pkt_new(NULL, c.max_size, NULL);
	knot_pkt_t *b = knot_pkt_new(NULL, c.max_size, NULL);
	uint16_t hint = prepare(a, &c, owner_a);
	(void)prepare(b, &c, owner_b);

	int marker;
	knot_rrset_t zone_rr;
	knot_rrset_init(&zone_rr, owner_a, KNOT_RRTYPE_MX, KNOT_CLASS_IN, 7200);
	assert_int_equal(knot_rdataset_copy(&zone_rr.rrs, &policy->rrs, NULL), KNOT_EOK);
	zone_rr.additional = &marker;
	assert_true(mxf_write_verbatim(a, policy, &zone_rr, hint, KNOT_PF_NULL));
	assert_int_equal(knot_pkt_put(b, hint, &zone_rr, KNOT_PF_NULL), KNOT_EOK);
	assert_same(a, b);
	assert_ptr_equal(a->rr[0].rrs.rdata, zone_rr.rrs.rdata);
	assert_ptr_equal(a->rr[0].additional, &marker);

	/* One record more: not the policy's bytes. */
	knot_rrset_t other;
	knot_rrset_init(&other, owner_a, KNOT_RRTYPE_MX, KNOT_CLASS_IN, 7200);
	assert_int_equal(knot_rdataset_copy(&other.rrs, &policy->rrs, NULL), KNOT_EOK);
	th_add_mx(&other, 5, "mailgate.example.com.", NULL);
	size_t size = a->size;
	assert_false(mxf_write_verbatim(a, policy, &other, hint, KNOT_PF_NULL));
	assert_int_equal(a->size, size);

	knot_rdataset_clear(&zone_rr.rrs, NULL);
	knot_rdataset_clear(&other.rrs, NULL);
	knot_pkt_free(a);
	knot_pkt_free(b);
	mxf_policy_free(policy);
}

/* W3, on the libknot this runs with: a put of an RRset without records
 * reserves an rr entry (the arrays grow by one step when full) and writes
 * nothing. mxf_image_put() relies on it to let libknot grow its arrays. */
static void test_empty_put_grows_arrays(void **state)
{
	(void)state;
	case_t c = { .qname = "example.com.", .max_size = KNOT_WIRE_MAX_PKTSIZE };
	knot_dname_storage_t owner;
	knot_pkt_t *pkt = knot_pkt_new(NULL, c.max_size, NULL);
	uint16_t hint = prepare(pkt, &c, owner);
	knot_rrset_t none;
	knot_rrset_init(&none, owner, KNOT_RRTYPE_MX, KNOT_CLASS_IN, 0);
	for (int round = 0; round < 40; round++) {
		uint16_t count = pkt->rrset_count, allocd = pkt->rrset_allocd;
		size_t size = pkt->size;
		uint16_t an = knot_wire_get_ancount(pkt->wire);
		if (count == allocd) {
			assert_int_equal(knot_pkt_put(pkt, hint, &none, KNOT_PF_NULL), KNOT_EOK);
			assert_true(pkt->rrset_allocd > count);
			assert_int_equal(pkt->rrset_count, count);
			assert_int_equal(pkt->size, size);
			assert_int_equal(knot_wire_get_ancount(pkt->wire), an);
			assert_int_equal(pkt->sections[KNOT_ANSWER].count, count);
		}
		/* Fill one entry (a record, so the count moves on). */
		knot_rrset_t a;
		knot_rrset_init(&a, owner, KNOT_RRTYPE_A, KNOT_CLASS_IN, 300);
		th_add_addr(&a, "192.0.2.1", NULL);
		assert_int_equal(knot_pkt_put(pkt, hint, &a, KNOT_PF_NULL), KNOT_EOK);
		knot_rdataset_clear(&a.rrs, NULL);
	}
	knot_pkt_free(pkt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_equals_libknot),
		cmocka_unit_test(test_image_declines),
		cmocka_unit_test(test_verbatim),
		cmocka_unit_test(test_empty_put_grows_arrays),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
