/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/* Policy: exchange parsing, list checks, policy building and sharing. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/policy.h"
#include "engine/rewrite.h"
#include "pkt_helpers.h"

/* Parses \a text, expects success with \a pref and \a name (wire, exact bytes). */
static void expect_ok(const char *text, uint16_t pref, const char *name)
{
	uint16_t out_pref = 0xBEEF;
	knot_dname_storage_t out;
	knot_dname_storage_t want;

	memset(out, 0xAA, sizeof(out));
	const char *err = mxf_exchange_parse(text, &out_pref, out);
	if (err != NULL) {
		print_error("'%s' refused: %s\n", text, err);
	}
	assert_null(err);
	assert_int_equal(out_pref, pref);
	th_dname(want, name);
	assert_int_equal(knot_dname_size(out), knot_dname_size(want));
	assert_memory_equal(out, want, knot_dname_size(want));
}

static void expect_bad(const char *text)
{
	uint16_t pref = 0;
	knot_dname_storage_t name;
	const char *err = mxf_exchange_parse(text, &pref, name);
	if (err == NULL) {
		print_error("'%s' accepted\n", text);
	}
	assert_non_null(err);
	assert_true(strlen(err) > 0);
}

/* Whether (pref, name) is one of the policy's exchanges, as the engine
 * classifies an MX record with that rdata. */
static bool policy_has(const mxf_policy_t *p, uint16_t pref, const knot_dname_t *name)
{
	uint8_t buf[knot_rdata_size(2 + KNOT_DNAME_MAXLEN)];
	knot_rdata_t *rd = (knot_rdata_t *)buf;
	uint8_t data[2 + KNOT_DNAME_MAXLEN];
	knot_wire_write_u16(data, pref);
	size_t size = knot_dname_size(name);
	memcpy(data + 2, name, size);
	knot_rdata_init(rd, (uint16_t)(2 + size), data);
	return !mxf_rdata_is_legacy(p, rd);
}

static void test_parse_valid(void **state)
{
	(void)state;
	expect_ok("10 france.security-mail.net.", 10, "france.security-mail.net.");
	/* A missing final dot means the same absolute name. */
	expect_ok("10 france.security-mail.net", 10, "france.security-mail.net.");
	/* Lower-cased. */
	expect_ok("20 EUROPE.Security-Mail.NET.", 20, "europe.security-mail.net.");
	/* Whitespace: trimmed around, any run of spaces/tabs between. */
	expect_ok("  10 a.example.  ", 10, "a.example.");
	expect_ok("10    a.example.", 10, "a.example.");
	expect_ok("10\ta.example.", 10, "a.example.");
	expect_ok("\t10 \t a.example.\t", 10, "a.example.");
	/* Bounds. */
	expect_ok("0 a.example.", 0, "a.example.");
	expect_ok("65535 a.example.", 65535, "a.example.");
	/* Longest label and name. */
	char text[600];
	char label63[64];
	memset(label63, 'a', 63);
	label63[63] = '\0';
	snprintf(text, sizeof(text), "1 %s.example.", label63);
	expect_ok(text, 1, text + 2);
	/* 4 x 63-byte labels + root = 4 * 64 + 1 = 257 > 255; 3 x 63 + 61 fits. */
	char name255[300];
	char label61[62];
	memset(label61, 'b', 61);
	label61[61] = '\0';
	snprintf(name255, sizeof(name255), "%s.%s.%s.%s.", label63, label63,
	         label63, label61);
	knot_dname_storage_t tmp;
	assert_int_equal(knot_dname_size(th_dname(tmp, name255)), 255);
	snprintf(text, sizeof(text), "7 %s", name255);
	expect_ok(text, 7, name255);
}

static void test_parse_invalid(void **state)
{
	(void)state;
	expect_bad("");
	expect_bad("   ");
	expect_bad("10");
	expect_bad("10 ");
	expect_bad("france.security-mail.net.");
	expect_bad("x france.security-mail.net.");
	expect_bad("1O france.security-mail.net.");
	expect_bad("10x france.security-mail.net.");
	expect_bad("-1 france.security-mail.net.");
	expect_bad("+10 france.security-mail.net.");
	expect_bad("65536 france.security-mail.net.");
	expect_bad("99999999999999999999 france.security-mail.net.");
	expect_bad("0x10 france.security-mail.net.");
	/* Null exchange. */
	expect_bad("0 .");
	expect_bad("10 .");
	/* Malformed names. */
	expect_bad("10 a..b.");
	expect_bad("10 .a.b.");
	expect_bad("10 a.b..");
	char text[700];
	char label64[65];
	memset(label64, 'a', 64);
	label64[64] = '\0';
	snprintf(text, sizeof(text), "10 %s.example.", label64);
	expect_bad(text);
	/* 4 x 63-byte labels: 257 bytes in wire form. */
	char label63[64];
	memset(label63, 'a', 63);
	label63[63] = '\0';
	snprintf(text, sizeof(text), "10 %s.%s.%s.%s.", label63, label63, label63,
	         label63);
	expect_bad(text);
	/* Trailing garbage. */
	expect_bad("10 a.example. x");
	expect_bad("10 a.example. 20 b.example.");
	expect_bad("10 20 a.example.");
}

static void test_list_check(void **state)
{
	(void)state;
	const char *bad = NULL;

	/* Zero values: the defaults are used, nothing to refuse. */
	assert_null(mxf_exchange_list_check(NULL, 0, &bad));

	const char *ok[] = { "10 france.security-mail.net.", "20 europe.security-mail.net." };
	assert_null(mxf_exchange_list_check(ok, 2, &bad));

	/* Same exchange at two preferences is two distinct records. */
	const char *two_prefs[] = { "10 a.example.", "20 a.example." };
	assert_null(mxf_exchange_list_check(two_prefs, 2, &bad));

	/* Duplicates: case-insensitive, with or without the final dot. */
	const char *dup_case[] = { "10 a.example.", "20 b.example.", "10 A.EXAMPLE." };
	bad = NULL;
	assert_non_null(mxf_exchange_list_check(dup_case, 3, &bad));
	assert_ptr_equal(bad, dup_case[2]);

	const char *dup_dot[] = { "10 a.example", "10 a.example." };
	bad = NULL;
	assert_non_null(mxf_exchange_list_check(dup_dot, 2, &bad));
	assert_ptr_equal(bad, dup_dot[1]);

	const char *dup_space[] = { "10 a.example.", "  10\ta.example " };
	bad = NULL;
	assert_non_null(mxf_exchange_list_check(dup_space, 2, &bad));
	assert_ptr_equal(bad, dup_space[1]);

	/* A syntax error names the bad value. */
	const char *syntax[] = { "10 a.example.", "x b.example.", "30 c.example." };
	bad = NULL;
	assert_non_null(mxf_exchange_list_check(syntax, 3, &bad));
	assert_ptr_equal(bad, syntax[1]);

	const char *null_mx[] = { "0 ." };
	bad = NULL;
	assert_non_null(mxf_exchange_list_check(null_mx, 1, &bad));
	assert_ptr_equal(bad, null_mx[0]);

	/* Count limit. */
	char buf[MXF_MAX_EXCHANGES + 1][64];
	const char *many[MXF_MAX_EXCHANGES + 1];
	for (int i = 0; i <= MXF_MAX_EXCHANGES; i++) {
		snprintf(buf[i], sizeof(buf[i]), "%d mx%d.example.", i, i);
		many[i] = buf[i];
	}
	assert_null(mxf_exchange_list_check(many, MXF_MAX_EXCHANGES, &bad));
	assert_non_null(mxf_exchange_list_check(many, MXF_MAX_EXCHANGES + 1, &bad));
}

static void test_conf_default(void **state)
{
	(void)state;
	mxf_conf_t conf;
	memset(&conf, 0xFF, sizeof(conf));
	mxf_conf_default(&conf);
	/* No exchanges, or exactly the default ones. */
	if (conf.exchange_count != 0) {
		assert_int_equal(conf.exchange_count, mxf_default_exchange_count);
		for (size_t i = 0; i < conf.exchange_count; i++) {
			assert_string_equal(conf.exchange[i], mxf_default_exchanges[i]);
		}
	}
	assert_int_equal(conf.mode, MXF_MODE_ENFORCE);
	assert_int_equal(conf.scope, MXF_SCOPE_ZONE);
	assert_true(conf.synthesize);
	assert_int_equal(conf.null_mx, MXF_NULLMX_KEEP);
	assert_false(conf.ttl_set);
	assert_int_equal(conf.log_interval, 60);
	assert_int_equal(conf.transfer, MXF_XFR_LOG);

	assert_int_equal(mxf_default_exchange_count, 2);
	uint16_t pref;
	knot_dname_storage_t name;
	assert_null(mxf_exchange_parse(mxf_default_exchanges[0], &pref, name));
	assert_null(mxf_exchange_parse(mxf_default_exchanges[1], &pref, name));
}

static void assert_has_ex(const mxf_policy_t *p, uint16_t pref, const char *name)
{
	knot_dname_storage_t buf;
	th_dname(buf, name);
	for (int i = 0; i < p->count; i++) {
		if (p->ex[i].pref == pref && knot_dname_is_equal(p->ex[i].name, buf)) {
			return;
		}
	}
	print_error("exchange %u %s not in policy\n", pref, name);
	fail();
}

static void test_policy_defaults(void **state)
{
	(void)state;
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	const char *err = NULL;
	mxf_policy_t *p = mxf_policy_new(&conf, &err);
	assert_non_null(p);

	assert_int_equal(p->count, 2);
	assert_int_equal(p->min_pref, 10);
	assert_int_equal(p->rrs.count, 2);
	assert_int_equal(p->mode, MXF_MODE_ENFORCE);
	assert_int_equal(p->scope, MXF_SCOPE_ZONE);
	assert_true(p->synthesize);
	assert_int_equal(p->null_mx, MXF_NULLMX_KEEP);
	assert_false(p->ttl_set);
	assert_int_equal(p->log_interval, 60);
	assert_int_equal(p->transfer, MXF_XFR_LOG);
	assert_has_ex(p, 10, "france.security-mail.net.");
	assert_has_ex(p, 20, "europe.security-mail.net.");

	/* ex[] follows the rdataset order, names point into the rdata. */
	for (int i = 0; i < p->count; i++) {
		const knot_rdata_t *rd = knot_rdataset_at(&p->rrs, i);
		assert_int_equal(knot_wire_read_u16(rd->data), p->ex[i].pref);
		assert_ptr_equal(p->ex[i].name, rd->data + 2);
	}

	knot_dname_storage_t n;
	assert_true(policy_has(p, 10, th_dname(n, "france.security-mail.net.")));
	assert_true(policy_has(p, 20, th_dname(n, "europe.security-mail.net.")));
	assert_true(policy_has(p, 10, th_dname(n, "FRANCE.Security-Mail.net.")));
	assert_false(policy_has(p, 20, th_dname(n, "france.security-mail.net.")));
	assert_false(policy_has(p, 10, th_dname(n, "mailgate.example.com.")));

	mxf_policy_free(p);
}

static void test_policy_custom(void **state)
{
	(void)state;
	const char *ex[] = { "30 B.example", "  5 a.example.", "12 c.example." };
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	conf.exchange = ex;
	conf.exchange_count = 3;
	conf.mode = MXF_MODE_AUDIT;
	conf.scope = MXF_SCOPE_APEX;
	conf.synthesize = false;
	conf.null_mx = MXF_NULLMX_REPLACE;
	conf.ttl_set = true;
	conf.ttl = 1234;
	conf.log_interval = 0;
	conf.transfer = MXF_XFR_REFUSE;

	const char *err = NULL;
	mxf_policy_t *p = mxf_policy_new(&conf, &err);
	assert_non_null(p);
	assert_int_equal(p->count, 3);
	assert_int_equal(p->min_pref, 5);
	assert_int_equal(p->mode, MXF_MODE_AUDIT);
	assert_int_equal(p->scope, MXF_SCOPE_APEX);
	assert_false(p->synthesize);
	assert_int_equal(p->null_mx, MXF_NULLMX_REPLACE);
	assert_true(p->ttl_set);
	assert_int_equal(p->ttl, 1234);
	assert_int_equal(p->log_interval, 0);
	assert_int_equal(p->transfer, MXF_XFR_REFUSE);
	assert_has_ex(p, 30, "b.example.");
	assert_has_ex(p, 5, "a.example.");
	assert_has_ex(p, 12, "c.example.");
	mxf_policy_free(p);

	/* Invalid configurations build nothing. */
	const char *dup[] = { "10 a.example.", "10 A.example" };
	conf.exchange = dup;
	conf.exchange_count = 2;
	err = NULL;
	assert_null(mxf_policy_new(&conf, &err));
	assert_non_null(err);

	const char *nullmx[] = { "0 ." };
	conf.exchange = nullmx;
	conf.exchange_count = 1;
	err = NULL;
	assert_null(mxf_policy_new(&conf, &err));
	assert_non_null(err);
}

static void test_policy_registry(void **state)
{
	(void)state;

	/* Two configurations equal item by item, in different memory. */
	char a1[] = "10 france.security-mail.net.";
	char a2[] = "20 europe.security-mail.net.";
	char b1[] = "10 france.security-mail.net.";
	char b2[] = "20 europe.security-mail.net.";
	const char *ex_a[] = { a1, a2 };
	const char *ex_b[] = { b1, b2 };

	mxf_conf_t ca, cb, cc;
	mxf_conf_default(&ca);
	ca.exchange = ex_a;
	ca.exchange_count = 2;
	mxf_conf_default(&cb);
	cb.exchange = ex_b;
	cb.exchange_count = 2;
	mxf_conf_default(&cc);
	cc.exchange = ex_b;
	cc.exchange_count = 2;
	cc.mode = MXF_MODE_AUDIT;

	const char *err = NULL;
	const mxf_policy_t *pa = mxf_policy_acquire(&ca, &err);
	assert_non_null(pa);
	assert_int_equal(mxf_policy_refs(pa), 1);
	const mxf_policy_t *pb = mxf_policy_acquire(&cb, &err);
	assert_ptr_equal(pa, pb);
	assert_int_equal(mxf_policy_refs(pa), 2);

	const mxf_policy_t *pc = mxf_policy_acquire(&cc, &err);
	assert_non_null(pc);
	assert_ptr_not_equal(pc, pa);
	assert_int_equal(pc->mode, MXF_MODE_AUDIT);
	assert_int_equal(mxf_policy_refs(pc), 1);

	/* Invalid configurations are not registered. */
	const char *bad[] = { "x a.example." };
	mxf_conf_t cbad;
	mxf_conf_default(&cbad);
	cbad.exchange = bad;
	cbad.exchange_count = 1;
	err = NULL;
	assert_null(mxf_policy_acquire(&cbad, &err));
	assert_non_null(err);
	assert_int_equal(mxf_policy_refs(pa), 2);
	assert_int_equal(mxf_policy_refs(pc), 1);

	mxf_policy_release(pa);
	assert_int_equal(mxf_policy_refs(pa), 1);
	mxf_policy_release(pc);
	assert_int_equal(mxf_policy_refs(pc), 0); /* Gone from the registry. */
	/* Still usable by the remaining holder. */
	assert_int_equal(pb->count, 2);
	mxf_policy_release(pb);
	assert_int_equal(mxf_policy_refs(pb), 0);

	/* A released configuration is built afresh. */
	const mxf_policy_t *pd = mxf_policy_acquire(&ca, &err);
	assert_non_null(pd);
	assert_int_equal(mxf_policy_refs(pd), 1);
	mxf_policy_release(pd);
	assert_int_equal(mxf_policy_refs(pd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_list_check),
		cmocka_unit_test(test_conf_default),
		cmocka_unit_test(test_policy_defaults),
		cmocka_unit_test(test_policy_custom),
		cmocka_unit_test(test_policy_registry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
