/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * The engine's stages (module/engine/stage.c, zone.c) as the glue calls
 * them, without a server: a zone set up with mxf_zone_new(), zone data
 * served by a reader of this test (the apex, and names below it as Knot
 * 3.4's reader or none as 3.2's), packets built as knotd has them at each
 * stage. Each test asserts what the stage says to do, what the packet then
 * holds, what is counted and which lines are written at which level.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <syslog.h>
#include <urcu.h>

#include "mxfilter/engine.h"
#include "pkt_helpers.h"

#define ZONE	"example.com."
#define SUB	"sub.example.com."

#define SET(owner, ttl) \
	owner " " #ttl " MX 10 france.security-mail.net.", \
	owner " " #ttl " MX 20 europe.security-mail.net."

/*** The server: zone data, the client, counters and the log. ***/

#define MAX_DATA	16
#define MAX_LINES	16

typedef struct {
	const knot_rrset_t *rr[MAX_DATA];  /* The zone's RRsets. */
	size_t count;
	struct sockaddr_storage client;
	uint32_t val[MXF_VAL_COUNT];       /* What the engine counted. */
	int level[MAX_LINES];
	char line[MAX_LINES][512];
	size_t lines;
	char load[MAX_LINES][512];         /* Lines of the last zone's set-up. */
	size_t loaded;
} server_t;

static server_t S;

static const knot_rrset_t *find(const knot_dname_t *name, uint16_t type)
{
	for (size_t i = 0; i < S.count; i++) {
		if (S.rr[i]->type == type && knot_dname_is_case_equal(S.rr[i]->owner, name)) {
			return S.rr[i];
		}
	}
	return NULL;
}

static knot_dname_storage_t apex_name;

static knot_rrset_t read_apex(void *data, uint16_t type)
{
	(void)data;
	const knot_rrset_t *rr = find(apex_name, type);
	knot_rrset_t out;
	if (rr != NULL) {
		out = *rr;
	} else {
		knot_rrset_init_empty(&out);
	}
	return out;
}

static int read_rrset(void *data, const knot_dname_t *name, uint16_t type,
                      knot_rrset_t *out)
{
	(void)data;
	const knot_rrset_t *rr = find(name, type);
	if (rr != NULL) {
		*out = *rr;
	} else {
		knot_rrset_init_empty(out);
	}
	return KNOT_EOK;
}

static const struct sockaddr_storage *read_client(void *data)
{
	(void)data;
	return &S.client;
}

static void log_text(void *data, int level, const char *text)
{
	(void)data;
	assert_true(S.lines < MAX_LINES);
	S.level[S.lines] = level;
	snprintf(S.line[S.lines], sizeof(S.line[0]), "%s", text);
	S.lines++;
}

static void count(const struct mxf_query *q, unsigned val, uint32_t n)
{
	(void)q;
	assert_true(val < MXF_VAL_COUNT);
	S.val[val] += n;
}

/* Knot 3.4+: names below the apex are readable; 3.2: they are not. */
static const mxf_server_t SERVER34 = { read_apex, read_rrset, read_client, log_text, count };
static const mxf_server_t SERVER32 = { read_apex, NULL, read_client, log_text, count };

static void server_reset(void)
{
	memset(&S, 0, sizeof(S));
	struct sockaddr_in *sin = (struct sockaddr_in *)&S.client;
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "192.0.2.7", &sin->sin_addr), 1);
}

static void serve(const knot_rrset_t *rr)
{
	assert_true(S.count < MAX_DATA);
	S.rr[S.count++] = rr;
}

static void expect_counted(uint32_t enforced, uint32_t synthesized, uint32_t bypass,
                           uint32_t fallback, uint32_t audited, uint32_t failed)
{
	assert_int_equal(S.val[MXF_VAL_ENFORCED], enforced);
	assert_int_equal(S.val[MXF_VAL_SYNTHESIZED], synthesized);
	assert_int_equal(S.val[MXF_VAL_BYPASS], bypass);
	assert_int_equal(S.val[MXF_VAL_FALLBACK], fallback);
	assert_int_equal(S.val[MXF_VAL_AUDITED], audited);
	assert_int_equal(S.val[MXF_VAL_FAILED], failed);
}

/* Line \a i is at \a level and starts with \a text. */
static void expect_line(size_t i, int level, const char *text)
{
	assert_true(i < S.lines);
	assert_int_equal(S.level[i], level);
	if (strncmp(S.line[i], text, strlen(text)) != 0) {
		fail_msg("line %zu: '%s', expected '%s...'", i, S.line[i], text);
	}
}

/*** Zones. ***/

typedef struct {
	mxf_conf_t conf;
	bool counters;
	bool signs;
	bool rotation;
} zone_opts_t;

static zone_opts_t defaults(void)
{
	zone_opts_t o = { .counters = true };
	mxf_conf_default(&o.conf);
	return o;
}

static mxf_zone_t *zone_new(const zone_opts_t *o)
{
	th_dname(apex_name, ZONE);
	mxf_zone_conf_t zc = {
		.name = apex_name,
		.conf = &o->conf,
		.counters = o->counters,
		.signs = o->signs,
		.keystore_error = o->signs ? "no keys in this test" : NULL,
		.rotation = o->rotation,
		.line_prefix = 40,
		.log = log_text,
	};
	const char *err = NULL;
	size_t before = S.lines;
	mxf_zone_t *z = mxf_zone_new(&zc, &err);
	assert_non_null(z);
	mxf_zone_ready(z, mxf_zone_stages(z), log_text, NULL);
	/* Set-up's lines ("policy loaded", ...) apart from the queries'. */
	S.loaded = S.lines - before;
	memcpy(S.load, S.line + before, S.loaded * sizeof(S.line[0]));
	S.lines = before;
	return z;
}

/*** Queries. ***/

typedef struct {
	th_scn_t s;
	mxf_query_t q;
} query_t;

/* A query of \a qname / \a qtype as knotd has it at a stage, its response
 * begun at ANSWER, nothing in it yet (AA not set: the engine sets it when
 * it answers itself). */
static void query_init(query_t *t, const char *qname, uint16_t qtype, uint16_t max_size,
                       const mxf_server_t *server)
{
	S.count = 0; /* The zone's data lives with the query's scenario. */
	th_scn_init(&t->s, qname, qtype, max_size);
	knot_wire_clear_aa(t->s.resp->wire);
	t->q = (mxf_query_t) {
		.pkt = t->s.resp,
		.query = t->s.query,
		.name = NULL,
		.server = server,
		.type = MXF_QUERY_NORMAL,
		.state = MXF_KNOT_BEGIN,
		.udp = true,
	};
}

/* The query asks for DNSSEC records (an OPT with DO, as knotd parses it). */
static void query_do(query_t *t)
{
	knot_rrset_t opt;
	assert_int_equal(knot_edns_init(&opt, 1232, 0, 0, &t->s.mm), KNOT_EOK);
	knot_edns_set_do(&opt);
	assert_int_equal(knot_pkt_begin(t->s.query, KNOT_ADDITIONAL), KNOT_EOK);
	assert_int_equal(knot_pkt_put(t->s.query, KNOT_COMPR_HINT_NONE, &opt, KNOT_PF_FREE),
	                 KNOT_EOK);
	assert_true(knot_pkt_has_dnssec(t->s.query));
}

static void query_clean(query_t *t)
{
	th_scn_clean(&t->s);
}

static mxf_step_t run(mxf_step_t (*stage)(mxf_zone_t *, const mxf_query_t *),
                      mxf_zone_t *z, query_t *t)
{
	rcu_read_lock();
	mxf_step_t step = stage(z, &t->q);
	rcu_read_unlock();
	return step;
}

static knot_rrset_t *mx(th_scn_t *s, const char *owner, uint32_t ttl, const char *pairs)
{
	knot_rrset_t *rr = th_rrset(s, owner, KNOT_RRTYPE_MX, ttl);
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", pairs);
	for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
		unsigned pref;
		char name[200];
		assert_int_equal(sscanf(tok, "%u %199s", &pref, name), 2);
		th_add_mx(rr, (uint16_t)pref, name, &s->mm);
	}
	return rr;
}

#define LEGACY	"5 mailgate.example.com.,40 smtp.isp.net."
#define FILTER	"10 france.security-mail.net.,20 europe.security-mail.net."

static knot_rrset_t *soa(th_scn_t *s, uint32_t ttl)
{
	knot_rrset_t *rr = th_rrset(s, ZONE, KNOT_RRTYPE_SOA, ttl);
	uint8_t data[64];
	size_t len = knot_dname_size(knot_dname_from_str(data, "ns." ZONE, 64));
	len += knot_dname_size(knot_dname_from_str(data + len, "host." ZONE, 64 - len));
	memset(data + len, 0, 20);
	knot_wire_write_u32(data + len, 2026120101); /* serial */
	knot_wire_write_u32(data + len + 16, 300);   /* minimum */
	assert_int_equal(knot_rrset_add_rdata(rr, data, (uint16_t)(len + 20), &s->mm), KNOT_EOK);
	return rr;
}

/*** PREANSWER. ***/

/* A legacy apex RRset: the set, with its TTL and the query's spelling, AA,
 * every legacy record blocked and counted, one line each. */
static void test_preanswer_legacy(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, ZONE, 600, LEGACY));
	serve(soa(&t.s, 3600));

	assert_int_equal(run(mxf_preanswer, z, &t), MXF_HIT);
	assert_true(knot_wire_get_aa(t.s.resp->wire));
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, SET("example.com.", 600));
	expect_counted(1, 0, 1, 1, 0, 0);
	assert_int_equal(S.lines, 2);
	expect_line(0, LOG_NOTICE, "legacy MX blocked, owner example.com., preference 5, "
	            "exchange mailgate.example.com., risk bypass, client 192.0.2.7");
	expect_line(1, LOG_NOTICE, "legacy MX blocked, owner example.com., preference 40, "
	            "exchange smtp.isp.net., risk fallback, client 192.0.2.7");

	/* The next answer within log-interval: counted, not logged. */
	query_clean(&t);
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, ZONE, 600, LEGACY));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_HIT);
	expect_counted(2, 0, 2, 2, 0, 0);
	assert_int_equal(S.lines, 2);
	query_clean(&t);
	mxf_zone_free(z);
}

/* "ttl" replaces the legacy RRset's TTL; "scope: apex" leaves names below
 * the apex to the ANSWER stage (where they are observed). */
static void test_preanswer_ttl_scope(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	o.conf.ttl_set = true;
	o.conf.ttl = 120;
	o.conf.scope = MXF_SCOPE_APEX;
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER34);
	serve(mx(&t.s, ZONE, 600, LEGACY));
	serve(mx(&t.s, SUB, 600, LEGACY));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_HIT);
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, SET("example.com.", 120));
	query_clean(&t);

	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER34);
	serve(mx(&t.s, SUB, 600, LEGACY));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 0);
	query_clean(&t);
	mxf_zone_free(z);
}

/* Below the apex: answered where the server reads there (Knot 3.4+), not
 * at or below a zone cut or a DNAME, left to Knot on 3.2. */
static void test_preanswer_below_apex(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;

	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, SUB, 300, LEGACY));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 0);
	query_clean(&t);

	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER34);
	serve(mx(&t.s, SUB, 300, LEGACY));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_HIT);
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, SET("sub.example.com.", 300));
	query_clean(&t);

	/* A delegation at "sub": its data is not the zone's answer. */
	query_init(&t, "x." SUB, KNOT_RRTYPE_MX, 1232, &SERVER34);
	serve(mx(&t.s, "x." SUB, 300, LEGACY));
	knot_rrset_t *ns = th_rrset(&t.s, SUB, KNOT_RRTYPE_NS, 300);
	th_add_name(ns, "ns.elsewhere.net.", &t.s.mm);
	serve(ns);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	query_clean(&t);

	/* A DNAME above the name: Knot synthesizes. */
	query_init(&t, "x." SUB, KNOT_RRTYPE_MX, 1232, &SERVER34);
	serve(mx(&t.s, "x." SUB, 300, LEGACY));
	knot_rrset_t *dname = th_rrset(&t.s, SUB, KNOT_RRTYPE_DNAME, 300);
	th_add_name(dname, "elsewhere.net.", &t.s.mm);
	serve(dname);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	query_clean(&t);

	/* No MX at the name (a CNAME, a wildcard, nothing): Knot's. */
	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER34);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	query_clean(&t);
	expect_counted(1, 0, 1, 1, 0, 0);
	mxf_zone_free(z);
}

/* A compliant RRset is written from the image as Knot would write it,
 * unless Knot must: DNSSEC records, answer rotation, in-zone glue (a
 * PREANSWER answer must not carry an additional pointer, issue #14). The
 * ANSWER stage judges it either way: nothing counted here. */
static void test_preanswer_compliant(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	knot_rrset_t *set = mx(&t.s, ZONE, 300, FILTER);
	serve(set);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_HIT);
	assert_true(knot_wire_get_aa(t.s.resp->wire));
	assert_ptr_equal(t.s.resp->rr[0].rrs.rdata, set->rrs.rdata);
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	query_clean(&t);

	int glue;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	set = mx(&t.s, ZONE, 300, FILTER);
	set->additional = &glue;
	serve(set);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 0);
	set->additional = NULL;
	query_clean(&t);

	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, ZONE, 300, FILTER));
	query_do(&t);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 0);
	query_clean(&t);
	mxf_zone_free(z);

	o.rotation = true;
	z = zone_new(&o);
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, ZONE, 300, FILTER));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 0);
	query_clean(&t);
	expect_counted(0, 0, 0, 0, 0, 0);
	assert_int_equal(S.lines, 0);
	mxf_zone_free(z);
}

/* A lone null MX (RFC 7505) is kept with "null-mx: keep" (Knot answers
 * it), enforced with "replace". */
static void test_preanswer_nullmx(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, ZONE, 300, "0 ."));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 0);
	query_clean(&t);
	mxf_zone_free(z);

	o.conf.null_mx = MXF_NULLMX_REPLACE;
	z = zone_new(&o);
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, ZONE, 300, "0 ."));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_HIT);
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, SET("example.com.", 300));
	expect_counted(1, 0, 1, 0, 0, 0);
	query_clean(&t);
	mxf_zone_free(z);
}

/* An apex without MX gets the set ("synthesize: on", the SOA's TTL), with
 * a "missing MX added" line per exchange; not with "synthesize: off". */
static void test_preanswer_synthesize(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(soa(&t.s, 1800));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_HIT);
	assert_true(knot_wire_get_aa(t.s.resp->wire));
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, SET("example.com.", 1800));
	expect_counted(0, 1, 0, 0, 0, 0);
	assert_int_equal(S.lines, 2);
	expect_line(0, LOG_NOTICE, "missing MX added, owner example.com., preference 10, "
	            "exchange france.security-mail.net., client 192.0.2.7");
	expect_line(1, LOG_NOTICE, "missing MX added, owner example.com., preference 20, "
	            "exchange europe.security-mail.net., client 192.0.2.7");
	query_clean(&t);
	mxf_zone_free(z);

	server_reset();
	o.conf.synthesize = false;
	z = zone_new(&o);
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(soa(&t.s, 1800));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 0);
	query_clean(&t);
	expect_counted(0, 0, 0, 0, 0, 0);
	mxf_zone_free(z);
}

/* Another hook answered first: left to the ANSWER stage. */
static void test_preanswer_answered(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(mx(&t.s, ZONE, 600, LEGACY));
	t.q.state = MXF_KNOT_OTHER;
	assert_false(mxf_preanswer_reaches(z, t.s.resp, false, false));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	t.q.state = MXF_KNOT_BEGIN;
	knot_rrset_t *a = th_rrset(&t.s, ZONE, KNOT_RRTYPE_A, 300);
	th_add_addr(a, "192.0.2.1", &t.s.mm);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, a, 0);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 1);
	query_clean(&t);
	expect_counted(0, 0, 0, 0, 0, 0);
	mxf_zone_free(z);
}

/* The set does not fit: TC over UDP (the client retries), SERVFAIL over
 * TCP with a failure line and the failed counter; never the legacy RRset. */
static void test_preanswer_no_room(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 60, &SERVER32);
	serve(mx(&t.s, ZONE, 600, LEGACY));
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_TRUNC);
	assert_true(knot_wire_get_tc(t.s.resp->wire));
	assert_int_equal(t.s.resp->rrset_count, 0);
	query_clean(&t);

	size_t lines = S.lines;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 60, &SERVER32);
	serve(mx(&t.s, ZONE, 600, LEGACY));
	t.q.udp = false;
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_SERVFAIL);
	assert_int_equal(t.s.resp->rrset_count, 0);
	assert_int_equal(S.val[MXF_VAL_FAILED], 1);
	expect_line(lines, LOG_ERR, "failed to enforce MX, owner example.com.");
	query_clean(&t);
	mxf_zone_free(z);
}

/* A DO query to a signed zone whose keys cannot be read: the enforced
 * answer cannot be signed, so it fails closed. */
static void test_preanswer_unsigned_fails(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	o.signs = true;
	mxf_zone_t *z = zone_new(&o);
	assert_true(S.loaded >= 1);
	assert_string_equal(S.load[0], "cannot sign enforced answers, key store '?', DNSSEC "
	                    "queries needing enforcement will get SERVFAIL (no keys in this test)");
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	query_do(&t);
	serve(mx(&t.s, ZONE, 600, LEGACY));
	knot_rrset_t *sigs = th_rrset(&t.s, ZONE, KNOT_RRTYPE_RRSIG, 600);
	th_add_rrsig(sigs, KNOT_RRTYPE_SOA, ZONE, 1, &t.s.mm);
	serve(sigs);
	assert_int_equal(run(mxf_preanswer, z, &t), MXF_SERVFAIL);
	assert_int_equal(S.val[MXF_VAL_FAILED], 1);
	assert_false(knot_wire_get_aa(t.s.resp->wire));
	query_clean(&t);
	mxf_zone_free(z);
}

/*** ANSWER. ***/

/* What Knot wrote below the apex (Knot 3.2) is rewritten; audit mode serves
 * it and logs "audit" at warning level. */
static void test_answer_rewrite_audit(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER32);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, mx(&t.s, SUB, 300, LEGACY), 0);
	t.q.state = MXF_KNOT_OTHER;
	assert_int_equal(run(mxf_answer, z, &t), MXF_PASS);
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, SET("sub.example.com.", 300));
	expect_counted(1, 0, 1, 1, 0, 0);
	query_clean(&t);
	mxf_zone_free(z);

	server_reset();
	o.conf.mode = MXF_MODE_AUDIT;
	z = zone_new(&o);
	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER32);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, mx(&t.s, SUB, 300, LEGACY), 0);
	th_snap_t snap;
	th_snap(&snap, t.s.resp);
	assert_int_equal(run(mxf_answer, z, &t), MXF_PASS);
	th_snap_same(&snap, t.s.resp);
	expect_counted(0, 0, 0, 0, 2, 0);
	assert_int_equal(S.lines, 2);
	expect_line(0, LOG_WARNING, "legacy MX audit, owner sub.example.com., preference 5");
	expect_line(1, LOG_WARNING, "legacy MX audit, owner sub.example.com., preference 40");
	query_clean(&t);
	mxf_zone_free(z);
}

/* An MX query reaching the apex without MX through a CNAME: NODATA from
 * Knot becomes the set at the apex, after the CNAME; audit mode logs what
 * it would add. */
static void test_answer_apex_nodata(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, "www." ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	serve(soa(&t.s, 900));
	knot_rrset_t *cname = th_rrset(&t.s, "www." ZONE, KNOT_RRTYPE_CNAME, 300);
	th_add_name(cname, ZONE, &t.s.mm);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, cname, 0);
	t.q.state = MXF_KNOT_NODATA;
	t.q.name = apex_name;
	assert_int_equal(run(mxf_answer, z, &t), MXF_HIT);
	th_assert_sane(&t.s);
	th_expect(t.s.parsed, KNOT_ANSWER, "www.example.com. 300 CNAME example.com.",
	          SET("example.com.", 900));
	expect_counted(0, 1, 0, 0, 0, 0);
	query_clean(&t);
	mxf_zone_free(z);

	server_reset();
	o.conf.mode = MXF_MODE_AUDIT;
	z = zone_new(&o);
	query_init(&t, "www." ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	cname = th_rrset(&t.s, "www." ZONE, KNOT_RRTYPE_CNAME, 300);
	th_add_name(cname, ZONE, &t.s.mm);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, cname, 0);
	t.q.state = MXF_KNOT_NODATA;
	t.q.name = apex_name;
	assert_int_equal(run(mxf_answer, z, &t), MXF_PASS);
	assert_int_equal(t.s.resp->rrset_count, 1);
	assert_int_equal(S.lines, 2);
	expect_line(0, LOG_WARNING, "missing MX audit, owner example.com., preference 10");
	expect_counted(0, 0, 0, 0, 0, 0);
	query_clean(&t);
	mxf_zone_free(z);
}

/*** AUTHORITY. ***/

/* The apex's NSEC without MX in a DNSSEC answer of a zone that synthesizes:
 * it must list MX, signed anew; the zone's keys cannot be read here, so the
 * answer fails closed. A query without DO is not looked at. */
static void test_authority(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	o.signs = true;
	mxf_zone_t *z = zone_new(&o);
	assert_true(mxf_zone_stages(z) & MXF_STAGE_AUTHORITY);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_AAAA, 1232, &SERVER32);
	th_begin(&t.s, KNOT_AUTHORITY);
	th_put(&t.s, KNOT_COMPR_HINT_NONE, soa(&t.s, 300), KNOT_PF_NOTRUNC);
	knot_rrset_t *nsec = th_rrset(&t.s, ZONE, KNOT_RRTYPE_NSEC, 300);
	uint8_t rd[64];
	size_t n = knot_dname_size(knot_dname_from_str(rd, "a." ZONE, sizeof(rd)));
	const uint8_t bitmap[] = { 0, 7, 0x62, 0, 0, 0, 0, 0x03, 0x80 }; /* A NS SOA RRSIG NSEC DNSKEY */
	memcpy(rd + n, bitmap, sizeof(bitmap));
	assert_int_equal(knot_rrset_add_rdata(nsec, rd, (uint16_t)(n + sizeof(bitmap)), &t.s.mm),
	                 KNOT_EOK);
	th_put(&t.s, KNOT_COMPR_HINT_NONE, nsec, 0);
	t.q.state = MXF_KNOT_OTHER;
	assert_int_equal(run(mxf_authority, z, &t), MXF_PASS);
	query_do(&t);
	assert_int_equal(run(mxf_authority, z, &t), MXF_SERVFAIL);
	assert_int_equal(S.val[MXF_VAL_FAILED], 1);
	expect_line(0, LOG_ERR, "failed to enforce MX, owner example.com.");
	query_clean(&t);
	mxf_zone_free(z);
}

/*** END. ***/

/* A legacy MX past the answer stage: an empty TC answer when Knot
 * truncated, SERVFAIL (with a line) otherwise; audit mode lets it pass. */
static void test_end_leak(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER32);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, mx(&t.s, SUB, 300, LEGACY), 0);
	t.q.state = MXF_KNOT_DONE;
	knot_wire_set_tc(t.s.resp->wire);
	assert_int_equal(run(mxf_end, z, &t), MXF_EMPTY_TC);
	knot_wire_clear_tc(t.s.resp->wire);
	assert_int_equal(run(mxf_end, z, &t), MXF_SERVFAIL);
	assert_int_equal(S.val[MXF_VAL_FAILED], 1);
	assert_int_equal(S.lines, 1);
	expect_line(0, LOG_ERR, "failed to enforce MX, owner sub.example.com.");
	query_clean(&t);

	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER32);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, mx(&t.s, SUB, 300, FILTER), 0);
	assert_int_equal(run(mxf_end, z, &t), MXF_PASS);
	query_clean(&t);
	mxf_zone_free(z);

	o.conf.mode = MXF_MODE_AUDIT;
	z = zone_new(&o);
	query_init(&t, SUB, KNOT_RRTYPE_MX, 1232, &SERVER32);
	th_put(&t.s, KNOT_COMPR_HINT_QNAME, mx(&t.s, SUB, 300, LEGACY), 0);
	assert_int_equal(run(mxf_end, z, &t), MXF_PASS);
	query_clean(&t);
	mxf_zone_free(z);
}

/* Transfers: refused at BEGIN with "refuse"; a served one counted on its
 * last message, and logged with "log". */
static void test_transfers(void **state)
{
	(void)state;
	server_reset();
	zone_opts_t o = defaults();
	mxf_zone_t *z = zone_new(&o);
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_AXFR, 1232, &SERVER32);
	serve(soa(&t.s, 3600));
	t.q.type = MXF_QUERY_AXFR;
	t.q.state = MXF_KNOT_OTHER;
	assert_int_equal(run(mxf_end, z, &t), MXF_PASS);
	assert_int_equal(S.val[MXF_VAL_XFR_ALLOWED], 0);
	t.q.state = MXF_KNOT_DONE;
	assert_int_equal(run(mxf_end, z, &t), MXF_PASS);
	assert_int_equal(S.val[MXF_VAL_XFR_ALLOWED], 1);
	assert_int_equal(S.lines, 1);
	expect_line(0, LOG_INFO, "outgoing transfer served, type AXFR, client 192.0.2.7, "
	            "serial 2026120101");
	assert_int_equal(run(mxf_begin, z, &t), MXF_PASS); /* Not refused here. */
	query_clean(&t);
	mxf_zone_free(z);

	server_reset();
	o.conf.transfer = MXF_XFR_REFUSE;
	z = zone_new(&o);
	query_init(&t, ZONE, KNOT_RRTYPE_IXFR, 1232, &SERVER32);
	t.q.type = MXF_QUERY_IXFR;
	assert_int_equal(run(mxf_begin, z, &t), MXF_REFUSED);
	assert_int_equal(S.val[MXF_VAL_XFR_REFUSED], 1);
	expect_line(0, LOG_INFO, "outgoing transfer refused, type IXFR, client 192.0.2.7");
	t.q.type = MXF_QUERY_NORMAL;
	assert_int_equal(run(mxf_begin, z, &t), MXF_PASS);
	query_clean(&t);
	mxf_zone_free(z);

	/* "allow" with "counters: off": nothing to count or write. */
	server_reset();
	o.conf.transfer = MXF_XFR_ALLOW;
	o.counters = false;
	z = zone_new(&o);
	query_init(&t, ZONE, KNOT_RRTYPE_AXFR, 1232, &SERVER32);
	t.q.type = MXF_QUERY_AXFR;
	t.q.state = MXF_KNOT_DONE;
	assert_int_equal(run(mxf_end, z, &t), MXF_PASS);
	assert_int_equal(S.val[MXF_VAL_XFR_ALLOWED], 0);
	assert_int_equal(S.lines, 0);
	query_clean(&t);
	mxf_zone_free(z);
}

/*** Zones. ***/

static unsigned stages_of(const zone_opts_t *o)
{
	mxf_zone_t *z = zone_new(o);
	unsigned stages = mxf_zone_stages(z);
	mxf_zone_free(z);
	return stages;
}

/* Hooks follow the configuration and whether Knot signs the zone. */
static void test_stages(void **state)
{
	(void)state;
	server_reset();
	enum {
		PRE = MXF_STAGE_PREANSWER, ANS = MXF_STAGE_ANSWER, BEG = MXF_STAGE_BEGIN,
		AUT = MXF_STAGE_AUTHORITY, EMX = MXF_STAGE_END_MX, EXF = MXF_STAGE_END_XFR,
		EDO = MXF_STAGE_END_DO,
	};
	zone_opts_t o = defaults();
	assert_int_equal(stages_of(&o), PRE | ANS | EMX | EXF);
	o.signs = true;
	assert_int_equal(stages_of(&o), PRE | ANS | AUT | EMX | EXF | EDO);
	o.conf.synthesize = false;
	assert_int_equal(stages_of(&o), PRE | ANS | EMX | EXF);
	o.conf.transfer = MXF_XFR_REFUSE;
	assert_int_equal(stages_of(&o), PRE | ANS | BEG | EMX);
	o.conf.transfer = MXF_XFR_ALLOW;
	assert_int_equal(stages_of(&o), PRE | ANS | EMX | EXF);
	o.counters = false;
	assert_int_equal(stages_of(&o), PRE | ANS | EMX);
	o.conf.mode = MXF_MODE_AUDIT;
	o.conf.synthesize = true;
	assert_int_equal(stages_of(&o), ANS);
	o.conf.transfer = MXF_XFR_LOG;
	assert_int_equal(stages_of(&o), ANS | EXF);
}

/* A zone whose engine could not be set up: MX and ANY fail closed. */
static void test_unloaded(void **state)
{
	(void)state;
	query_t t;
	query_init(&t, ZONE, KNOT_RRTYPE_MX, 1232, &SERVER32);
	assert_int_equal(mxf_unloaded(t.s.query, MXF_QUERY_NORMAL), MXF_SERVFAIL);
	query_clean(&t);
	query_init(&t, ZONE, KNOT_RRTYPE_ANY, 1232, &SERVER32);
	assert_int_equal(mxf_unloaded(t.s.query, MXF_QUERY_NORMAL), MXF_SERVFAIL);
	query_clean(&t);
	query_init(&t, ZONE, KNOT_RRTYPE_A, 1232, &SERVER32);
	assert_int_equal(mxf_unloaded(t.s.query, MXF_QUERY_NORMAL), MXF_PASS);
	query_clean(&t);
	query_init(&t, ZONE, KNOT_RRTYPE_AXFR, 1232, &SERVER32);
	assert_int_equal(mxf_unloaded(t.s.query, MXF_QUERY_AXFR), MXF_PASS);
	query_clean(&t);
}

int main(void)
{
	rcu_register_thread();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_preanswer_legacy),
		cmocka_unit_test(test_preanswer_ttl_scope),
		cmocka_unit_test(test_preanswer_below_apex),
		cmocka_unit_test(test_preanswer_compliant),
		cmocka_unit_test(test_preanswer_nullmx),
		cmocka_unit_test(test_preanswer_synthesize),
		cmocka_unit_test(test_preanswer_answered),
		cmocka_unit_test(test_preanswer_no_room),
		cmocka_unit_test(test_preanswer_unsigned_fails),
		cmocka_unit_test(test_answer_rewrite_audit),
		cmocka_unit_test(test_answer_apex_nodata),
		cmocka_unit_test(test_authority),
		cmocka_unit_test(test_end_leak),
		cmocka_unit_test(test_transfers),
		cmocka_unit_test(test_stages),
		cmocka_unit_test(test_unloaded),
	};
	int ret = cmocka_run_group_tests_name("stage", tests, NULL, NULL);
	rcu_unregister_thread();
	return ret;
}
