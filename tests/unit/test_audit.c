/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Audit trail: the limiter's contract (docs/log-format.md, "Rate limiting")
 * checked on the engine alone, with a clock the tests set: at most one and
 * at least one line per record and interval, lines + suppressed =
 * occurrences (also with 8 threads), 10^6 records, memory returned, the
 * bound, RRset-level entries, missing MX reports, error lines, and the
 * format (every field within Knot's 512-byte line).
 *
 * Like knotd's workers, every thread that uses the limiter is a registered
 * RCU reader and calls it inside rcu_read_lock().
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <urcu.h>

/* The engine's audit limiter compiled in: the test drives its periodic
 * work itself (tick()), where the product runs it in the limiter's thread. */
#include "engine/audit.c"
#include "engine/policy.h"
#include "pkt_helpers.h"

#define INTERVAL	60
#define T0		1000

/* One pass of the limiter's periodic work at \a now, over the whole table. */
static void limiter_tick(mxf_limiter_t *lim, uint32_t now)
{
	tick(lim, now, 1);
}

/*** Lines of held occurrences (mxf_audit_flush()'s callback). ***/

#define EMIT_KEEP	64 /* Lines kept whole; the others only counted. */

typedef struct {
	char text[512];
	mxf_line_t line;
	void *ctx;
} emitted_t;

static pthread_mutex_t emit_lock = PTHREAD_MUTEX_INITIALIZER;
static emitted_t emitted[EMIT_KEEP];
static size_t emitted_n;
static unsigned long long emitted_supp; /* Sum of their suppressed. */

static void emit_cb(void *ctx, const mxf_line_t *line)
{
	pthread_mutex_lock(&emit_lock);
	if (emitted_n < EMIT_KEEP) {
		emitted_t *e = &emitted[emitted_n];
		mxf_line_format(e->text, sizeof(e->text), line);
		e->line = *line;
		e->line.owner = NULL; /* Not valid after the call. */
		e->line.exchange = NULL;
		e->ctx = ctx;
	}
	emitted_n++;
	emitted_supp += line->suppressed;
	pthread_mutex_unlock(&emit_lock);
}

static void emitted_reset(void)
{
	pthread_mutex_lock(&emit_lock);
	emitted_n = 0;
	emitted_supp = 0;
	pthread_mutex_unlock(&emit_lock);
}

static size_t emitted_count(void)
{
	pthread_mutex_lock(&emit_lock);
	size_t n = emitted_n;
	pthread_mutex_unlock(&emit_lock);
	return n;
}

static mxf_limiter_t *limiter_new(size_t max_bytes)
{
	mxf_limiter_opts_t opts = { .max_bytes = max_bytes };
	mxf_limiter_t *lim = mxf_limiter_new(&opts);
	assert_non_null(lim);
	emitted_reset();
	return lim;
}

/* An instance of zone \a name (as a module load makes one). */
static void zinit(mxf_audit_zone_t *z, mxf_limiter_t *lim, const char *name)
{
	knot_dname_storage_t buf;
	mxf_audit_zone_init(z, lim, th_dname(buf, name));
}

/* Where the glue writes held lines: a query of the zone, or a load. */
static size_t flush(mxf_audit_zone_t *z, uint32_t now)
{
	return mxf_audit_flush(z, now, emit_cb, z);
}

/*** Records and RRsets. ***/

typedef struct {
	knot_dname_storage_t owner, exchange;
	mxf_legacy_t rec;
} rec_t;

static mxf_legacy_t *rec_make(rec_t *r, const char *owner, uint16_t pref,
                              const char *exchange, mxf_action_t action)
{
	r->rec = (mxf_legacy_t){
		.owner = th_dname(r->owner, owner),
		.exchange = th_dname(r->exchange, exchange),
		.pref = pref,
		.risk = pref <= 10 ? MXF_RISK_BYPASS : MXF_RISK_FALLBACK,
		.action = action,
	};
	return &r->rec;
}

/* One occurrence of a record answered on its own (no RRset entry: as for an
 * RRset too large for one). Returns its suppressed count, or -1 (no line). */
static long occur(mxf_audit_zone_t *z, uint32_t interval, uint32_t now,
                  const mxf_legacy_t *rec, mxf_line_kind_t kind)
{
	mxf_audit_t a;
	mxf_line_t line;
	rcu_read_lock();
	mxf_audit_init(&a, z, interval);
	a.now = now;
	a.owner = rec->owner;
	bool logged = mxf_audit_record(&a, rec, kind, &line);
	mxf_audit_done(&a);
	rcu_read_unlock();
	return logged ? (long)line.suppressed : -1;
}

static long hit1(mxf_audit_zone_t *z, uint32_t now, const mxf_legacy_t *rec)
{
	return occur(z, INTERVAL, now, rec, MXF_LINE_LEGACY);
}

static void setup_rcu(void)
{
	rcu_register_thread();
}

/*** The rule on one record. ***/

static void test_record_rule(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	rec_t r;
	const mxf_legacy_t *rec = rec_make(&r, "example.com.", 5, "mailgate.example.com.",
	                                   MXF_ACTION_BLOCKED);

	/* First occurrence: a line at once, nothing before it. */
	assert_int_equal(hit1(&z, T0, rec), 0);
	/* Within the interval: counted. */
	for (uint32_t i = 0; i < 7; i++) {
		assert_int_equal(hit1(&z, T0 + i, rec), -1);
	}
	assert_int_equal(hit1(&z, T0 + INTERVAL - 1, rec), -1);
	/* The interval over: a line at once with the 8 held. */
	assert_int_equal(hit1(&z, T0 + INTERVAL, rec), 8);
	assert_int_equal(hit1(&z, T0 + INTERVAL + 1, rec), -1);
	assert_int_equal(hit1(&z, T0 + 3 * INTERVAL, rec), 1);

	/* Quiet for long after a line with nothing held: forgotten, then a
	 * first occurrence again. */
	limiter_tick(lim, T0 + 5 * INTERVAL);
	assert_false(mxf_audit_due(&z));
	assert_int_equal(flush(&z, T0 + 5 * INTERVAL), 0);
	mxf_limiter_stats_t st;
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(hit1(&z, T0 + 6 * INTERVAL, rec), 0);

	mxf_audit_zone_clear(&z);
	mxf_limiter_free(lim);
}

/* Held occurrences and no later one: their line when the record has been
 * quiet for a whole interval after its own, standing for the last of them,
 * with no client; it starts an interval, so lines stay an interval apart.
 * The reclaimer queues it; the zone's next answer (flush) writes it. */
static void test_quiet_line(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	rec_t r;
	const mxf_legacy_t *rec = rec_make(&r, "www.example.com.", 40, "smtp.isp.net.",
	                                   MXF_ACTION_AUDIT);

	assert_int_equal(hit1(&z, T0, rec), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(hit1(&z, T0 + 10 + i, rec), -1);
	}
	/* The interval is over but the next occurrence may still carry them. */
	limiter_tick(lim, T0 + INTERVAL);
	limiter_tick(lim, T0 + 2 * INTERVAL - 1);
	assert_false(mxf_audit_due(&z));
	/* A whole interval quiet: queued on the zone, written by its flush. */
	limiter_tick(lim, T0 + 2 * INTERVAL);
	assert_true(mxf_audit_due(&z));
	assert_int_equal(emitted_count(), 0);
	assert_int_equal(flush(&z, T0 + 2 * INTERVAL + 3), 1);
	assert_false(mxf_audit_due(&z));
	assert_int_equal(emitted_count(), 1);
	assert_int_equal(emitted[0].line.suppressed, 4);
	assert_null(emitted[0].line.client);
	assert_ptr_equal(emitted[0].ctx, &z);
	assert_string_equal(emitted[0].text, "legacy MX audit, owner www.example.com., "
	                    "preference 40, exchange smtp.isp.net., risk fallback, "
	                    "client -, suppressed 4");
	/* It started an interval: an occurrence right after is held... */
	assert_int_equal(hit1(&z, T0 + 2 * INTERVAL + 4, rec), -1);
	/* ...and carried by the next line: 1 + 5 + 1 + 1 = 8 occurrences. */
	assert_int_equal(hit1(&z, T0 + 3 * INTERVAL + 3, rec), 1);

	/* Queued, but a query carried them first: no second line. */
	assert_int_equal(hit1(&z, T0 + 3 * INTERVAL + 4, rec), -1);
	limiter_tick(lim, T0 + 5 * INTERVAL + 3);
	assert_true(mxf_audit_due(&z));
	assert_int_equal(hit1(&z, T0 + 5 * INTERVAL + 4, rec), 1);
	assert_int_equal(flush(&z, T0 + 5 * INTERVAL + 5), 0);

	/* Nothing held at the end of an interval: forgotten, no line. */
	limiter_tick(lim, T0 + 8 * INTERVAL);
	assert_int_equal(emitted_count(), 1);
	mxf_limiter_stats_t st;
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 0);

	assert_int_equal(mxf_audit_zone_clear(&z), 0);
	mxf_limiter_free(lim);
}

/* Instances of one zone share its records; an unloaded one hands them to
 * the newest (a reload), or they are forgotten (the zone is gone). */
static void test_zone_instances(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t old, other;
	zinit(&old, lim, "a.test.");
	zinit(&other, lim, "b.test.");
	rec_t a, a2, b;
	const mxf_legacy_t *ra = rec_make(&a, "a.test.", 5, "mx.a.test.", MXF_ACTION_BLOCKED);
	const mxf_legacy_t *ra2 = rec_make(&a2, "www.a.test.", 5, "mx.a.test.",
	                                   MXF_ACTION_BLOCKED);
	const mxf_legacy_t *rb = rec_make(&b, "b.test.", 5, "mx.b.test.", MXF_ACTION_BLOCKED);
	const uint32_t t1 = T0 + 2 * INTERVAL;
	assert_int_equal(hit1(&old, T0, ra2), 0);
	assert_int_equal(hit1(&old, T0 + 1, ra2), -1);
	assert_int_equal(hit1(&old, t1 - 10, ra), 0);
	assert_int_equal(hit1(&old, t1 - 9, ra), -1);
	assert_int_equal(hit1(&other, t1 - 10, rb), 0);
	assert_int_equal(hit1(&other, t1 - 9, rb), -1);
	/* ra2 goes quiet: queued on the old instance. */
	limiter_tick(lim, t1);
	assert_true(mxf_audit_due(&old));

	/* A reload: the new instance shares the records (no new line), and
	 * at its load it writes what the old one had queued. */
	mxf_audit_zone_t new;
	zinit(&new, lim, "A.TEST.");
	assert_int_equal(flush(&new, t1), 1);
	assert_int_equal(emitted[0].line.suppressed, 0);
	assert_ptr_equal(emitted[0].ctx, &new);
	assert_false(mxf_audit_due(&old));
	assert_int_equal(hit1(&new, t1 - 8, ra), -1); /* Still the old interval. */
	assert_int_equal(mxf_audit_zone_clear(&old), 0);
	mxf_limiter_stats_t st;
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(hit1(&new, t1 - 7, ra), -1);
	/* The next line of ra carries all it held, through both instances. */
	assert_int_equal(hit1(&new, t1 - 10 + INTERVAL, ra), 3);

	/* The zone leaves the configuration: forgotten with what it holds. */
	assert_int_equal(hit1(&new, t1 - 9 + INTERVAL, ra), -1);
	assert_int_equal(mxf_audit_zone_clear(&new), 1);
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 1); /* b.test. is another zone. */
	assert_int_equal(mxf_audit_zone_clear(&other), 1);
	limiter_tick(lim, T0 + 1); /* Frees the unlinked entries. */
	mxf_limiter_free(lim);
}

/*** Keys. ***/

static void test_keys(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	rec_t r;
	assert_int_equal(hit1(&z, T0, rec_make(&r, "www.example.com.", 5, "mx.example.net.",
	                                       MXF_ACTION_BLOCKED)), 0);
	/* The same record in other case: the same key. */
	assert_int_equal(hit1(&z, T0, rec_make(&r, "WwW.ExAmPlE.CoM.", 5, "MX.Example.NET.",
	                                       MXF_ACTION_BLOCKED)), -1);
	/* Any field differs: another key. */
	assert_int_equal(hit1(&z, T0, rec_make(&r, "ww.example.com.", 5, "mx.example.net.",
	                                       MXF_ACTION_BLOCKED)), 0);
	assert_int_equal(hit1(&z, T0, rec_make(&r, "www.example.com.", 6, "mx.example.net.",
	                                       MXF_ACTION_BLOCKED)), 0);
	assert_int_equal(hit1(&z, T0, rec_make(&r, "www.example.com.", 5 + 256,
	                                       "mx.example.net.", MXF_ACTION_BLOCKED)), 0);
	assert_int_equal(hit1(&z, T0, rec_make(&r, "www.example.com.", 5, "mx2.example.net.",
	                                       MXF_ACTION_BLOCKED)), 0);
	/* Fields do not slide into each other. */
	assert_int_equal(hit1(&z, T0, rec_make(&r, "a.b.com.", 5, "x.", MXF_ACTION_BLOCKED)), 0);
	assert_int_equal(hit1(&z, T0, rec_make(&r, "a.com.", 5, "b.x.", MXF_ACTION_BLOCKED)), 0);
	/* The action is part of the key: a switch to enforce logs at once. */
	assert_int_equal(hit1(&z, T0, rec_make(&r, "www.example.com.", 5, "mx.example.net.",
	                                       MXF_ACTION_AUDIT)), 0);
	assert_int_equal(hit1(&z, T0, rec_make(&r, "www.example.com.", 5, "mx.example.net.",
	                                       MXF_ACTION_OBSERVED)), 0);
	/* So is the kind: a missing exchange is not a legacy record. */
	rec_make(&r, "www.example.com.", 5, "mx.example.net.", MXF_ACTION_BLOCKED);
	assert_int_equal(occur(&z, INTERVAL, T0, &r.rec, MXF_LINE_MISSING), 0);
	assert_int_equal(occur(&z, INTERVAL, T0, &r.rec, MXF_LINE_MISSING), -1);
	/* A malformed rdata (no exchange) has a key too. */
	r.rec.exchange = NULL;
	assert_int_equal(hit1(&z, T0, &r.rec), 0);
	assert_int_equal(hit1(&z, T0, &r.rec), -1);

	/* log-interval 0, or no limiter: every occurrence has a line. */
	rec_make(&r, "www.example.com.", 5, "mx.example.net.", MXF_ACTION_BLOCKED);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(occur(&z, 0, T0, &r.rec, MXF_LINE_LEGACY), 0);
		assert_int_equal(occur(NULL, INTERVAL, T0, &r.rec, MXF_LINE_LEGACY), 0);
	}
	mxf_audit_zone_clear(&z);
	limiter_tick(lim, T0);
	mxf_limiter_free(lim);
}

/*** 10^6 records. ***/

#define MANY	1000000

static void many_owner(rec_t *r, unsigned i)
{
	char owner[64], ex[64];
	snprintf(owner, sizeof(owner), "z%u.test.", i);
	snprintf(ex, sizeof(ex), "mx%u.isp.example.", i % 1000);
	rec_make(r, owner, (uint16_t)(i % 3 == 0 ? 5 : 40), ex, MXF_ACTION_BLOCKED);
}

static void test_million(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new((size_t)1 << 30);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	mxf_limiter_stats_t base, st;
	mxf_limiter_stats(lim, &base);

	/* Every first occurrence logs, a second one within the interval not. */
	rec_t r;
	unsigned first = 0, again = 0;
	for (unsigned i = 0; i < MANY; i++) {
		many_owner(&r, i);
		first += (hit1(&z, T0 + i % 10, &r.rec) == 0);
	}
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, MANY);
	for (unsigned i = 0; i < MANY; i++) {
		many_owner(&r, i);
		again += (hit1(&z, T0 + 10 + i % 10, &r.rec) != -1);
	}
	assert_int_equal(first, MANY);
	assert_int_equal(again, 0);
	print_message("%u records: %zu bytes, %.1f per record, %zu slots\n", MANY,
	              st.bytes - base.bytes, (double)(st.bytes - base.bytes) / MANY, st.slots);

	/* Each held one: its line once quiet for an interval, then forgotten. */
	limiter_tick(lim, T0 + 2 * INTERVAL + 20);
	assert_int_equal(flush(&z, T0 + 2 * INTERVAL + 20), MANY);
	assert_int_equal(emitted_count(), MANY);
	assert_int_equal(emitted_supp, 0);
	limiter_tick(lim, T0 + 4 * INTERVAL + 20);
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 0);
	/* The memory is returned (the table shrinks back too). */
	assert_int_equal(st.bytes, base.bytes);
	assert_int_equal(st.slots, base.slots);

	mxf_audit_zone_clear(&z);
	mxf_limiter_free(lim);
}

/*** Threads. ***/

#define THREADS		8
#define HITS		200000
#define NKEYS		1000

typedef struct {
	mxf_audit_zone_t *z;
	rec_t *recs;
	unsigned nkeys;
	unsigned id;
	bool clock;               /* The clock moves during the run. */
	atomic_ullong *lines;
	atomic_ullong *supp;
	pthread_barrier_t *start;
} worker_t;

static void *worker(void *arg)
{
	worker_t *w = arg;
	rcu_register_thread();
	pthread_barrier_wait(w->start);
	unsigned long long lines = 0, supp = 0;
	for (unsigned i = 0; i < HITS; i++) {
		unsigned k = (i * 7919u + w->id) % w->nkeys;
		uint32_t now = w->clock ? T0 + i / 20000 : T0;
		long s = occur(w->z, 1, now, &w->recs[k].rec, MXF_LINE_LEGACY);
		if (s >= 0) {
			lines++;
			supp += (unsigned long long)s;
		}
	}
	atomic_fetch_add(w->lines, lines);
	atomic_fetch_add(w->supp, supp);
	rcu_unregister_thread();
	return NULL;
}

static void hammer(unsigned nkeys, bool clock)
{
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	rec_t *recs = calloc(nkeys, sizeof(*recs));
	assert_non_null(recs);
	for (unsigned k = 0; k < nkeys; k++) {
		many_owner(&recs[k], k);
	}
	atomic_ullong lines, supp;
	atomic_init(&lines, 0);
	atomic_init(&supp, 0);
	pthread_barrier_t start;
	assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
	pthread_t tid[THREADS];
	worker_t w[THREADS];
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (worker_t){ &z, recs, nkeys, i, clock, &lines, &supp, &start };
		assert_int_equal(pthread_create(&tid[i], NULL, worker, &w[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	}
	pthread_barrier_destroy(&start);

	/* With a fixed clock: one line per record, whatever the threads. */
	if (!clock) {
		assert_int_equal(atomic_load(&lines), nkeys);
		assert_int_equal(atomic_load(&supp), 0);
	}
	/* What is still held comes out when the records go quiet. */
	limiter_tick(lim, T0 + 100);
	flush(&z, T0 + 100);
	unsigned long long total = atomic_load(&lines) + atomic_load(&supp) +
	                           emitted_count() + emitted_supp;
	print_message("%u key(s), %s clock: %llu lines + %llu held lines, "
	              "%llu + %llu suppressed, %llu occurrences\n", nkeys,
	              clock ? "moving" : "fixed", atomic_load(&lines),
	              (unsigned long long)emitted_count(), atomic_load(&supp),
	              emitted_supp, (unsigned long long)THREADS * HITS);
	assert_int_equal(total, (unsigned long long)THREADS * HITS);
	mxf_audit_zone_clear(&z);
	limiter_tick(lim, T0 + 200);
	mxf_limiter_free(lim);
	free(recs);
}

static void test_threads_one_key(void **state)
{
	(void)state;
	hammer(1, false);
	hammer(1, true);
}

static void test_threads_many_keys(void **state)
{
	(void)state;
	hammer(NKEYS, false);
	hammer(NKEYS, true);
}

/*** RRset entries. ***/

typedef struct {
	knot_dname_storage_t owner;
	knot_rrset_t rr;
	rec_t rec[4];
	size_t n;
} set_t;

static void set_make(set_t *s, const char *owner, size_t n, const uint16_t *prefs,
                     const char *const *ex)
{
	knot_rrset_init(&s->rr, th_dname(s->owner, owner), KNOT_RRTYPE_MX, KNOT_CLASS_IN, 300);
	for (size_t i = 0; i < n; i++) {
		th_add_mx(&s->rr, prefs[i], ex[i], NULL);
		rec_make(&s->rec[i], owner, prefs[i], ex[i], MXF_ACTION_BLOCKED);
	}
	s->n = n;
}

static void set_clean(set_t *s)
{
	knot_rdataset_clear(&s->rr.rrs, NULL);
}

/* One answer holding \a s: lines[i] = suppressed, or -1. Returns whether
 * the RRset level let its records be looked at. */
static bool answer(mxf_audit_zone_t *z, uint32_t now, set_t *s, long *lines)
{
	mxf_audit_t a;
	rcu_read_lock();
	mxf_audit_init(&a, z, INTERVAL);
	a.now = now;
	bool open = mxf_audit_set(&a, &s->rr, s->rr.owner, MXF_ACTION_BLOCKED);
	for (size_t i = 0; i < s->n; i++) {
		mxf_line_t line;
		lines[i] = -1;
		if (open && mxf_audit_record(&a, &s->rec[i].rec, MXF_LINE_LEGACY, &line)) {
			lines[i] = line.suppressed;
		}
	}
	mxf_audit_done(&a);
	rcu_read_unlock();
	return open;
}

static void test_sets(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	const uint16_t pa[] = { 5, 40 };
	const char *const ea[] = { "mailgate.example.com.", "smtp.isp.net." };
	const uint16_t pb[] = { 5, 41 };
	const char *const eb[] = { "mailgate.example.com.", "other.isp.net." };
	set_t a, b;
	set_make(&a, "example.com.", 2, pa, ea);
	set_make(&b, "example.com.", 2, pb, eb);
	long l[4];

	/* First answer: a line per record; then the RRset level holds them. */
	assert_true(answer(&z, T0, &a, l));
	assert_int_equal(l[0], 0);
	assert_int_equal(l[1], 0);
	for (int i = 0; i < 49; i++) {
		assert_false(answer(&z, T0 + i % INTERVAL, &a, l));
	}
	mxf_limiter_stats_t st;
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 3); /* The RRset and its two records. */

	/* The zone changes 30 s later: a new RRset, one record already
	 * logged (held), the new one gets its line. */
	assert_true(answer(&z, T0 + 30, &b, l));
	assert_int_equal(l[0], -1);
	assert_int_equal(l[1], 0);
	/* mailgate's interval ends at T0 + 60; the second RRset's entry must
	 * not hold its first line back past that (it ends with mailgate's). */
	assert_false(answer(&z, T0 + 59, &b, l));
	assert_true(answer(&z, T0 + INTERVAL, &b, l));
	assert_int_equal(l[0], 50 + 1); /* 49 via a, 1 + 1 via b. */
	assert_int_equal(l[1], -1);    /* other.isp.net: until T0 + 90. */

	/* The first RRset again: smtp carries the 49 its RRset held. */
	assert_true(answer(&z, T0 + INTERVAL + 1, &a, l));
	assert_int_equal(l[0], -1);
	assert_int_equal(l[1], 49);

	/* Quiet: the RRset entries hand over what they hold, the records
	 * write their lines, everything is forgotten: mailgate 2 (the two
	 * answers after its line), smtp 1, other.isp.net 2 (held since its
	 * line). Every record's lines add up to its occurrences. */
	assert_false(answer(&z, T0 + INTERVAL + 2, &a, l));
	limiter_tick(lim, T0 + 3 * INTERVAL);
	limiter_tick(lim, T0 + 6 * INTERVAL);
	flush(&z, T0 + 6 * INTERVAL);
	assert_int_equal(emitted_count(), 3);
	unsigned long long total = emitted_count() + emitted_supp;
	assert_int_equal(total, 5);
	limiter_tick(lim, T0 + 9 * INTERVAL);
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 0);

	mxf_audit_zone_clear(&z);
	mxf_limiter_free(lim);
	set_clean(&a);
	set_clean(&b);
}

/* The exact count through RRset entries, many answers and threads. */
typedef struct {
	mxf_audit_zone_t *z;
	set_t *s;
	unsigned id;
	atomic_ullong *occ; /* Per record: lines + suppressed. */
	pthread_barrier_t *start;
} set_worker_t;

static void *set_worker(void *arg)
{
	set_worker_t *w = arg;
	rcu_register_thread();
	pthread_barrier_wait(w->start);
	for (unsigned i = 0; i < HITS / 4; i++) {
		long l[4];
		answer(w->z, T0 + (i + w->id) / 2000, w->s, l);
		for (size_t k = 0; k < w->s->n; k++) {
			if (l[k] >= 0) {
				atomic_fetch_add(&w->occ[k], 1 + (unsigned long long)l[k]);
			}
		}
	}
	rcu_unregister_thread();
	return NULL;
}

static void test_sets_threads(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	const uint16_t p[] = { 5, 40, 50 };
	const char *const e[] = { "mailgate.example.com.", "smtp.isp.net.", "old.example." };
	set_t s;
	set_make(&s, "example.com.", 3, p, e);
	atomic_ullong occ[3];
	for (int k = 0; k < 3; k++) {
		atomic_init(&occ[k], 0);
	}
	pthread_barrier_t start;
	assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
	pthread_t tid[THREADS];
	set_worker_t w[THREADS];
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (set_worker_t){ &z, &s, i, occ, &start };
		assert_int_equal(pthread_create(&tid[i], NULL, set_worker, &w[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	}
	pthread_barrier_destroy(&start);
	/* Quiet: RRset entries hand over, records are queued and written. */
	for (uint32_t t = T0 + 200; t < T0 + 204; t++) {
		limiter_tick(lim, t);
	}
	flush(&z, T0 + 204);
	mxf_limiter_stats_t st;
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 3); /* The records, in their last interval. */
	assert_int_equal(mxf_audit_zone_clear(&z), 0);
	unsigned long long held = emitted_count() + emitted_supp;
	unsigned long long all = atomic_load(&occ[0]) + atomic_load(&occ[1]) +
	                         atomic_load(&occ[2]) + held;
	assert_int_equal(all, 3ULL * THREADS * (HITS / 4));
	limiter_tick(lim, T0);
	mxf_limiter_free(lim);
	set_clean(&s);
}

/*** The bound. ***/

static void test_bound(void **state)
{
	(void)state;
	/* Room for the table and a few dozen entries. */
	mxf_limiter_t *lim = limiter_new(16 << 10);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	rec_t r;
	unsigned lines = 0, logged_twice = 0, full = 0;
	for (unsigned i = 0; i < 1000; i++) {
		many_owner(&r, i);
		mxf_audit_t a;
		mxf_line_t line;
		rcu_read_lock();
		for (int k = 0; k < 2; k++) {
			mxf_audit_init(&a, &z, INTERVAL);
			a.now = T0;
			a.owner = r.rec.owner;
			if (mxf_audit_record(&a, &r.rec, MXF_LINE_LEGACY, &line)) {
				assert_int_equal(line.suppressed, 0);
				lines++;
				logged_twice += (k == 1);
			}
			mxf_limiter_stats_t st;
			if (mxf_audit_full(&a, &st)) {
				full++;
				assert_true(st.bytes <= st.max_bytes);
			}
			mxf_audit_done(&a);
		}
		rcu_read_unlock();
	}
	mxf_limiter_stats_t st;
	mxf_limiter_stats(lim, &st);
	print_message("bound %zu bytes: %zu entries, %u records logged at every "
	              "occurrence\n", st.max_bytes, st.entries, logged_twice);
	assert_true(st.bytes <= st.max_bytes);
	assert_true(st.entries > 10 && st.entries < 1000);
	/* Records with an entry: one line; the others: every occurrence. */
	assert_int_equal(lines, st.entries + 2 * (1000 - st.entries));
	assert_int_equal(logged_twice, 1000 - st.entries);
	assert_int_equal(full, 1); /* One notice per interval. */

	/* Memory returned: records get entries again. */
	limiter_tick(lim, T0 + 3 * INTERVAL);
	assert_int_equal(flush(&z, T0 + 3 * INTERVAL), st.entries); /* Each held one. */
	limiter_tick(lim, T0 + 5 * INTERVAL);
	mxf_limiter_stats(lim, &st);
	assert_int_equal(st.entries, 0);
	many_owner(&r, 999);
	assert_int_equal(hit1(&z, T0 + 6 * INTERVAL, &r.rec), 0);
	assert_int_equal(hit1(&z, T0 + 6 * INTERVAL, &r.rec), -1);
	mxf_audit_zone_clear(&z);
	limiter_tick(lim, T0);
	mxf_limiter_free(lim);
}

/*** Errors. ***/

static void test_errors(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	knot_dname_storage_t w, o;
	th_dname(w, "*.w.example.com.");
	th_dname(o, "example.com.");
	mxf_line_t line;
	rcu_read_lock();
	/* Keyed by the served owner: 200 failures, one line per minute. */
	assert_true(mxf_audit_error(&z, w, KNOT_DNSSEC_ENOKEY, T0, &line));
	assert_int_equal(line.suppressed, 0);
	for (int i = 0; i < 199; i++) {
		assert_false(mxf_audit_error(&z, w, KNOT_DNSSEC_ENOKEY, T0 + i % 60, &line));
	}
	assert_true(mxf_audit_error(&z, o, KNOT_ENOMEM, T0, &line));
	assert_true(mxf_audit_error(&z, w, KNOT_ENOMEM, T0 + MXF_ERROR_INTERVAL, &line));
	assert_int_equal(line.suppressed, 199);
	assert_false(mxf_audit_error(&z, w, KNOT_ESPACE, T0 + MXF_ERROR_INTERVAL + 1, &line));
	rcu_read_unlock();
	/* Quiet: the held failure's line, with the last reason. */
	limiter_tick(lim, T0 + 3 * MXF_ERROR_INTERVAL);
	assert_int_equal(flush(&z, T0 + 3 * MXF_ERROR_INTERVAL), 1);
	assert_int_equal(emitted_count(), 1);
	assert_string_equal(emitted[0].text, "failed to enforce MX, owner *.w.example.com., "
	                    "answered SERVFAIL, suppressed 0 (not enough space provided)");
	mxf_audit_zone_clear(&z);
	limiter_tick(lim, T0);
	mxf_limiter_free(lim);
}

/*** Missing MX, reported by the engine. ***/

typedef struct {
	int legacy, missing, sets;
	char seen[8][KNOT_DNAME_TXT_MAXLEN + 32];
} reports_t;

static bool cb_set(const knot_rrset_t *rr, bool expanded, mxf_action_t action, void *data)
{
	((reports_t *)data)->sets++;
	return true;
}

static void cb_legacy(const mxf_legacy_t *rec, void *data)
{
	((reports_t *)data)->legacy++;
}

static void cb_missing(const mxf_legacy_t *rec, void *data)
{
	reports_t *r = data;
	char name[KNOT_DNAME_TXT_MAXLEN + 1];
	th_dname_str(rec->exchange, name, sizeof(name));
	assert_true(r->missing < 8);
	snprintf(r->seen[r->missing++], sizeof(r->seen[0]), "%s %s %u %s",
	         mxf_action_str(MXF_LINE_MISSING, rec->action), "", rec->pref, name);
}

static mxf_policy_t *policy_make(mxf_mode_t mode)
{
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	conf.mode = mode;
	const char *err = NULL;
	mxf_policy_t *p = mxf_policy_new(&conf, &err);
	assert_non_null(p);
	return p;
}

/* \a n records at the owner of an answer: what the engine reports. */
static void report_of(mxf_mode_t mode, size_t n, const uint16_t *prefs,
                      const char *const *ex, reports_t *r)
{
	mxf_policy_t *pol = policy_make(mode);
	th_scn_t s;
	th_scn_init(&s, "www.example.com.", KNOT_RRTYPE_MX, KNOT_WIRE_MAX_PKTSIZE);
	if (n > 0) {
		knot_rrset_t *mx = th_mx(&s, "www.example.com.", 300, n, prefs, ex);
		th_put(&s, KNOT_COMPR_HINT_QNAME, mx, 0);
	}
	knot_dname_storage_t zone;
	memset(r, 0, sizeof(*r));
	mxf_ctx_t ctx = {
		.policy = pol, .zone = th_dname(zone, "example.com."),
		.on_legacy = cb_legacy, .on_legacy_set = cb_set, .on_missing = cb_missing,
		.cb_data = r,
	};
	mxf_result_t res;
	assert_int_equal(mxf_process(s.resp, &ctx, &res), KNOT_EOK);
	assert_int_equal(res.blocked[0] + res.blocked[1] + res.served, r->legacy);
	th_scn_clean(&s);
	mxf_policy_free(pol);
}

static void test_missing_reports(void **state)
{
	(void)state;
	reports_t r;
	/* A partial set: the exchange it lacks, in enforce and audit mode. */
	report_of(MXF_MODE_ENFORCE, 1, (uint16_t[]){ 10 },
	          (const char *const[]){ "france.security-mail.net." }, &r);
	assert_int_equal(r.sets, 1);
	assert_int_equal(r.legacy, 0);
	assert_int_equal(r.missing, 1);
	assert_string_equal(r.seen[0], "added  20 europe.security-mail.net.");
	report_of(MXF_MODE_AUDIT, 1, (uint16_t[]){ 20 },
	          (const char *const[]){ "EUROPE.security-mail.net." }, &r);
	assert_int_equal(r.missing, 1);
	assert_string_equal(r.seen[0], "audit  10 france.security-mail.net.");
	/* The set itself: nothing. */
	report_of(MXF_MODE_AUDIT, 2, (uint16_t[]){ 20, 10 },
	          (const char *const[]){ "europe.security-mail.net.",
	                                 "france.security-mail.net." }, &r);
	assert_int_equal(r.sets + r.legacy + r.missing, 0);
	/* A legacy record next to part of the set: the legacy line says the
	 * answer changes; nothing is "missing" then. */
	report_of(MXF_MODE_ENFORCE, 2, (uint16_t[]){ 10, 5 },
	          (const char *const[]){ "france.security-mail.net.",
	                                 "mailgate.example.com." }, &r);
	assert_int_equal(r.legacy, 1);
	assert_int_equal(r.missing, 0);
	/* A wrong preference is a legacy record, not a missing one. */
	report_of(MXF_MODE_ENFORCE, 2, (uint16_t[]){ 11, 20 },
	          (const char *const[]){ "france.security-mail.net.",
	                                 "europe.security-mail.net." }, &r);
	assert_int_equal(r.legacy, 1);
	assert_int_equal(r.missing, 0);

	/* An owner without MX (the apex answer synthesized): every exchange. */
	mxf_policy_t *pol = policy_make(MXF_MODE_ENFORCE);
	knot_dname_storage_t zone;
	knot_rrset_t none;
	knot_rrset_init(&none, th_dname(zone, "example.com."), KNOT_RRTYPE_MX, KNOT_CLASS_IN, 0);
	memset(&r, 0, sizeof(r));
	mxf_ctx_t ctx = { .policy = pol, .zone = zone, .on_legacy = cb_legacy,
	                  .on_legacy_set = cb_set, .on_missing = cb_missing, .cb_data = &r };
	mxf_result_t res = { 0 };
	mxf_report(&ctx, &none, false, MXF_ACTION_BLOCKED, &res);
	assert_int_equal(r.sets, 1);
	assert_int_equal(r.missing, 2);
	assert_string_equal(r.seen[0], "added  10 france.security-mail.net.");
	assert_string_equal(r.seen[1], "added  20 europe.security-mail.net.");
	/* Counters unchanged: nothing legacy was served or blocked. */
	assert_int_equal(res.blocked[0] + res.blocked[1] + res.served + res.enforced, 0);
	mxf_policy_free(pol);
}

/* Missing lines go through the limiter like any record, RRset level too. */
static void test_missing_limited(void **state)
{
	(void)state;
	mxf_limiter_t *lim = limiter_new(0);
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	knot_dname_storage_t owner, ex;
	knot_rrset_t none;
	knot_rrset_init(&none, th_dname(owner, "example.com."), KNOT_RRTYPE_MX,
	                KNOT_CLASS_IN, 0);
	mxf_legacy_t rec = { .owner = owner, .exchange = th_dname(ex, "france.security-mail.net."),
	                     .pref = 10, .action = MXF_ACTION_AUDIT };
	for (int i = 0; i < 5; i++) {
		mxf_audit_t a;
		mxf_line_t line;
		rcu_read_lock();
		mxf_audit_init(&a, &z, INTERVAL);
		a.now = T0 + i;
		bool open = mxf_audit_set(&a, &none, owner, MXF_ACTION_AUDIT);
		assert_true(open == (i == 0));
		if (open) {
			assert_true(mxf_audit_record(&a, &rec, MXF_LINE_MISSING, &line));
			char text[512];
			mxf_line_format(text, sizeof(text), &line);
			assert_string_equal(text, "missing MX audit, owner example.com., "
			                    "preference 10, exchange france.security-mail.net., "
			                    "client -, suppressed 0");
		}
		mxf_audit_done(&a);
		rcu_read_unlock();
	}
	limiter_tick(lim, T0 + 3 * INTERVAL);
	limiter_tick(lim, T0 + 3 * INTERVAL + 1);
	assert_int_equal(flush(&z, T0 + 3 * INTERVAL + 1), 1);
	assert_int_equal(emitted[0].line.suppressed, 3);
	assert_int_equal(mxf_audit_zone_clear(&z), 0);
	limiter_tick(lim, T0);
	mxf_limiter_free(lim);
}

/*** The thread. ***/

static void test_thread(void **state)
{
	(void)state;
	mxf_limiter_opts_t opts = { .thread = true };
	mxf_limiter_t *lim = mxf_limiter_new(&opts);
	assert_non_null(lim);
	emitted_reset();
	mxf_audit_zone_t z;
	zinit(&z, lim, "example.com.");
	rec_t r;
	rec_make(&r, "example.com.", 5, "mailgate.example.com.", MXF_ACTION_BLOCKED);
	/* log-interval 1 on the real clock: a line, a held one, queued by the
	 * thread once quiet (bounded wait, polled), written by a flush. */
	uint32_t now = mxf_now();
	assert_int_equal(occur(&z, 1, now, &r.rec, MXF_LINE_LEGACY), 0);
	assert_int_equal(occur(&z, 1, now, &r.rec, MXF_LINE_LEGACY), -1);
	for (int i = 0; i < 200 && !mxf_audit_due(&z); i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	assert_true(mxf_audit_due(&z));
	assert_int_equal(flush(&z, mxf_now()), 1);
	assert_int_equal(mxf_audit_zone_clear(&z), 0);
	mxf_limiter_free(lim);
}

/*** Lines. ***/

static void test_now(void **state)
{
	(void)state;
	uint32_t a = mxf_now();
	uint32_t b = mxf_now();
	assert_true(a != 0);
	assert_true(b >= a);
}

static void test_words(void **state)
{
	(void)state;
	assert_string_equal(mxf_action_str(MXF_LINE_LEGACY, MXF_ACTION_BLOCKED), "blocked");
	assert_string_equal(mxf_action_str(MXF_LINE_LEGACY, MXF_ACTION_AUDIT), "audit");
	assert_string_equal(mxf_action_str(MXF_LINE_LEGACY, MXF_ACTION_OBSERVED), "observed");
	assert_string_equal(mxf_action_str(MXF_LINE_MISSING, MXF_ACTION_BLOCKED), "added");
	assert_string_equal(mxf_action_str(MXF_LINE_MISSING, MXF_ACTION_AUDIT), "audit");
	assert_string_equal(mxf_action_str(MXF_LINE_MISSING, MXF_ACTION_OBSERVED), "observed");
	assert_string_equal(mxf_risk_str(MXF_RISK_BYPASS), "bypass");
	assert_string_equal(mxf_risk_str(MXF_RISK_FALLBACK), "fallback");
}

static void set_v4(struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
}

static void set_v6(struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
}

static void test_format(void **state)
{
	(void)state;
	knot_dname_storage_t owner, ex;
	mxf_line_t line = {
		.kind = MXF_LINE_LEGACY,
		.owner = th_dname(owner, "your-domain.com."),
		.exchange = th_dname(ex, "mailgate.your-domain.com."),
		.pref = 5,
		.risk = MXF_RISK_BYPASS,
		.action = MXF_ACTION_BLOCKED,
	};
	struct sockaddr_storage client;
	char buf[512];

	/* DESIGN.md's example line (after Knot's zone/module prefix). */
	set_v4(&client, "192.0.2.7", 53000);
	line.client = &client;
	const char *want = "legacy MX blocked, owner your-domain.com., preference 5, "
	                   "exchange mailgate.your-domain.com., risk bypass, "
	                   "client 192.0.2.7, suppressed 0";
	size_t len = mxf_line_format(buf, sizeof(buf), &line);
	assert_string_equal(buf, want);
	assert_int_equal(len, strlen(want));

	/* IPv6 client, audit action, fallback, names lower-cased. */
	th_dname(owner, "Sub.YOUR-Domain.com.");
	th_dname(ex, "SMTP.Isp.Net.");
	line.pref = 40;
	line.risk = MXF_RISK_FALLBACK;
	line.action = MXF_ACTION_AUDIT;
	line.suppressed = 17;
	set_v6(&client, "2001:db8::53", 53000);
	mxf_line_format(buf, sizeof(buf), &line);
	assert_string_equal(buf, "legacy MX audit, owner sub.your-domain.com., preference 40, "
	                    "exchange smtp.isp.net., risk fallback, client 2001:db8::53, "
	                    "suppressed 17");

	/* No client (a held line), observed, extremes. */
	line.action = MXF_ACTION_OBSERVED;
	line.pref = 65535;
	line.client = NULL;
	line.suppressed = 4294967295u;
	mxf_line_format(buf, sizeof(buf), &line);
	assert_string_equal(buf, "legacy MX observed, owner sub.your-domain.com., "
	                    "preference 65535, exchange smtp.isp.net., risk fallback, "
	                    "client -, suppressed 4294967295");

	/* Null MX replaced: the exchange is the root; malformed: said so. */
	th_dname(ex, ".");
	line.pref = 0;
	line.risk = MXF_RISK_BYPASS;
	line.action = MXF_ACTION_BLOCKED;
	line.suppressed = 0;
	set_v4(&client, "198.51.100.1", 1);
	line.client = &client;
	mxf_line_format(buf, sizeof(buf), &line);
	assert_string_equal(buf, "legacy MX blocked, owner sub.your-domain.com., "
	                    "preference 0, exchange ., risk bypass, "
	                    "client 198.51.100.1, suppressed 0");
	line.exchange = NULL;
	mxf_line_format(buf, sizeof(buf), &line);
	assert_non_null(strstr(buf, ", exchange (malformed), "));

	/* Missing and error lines. */
	line = (mxf_line_t){ .kind = MXF_LINE_MISSING, .action = MXF_ACTION_BLOCKED,
	                     .owner = th_dname(owner, "partial.example."),
	                     .exchange = th_dname(ex, "europe.security-mail.net."),
	                     .pref = 20, .client = &client };
	set_v4(&client, "192.0.2.7", 53000);
	mxf_line_format(buf, sizeof(buf), &line);
	assert_string_equal(buf, "missing MX added, owner partial.example., preference 20, "
	                    "exchange europe.security-mail.net., client 192.0.2.7, "
	                    "suppressed 0");
	line = (mxf_line_t){ .kind = MXF_LINE_ERROR, .owner = owner, .error = KNOT_ENOMEM,
	                     .suppressed = 3 };
	mxf_line_format(buf, sizeof(buf), &line);
	assert_string_equal(buf, "failed to enforce MX, owner partial.example., answered "
	                    "SERVFAIL, suppressed 3 (not enough memory)");
}

/* A maximal name of bytes that print as "\DDD" (and escaped dots). */
static knot_dname_t *long_name(knot_dname_storage_t buf, uint8_t fill)
{
	size_t pos = 0;
	while (pos + 1 + 63 + 1 <= KNOT_DNAME_MAXLEN) {
		buf[pos] = 63;
		memset(buf + pos + 1, fill, 63);
		buf[pos + 1 + 10] = '.';
		pos += 64;
	}
	size_t last = KNOT_DNAME_MAXLEN - pos - 2;
	buf[pos] = (uint8_t)last;
	memset(buf + pos + 1, fill, last);
	buf[pos + 1 + last] = 0;
	assert_int_equal(knot_dname_size(buf), KNOT_DNAME_MAXLEN);
	return buf;
}

/* Every field is there whatever the names and the room Knot leaves. */
static void test_format_long(void **state)
{
	(void)state;
	knot_dname_storage_t owner, ex;
	struct sockaddr_storage client;
	set_v6(&client, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1);
	mxf_line_t lines[3] = {
		{ .kind = MXF_LINE_LEGACY, .action = MXF_ACTION_OBSERVED,
		  .risk = MXF_RISK_FALLBACK },
		{ .kind = MXF_LINE_MISSING, .action = MXF_ACTION_OBSERVED },
		{ .kind = MXF_LINE_ERROR, .error = KNOT_DNSSEC_ENOKEY },
	};
	const char *tail[3] = {
		", risk fallback, client 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff, "
		"suppressed 4294967295",
		", client 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff, suppressed 4294967295",
		", answered SERVFAIL, suppressed 4294967295 (no keys for signing)",
	};
	uint8_t fills[] = { 0xff, 'A', '\\' };
	for (size_t f = 0; f < sizeof(fills); f++) {
		for (size_t k = 0; k < 3; k++) {
			mxf_line_t line = lines[k];
			line.owner = long_name(owner, fills[f]);
			line.exchange = long_name(ex, fills[(f + 1) % sizeof(fills)]);
			line.pref = 65535;
			line.suppressed = 4294967295u;
			line.client = &client;
			char full[2048];
			size_t full_len = mxf_line_format(full, sizeof(full), &line);
			for (size_t size = 200; size <= 512; size += 13) {
				char buf[512];
				memset(buf, 'x', sizeof(buf));
				size_t len = mxf_line_format(buf, size, &line);
				assert_int_equal(len, strlen(buf));
				assert_true(len <= size - 1);
				/* All fields, in order, the last complete. */
				assert_non_null(strstr(buf, ", owner "));
				if (k != 2) {
					assert_non_null(strstr(buf, ", preference 65535, exchange "));
				}
				size_t tl = strlen(tail[k]);
				assert_true(len > tl);
				assert_string_equal(buf + len - tl, tail[k]);
				if (full_len <= size - 1) {
					assert_string_equal(buf, full); /* Fits as it is. */
					continue;
				}
				/* Shortened visibly, never inside an escape: read as
				 * presentation text (escapes whole), the owner holds
				 * "..." before its field ends. */
				const char *o = strstr(buf, ", owner ") + 8;
				const char *end = strstr(o, ", ");
				const char *p = o;
				while (p < end && strncmp(p, "...", 3) != 0) {
					if (*p == '\\') {
						p += (p[1] >= '0' && p[1] <= '9') ? 4 : 2;
					} else {
						p++;
					}
				}
				if (p >= end) {
					print_error("fill %zu kind %zu size %zu: %s\n", f, k, size, buf);
				}
				assert_true(p < end);
			}
		}
	}
}

static void test_format_small(void **state)
{
	(void)state;
	knot_dname_storage_t owner, ex;
	mxf_line_t line = {
		.kind = MXF_LINE_LEGACY,
		.owner = th_dname(owner, "your-domain.com."),
		.exchange = th_dname(ex, "mailgate.your-domain.com."),
		.pref = 5,
	};
	char buf[16];
	memset(buf, 'x', sizeof(buf));
	size_t len = mxf_line_format(buf, 10, &line);
	assert_int_equal(len, 9);
	assert_string_equal(buf, "legacy MX");
	assert_int_equal(buf[10], 'x');
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(mxf_line_format(buf, 0, &line), 0);
	assert_int_equal(buf[0], 'x');
}

static void test_addr_str(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	char buf[INET6_ADDRSTRLEN];

	set_v4(&ss, "192.0.2.7", 53);
	mxf_addr_str(&ss, buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.7");
	set_v6(&ss, "2001:db8::1", 53);
	mxf_addr_str(&ss, buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8::1");
	mxf_addr_str(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "-");
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	mxf_addr_str(&ss, buf, sizeof(buf));
	assert_string_equal(buf, "-");
}

int main(void)
{
	setup_rcu();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_rule),
		cmocka_unit_test(test_quiet_line),
		cmocka_unit_test(test_zone_instances),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_million),
		cmocka_unit_test(test_threads_one_key),
		cmocka_unit_test(test_threads_many_keys),
		cmocka_unit_test(test_sets),
		cmocka_unit_test(test_sets_threads),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing_reports),
		cmocka_unit_test(test_missing_limited),
		cmocka_unit_test(test_thread),
		cmocka_unit_test(test_now),
		cmocka_unit_test(test_words),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_long),
		cmocka_unit_test(test_format_small),
		cmocka_unit_test(test_addr_str),
	};

	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	rcu_unregister_thread();
	return ret;
}
