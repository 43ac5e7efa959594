/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Engine micro-benchmarks: the engine's hot calls on response packets built
 * the way knotd builds them at the ANSWER stage (question copied from a
 * parsed query, OPT space reserved, the zone's RRset put with the QNAME
 * compression hint, packet memory from a bump allocator like knotd's
 * per-query mempool).
 *
 * Every case that rewrites a packet re-creates it on each iteration; the
 * cost of creating it alone is measured as its own case ("build-...") and
 * subtracted (column "net").
 *
 *   bench_engine [-n SCALE] [-r RUNS]   native: ns/op, median of RUNS runs
 *   bench_engine --limiter              the audit limiter with 1, 2 and 8
 *                                       threads: one hot record, one hot
 *                                       RRset, 10^6 records (ns/op)
 *   bench_engine --callgrind K          under valgrind --tool=callgrind
 *                                       --collect-atstart=no: K iterations
 *                                       per case, each case dumped as
 *                                       "Trigger: Client Request: CASE"
 *                                       (tests/bench/engine.sh reads them)
 *
 * Never fails on timing: exit status is non-zero only if the engine returns
 * an error or a packet cannot be built.
 */

#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libknot/libknot.h>
#include <urcu.h>

#include "engine/audit.h"
#include "engine/policy.h"
#include "engine/rewrite.h"

#ifdef HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_DUMP_STATS_AT(s)	((void)(s))
#define RUNNING_ON_VALGRIND		0
#endif

#define ZONE		"bench.test."
#define SUB		"mail.bench.test."
/* Owners of the larger legacy RRsets: as long as SUB (the same costs), apart
 * from it (one audit entry per owner: the cases do not disturb each other). */
#define SUB20		"mai2.bench.test."
#define SUB150		"mai3.bench.test."
#define MAX_LEGACY	150

static void die(const char *what, int ret)
{
	fprintf(stderr, "bench_engine: %s failed (%s)\n", what,
	        ret != 0 ? knot_strerror(ret) : "null");
	exit(1);
}

/*** Packet memory: a bump allocator reset per query, as knotd's mempool. ***/

#define ARENA_SIZE	(512 * 1024)

typedef struct {
	uint8_t *base;
	size_t used;
} arena_t;

static void *arena_alloc(void *ctx, size_t len)
{
	arena_t *a = ctx;
	len = (len + 15) & ~(size_t)15;
	if (a->used + len > ARENA_SIZE) {
		return NULL;
	}
	void *p = a->base + a->used;
	a->used += len;
	return p;
}

static void arena_nofree(void *ptr)
{
	(void)ptr;
}

static arena_t arena;
static knot_mm_t pkt_mm;

static void arena_reset(void)
{
	arena.used = 0;
}

/*** Fixture: zone data, the query, and the response buffer. ***/

typedef struct {
	const char *qname;
	uint16_t qtype;
	knot_pkt_t *query;          /* Parsed from wire, as knotd has it. */
	uint8_t query_wire[KNOT_WIRE_MAX_PKTSIZE];
	const knot_rrset_t *answer; /* Zone data put in ANSWER (NULL: none). */
} fixture_t;

static uint8_t resp_wire[KNOT_WIRE_MAX_PKTSIZE];
static knot_rrset_t opt_rr;     /* EDNS of the response (1232, as knotd). */
static uint16_t opt_size;

static knot_rrset_t *rrset_new(const char *owner, uint16_t type)
{
	knot_dname_storage_t buf;
	if (knot_dname_from_str(buf, owner, sizeof(buf)) == NULL) {
		die("dname", 0);
	}
	knot_rrset_t *rr = knot_rrset_new(buf, type, KNOT_CLASS_IN, 3600, NULL);
	if (rr == NULL) {
		die("knot_rrset_new", 0);
	}
	return rr;
}

static void add_mx(knot_rrset_t *rr, uint16_t pref, const char *exchange)
{
	uint8_t data[2 + KNOT_DNAME_MAXLEN];
	knot_wire_write_u16(data, pref);
	knot_dname_t *name = knot_dname_from_str(data + 2, exchange, KNOT_DNAME_MAXLEN);
	if (name == NULL) {
		die("dname", 0);
	}
	int ret = knot_rrset_add_rdata(rr, data, 2 + knot_dname_size(name), NULL);
	if (ret != KNOT_EOK) {
		die("knot_rrset_add_rdata", ret);
	}
}

/* n legacy records: preferences 5, 15, 25, ... (some bypass, most
 * fallback), exchangers in and out of the zone, as customers leave them. */
static knot_rrset_t *legacy_set(const char *owner, unsigned n)
{
	knot_rrset_t *rr = rrset_new(owner, KNOT_RRTYPE_MX);
	for (unsigned i = 0; i < n; i++) {
		char ex[64];
		if (i % 2 == 0) {
			snprintf(ex, sizeof(ex), "mailgate%u.bench.test.", i);
		} else {
			snprintf(ex, sizeof(ex), "smtp%u.isp.net.", i);
		}
		add_mx(rr, (uint16_t)(5 + 10 * i), ex);
	}
	return rr;
}

static void fixture_init(fixture_t *f, const char *qname, uint16_t qtype,
                         const knot_rrset_t *answer)
{
	memset(f, 0, sizeof(*f));
	f->qname = qname;
	f->qtype = qtype;
	f->answer = answer;

	/* The query as it arrives: wire with EDNS, parsed. */
	knot_dname_storage_t name;
	if (knot_dname_from_str(name, qname, sizeof(name)) == NULL) {
		die("dname", 0);
	}
	knot_pkt_t *q = knot_pkt_new(f->query_wire, sizeof(f->query_wire), NULL);
	if (q == NULL) {
		die("knot_pkt_new", 0);
	}
	knot_wire_set_id(q->wire, 0x4242);
	int ret = knot_pkt_put_question(q, name, KNOT_CLASS_IN, qtype);
	if (ret == KNOT_EOK) {
		ret = knot_pkt_begin(q, KNOT_ADDITIONAL);
	}
	if (ret == KNOT_EOK) {
		ret = knot_pkt_put(q, KNOT_COMPR_HINT_NONE, &opt_rr, 0);
	}
	if (ret != KNOT_EOK) {
		die("query", ret);
	}
	size_t size = q->size;
	knot_pkt_free(q);

	f->query = knot_pkt_new(f->query_wire, size, NULL);
	if (f->query == NULL || (ret = knot_pkt_parse(f->query, 0)) != KNOT_EOK) {
		die("knot_pkt_parse", ret);
	}
}

static void fixture_clean(fixture_t *f)
{
	knot_pkt_free(f->query);
}

/*
 * The response at the ANSWER stage, as knotd has it when the ANSWER hooks
 * run: header and question copied from the query, OPT space reserved, the
 * answer RRset put (owner = QNAME, compressed to the question).
 */
static knot_pkt_t *build_response_in(const fixture_t *f, uint8_t *wire, knot_mm_t *mm)
{
	knot_pkt_t *pkt = knot_pkt_new(wire, KNOT_WIRE_MAX_PKTSIZE, mm);
	if (pkt == NULL) {
		die("knot_pkt_new", 0);
	}
	int ret = knot_pkt_init_response(pkt, f->query);
	if (ret == KNOT_EOK) {
		ret = knot_pkt_reserve(pkt, opt_size);
	}
	if (ret == KNOT_EOK) {
		knot_wire_set_aa(pkt->wire);
		ret = knot_pkt_begin(pkt, KNOT_ANSWER);
	}
	if (ret == KNOT_EOK && f->answer != NULL) {
		ret = knot_pkt_put(pkt, KNOT_COMPR_HINT_QNAME, f->answer, KNOT_PF_NULL);
	}
	if (ret != KNOT_EOK) {
		die("response", ret);
	}
	return pkt;
}

static knot_pkt_t *build_response(const fixture_t *f)
{
	arena_reset();
	return build_response_in(f, resp_wire, &pkt_mm);
}

/*** What the stages (stage.c) do per legacy RRset and record (mxf_audit_*). ***/

static mxf_limiter_t *limiter;
static mxf_audit_zone_t bench_zone;
static const knot_dname_t *zone_name;
static uint32_t fixed_now;

typedef struct {
	mxf_audit_t audit;
	unsigned lines;
} audit_cb_t;

/* A stage starts each query's audit before the rewrite runs and ends it
 * after (mxf_audit_done()). A fixed clock keeps every key silent after its
 * first hit: the steady state with log-interval 60 (no line formatted). */
static void audit_begin(audit_cb_t *a)
{
	mxf_audit_init(&a->audit, &bench_zone, 60);
	a->audit.now = fixed_now;
}

static bool on_legacy_set_audit(const knot_rrset_t *rr, bool expanded,
                                mxf_action_t action, void *data)
{
	audit_cb_t *a = data;
	return mxf_audit_set(&a->audit, rr, rr->owner, action);
}

static void on_record_audit(audit_cb_t *a, const mxf_legacy_t *rec, mxf_line_kind_t kind)
{
	mxf_line_t line;
	if (mxf_audit_record(&a->audit, rec, kind, &line)) {
		a->lines++;
	}
}

static void on_legacy_audit(const mxf_legacy_t *rec, void *data)
{
	on_record_audit(data, rec, MXF_LINE_LEGACY);
}

static void on_missing_audit(const mxf_legacy_t *rec, void *data)
{
	on_record_audit(data, rec, MXF_LINE_MISSING);
}

/*** Cases. ***/

typedef struct bench_case bench_case_t;

struct bench_case {
	const char *name;
	const char *base;      /* Case whose cost is subtracted, or NULL. */
	unsigned iters;        /* Native iterations per run (scaled by -n). */
	void (*run)(const bench_case_t *c, unsigned iters);
	fixture_t *fix;
	mxf_ctx_t *ctx;
	const knot_rrset_t *rrset;  /* For the preanswer case. */
	const knot_pkt_t *pkt;      /* For the END-stage check. */
	double ns[16];
	double median;
};

static volatile uint64_t sink;
static audit_cb_t audit_cb;

static void expect_ok(int ret, const char *what)
{
	if (ret != KNOT_EOK) {
		die(what, ret);
	}
}

static void run_build(const bench_case_t *c, unsigned iters)
{
	for (unsigned i = 0; i < iters; i++) {
		knot_pkt_t *pkt = build_response(c->fix);
		sink += pkt->size;
		knot_pkt_free(pkt);
	}
}

static void run_process(const bench_case_t *c, unsigned iters)
{
	for (unsigned i = 0; i < iters; i++) {
		knot_pkt_t *pkt = build_response(c->fix);
		mxf_result_t res;
		bool audit = c->ctx->cb_data == &audit_cb;
		if (audit) {
			audit_begin(&audit_cb);
		}
		expect_ok(mxf_process(pkt, c->ctx, &res), c->name);
		if (audit) {
			mxf_audit_done(&audit_cb.audit);
		}
		sink += pkt->size + res.enforced;
		knot_pkt_free(pkt);
	}
}

/* Apex MX at PREANSWER: classify the zone's RRset, report it, put the set
 * into the response that has only its question. */
static void run_preanswer(const bench_case_t *c, unsigned iters)
{
	const mxf_policy_t *policy = c->ctx->policy;
	for (unsigned i = 0; i < iters; i++) {
		knot_pkt_t *pkt = build_response(c->fix);
		mxf_result_t res = { 0 };
		audit_begin(&audit_cb);
		if (mxf_classify(policy, &c->rrset->rrs) != MXF_SET_LEGACY) {
			die(c->name, 0);
		}
		mxf_report(c->ctx, c->rrset, false, MXF_ACTION_BLOCKED, &res);
		mxf_audit_done(&audit_cb.audit);
		expect_ok(mxf_write_set(pkt, policy, zone_name, c->rrset->ttl,
		                      KNOT_COMPR_HINT_QNAME, KNOT_PF_NULL), c->name);
		sink += pkt->size + res.blocked[0];
		knot_pkt_free(pkt);
	}
}

/* The END-stage check on a finished, enforced answer (read-only). */
static void run_has_leak(const bench_case_t *c, unsigned iters)
{
	for (unsigned i = 0; i < iters; i++) {
		if ((mxf_pkt_leak(c->pkt, c->ctx) >= 0)) {
			die("mxf_pkt_leak (leak found)", 0);
		}
		sink++;
	}
}

static const knot_dname_t *owner_name;

/* One record checked on its own (an RRset too large for an RRset entry, or
 * an error line): key, lookup, one CAS. */
static void run_limiter(const bench_case_t *c, unsigned iters)
{
	mxf_legacy_t rec = {
		.owner = owner_name,
		.exchange = (const knot_dname_t *)"\x08""mailgate""\x05""bench""\x04""test",
		.pref = 5,
		.action = MXF_ACTION_BLOCKED,
	};
	for (unsigned i = 0; i < iters; i++) {
		mxf_audit_t a;
		mxf_line_t line;
		mxf_audit_init(&a, &bench_zone, 60);
		a.now = fixed_now;
		sink += mxf_audit_record(&a, &rec, MXF_LINE_LEGACY, &line);
	}
}

/* The limiter reads the clock once per query (mxf_audit_init()). */
static void run_now(const bench_case_t *c, unsigned iters)
{
	for (unsigned i = 0; i < iters; i++) {
		sink += mxf_now();
	}
}

/*** The limiter under threads. ***/

static double now_ns(void);

#define LIM_KEYS	1000000
#define LIM_OWNER	16 /* Bytes per owner name in the flat array below. */

typedef enum { LIM_HOT_RECORD, LIM_HOT_SET, LIM_MANY } lim_case_t;

typedef struct {
	lim_case_t what;
	unsigned ops;
	unsigned id;
	const uint8_t *owners;       /* LIM_KEYS names of LIM_OWNER bytes. */
	const knot_rrset_t *set;
	pthread_barrier_t *barrier;
	double ns;
} lim_worker_t;

static const knot_dname_t *lim_exchange =
	(const knot_dname_t *)"\x02""mx""\x03""isp""\x07""example";

static void lim_record(const knot_dname_t *owner, mxf_legacy_t *rec)
{
	*rec = (mxf_legacy_t){ .owner = owner, .exchange = lim_exchange, .pref = 5,
	                       .action = MXF_ACTION_BLOCKED };
}

static void *lim_worker(void *arg)
{
	lim_worker_t *w = arg;
	rcu_register_thread();
	mxf_legacy_t rec;
	lim_record(owner_name, &rec);
	uint64_t x = 0x9E3779B97F4A7C15ULL * (w->id + 1);
	unsigned logged = 0;
	pthread_barrier_wait(w->barrier);
	double t0 = now_ns();
	rcu_read_lock();
	for (unsigned i = 0; i < w->ops; i++) {
		mxf_audit_t a;
		mxf_line_t line;
		mxf_audit_init(&a, &bench_zone, 60);
		a.now = fixed_now;
		if (w->what == LIM_HOT_SET) {
			/* The busy path: the RRset entry holds its records back. */
			if (mxf_audit_set(&a, w->set, w->set->owner, MXF_ACTION_BLOCKED)) {
				logged++;
			}
		} else {
			if (w->what == LIM_MANY) {
				x ^= x << 13; x ^= x >> 7; x ^= x << 17;
				lim_record(w->owners + (x % LIM_KEYS) * LIM_OWNER, &rec);
			}
			logged += mxf_audit_record(&a, &rec, MXF_LINE_LEGACY, &line);
		}
		mxf_audit_done(&a);
	}
	rcu_read_unlock();
	w->ns = (now_ns() - t0) / w->ops;
	sink += logged;
	rcu_unregister_thread();
	return NULL;
}

static double lim_run(lim_case_t what, unsigned threads, unsigned ops,
                      const uint8_t *owners, const knot_rrset_t *set)
{
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, threads);
	pthread_t tid[8];
	lim_worker_t w[8];
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (lim_worker_t){ what, ops, i, owners, set, &barrier, 0 };
		if (pthread_create(&tid[i], NULL, lim_worker, &w[i]) != 0) {
			die("pthread_create", 0);
		}
	}
	double ns = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		ns += w[i].ns;
	}
	pthread_barrier_destroy(&barrier);
	return ns / threads;
}

/* ns per check as each thread sees it (threads beyond the cores share
 * them), and checks per second of all threads together. */
static int cmp_double(const void *a, const void *b);

static void bench_limiter(const knot_rrset_t *set, double scale, unsigned runs)
{
	static const unsigned nthreads[] = { 1, 2, 8 };
	uint8_t *owners = malloc((size_t)LIM_KEYS * LIM_OWNER);
	if (owners == NULL) {
		die("malloc", 0);
	}
	for (unsigned i = 0; i < LIM_KEYS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "z%u.test.", i);
		if (knot_dname_from_str(owners + (size_t)i * LIM_OWNER, name, LIM_OWNER) == NULL) {
			die("dname", 0);
		}
	}
	/* Every record known and silent, as in the steady state. */
	rcu_read_lock();
	for (unsigned i = 0; i < LIM_KEYS; i++) {
		mxf_audit_t a;
		mxf_line_t line;
		mxf_legacy_t rec;
		mxf_audit_init(&a, &bench_zone, 60);
		a.now = fixed_now;
		lim_record(owners + (size_t)i * LIM_OWNER, &rec);
		(void)mxf_audit_record(&a, &rec, MXF_LINE_LEGACY, &line);
	}
	rcu_read_unlock();
	mxf_limiter_stats_t st;
	mxf_limiter_stats(limiter, &st);

	static const char *names[] = { "hot record", "hot RRset (2 records)", "10^6 records" };
	printf("%-24s %8s %10s %12s\n", "limiter case", "threads", "ns/op", "Mchecks/s");
	for (int what = LIM_HOT_RECORD; what <= LIM_MANY; what++) {
		for (size_t t = 0; t < sizeof(nthreads) / sizeof(nthreads[0]); t++) {
			unsigned ops = (unsigned)((what == LIM_MANY ? 1000000 : 4000000) * scale);
			ops = ops > 0 ? ops : 1;
			double ns[16];
			for (unsigned r = 0; r < runs; r++) {
				ns[r] = lim_run(what, nthreads[t], ops, owners, set);
			}
			qsort(ns, runs, sizeof(double), cmp_double);
			printf("%-24s %8u %10.1f %12.2f\n", names[what], nthreads[t],
			       ns[runs / 2], nthreads[t] * 1e3 / ns[runs / 2]);
		}
	}
	printf("(median of %u runs; %zu entries, %zu bytes: %.0f bytes per record; "
	       "%zu slots)\n", runs, st.entries, st.bytes, (double)st.bytes / st.entries,
	       st.slots);
	free(owners);
}

/*** Measurement. ***/

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static bench_case_t *find_case(bench_case_t *cases, size_t n, const char *name)
{
	for (size_t i = 0; name != NULL && i < n; i++) {
		if (strcmp(cases[i].name, name) == 0) {
			return &cases[i];
		}
	}
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_engine [-n SCALE] [-r RUNS] [--callgrind ITERS] "
	        "[--list]\n");
}

int main(int argc, char **argv)
{
	double scale = 1.0;
	unsigned runs = 5;
	unsigned cg_iters = 0;
	bool list = false;
	bool lim_threads = false;

	static const struct option opts[] = {
		{ "callgrind", required_argument, NULL, 'c' },
		{ "list", no_argument, NULL, 'l' },
		{ "limiter", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 }
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "n:r:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': scale = atof(optarg); break;
		case 'r': runs = (unsigned)atoi(optarg); break;
		case 'c': cg_iters = (unsigned)atoi(optarg); break;
		case 'l': list = true; break;
		case 'L': lim_threads = true; break;
		default: usage(); return 2;
		}
	}
	if (scale <= 0 || runs < 1 || runs > 16 || cg_iters > 1000000) {
		usage();
		return 2;
	}

	/* Memory. */
	arena.base = malloc(ARENA_SIZE);
	if (arena.base == NULL) {
		die("malloc", 0);
	}
	pkt_mm.ctx = &arena;
	pkt_mm.alloc = arena_alloc;
	pkt_mm.free = arena_nofree;
	expect_ok(knot_edns_init(&opt_rr, 1232, 0, 0, NULL), "knot_edns_init");
	opt_size = (uint16_t)knot_edns_wire_size(&opt_rr);

	/* Policy: the documented default set, enforce, zone scope. */
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	const char *err = NULL;
	mxf_policy_t *policy = mxf_policy_new(&conf, &err);
	if (policy == NULL) {
		fprintf(stderr, "bench_engine: policy: %s\n", err ? err : "?");
		return 1;
	}
	/* The limiter's users are registered RCU readers, as knotd's workers. */
	rcu_register_thread();
	mxf_limiter_opts_t lopts = { .max_bytes = (size_t)1 << 30 };
	limiter = mxf_limiter_new(&lopts);
	if (limiter == NULL) {
		die("mxf_limiter_new", 0);
	}
	fixed_now = mxf_now();

	knot_dname_storage_t zone_buf, sub_buf;
	zone_name = knot_dname_from_str(zone_buf, ZONE, sizeof(zone_buf));
	owner_name = knot_dname_from_str(sub_buf, SUB, sizeof(sub_buf));
	mxf_audit_zone_init(&bench_zone, limiter, zone_name);

	/* Zone data. */
	knot_rrset_t *a_set = rrset_new(SUB, KNOT_RRTYPE_A);
	expect_ok(knot_rrset_add_rdata(a_set, (const uint8_t *)"\xc0\x00\x02\x07", 4,
	                               NULL), "A");
	knot_rrset_t *compliant = rrset_new(SUB, KNOT_RRTYPE_MX);
	add_mx(compliant, 10, "france.security-mail.net.");
	add_mx(compliant, 20, "europe.security-mail.net.");
	knot_rrset_t *legacy2 = legacy_set(SUB, 2);
	knot_rrset_t *legacy20 = legacy_set(SUB20, 20);
	knot_rrset_t *legacy150 = legacy_set(SUB150, MAX_LEGACY);
	knot_rrset_t *apex2 = legacy_set(ZONE, 2);

	fixture_t fx_a, fx_comp, fx_l2, fx_l20, fx_l150, fx_apex;
	fixture_init(&fx_a, SUB, KNOT_RRTYPE_A, a_set);
	fixture_init(&fx_comp, SUB, KNOT_RRTYPE_MX, compliant);
	fixture_init(&fx_l2, SUB, KNOT_RRTYPE_MX, legacy2);
	fixture_init(&fx_l20, SUB20, KNOT_RRTYPE_MX, legacy20);
	fixture_init(&fx_l150, SUB150, KNOT_RRTYPE_MX, legacy150);
	fixture_init(&fx_apex, ZONE, KNOT_RRTYPE_MX, NULL);

	mxf_ctx_t ctx = { .policy = policy, .zone = zone_name };
	mxf_ctx_t ctx_audit = { .policy = policy, .zone = zone_name,
	                        .on_legacy = on_legacy_audit,
	                        .on_legacy_set = on_legacy_set_audit,
	                        .on_missing = on_missing_audit, .cb_data = &audit_cb };

	/* END-stage packets, finished (OPT written), as built by the server:
	 * an answer enforced at ANSWER, and a zone's compliant RRset. */
	static uint8_t end_wire[2][KNOT_WIRE_MAX_PKTSIZE];
	knot_pkt_t *end_enf = build_response_in(&fx_l2, end_wire[0], NULL);
	knot_pkt_t *end_comp = build_response_in(&fx_comp, end_wire[1], NULL);
	mxf_result_t res;
	expect_ok(mxf_process(end_enf, &ctx, &res), "mxf_process");
	if (res.enforced != 1) {
		die("enforced answer", 0);
	}
	knot_pkt_t *end_pkts[] = { end_enf, end_comp };
	for (size_t i = 0; i < 2; i++) {
		expect_ok(knot_pkt_begin(end_pkts[i], KNOT_AUTHORITY), "knot_pkt_begin");
		expect_ok(knot_pkt_begin(end_pkts[i], KNOT_ADDITIONAL), "knot_pkt_begin");
		end_pkts[i]->reserved -= opt_size;
		expect_ok(knot_pkt_put(end_pkts[i], KNOT_COMPR_HINT_NONE, &opt_rr, 0), "OPT");
	}

	/* name, base (subtracted), native iterations, loop, fixture, ctx. */
#define CASE(n, b, it, fn, fx, cx, ...) \
	{ .name = (n), .base = (b), .iters = (it), .run = (fn), .fix = (fx), \
	  .ctx = (cx), __VA_ARGS__ }
	bench_case_t cases[] = {
		CASE("build-A", NULL, 400000, run_build, &fx_a, NULL),
		CASE("passthrough-A", "build-A", 400000, run_process, &fx_a, &ctx),
		CASE("build-MX-compliant", NULL, 400000, run_build, &fx_comp, NULL),
		CASE("compliant-MX", "build-MX-compliant", 400000, run_process,
		     &fx_comp, &ctx),
		CASE("build-legacy-2", NULL, 300000, run_build, &fx_l2, NULL),
		CASE("rewrite-2", "build-legacy-2", 300000, run_process, &fx_l2, &ctx),
		CASE("rewrite-2+audit", "build-legacy-2", 300000, run_process, &fx_l2,
		     &ctx_audit),
		CASE("build-legacy-20", NULL, 50000, run_build, &fx_l20, NULL),
		CASE("rewrite-20", "build-legacy-20", 50000, run_process, &fx_l20, &ctx),
		CASE("rewrite-20+audit", "build-legacy-20", 50000, run_process, &fx_l20,
		     &ctx_audit),
		CASE("build-legacy-150", NULL, 5000, run_build, &fx_l150, NULL),
		CASE("rewrite-150", "build-legacy-150", 5000, run_process, &fx_l150, &ctx),
		CASE("rewrite-150+audit", "build-legacy-150", 5000, run_process,
		     &fx_l150, &ctx_audit),
		CASE("build-question", NULL, 400000, run_build, &fx_apex, NULL),
		CASE("preanswer-apex-2+audit", "build-question", 300000, run_preanswer,
		     &fx_apex, &ctx_audit, .rrset = apex2),
		CASE("has-leak-enforced", NULL, 1000000, run_has_leak, NULL, &ctx,
		     .pkt = end_enf),
		CASE("has-leak-compliant", NULL, 1000000, run_has_leak, NULL, &ctx,
		     .pkt = end_comp),
		CASE("limiter-record", NULL, 1000000, run_limiter, NULL, NULL),
		CASE("mxf_now", NULL, 1000000, run_now, NULL, NULL),
	};
#undef CASE
	const size_t ncases = sizeof(cases) / sizeof(cases[0]);

	if (list) {
		for (size_t i = 0; i < ncases; i++) {
			printf("%s %s\n", cases[i].name, cases[i].base ? cases[i].base : "-");
		}
		return 0;
	}

	if (lim_threads) {
		bench_limiter(legacy2, scale, runs);
	} else {
		/* Lookups run inside rcu_read_lock(), as in knotd. */
		rcu_read_lock();
		/* Warm up: every case once (lazy binding, first-touch, limiter keys). */
		for (size_t i = 0; i < ncases; i++) {
			cases[i].run(&cases[i], 2);
		}

		if (cg_iters > 0) {
			/* Under callgrind --collect-atstart=no: collect only the loops. */
			for (size_t i = 0; i < ncases; i++) {
				CALLGRIND_TOGGLE_COLLECT;
				cases[i].run(&cases[i], cg_iters);
				CALLGRIND_TOGGLE_COLLECT;
				CALLGRIND_DUMP_STATS_AT(cases[i].name);
				printf("CG %s %s %u\n", cases[i].name,
				       cases[i].base ? cases[i].base : "-", cg_iters);
			}
			if (!RUNNING_ON_VALGRIND) {
				fprintf(stderr, "bench_engine: --callgrind outside valgrind: "
				        "no counts\n");
			}
		} else {
			/* Runs interleaved across cases, so drift hits them alike. */
			for (unsigned r = 0; r < runs; r++) {
				for (size_t i = 0; i < ncases; i++) {
					unsigned n = (unsigned)(cases[i].iters * scale);
					n = n > 0 ? n : 1;
					double t0 = now_ns();
					cases[i].run(&cases[i], n);
					cases[i].ns[r] = (now_ns() - t0) / n;
				}
			}
			printf("%-24s %10s %10s %10s  %s\n", "case", "iters", "ns/op", "net ns/op",
			       "(net = ns/op - base)");
			for (size_t i = 0; i < ncases; i++) {
				qsort(cases[i].ns, runs, sizeof(double), cmp_double);
				cases[i].median = cases[i].ns[runs / 2];
			}
			for (size_t i = 0; i < ncases; i++) {
				bench_case_t *c = &cases[i];
				bench_case_t *b = find_case(cases, ncases, c->base);
				unsigned n = (unsigned)(c->iters * scale);
				if (b != NULL) {
					printf("%-24s %10u %10.1f %10.1f  base %s\n", c->name, n ? n : 1,
					       c->median, c->median - b->median, b->name);
				} else {
					printf("%-24s %10u %10.1f %10s\n", c->name, n ? n : 1,
					       c->median, "-");
				}
			}
			printf("(median of %u runs; audit lines that would be logged: %u)\n",
			       runs, audit_cb.lines);
		}
		rcu_read_unlock();
	}

	knot_pkt_free(end_enf);
	knot_pkt_free(end_comp);
	fixture_clean(&fx_a);
	fixture_clean(&fx_comp);
	fixture_clean(&fx_l2);
	fixture_clean(&fx_l20);
	fixture_clean(&fx_l150);
	fixture_clean(&fx_apex);
	knot_rrset_t *sets[] = { a_set, compliant, legacy2, legacy20, legacy150, apex2 };
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		knot_rrset_free(sets[i], NULL);
	}
	knot_rrset_clear(&opt_rr, NULL);
	mxf_audit_zone_clear(&bench_zone);
	mxf_limiter_free(limiter);
	rcu_unregister_thread();
	mxf_policy_free(policy);
	free(arena.base);
	return (int)(sink == 0xdeadbeef);
}
