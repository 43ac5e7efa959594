/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/* Classification of MX rdatasets and risk of legacy records. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/policy.h"
#include "engine/rewrite.h"
#include "pkt_helpers.h"

typedef struct {
	mxf_policy_t *policy;
	knot_mm_t mm;
} fixture_t;

static int setup(void **state)
{
	fixture_t *f = test_calloc(1, sizeof(*f));
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	const char *err = NULL;
	f->policy = mxf_policy_new(&conf, &err);
	if (f->policy == NULL) {
		test_free(f);
		return -1;
	}
	th_mm_init(&f->mm);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	mxf_policy_free(f->policy);
	test_free(f);
	return 0;
}

/* Builds an MX rdataset from "PREF NAME" strings (cmocka memory). */
static void build(knot_rdataset_t *rrs, knot_mm_t *mm, size_t n, const char *const *items)
{
	knot_rdataset_init(rrs);
	for (size_t i = 0; i < n; i++) {
		unsigned pref;
		char name[300];
		assert_int_equal(sscanf(items[i], "%u %299s", &pref, name), 2);

		uint8_t buf[knot_rdata_size(2 + KNOT_DNAME_MAXLEN)];
		uint8_t data[2 + KNOT_DNAME_MAXLEN];
		knot_wire_write_u16(data, pref);
		knot_dname_t *dn = knot_dname_from_str(data + 2, name, KNOT_DNAME_MAXLEN);
		assert_non_null(dn);
		knot_rdata_t *rd = (knot_rdata_t *)buf;
		knot_rdata_init(rd, 2 + knot_dname_size(dn), data);
		assert_int_equal(knot_rdataset_add(rrs, rd, mm), KNOT_EOK);
	}
	assert_int_equal(rrs->count, n);
}

#define classify(f, ...) ({ \
	knot_rdataset_t _rrs; \
	build(&_rrs, &(f)->mm, TH_NSTRS(__VA_ARGS__), TH_STRS(__VA_ARGS__)); \
	mxf_verdict_t _v = mxf_classify((f)->policy, &_rrs); \
	knot_rdataset_clear(&_rrs, &(f)->mm); \
	_v; \
})

static void test_compliant(void **state)
{
	fixture_t *f = *state;

	assert_int_equal(classify(f, "10 france.security-mail.net.",
	                             "20 europe.security-mail.net."), MXF_SET_COMPLIANT);
	/* Order and case do not matter. */
	assert_int_equal(classify(f, "20 europe.security-mail.net.",
	                             "10 france.security-mail.net."), MXF_SET_COMPLIANT);
	assert_int_equal(classify(f, "20 EUROPE.Security-Mail.NET.",
	                             "10 France.SECURITY-mail.net."), MXF_SET_COMPLIANT);
	/* The policy's own rdataset. */
	assert_int_equal(mxf_classify(f->policy, &f->policy->rrs), MXF_SET_COMPLIANT);
}

static void test_legacy(void **state)
{
	fixture_t *f = *state;

	/* Subsets. */
	assert_int_equal(classify(f, "10 france.security-mail.net."), MXF_SET_LEGACY);
	assert_int_equal(classify(f, "20 europe.security-mail.net."), MXF_SET_LEGACY);
	/* Supersets. */
	assert_int_equal(classify(f, "10 france.security-mail.net.",
	                             "20 europe.security-mail.net.",
	                             "5 mailgate.your-domain.com."), MXF_SET_LEGACY);
	assert_int_equal(classify(f, "10 france.security-mail.net.",
	                             "20 europe.security-mail.net.",
	                             "40 smtp.isp.net."), MXF_SET_LEGACY);
	/* Right names, wrong preferences. */
	assert_int_equal(classify(f, "20 france.security-mail.net.",
	                             "10 europe.security-mail.net."), MXF_SET_LEGACY);
	assert_int_equal(classify(f, "10 france.security-mail.net.",
	                             "30 europe.security-mail.net."), MXF_SET_LEGACY);
	/* Same count, one name differs. */
	assert_int_equal(classify(f, "10 france.security-mail.net.",
	                             "20 europe.security-mail.com."), MXF_SET_LEGACY);
	/* Entirely different. */
	assert_int_equal(classify(f, "5 mailgate.your-domain.com.",
	                             "40 smtp.isp.net."), MXF_SET_LEGACY);
}

static void test_nullmx(void **state)
{
	fixture_t *f = *state;

	assert_int_equal(classify(f, "0 ."), MXF_SET_NULLMX);
	assert_int_equal(classify(f, "0 .", "10 france.security-mail.net.",
	                             "20 europe.security-mail.net."), MXF_SET_LEGACY);
	assert_int_equal(classify(f, "0 .", "5 mailgate.your-domain.com."), MXF_SET_LEGACY);
	/* Not RFC 7505: a non-zero preference to the root. */
	assert_int_equal(classify(f, "10 ."), MXF_SET_LEGACY);
}

static void test_rdata_is_legacy(void **state)
{
	fixture_t *f = *state;
	uint8_t buf[knot_rdata_size(2 + KNOT_DNAME_MAXLEN)];
	knot_rdata_t *rd = (knot_rdata_t *)buf;
	uint8_t data[2 + KNOT_DNAME_MAXLEN];

	knot_wire_write_u16(data, 10);
	knot_dname_t *dn = knot_dname_from_str(data + 2, "FRANCE.security-mail.net.",
	                                       KNOT_DNAME_MAXLEN);
	knot_rdata_init(rd, 2 + knot_dname_size(dn), data);
	assert_false(mxf_rdata_is_legacy(f->policy, rd));

	knot_wire_write_u16(data, 11);
	knot_rdata_init(rd, 2 + knot_dname_size(dn), data);
	assert_true(mxf_rdata_is_legacy(f->policy, rd));

	knot_wire_write_u16(data, 5);
	dn = knot_dname_from_str(data + 2, "mailgate.your-domain.com.", KNOT_DNAME_MAXLEN);
	knot_rdata_init(rd, 2 + knot_dname_size(dn), data);
	assert_true(mxf_rdata_is_legacy(f->policy, rd));

	/* Malformed: too short, or a name running past the rdata. */
	knot_rdata_init(rd, 1, data);
	assert_true(mxf_rdata_is_legacy(f->policy, rd));
	knot_wire_write_u16(data, 10);
	dn = knot_dname_from_str(data + 2, "france.security-mail.net.", KNOT_DNAME_MAXLEN);
	knot_rdata_init(rd, 2 + knot_dname_size(dn) - 3, data);
	assert_true(mxf_rdata_is_legacy(f->policy, rd));
	knot_rdata_init(rd, 2, data);
	assert_true(mxf_rdata_is_legacy(f->policy, rd));
}

static void test_malformed_set(void **state)
{
	fixture_t *f = *state;

	/* The filtering set plus a truncated record is not compliant. */
	knot_rdataset_t rrs;
	build(&rrs, &f->mm, 2, TH_STRS("10 france.security-mail.net.",
	                               "20 europe.security-mail.net."));
	uint8_t buf[knot_rdata_size(2)];
	knot_rdata_t *rd = (knot_rdata_t *)buf;
	uint8_t data[2] = { 0, 1 };
	knot_rdata_init(rd, 2, data);
	assert_int_equal(knot_rdataset_add(&rrs, rd, &f->mm), KNOT_EOK);
	assert_int_equal(mxf_classify(f->policy, &rrs), MXF_SET_LEGACY);
	knot_rdataset_clear(&rrs, &f->mm);
}

static void test_risk(void **state)
{
	fixture_t *f = *state;

	assert_int_equal(mxf_risk(f->policy, 0), MXF_RISK_BYPASS);
	assert_int_equal(mxf_risk(f->policy, 5), MXF_RISK_BYPASS);
	assert_int_equal(mxf_risk(f->policy, 10), MXF_RISK_BYPASS);
	assert_int_equal(mxf_risk(f->policy, 11), MXF_RISK_FALLBACK);
	assert_int_equal(mxf_risk(f->policy, 20), MXF_RISK_FALLBACK);
	assert_int_equal(mxf_risk(f->policy, 40), MXF_RISK_FALLBACK);
	assert_int_equal(mxf_risk(f->policy, 65535), MXF_RISK_FALLBACK);

	/* The threshold is the lowest filtering preference, not the first. */
	const char *ex[] = { "50 b.example.", "30 a.example." };
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	conf.exchange = ex;
	conf.exchange_count = 2;
	const char *err = NULL;
	mxf_policy_t *p = mxf_policy_new(&conf, &err);
	assert_non_null(p);
	assert_int_equal(p->min_pref, 30);
	assert_int_equal(mxf_risk(p, 30), MXF_RISK_BYPASS);
	assert_int_equal(mxf_risk(p, 40), MXF_RISK_FALLBACK);
	mxf_policy_free(p);
}

static void test_custom_policy(void **state)
{
	(void)state;
	/* A one-exchange policy: its lone record is compliant, more is not. */
	const char *ex[] = { "10 relay.example.net" };
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	conf.exchange = ex;
	conf.exchange_count = 1;
	const char *err = NULL;
	fixture_t f = { .policy = mxf_policy_new(&conf, &err) };
	assert_non_null(f.policy);
	th_mm_init(&f.mm);

	assert_int_equal(classify(&f, "10 Relay.Example.Net."), MXF_SET_COMPLIANT);
	assert_int_equal(classify(&f, "10 relay.example.net.",
	                              "20 relay.example.net."), MXF_SET_LEGACY);
	assert_int_equal(classify(&f, "10 france.security-mail.net.",
	                              "20 europe.security-mail.net."), MXF_SET_LEGACY);
	mxf_policy_free(f.policy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_compliant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nullmx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rdata_is_legacy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_risk, setup, teardown),
		cmocka_unit_test(test_custom_policy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
