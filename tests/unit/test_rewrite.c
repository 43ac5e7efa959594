/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Response rewriting: packets built with libknot as knotd builds them, run
 * through mxf_process(), then serialized, parsed back and compared record
 * by record. Packet memory goes through cmocka, so whatever the engine
 * allocates from (or drops out of) a packet must be freed with it.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/policy.h"
#include "engine/rewrite.h"
#include "pkt_helpers.h"

#define ZONE	"example.com."

/* The default filtering set, as parsed back from the wire. */
#define SET(owner, ttl) \
	owner " " #ttl " MX 10 france.security-mail.net.", \
	owner " " #ttl " MX 20 europe.security-mail.net."

/*** Policies. ***/

typedef struct {
	mxf_mode_t mode;
	mxf_scope_t scope;
	mxf_nullmx_t null_mx;
	bool ttl_set;
	uint32_t ttl;
	const char *const *exchange;
	size_t exchange_count;
} pol_opts_t;

static mxf_policy_t *make_policy(const pol_opts_t *o)
{
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	if (o != NULL) {
		conf.mode = o->mode;
		conf.scope = o->scope;
		conf.null_mx = o->null_mx;
		conf.ttl_set = o->ttl_set;
		conf.ttl = o->ttl;
		conf.exchange = o->exchange;
		conf.exchange_count = o->exchange_count;
	}
	const char *err = NULL;
	mxf_policy_t *p = mxf_policy_new(&conf, &err);
	if (p == NULL) {
		print_error("policy: %s\n", err ? err : "?");
	}
	assert_non_null(p);
	return p;
}

/*** Callback log. ***/

#define LOG_MAX 256

typedef struct {
	char owner[KNOT_DNAME_TXT_MAXLEN + 1];
	char exchange[KNOT_DNAME_TXT_MAXLEN + 1];
	uint16_t pref;
	mxf_risk_t risk;
	mxf_action_t action;
} logrec_t;

typedef struct {
	logrec_t rec[LOG_MAX];
	size_t n;
} cblog_t;

static void on_legacy(const mxf_legacy_t *rec, void *data)
{
	cblog_t *log = data;
	assert_true(log->n < LOG_MAX);
	logrec_t *r = &log->rec[log->n++];
	th_dname_str(rec->owner, r->owner, sizeof(r->owner));
	th_dname_str(rec->exchange, r->exchange, sizeof(r->exchange));
	r->pref = rec->pref;
	r->risk = rec->risk;
	r->action = rec->action;
}

/* Asserts the log holds one record (owner, pref, exchange, risk, action). */
static void expect_log(const cblog_t *log, const char *owner, uint16_t pref,
                       const char *exchange, mxf_risk_t risk, mxf_action_t action)
{
	int found = 0;
	for (size_t i = 0; i < log->n; i++) {
		const logrec_t *r = &log->rec[i];
		if (r->pref == pref && strcmp(r->exchange, exchange) == 0 &&
		    strcmp(r->owner, owner) == 0) {
			assert_int_equal(r->risk, risk);
			assert_int_equal(r->action, action);
			found++;
		}
	}
	if (found != 1) {
		print_error("log: %d records of %s %u %s\n", found, owner, pref, exchange);
		for (size_t i = 0; i < log->n; i++) {
			print_error("  got %s %u %s\n", log->rec[i].owner,
			            log->rec[i].pref, log->rec[i].exchange);
		}
	}
	assert_int_equal(found, 1);
}

/*** Running the engine. ***/

typedef struct {
	mxf_result_t res;
	cblog_t log;
	mxf_ctx_t ctx;
	knot_dname_storage_t zone;
} run_t;

static void ctx_init(run_t *r, const mxf_policy_t *policy, const char *zone)
{
	memset(r, 0, sizeof(*r));
	th_dname(r->zone, zone);
	r->ctx.policy = policy;
	r->ctx.zone = r->zone;
	r->ctx.on_legacy = on_legacy;
	r->ctx.cb_data = &r->log;
}

static int process(run_t *r, th_scn_t *s)
{
	memset(&r->res, 0xEE, sizeof(r->res));
	return mxf_process(s->resp, &r->ctx, &r->res);
}

/* What mxf_process() counts (the glue's counters); what it removed is
 * checked on the packet. */
static void expect_res(const mxf_result_t *res, uint16_t enforced, uint16_t compliant,
                       uint16_t bypass, uint16_t fallback, uint16_t served)
{
	assert_int_equal(res->enforced, enforced);
	assert_int_equal(res->compliant, compliant);
	assert_int_equal(res->blocked[MXF_RISK_BYPASS], bypass);
	assert_int_equal(res->blocked[MXF_RISK_FALLBACK], fallback);
	assert_int_equal(res->served, served);
}

/* Answer record \a i and the question are spelled as the query's QNAME. */
static void expect_qname_spelling(th_scn_t *s, uint16_t i)
{
	uint8_t raw[KNOT_DNAME_MAXLEN];
	const knot_dname_t *spelling = knot_pkt_wire_qname(s->query);
	size_t len = th_wire_name(s->parsed->wire, s->parsed->size,
	                          KNOT_WIRE_HEADER_SIZE, raw);
	th_assert_spelling(raw, len, spelling);
	len = th_owner_raw(s->parsed, KNOT_ANSWER, i, raw);
	th_assert_spelling(raw, len, spelling);
}

static void expect_header(const th_scn_t *s, bool tc)
{
	const uint8_t *w = s->resp->wire;
	assert_int_equal(knot_wire_get_id(w), 0x1234);
	assert_true(knot_wire_get_qr(w));
	assert_true(knot_wire_get_aa(w));
	assert_int_equal(knot_wire_get_rcode(w), KNOT_RCODE_NOERROR);
	assert_int_equal(knot_wire_get_qdcount(w), 1);
	assert_int_equal(knot_wire_get_tc(w) != 0, tc);
}

/* Legacy MX sets used below. */
static const uint16_t legacy_prefs[] = { 5, 40 };
static const char *const legacy_names[] = { "mailgate.example.com.", "smtp.isp.net." };

/*** Tests. ***/

/* Apex, full packet: answer, authority, additional with glue and OPT. */
static void test_apex_full(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *mx = th_mx(&s, ZONE, 300, 2, legacy_prefs, legacy_names);
	knot_rrset_t *ns = th_rrset(&s, ZONE, KNOT_RRTYPE_NS, 3600);
	th_add_name(ns, "ns1.example.com.", &s.mm);
	knot_rrset_t *a_gate = th_rrset(&s, "mailgate.example.com.", KNOT_RRTYPE_A, 3600);
	th_add_addr(a_gate, "192.0.2.25", &s.mm);
	knot_rrset_t *aaaa_gate = th_rrset(&s, "mailgate.example.com.", KNOT_RRTYPE_AAAA, 3600);
	th_add_addr(aaaa_gate, "2001:db8::25", &s.mm);
	knot_rrset_t *a_ns = th_rrset(&s, "ns1.example.com.", KNOT_RRTYPE_A, 3600);
	th_add_addr(a_ns, "192.0.2.53", &s.mm);

	th_put(&s, KNOT_COMPR_HINT_QNAME, mx, 0);
	th_begin(&s, KNOT_AUTHORITY);
	th_put(&s, KNOT_COMPR_HINT_NONE, ns, 0);
	th_begin(&s, KNOT_ADDITIONAL);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_gate, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, aaaa_gate, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_ns, 0);
	th_put_opt(&s);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_assert_sane(&s);
	expect_header(&s, false);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	th_expect(s.parsed, KNOT_AUTHORITY, "example.com. 3600 NS ns1.example.com.");
	th_expect(s.parsed, KNOT_ADDITIONAL, "ns1.example.com. 3600 A 192.0.2.53", "OPT 1232");
	assert_non_null(s.parsed->opt_rr);
	assert_int_equal(knot_wire_get_ancount(s.resp->wire), 2);
	assert_int_equal(knot_wire_get_nscount(s.resp->wire), 1);
	assert_int_equal(knot_wire_get_arcount(s.resp->wire), 2);
	assert_int_equal(s.resp->sections[KNOT_ANSWER].count, 1);
	assert_int_equal(s.resp->sections[KNOT_AUTHORITY].count, 1);
	assert_int_equal(s.resp->sections[KNOT_ADDITIONAL].count, 2);
	assert_true(mxf_is_own_set(pol, knot_pkt_rr(&s.resp->sections[KNOT_ANSWER], 0)));
	assert_int_equal(s.resp->opt_rr->type, KNOT_RRTYPE_OPT);
	expect_qname_spelling(&s, 0);
	expect_qname_spelling(&s, 1);

	assert_int_equal(r.log.n, 2);
	expect_log(&r.log, "example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);
	expect_log(&r.log, "example.com.", 40, "smtp.isp.net.",
	           MXF_RISK_FALLBACK, MXF_ACTION_BLOCKED);

	/* Running again changes nothing. */
	th_snap_t snap;
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	assert_int_equal(r.res.enforced, 0);
	assert_int_equal(r.res.blocked[0] + r.res.blocked[1], 0);
	assert_int_equal(r.log.n, 0);
	th_snap_same(&snap, s.resp);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* At the ANSWER stage, with OPT space reserved; the server then finishes. */
static void test_answer_stage(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, 512);
	assert_int_equal(knot_edns_init(&s.opt, 1232, 0, 0, &s.mm), KNOT_EOK);
	s.has_opt = true;
	uint16_t opt_size = knot_edns_wire_size(&s.opt);
	assert_int_equal(knot_pkt_reserve(s.resp, opt_size), KNOT_EOK);

	knot_rrset_t *mx = th_mx(&s, ZONE, 300, 2, legacy_prefs, legacy_names);
	th_put(&s, KNOT_COMPR_HINT_QNAME, mx, 0);

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	assert_int_equal(s.resp->reserved, opt_size);
	assert_int_equal(s.resp->current, KNOT_ANSWER);

	/* knotd goes on: authority, additional, OPT in the reserved space. */
	knot_rrset_t *ns = th_rrset(&s, ZONE, KNOT_RRTYPE_NS, 3600);
	th_add_name(ns, "ns1.example.com.", &s.mm);
	knot_rrset_t *a_ns = th_rrset(&s, "ns1.example.com.", KNOT_RRTYPE_A, 3600);
	th_add_addr(a_ns, "192.0.2.53", &s.mm);
	th_begin(&s, KNOT_AUTHORITY);
	th_put(&s, KNOT_COMPR_HINT_NONE, ns, 0);
	th_begin(&s, KNOT_ADDITIONAL);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_ns, 0);
	assert_int_equal(knot_pkt_reclaim(s.resp, opt_size), KNOT_EOK);
	th_put(&s, KNOT_COMPR_HINT_NONE, &s.opt, 0);

	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	th_expect(s.parsed, KNOT_AUTHORITY, "example.com. 3600 NS ns1.example.com.");
	th_expect(s.parsed, KNOT_ADDITIONAL, "ns1.example.com. 3600 A 192.0.2.53", "OPT 1232");
	expect_qname_spelling(&s, 0);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

static void test_subdomain(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "sub.example.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 50 };
	const char *const names[] = { "old.example.net." };
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, "sub.example.com.", 600, 1, prefs, names), 0);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 0, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("sub.example.com.", 600));
	expect_qname_spelling(&s, 0);
	assert_int_equal(r.log.n, 1);
	expect_log(&r.log, "sub.example.com.", 50, "old.example.net.",
	           MXF_RISK_FALLBACK, MXF_ACTION_BLOCKED);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* Wildcard answer as a private copy (KNOT_PF_FREE), QNAME in 0x20 case. */
static void test_wildcard_copy(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "FoO.eXaMpLe.CoM.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *wild = th_mx(&s, "*.example.com.", 300, 2, legacy_prefs, legacy_names);
	/* knotd copies the lower-case QNAME as owner. */
	th_put_copy(&s, KNOT_COMPR_HINT_NONE, wild, "foo.example.com.");

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("foo.example.com.", 300));
	expect_qname_spelling(&s, 0);
	expect_qname_spelling(&s, 1);
	assert_int_equal(r.log.n, 2);
	expect_log(&r.log, "foo.example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);
	expect_log(&r.log, "foo.example.com.", 40, "smtp.isp.net.",
	           MXF_RISK_FALLBACK, MXF_ACTION_BLOCKED);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	/* The dropped copy must be freed exactly once: cmocka checks. */
	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* Wildcard as knotd writes a first answer: "*" owner, QNAME hint. */
static void test_wildcard_hint(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "BaR.Example.COM.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *wild = th_mx(&s, "*.example.com.", 300, 2, legacy_prefs, legacy_names);
	th_put(&s, KNOT_COMPR_HINT_QNAME, wild, 0);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	th_assert_sane(&s);
	/* Never "*.example.com." on the wire. */
	th_expect(s.parsed, KNOT_ANSWER, SET("bar.example.com.", 300));
	expect_qname_spelling(&s, 0);
	expect_qname_spelling(&s, 1);
	/* Reported under the wildcard, never the queried name (DESIGN.md:
	 * wildcard answers are logged and keyed by the wildcard owner). */
	assert_int_equal(r.log.n, 2);
	expect_log(&r.log, "*.example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);
	expect_log(&r.log, "*.example.com.", 40, "smtp.isp.net.",
	           MXF_RISK_FALLBACK, MXF_ACTION_BLOCKED);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* CNAME chain ending in a legacy MX: CNAMEs kept in order, MX replaced. */
static void test_cname_chain(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "Alias.Example.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *c1 = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_CNAME, 60);
	th_add_name(c1, "mid.example.com.", &s.mm);
	knot_rrset_t *c2 = th_rrset(&s, "mid.example.com.", KNOT_RRTYPE_CNAME, 70);
	th_add_name(c2, "host.example.com.", &s.mm);
	const uint16_t prefs[] = { 5, 10 };
	const char *const names[] = { "mailgate.example.com.", "france.security-mail.net." };
	knot_rrset_t *mx = th_mx(&s, "host.example.com.", 120, 2, prefs, names);

	th_put(&s, KNOT_COMPR_HINT_QNAME, c1, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, c2, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, mx, 0);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	/* Only the record outside the filtering set is legacy. */
	expect_res(&r.res, 1, 0, 1, 0, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER,
	          "alias.example.com. 60 CNAME mid.example.com.",
	          "mid.example.com. 70 CNAME host.example.com.",
	          SET("host.example.com.", 120));
	expect_qname_spelling(&s, 0);
	assert_int_equal(r.log.n, 1);
	expect_log(&r.log, "host.example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* qtype ANY at a name holding only MX: knotd answers that one RRset. */
static void test_any(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "mx-only.example.com.", KNOT_RRTYPE_ANY, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 20 };
	const char *const names[] = { "backup.example.com." };
	th_put(&s, KNOT_COMPR_HINT_QNAME,
	       th_mx(&s, "mx-only.example.com.", 900, 1, prefs, names), 0);

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 0, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("mx-only.example.com.", 900));
	expect_log(&r.log, "mx-only.example.com.", 20, "backup.example.com.",
	           MXF_RISK_FALLBACK, MXF_ACTION_BLOCKED);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

static void test_nullmx_keep(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 0 };
	const char *const names[] = { "." };
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 1, prefs, names), 0);
	th_put_opt(&s);

	th_snap_t snap;
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 0, 0, 0, 0, 0);
	assert_int_equal(r.log.n, 0);
	th_snap_same(&snap, s.resp);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, "example.com. 300 MX 0 .");

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

static void test_nullmx_replace(void **state)
{
	(void)state;
	pol_opts_t o = { .null_mx = MXF_NULLMX_REPLACE };
	mxf_policy_t *pol = make_policy(&o);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 0 };
	const char *const names[] = { "." };
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 1, prefs, names), 0);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 0, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	assert_int_equal(r.log.n, 1);
	expect_log(&r.log, "example.com.", 0, ".", MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* A null MX with company is legacy even with null-mx keep. */
static void test_nullmx_mixed(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 0, 10, 20 };
	const char *const names[] = { ".", "france.security-mail.net.",
	                              "europe.security-mail.net." };
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 3, prefs, names), 0);

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 0, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	assert_int_equal(r.log.n, 1);
	expect_log(&r.log, "example.com.", 0, ".", MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* The filtering set in the zone's own case and order passes untouched. */
static void test_compliant_untouched(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "ExAmPlE.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 20, 10 };
	const char *const names[] = { "EUROPE.Security-Mail.NET.", "france.SECURITY-mail.net." };
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 2, prefs, names), 0);
	knot_rrset_t *a = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a, "192.0.2.80", &s.mm);
	th_begin(&s, KNOT_ADDITIONAL);
	th_put(&s, KNOT_COMPR_HINT_NONE, a, 0);
	th_put_opt(&s);

	th_snap_t snap;
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	size_t allocs = s.allocs;
	assert_int_equal(process(&r, &s), KNOT_EOK);
	assert_int_equal(s.allocs, allocs);
	expect_res(&r.res, 0, 1, 0, 0, 0);
	assert_int_equal(r.log.n, 0);
	th_snap_same(&snap, s.resp);
	th_assert_sane(&s);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* 0x20 QNAME at the apex: the rewritten owner keeps the query's spelling. */
static void test_0x20(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "eXaMpLe.CoM.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 2, legacy_prefs, legacy_names), 0);
	th_put_opt(&s);

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	th_expect(s.parsed, KNOT_ADDITIONAL, "OPT 1232");
	expect_qname_spelling(&s, 0);
	expect_qname_spelling(&s, 1);
	/* Reported names are compared lower-case by the log helper. */
	expect_log(&r.log, "example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* A large legacy RRset. */
static void test_many_legacy(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;
	enum { N = 150 };

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *mx = th_rrset(&s, ZONE, KNOT_RRTYPE_MX, 300);
	for (int i = 1; i <= N; i++) {
		char name[64];
		snprintf(name, sizeof(name), "mx%d.legacy-host.example.", i);
		th_add_mx(mx, i, name, &s.mm);
	}
	th_put(&s, KNOT_COMPR_HINT_QNAME, mx, 0);
	th_put_opt(&s);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	/* Preferences 1..10 are <= 10: bypass; 11..150 fallback. */
	expect_res(&r.res, 1, 0, 10, N - 10, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	th_expect(s.parsed, KNOT_ADDITIONAL, "OPT 1232");
	assert_int_equal(r.log.n, N);
	for (int i = 1; i <= N; i++) {
		char name[64];
		snprintf(name, sizeof(name), "mx%d.legacy-host.example.", i);
		expect_log(&r.log, "example.com.", i, name,
		           i <= 10 ? MXF_RISK_BYPASS : MXF_RISK_FALLBACK,
		           MXF_ACTION_BLOCKED);
	}
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* DNSSEC: the RRSIG of the replaced MX goes, the CNAME's stays. */
static void test_rrsig(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "alias.example.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *cname = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_CNAME, 300);
	th_add_name(cname, "host.example.com.", &s.mm);
	const uint16_t prefs[] = { 5 };
	const char *const names[] = { "mailgate.example.com." };
	knot_rrset_t *mx = th_mx(&s, "host.example.com.", 300, 1, prefs, names);
	knot_rrset_t *sig_c = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(sig_c, KNOT_RRTYPE_CNAME, ZONE, 0x11, &s.mm);
	knot_rrset_t *sig_mx = th_rrset(&s, "host.example.com.", KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(sig_mx, KNOT_RRTYPE_MX, ZONE, 0x22, &s.mm);
	th_add_rrsig(sig_mx, KNOT_RRTYPE_MX, ZONE, 0x23, &s.mm);
	knot_rrset_t *a_gate = th_rrset(&s, "mailgate.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a_gate, "192.0.2.25", &s.mm);
	knot_rrset_t *sig_a = th_rrset(&s, "mailgate.example.com.", KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(sig_a, KNOT_RRTYPE_A, ZONE, 0x33, &s.mm);

	/* knotd's order: answer RRsets, then their RRSIGs. */
	th_put(&s, KNOT_COMPR_HINT_QNAME, cname, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, mx, 0);
	th_put(&s, KNOT_COMPR_HINT_QNAME, sig_c, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, sig_mx, 0);
	th_begin(&s, KNOT_ADDITIONAL);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_gate, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, sig_a, 0);
	th_put_opt_do(&s, true);

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 0, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER,
	          "alias.example.com. 300 CNAME host.example.com.",
	          SET("host.example.com.", 300),
	          "alias.example.com. 300 RRSIG CNAME 11");
	/* The glue of the blocked exchanger goes with its signature. */
	th_expect(s.parsed, KNOT_ADDITIONAL, "OPT 1232");
	assert_true(knot_pkt_has_dnssec(s.parsed));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/*
 * Wildcard reached through a CNAME, signed: knotd writes the MX and its
 * RRSIG as private copies (KNOT_PF_FREE); the dropped RRSIG copy must be
 * freed with the packet's memory (cmocka checks).
 */
static void test_wildcard_rrsig_copy(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "Alias.Example.COM.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *cname = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_CNAME, 300);
	th_add_name(cname, "foo.example.com.", &s.mm);
	knot_rrset_t *sig_c = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(sig_c, KNOT_RRTYPE_CNAME, ZONE, 0x11, &s.mm);
	knot_rrset_t *wild = th_mx(&s, "*.example.com.", 300, 2, legacy_prefs, legacy_names);
	knot_rrset_t *sig_w = th_rrset(&s, "*.example.com.", KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(sig_w, KNOT_RRTYPE_MX, ZONE, 0x22, &s.mm);

	th_put(&s, KNOT_COMPR_HINT_QNAME, cname, 0);
	th_put_copy(&s, KNOT_COMPR_HINT_NONE, wild, "foo.example.com.");
	th_put(&s, KNOT_COMPR_HINT_QNAME, sig_c, 0);
	th_put_copy(&s, KNOT_COMPR_HINT_NONE, sig_w, "foo.example.com.");
	th_put_opt_do(&s, true);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER,
	          "alias.example.com. 300 CNAME foo.example.com.",
	          SET("foo.example.com.", 300),
	          "alias.example.com. 300 RRSIG CNAME 11");
	th_expect(s.parsed, KNOT_ADDITIONAL, "OPT 1232");
	expect_qname_spelling(&s, 0);
	expect_log(&r.log, "foo.example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* Additional records of blocked exchangers go; everything else stays. */
static void test_additional(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 5, 10, 40 };
	const char *const names[] = { "mailgate.example.com.", "france.security-mail.net.",
	                              "relay.example.com." };
	knot_rrset_t *mx = th_mx(&s, ZONE, 300, 3, prefs, names);
	knot_rrset_t *a_gate = th_rrset(&s, "MAILGATE.Example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a_gate, "192.0.2.25", &s.mm);
	th_add_addr(a_gate, "192.0.2.26", &s.mm);
	knot_rrset_t *aaaa_gate = th_rrset(&s, "mailgate.example.com.", KNOT_RRTYPE_AAAA, 300);
	th_add_addr(aaaa_gate, "2001:db8::25", &s.mm);
	knot_rrset_t *a_fr = th_rrset(&s, "france.security-mail.net.", KNOT_RRTYPE_A, 300);
	th_add_addr(a_fr, "203.0.113.10", &s.mm);
	knot_rrset_t *a_relay = th_rrset(&s, "relay.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a_relay, "192.0.2.40", &s.mm);
	knot_rrset_t *a_www = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a_www, "192.0.2.80", &s.mm);
	/* A name that merely ends like a blocked exchanger stays. */
	knot_rrset_t *a_sub = th_rrset(&s, "x.mailgate.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a_sub, "192.0.2.81", &s.mm);

	th_put(&s, KNOT_COMPR_HINT_QNAME, mx, 0);
	th_begin(&s, KNOT_ADDITIONAL);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_gate, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, aaaa_gate, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_fr, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_relay, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_www, 0);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_sub, 0);
	th_put_opt(&s);
	assert_int_equal(knot_wire_get_arcount(s.resp->wire), 8);

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	/* The glue of both blocked exchangers goes: 2 A + 1 AAAA of mailgate,
	 * 1 A of relay. */
	expect_res(&r.res, 1, 0, 1, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	th_expect(s.parsed, KNOT_ADDITIONAL,
	          "france.security-mail.net. 300 A 203.0.113.10",
	          "www.example.com. 300 A 192.0.2.80",
	          "x.mailgate.example.com. 300 A 192.0.2.81",
	          "OPT 1232");
	assert_int_equal(knot_wire_get_arcount(s.resp->wire), 4);
	assert_int_equal(s.resp->sections[KNOT_ADDITIONAL].count, 4);
	assert_int_equal(r.log.n, 2);
	expect_log(&r.log, "example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);
	expect_log(&r.log, "example.com.", 40, "relay.example.com.",
	           MXF_RISK_FALLBACK, MXF_ACTION_BLOCKED);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* Audit mode: nothing changes, every legacy record is reported. */
static void test_audit_mode(void **state)
{
	(void)state;
	pol_opts_t o = { .mode = MXF_MODE_AUDIT };
	mxf_policy_t *pol = make_policy(&o);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 2, legacy_prefs, legacy_names), 0);
	knot_rrset_t *a_gate = th_rrset(&s, "mailgate.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a_gate, "192.0.2.25", &s.mm);
	th_begin(&s, KNOT_ADDITIONAL);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_gate, 0);
	th_put_opt(&s);

	th_snap_t snap;
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 0, 0, 0, 0, 2);
	th_snap_same(&snap, s.resp);
	th_assert_sane(&s);
	assert_int_equal(r.log.n, 2);
	expect_log(&r.log, "example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_AUDIT);
	expect_log(&r.log, "example.com.", 40, "smtp.isp.net.",
	           MXF_RISK_FALLBACK, MXF_ACTION_AUDIT);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* scope apex: below the apex, observed and served; at the apex, enforced. */
static void test_scope_apex(void **state)
{
	(void)state;
	pol_opts_t o = { .scope = MXF_SCOPE_APEX };
	mxf_policy_t *pol = make_policy(&o);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "sub.example.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME,
	       th_mx(&s, "sub.example.com.", 300, 2, legacy_prefs, legacy_names), 0);
	th_snap_t snap;
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 0, 0, 0, 0, 2);
	th_snap_same(&snap, s.resp);
	assert_int_equal(r.log.n, 2);
	expect_log(&r.log, "sub.example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_OBSERVED);
	expect_log(&r.log, "sub.example.com.", 40, "smtp.isp.net.",
	           MXF_RISK_FALLBACK, MXF_ACTION_OBSERVED);
	th_scn_clean(&s);

	th_scn_init(&s, "Example.COM.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 2, legacy_prefs, legacy_names), 0);
	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	expect_qname_spelling(&s, 0);
	expect_log(&r.log, "example.com.", 5, "mailgate.example.com.",
	           MXF_RISK_BYPASS, MXF_ACTION_BLOCKED);
	th_scn_clean(&s);

	mxf_policy_free(pol);
}

/* No MX anywhere: untouched, nothing allocated, result all zero. */
static void test_no_mx(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, "www.example.com.", KNOT_RRTYPE_A, KNOT_WIRE_MAX_PKTSIZE);
	knot_rrset_t *a = th_rrset(&s, "www.example.com.", KNOT_RRTYPE_A, 300);
	th_add_addr(a, "192.0.2.80", &s.mm);
	knot_rrset_t *ns = th_rrset(&s, ZONE, KNOT_RRTYPE_NS, 3600);
	th_add_name(ns, "ns1.example.com.", &s.mm);
	knot_rrset_t *a_ns = th_rrset(&s, "ns1.example.com.", KNOT_RRTYPE_A, 3600);
	th_add_addr(a_ns, "192.0.2.53", &s.mm);
	th_put(&s, KNOT_COMPR_HINT_QNAME, a, 0);
	th_begin(&s, KNOT_AUTHORITY);
	th_put(&s, KNOT_COMPR_HINT_NONE, ns, 0);
	th_begin(&s, KNOT_ADDITIONAL);
	th_put(&s, KNOT_COMPR_HINT_NONE, a_ns, 0);
	th_put_opt(&s);

	th_snap_t snap;
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	size_t allocs = s.allocs;
	assert_int_equal(process(&r, &s), KNOT_EOK);
	assert_int_equal(s.allocs, allocs);
	expect_res(&r.res, 0, 0, 0, 0, 0);
	assert_int_equal(r.log.n, 0);
	th_snap_same(&snap, s.resp);

	/* An empty response too. */
	th_scn_clean(&s);
	th_scn_init(&s, "nothing.example.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 0, 0, 0, 0, 0);
	th_snap_same(&snap, s.resp);

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* An MX owned outside the zone is not the module's business. */
static void test_out_of_zone(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 2, legacy_prefs, legacy_names), 0);
	th_snap_t snap;
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, "example.org.");
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 0, 0, 0, 0, 0);
	assert_int_equal(r.log.n, 0);
	th_snap_same(&snap, s.resp);
	th_scn_clean(&s);

	/* "notexample.com." is not under "example.com." either. */
	th_scn_init(&s, "notexample.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME,
	       th_mx(&s, "notexample.com.", 300, 2, legacy_prefs, legacy_names), 0);
	th_snap(&snap, s.resp);
	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	assert_int_equal(r.log.n, 0);
	th_snap_same(&snap, s.resp);
	th_scn_clean(&s);

	mxf_policy_free(pol);
}

/* The policy's TTL, when set, replaces the inherited one. */
static void test_ttl(void **state)
{
	(void)state;
	pol_opts_t o = { .ttl_set = true, .ttl = 3600 };
	mxf_policy_t *pol = make_policy(&o);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 77, 2, legacy_prefs, legacy_names), 0);
	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 3600));
	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* A policy too big for a 512-byte UDP answer. */
static mxf_policy_t *big_policy(void)
{
	static char buf[5][200];
	static const char *ex[5];
	for (int i = 0; i < 5; i++) {
		char label[61];
		memset(label, 'a' + i, 60);
		label[60] = '\0';
		snprintf(buf[i], sizeof(buf[i]), "%d %s.%s.filter%d.example.",
		         10 * (i + 1), label, label, i);
		ex[i] = buf[i];
	}
	pol_opts_t o = { .exchange = ex, .exchange_count = 5 };
	return make_policy(&o);
}

/* No space: fail closed, never the legacy record, packet still valid. */
static void test_espace(void **state)
{
	(void)state;
	mxf_policy_t *pol = big_policy();
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, 512);
	const uint16_t prefs[] = { 10 };
	const char *const names[] = { "mail.example.com." };
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 1, prefs, names), KNOT_PF_NULL);

	ctx_init(&r, pol, ZONE);
	assert_true((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	assert_int_equal(process(&r, &s), KNOT_ESPACE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	th_assert_sane(&s);
	th_expect_none(s.parsed, KNOT_ANSWER);
	assert_true(knot_wire_get_tc(s.resp->wire));
	th_scn_clean(&s);

	/* Written with KNOT_PF_NOTRUNC (TCP): fails closed without TC. */
	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, 512);
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 1, prefs, names),
	       KNOT_PF_NOTRUNC);
	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_ESPACE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	th_assert_sane(&s);
	th_expect_none(s.parsed, KNOT_ANSWER);
	assert_false(knot_wire_get_tc(s.resp->wire));
	th_scn_clean(&s);

	/* After a CNAME, with the MX as a private copy: the CNAME stays. */
	th_scn_init(&s, "alias.example.com.", KNOT_RRTYPE_MX, 512);
	knot_rrset_t *cname = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_CNAME, 300);
	th_add_name(cname, "host.example.com.", &s.mm);
	knot_rrset_t *wild = th_mx(&s, "*.example.com.", 300, 1, prefs, names);
	th_put(&s, KNOT_COMPR_HINT_QNAME, cname, KNOT_PF_NULL);
	th_put_copy(&s, KNOT_COMPR_HINT_NONE, wild, "host.example.com.");

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_ESPACE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, "alias.example.com. 300 CNAME host.example.com.");
	for (uint16_t i = 0; i < s.resp->rrset_count; i++) {
		assert_int_not_equal(s.resp->rr[i].type, KNOT_RRTYPE_MX);
	}
	th_scn_clean(&s);

	/* Private copies after the failing one are freed too (cmocka checks). */
	th_scn_init(&s, "alias.example.com.", KNOT_RRTYPE_MX, 512);
	cname = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_CNAME, 300);
	th_add_name(cname, "host.example.com.", &s.mm);
	wild = th_mx(&s, "*.example.com.", 300, 1, prefs, names);
	knot_rrset_t *sig_c = th_rrset(&s, "alias.example.com.", KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(sig_c, KNOT_RRTYPE_CNAME, ZONE, 0x11, &s.mm);
	knot_rrset_t *sig_w = th_rrset(&s, "*.example.com.", KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(sig_w, KNOT_RRTYPE_MX, ZONE, 0x22, &s.mm);
	th_put(&s, KNOT_COMPR_HINT_QNAME, cname, KNOT_PF_NULL);
	th_put_copy(&s, KNOT_COMPR_HINT_NONE, wild, "host.example.com.");
	th_put(&s, KNOT_COMPR_HINT_QNAME, sig_c, KNOT_PF_NULL);
	th_put_copy(&s, KNOT_COMPR_HINT_NONE, sig_w, "host.example.com.");

	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_ESPACE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, "alias.example.com. 300 CNAME host.example.com.");
	th_scn_clean(&s);

	mxf_policy_free(pol);
}

/* The same big policy fits a 64k answer. */
static void test_big_policy_fits(void **state)
{
	(void)state;
	mxf_policy_t *pol = big_policy();
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	const uint16_t prefs[] = { 10 };
	const char *const names[] = { "mail.example.com." };
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 1, prefs, names), 0);
	ctx_init(&r, pol, ZONE);
	assert_int_equal(process(&r, &s), KNOT_EOK);
	th_assert_sane(&s);
	assert_int_equal(s.parsed->sections[KNOT_ANSWER].count, 5);
	assert_false(knot_wire_get_tc(s.resp->wire));
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));
	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* mxf_write_set() directly. */
static void test_put_set(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;

	th_scn_init(&s, "WwW.example.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	knot_dname_storage_t owner;
	th_dname(owner, "www.example.com.");

	/* KNOT_PF_FREE is refused: the policy's rdata is shared. */
	th_snap_t snap;
	th_snap(&snap, s.resp);
	assert_int_not_equal(mxf_write_set(s.resp, pol, owner, 300, KNOT_COMPR_HINT_QNAME,
	                                 KNOT_PF_FREE), KNOT_EOK);
	th_snap_same(&snap, s.resp);

	assert_int_equal(mxf_write_set(s.resp, pol, owner, 300, KNOT_COMPR_HINT_QNAME, 0),
	                 KNOT_EOK);
	assert_int_equal(s.resp->rrset_count, 1);
	assert_true(mxf_is_own_set(pol, &s.resp->rr[0]));
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("www.example.com.", 300));
	expect_qname_spelling(&s, 0);

	/* The packet's own set is not a leak. */
	run_t r;
	ctx_init(&r, pol, ZONE);
	assert_false((mxf_pkt_leak(s.resp, &r.ctx) >= 0));

	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/* No callback: still enforced. */
static void test_no_callback(void **state)
{
	(void)state;
	mxf_policy_t *pol = make_policy(NULL);
	th_scn_t s;
	run_t r;

	th_scn_init(&s, ZONE, KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	th_put(&s, KNOT_COMPR_HINT_QNAME, th_mx(&s, ZONE, 300, 2, legacy_prefs, legacy_names), 0);
	ctx_init(&r, pol, ZONE);
	r.ctx.on_legacy = NULL;
	r.ctx.cb_data = NULL;
	assert_int_equal(process(&r, &s), KNOT_EOK);
	expect_res(&r.res, 1, 0, 1, 1, 0);
	th_assert_sane(&s);
	th_expect(s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	th_scn_clean(&s);
	mxf_policy_free(pol);
}

/*** The shortcut for the usual packet against the general path. ***/

/*
 * The general path for the same records: the packet moved on to the
 * authority section first (as knotd does right after the ANSWER hooks),
 * which the shortcut does not take (its MX is no longer in the section
 * being written), so mxf_process() marks and rebuilds, then begins that
 * section again. The shortcut's run then begins it too, and both must
 * leave the same packet.
 */
/* What a run leaves: the packet's wire and every field the server and
 * libknot go on from, the outcome and the callback log. */
typedef struct {
	int ret;
	bool leak;
	mxf_result_t res;
	cblog_t log;
	size_t size, reserved;
	uint16_t rrset_count;
	knot_section_t current;
	uint16_t sec_pos[3], sec_count[3];
	uint16_t suffix_pos, suffix_labels;
	bool opt;
	knot_rrinfo_t info[8];
	uint16_t type[8], rrs_count[8];
	uint32_t ttl[8];
	uint8_t wire[1024];
} outcome_t;

typedef struct {
	const char *qname;
	bool cname;        /* MX at a CNAME's target. */
	int owner;         /* 0: the QNAME, 1: "*" with the QNAME hint, 2: a copy (KNOT_PF_FREE). */
	unsigned records;  /* Bit mask over shape_records[]. */
	uint16_t max_size;
	bool reserve;      /* Room kept for an OPT. */
	bool sig_before;   /* An RRSIG over MX written before the MX. */
	bool sig_after;    /* Its RRSIG after it, as knotd writes it for DO. */
	uint16_t flags;
} shape_t;

static const struct { uint16_t pref; const char *name; } shape_records[] = {
	{ 5, "mailgate.example.com." },
	{ 40, "smtp.isp.net." },
	{ 10, "france.security-mail.net." },
	{ 20, "europe.security-mail.net." },
	{ 0, "." },
	{ 10, "FRANCE.Security-Mail.NET." },
	{ 20, "other.example.org." },
};
#define SHAPE_RECORDS	(sizeof(shape_records) / sizeof(shape_records[0]))

/* The enforced set's RRSIG for the shapes with one (fixed bytes: only
 * where and how it is written matters here). */
static int fake_sign(void *data, const knot_rrset_t *set, knot_rrset_t *rrsig)
{
	const knot_rrset_t *sig = data;
	knot_rrset_init(rrsig, set->owner, KNOT_RRTYPE_RRSIG, set->rclass, set->ttl);
	rrsig->rrs = sig->rrs;
	return KNOT_EOK;
}

/* Builds the shape as knotd would at the ANSWER stage, runs the engine
 * (general path only, or not) and notes the outcome. False if knotd itself
 * could not have written the answer (it does not fit). */
static bool run_shape(const shape_t *sh, const mxf_policy_t *pol, bool general,
                      outcome_t *out)
{
	th_scn_t s;
	run_t r;
	th_scn_init(&s, sh->qname, KNOT_RRTYPE_MX, sh->max_size);
	if (sh->reserve) {
		assert_int_equal(knot_pkt_reserve(s.resp, 11), KNOT_EOK);
	}
	knot_dname_storage_t lower;
	th_dname(lower, sh->qname);
	knot_dname_to_lower(lower);
	char owner[KNOT_DNAME_TXT_MAXLEN + 1];
	th_dname_str(lower, owner, sizeof(owner));

	bool ok = true;
	uint16_t hint = KNOT_COMPR_HINT_QNAME;
	knot_rrset_t *new_sig = th_rrset(&s, owner, KNOT_RRTYPE_RRSIG, 300);
	th_add_rrsig(new_sig, KNOT_RRTYPE_MX, ZONE, 3, &s.mm);
	if (sh->sig_before) {
		knot_rrset_t *sig = th_rrset(&s, owner, KNOT_RRTYPE_RRSIG, 300);
		th_add_rrsig(sig, KNOT_RRTYPE_MX, ZONE, 1, &s.mm);
		ok = knot_pkt_put(s.resp, KNOT_COMPR_HINT_QNAME, sig, 0) == KNOT_EOK;
	}
	if (ok && sh->cname) {
		knot_rrset_t *c = th_rrset(&s, owner, KNOT_RRTYPE_CNAME, 60);
		th_add_name(c, "host.example.com.", &s.mm);
		ok = knot_pkt_put(s.resp, KNOT_COMPR_HINT_QNAME, c, 0) == KNOT_EOK;
		strcpy(owner, "host.example.com.");
		hint = KNOT_COMPR_HINT_NONE;
	}
	knot_rrset_t *mx = th_rrset(&s, sh->owner == 1 ? "*.example.com." : owner,
	                            KNOT_RRTYPE_MX, 300);
	for (size_t i = 0; i < SHAPE_RECORDS; i++) {
		if (sh->records & (1u << i)) {
			th_add_mx(mx, shape_records[i].pref, shape_records[i].name, &s.mm);
		}
	}
	if (ok && sh->owner == 2) {
		knot_rrset_t copy;
		knot_dname_t *name = knot_dname_copy(mx->owner, &s.resp->mm);
		assert_non_null(name);
		knot_rrset_init(&copy, name, KNOT_RRTYPE_MX, KNOT_CLASS_IN, mx->ttl);
		assert_int_equal(knot_rdataset_copy(&copy.rrs, &mx->rrs, &s.resp->mm), KNOT_EOK);
		ok = knot_pkt_put(s.resp, hint, &copy, sh->flags | KNOT_PF_FREE) == KNOT_EOK;
		if (!ok) {
			knot_rrset_clear(&copy, &s.resp->mm);
		}
	} else if (ok) {
		ok = knot_pkt_put(s.resp, hint, mx, sh->flags) == KNOT_EOK;
	}
	if (ok && sh->sig_after) {
		/* As knotd's put_rrsig(): a copy of the owner and of the
		 * signatures in the packet's memory, written with the MX's
		 * owner pointer, freed with the packet. */
		knot_rrset_t *sig = th_rrset(&s, owner, KNOT_RRTYPE_RRSIG, 300);
		th_add_rrsig(sig, KNOT_RRTYPE_MX, ZONE, 2, &s.mm);
		knot_rrset_t copy;
		knot_dname_t *name = knot_dname_copy(sig->owner, &s.resp->mm);
		assert_non_null(name);
		knot_rrset_init(&copy, name, KNOT_RRTYPE_RRSIG, KNOT_CLASS_IN, sig->ttl);
		assert_int_equal(knot_rdataset_copy(&copy.rrs, &sig->rrs, &s.resp->mm), KNOT_EOK);
		uint16_t ptr = s.resp->rr_info[s.resp->rrset_count - 1].compress_ptr[KNOT_COMPR_HINT_OWNER];
		ok = knot_pkt_put(s.resp, ptr, &copy, sh->flags | KNOT_PF_FREE) == KNOT_EOK;
		if (!ok) {
			knot_rrset_clear(&copy, &s.resp->mm);
		}
	}
	if (!ok || knot_wire_get_tc(s.resp->wire)) {
		th_scn_clean(&s);
		return false;
	}

	ctx_init(&r, pol, ZONE);
	if (sh->sig_after) {
		r.ctx.sign = fake_sign;
		r.ctx.sign_data = new_sig;
	}
	memset(out, 0, sizeof(*out));
	if (general) {
		th_begin(&s, KNOT_AUTHORITY);
	}
	out->ret = process(&r, &s);
	if (!general && out->ret == KNOT_EOK) {
		th_begin(&s, KNOT_AUTHORITY);
	}
	out->leak = (mxf_pkt_leak(s.resp, &r.ctx) >= 0);
	out->res = r.res;
	out->log = r.log;
	const knot_pkt_t *p = s.resp;
	assert_true(p->size <= sizeof(out->wire) && p->rrset_count <= 8);
	out->size = p->size;
	out->reserved = p->reserved;
	out->rrset_count = p->rrset_count;
	out->current = p->current;
	for (int i = 0; i < 3; i++) {
		out->sec_pos[i] = p->sections[i].pos;
		out->sec_count[i] = p->sections[i].count;
	}
	out->suffix_pos = p->compr.suffix.pos;
	out->suffix_labels = p->compr.suffix.labels;
	out->opt = p->opt_rr != NULL;
	for (uint16_t i = 0; i < p->rrset_count; i++) {
		out->info[i] = p->rr_info[i];
		out->type[i] = p->rr[i].type;
		out->rrs_count[i] = p->rr[i].rrs.count;
		out->ttl[i] = p->rr[i].ttl;
	}
	memcpy(out->wire, p->wire, p->size);
	if (out->ret == KNOT_EOK) {
		th_assert_sane(&s);
	}
	th_scn_clean(&s);
	return true;
}

static void test_shortcut_matches_general(void **state)
{
	(void)state;
	const char *const exch[] = { "10 filter.example.net." };
	const pol_opts_t opts[] = {
		{ .mode = MXF_MODE_ENFORCE, .scope = MXF_SCOPE_ZONE, .null_mx = MXF_NULLMX_KEEP },
		{ .mode = MXF_MODE_AUDIT, .scope = MXF_SCOPE_ZONE, .null_mx = MXF_NULLMX_KEEP },
		{ .mode = MXF_MODE_ENFORCE, .scope = MXF_SCOPE_APEX, .null_mx = MXF_NULLMX_KEEP },
		{ .mode = MXF_MODE_ENFORCE, .scope = MXF_SCOPE_ZONE, .null_mx = MXF_NULLMX_REPLACE,
		  .ttl_set = true, .ttl = 60 },
		{ .mode = MXF_MODE_ENFORCE, .scope = MXF_SCOPE_ZONE, .null_mx = MXF_NULLMX_KEEP,
		  .exchange = exch, .exchange_count = 1 },
	};
	const char *const qnames[] = { "sub.example.com.", "SuB.ExAmPlE.cOm.", "example.com.",
	                               "a.b.c.example.com.", "host.example.org." };
	const uint16_t sizes[] = { 512, 150, 128, 110 };
	static outcome_t a, b;
	unsigned built = 0, enforced = 0, espace = 0, signed_ = 0;

	for (size_t o = 0; o < sizeof(opts) / sizeof(opts[0]); o++) {
		mxf_policy_t *pol = make_policy(&opts[o]);
		for (size_t q = 0; q < sizeof(qnames) / sizeof(qnames[0]); q++)
		for (int cname = 0; cname <= 1; cname++)
		for (int owner = 0; owner <= 2; owner++)
		for (unsigned rec = 1; rec < (1u << SHAPE_RECORDS); rec++)
		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
			if (__builtin_popcount(rec) > 2 || (cname && owner == 1)) {
				continue;
			}
			shape_t sh = {
				.qname = qnames[q], .cname = cname, .owner = owner,
				.records = rec, .max_size = sizes[z], .reserve = (q + z) % 2,
				.sig_before = (rec % 7 == 3) && z == 0,
				.sig_after = (rec % 3 == 1),
				.flags = (z % 2) ? KNOT_PF_NOTRUNC : 0,
			};
			if (!run_shape(&sh, pol, true, &a)) {
				continue;
			}
			assert_true(run_shape(&sh, pol, false, &b));
			if (memcmp(&a, &b, sizeof(a)) != 0) {
				print_error("differs: policy %zu, %s, cname %d, owner %d, "
				            "records 0x%x, size %u, reserve %d, sig %d/%d\n", o, sh.qname,
				            cname, owner, rec, sh.max_size, sh.reserve, sh.sig_before,
				            sh.sig_after);
			}
			assert_memory_equal(&a, &b, sizeof(a));
			built++;
			enforced += (a.res.enforced > 0 && a.ret == KNOT_EOK);
			signed_ += (a.res.enforced > 0 && a.ret == KNOT_EOK && sh.sig_after);
			espace += (a.ret == KNOT_ESPACE);
		}
		mxf_policy_free(pol);
	}
	/* The comparison covered what it is meant to. */
	print_message("%u packets, %u enforced (%u with their RRSIG), %u too big for the set\n",
	              built, enforced, signed_, espace);
	assert_true(built > 4000);
	assert_true(enforced > 1000);
	assert_true(signed_ > 300);
	assert_true(espace > 50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apex_full),
		cmocka_unit_test(test_answer_stage),
		cmocka_unit_test(test_subdomain),
		cmocka_unit_test(test_wildcard_copy),
		cmocka_unit_test(test_wildcard_hint),
		cmocka_unit_test(test_cname_chain),
		cmocka_unit_test(test_any),
		cmocka_unit_test(test_nullmx_keep),
		cmocka_unit_test(test_nullmx_replace),
		cmocka_unit_test(test_nullmx_mixed),
		cmocka_unit_test(test_compliant_untouched),
		cmocka_unit_test(test_0x20),
		cmocka_unit_test(test_many_legacy),
		cmocka_unit_test(test_rrsig),
		cmocka_unit_test(test_wildcard_rrsig_copy),
		cmocka_unit_test(test_additional),
		cmocka_unit_test(test_audit_mode),
		cmocka_unit_test(test_scope_apex),
		cmocka_unit_test(test_no_mx),
		cmocka_unit_test(test_out_of_zone),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_espace),
		cmocka_unit_test(test_big_policy_fits),
		cmocka_unit_test(test_put_set),
		cmocka_unit_test(test_no_callback),
		cmocka_unit_test(test_shortcut_matches_general),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
