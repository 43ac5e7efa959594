/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/* Audit trail: rate limiter (single- and multi-threaded) and log format. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

#include "mxfilter/audit.h"
#include "pkt_helpers.h"

#define SLOTS_LOG2	16
#define INTERVAL	60

static uint64_t key_of(const mxf_limiter_t *lim, const char *zone, const char *owner,
                       uint16_t pref, const char *exchange)
{
	knot_dname_storage_t z, o, e;
	return mxf_limiter_key(lim, th_dname(z, zone), th_dname(o, owner), pref,
	                       th_dname(e, exchange));
}

static void test_limiter_basic(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	assert_non_null(lim);

	uint64_t k = key_of(lim, "example.com.", "example.com.", 5, "mailgate.example.com.");
	const uint32_t t0 = 1000;
	uint32_t supp = 0xDEAD;

	/* First occurrence is logged, nothing suppressed before it. */
	assert_true(mxf_limiter_hit(lim, k, t0, INTERVAL, &supp));
	assert_int_equal(supp, 0);

	/* Within the interval: not logged. */
	for (uint32_t i = 0; i < 7; i++) {
		assert_false(mxf_limiter_hit(lim, k, t0 + (i % INTERVAL), INTERVAL, &supp));
	}
	assert_false(mxf_limiter_hit(lim, k, t0 + INTERVAL - 1, INTERVAL, &supp));

	/* Past the interval: logged with the 8 suppressed occurrences. */
	supp = 0xDEAD;
	assert_true(mxf_limiter_hit(lim, k, t0 + INTERVAL + 1, INTERVAL, &supp));
	assert_int_equal(supp, 8);

	/* The count restarts. */
	assert_false(mxf_limiter_hit(lim, k, t0 + INTERVAL + 2, INTERVAL, &supp));
	supp = 0xDEAD;
	assert_true(mxf_limiter_hit(lim, k, t0 + 3 * INTERVAL, INTERVAL, &supp));
	assert_int_equal(supp, 1);

	/* Quiet for long: logged, nothing suppressed. */
	supp = 0xDEAD;
	assert_true(mxf_limiter_hit(lim, k, t0 + 10 * INTERVAL, INTERVAL, &supp));
	assert_int_equal(supp, 0);

	mxf_limiter_free(lim);
}

/* Keys whose slots (low and high bits) differ, so they cannot share a slot. */
static bool distinct_slots(const uint64_t *keys, size_t n)
{
	const uint64_t mask = (1ULL << SLOTS_LOG2) - 1;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			if ((keys[i] & mask) == (keys[j] & mask) ||
			    (keys[i] >> (64 - SLOTS_LOG2)) == (keys[j] >> (64 - SLOTS_LOG2))) {
				return false;
			}
		}
	}
	return true;
}

/* Fills \a keys with \a n distinct-slot keys of owners "hN.example.com.". */
static void make_keys(const mxf_limiter_t *lim, uint64_t *keys, size_t n)
{
	unsigned salt = 0;
	do {
		for (size_t i = 0; i < n; i++) {
			char owner[64];
			snprintf(owner, sizeof(owner), "h%zu-%u.example.com.", i, salt);
			keys[i] = key_of(lim, "example.com.", owner, 5, "mx.example.net.");
		}
		salt++;
	} while (!distinct_slots(keys, n) && salt < 1000);
	assert_true(distinct_slots(keys, n));
}

static void test_limiter_independent(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	assert_non_null(lim);
	uint64_t k[2];
	make_keys(lim, k, 2);
	uint32_t supp = 0xDEAD;

	assert_true(mxf_limiter_hit(lim, k[0], 100, INTERVAL, &supp));
	assert_int_equal(supp, 0);
	assert_false(mxf_limiter_hit(lim, k[0], 101, INTERVAL, &supp));
	/* The second key is not silenced by the first. */
	supp = 0xDEAD;
	assert_true(mxf_limiter_hit(lim, k[1], 101, INTERVAL, &supp));
	assert_int_equal(supp, 0);
	assert_false(mxf_limiter_hit(lim, k[1], 102, INTERVAL, &supp));
	assert_false(mxf_limiter_hit(lim, k[1], 103, INTERVAL, &supp));

	supp = 0xDEAD;
	assert_true(mxf_limiter_hit(lim, k[0], 100 + INTERVAL + 1, INTERVAL, &supp));
	assert_int_equal(supp, 1);
	supp = 0xDEAD;
	assert_true(mxf_limiter_hit(lim, k[1], 101 + INTERVAL + 1, INTERVAL, &supp));
	assert_int_equal(supp, 2);

	mxf_limiter_free(lim);
}

static void test_limiter_key(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	assert_non_null(lim);

	uint64_t base = key_of(lim, "example.com.", "www.example.com.", 5, "mx.example.net.");
	/* Same record, other case. */
	assert_true(base == key_of(lim, "EXAMPLE.com.", "WwW.ExAmPlE.CoM.", 5,
	                           "MX.Example.NET."));
	/* Deterministic. */
	assert_true(base == key_of(lim, "example.com.", "www.example.com.", 5,
	                           "mx.example.net."));
	/* Any field differs: another key. */
	assert_true(base != key_of(lim, "example.org.", "www.example.com.", 5, "mx.example.net."));
	assert_true(base != key_of(lim, "example.com.", "ww.example.com.", 5, "mx.example.net."));
	assert_true(base != key_of(lim, "example.com.", "www.example.com.", 6, "mx.example.net."));
	assert_true(base != key_of(lim, "example.com.", "www.example.com.", 5 + 256,
	                           "mx.example.net."));
	assert_true(base != key_of(lim, "example.com.", "www.example.com.", 5, "mx2.example.net."));
	/* Fields do not slide into each other. */
	assert_true(key_of(lim, "com.", "a.b.com.", 5, "x.") !=
	            key_of(lim, "com.", "a.com.", 5, "b.x."));
	assert_true(key_of(lim, "example.com.", "example.com.", 5, "mx.example.net.") !=
	            key_of(lim, "example.com.", "example.com.", 5, "mx.example.com."));

	/* Another limiter may use another seed; keys stay usable in their own. */
	mxf_limiter_t *lim2 = mxf_limiter_new(4);
	assert_non_null(lim2);
	uint32_t supp;
	uint64_t k2 = key_of(lim2, "example.com.", "www.example.com.", 5, "mx.example.net.");
	assert_true(mxf_limiter_hit(lim2, k2, 5, INTERVAL, &supp));
	mxf_limiter_free(lim2);

	/* A NULL exchange (malformed rdata) has a key too. */
	knot_dname_storage_t z;
	th_dname(z, "example.com.");
	uint64_t kn = mxf_limiter_key(lim, z, z, 5, NULL);
	assert_true(kn == mxf_limiter_key(lim, z, z, 5, NULL));

	mxf_limiter_free(lim);
}

/* Concurrency: 8 threads hammer a few keys at a fixed time. */

#define THREADS		8
#define HITS		100000
#define NKEYS		4

typedef struct {
	mxf_limiter_t *lim;
	const uint64_t *keys;
	uint32_t now;
	unsigned id;
	atomic_uint *logged;        /* per key */
	atomic_ullong *suppressed;  /* per key, sum of reported counts */
	pthread_barrier_t *start;
} worker_t;

static void *worker(void *arg)
{
	worker_t *w = arg;
	pthread_barrier_wait(w->start);
	for (unsigned i = 0; i < HITS; i++) {
		unsigned k = (i + w->id) % NKEYS;
		uint32_t supp = 0;
		if (mxf_limiter_hit(w->lim, w->keys[k], w->now, INTERVAL, &supp)) {
			atomic_fetch_add(&w->logged[k], 1);
			atomic_fetch_add(&w->suppressed[k], supp);
		}
	}
	return NULL;
}

static void test_limiter_threads(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	assert_non_null(lim);
	uint64_t keys[NKEYS];
	make_keys(lim, keys, NKEYS);

	atomic_uint logged[NKEYS];
	atomic_ullong suppressed[NKEYS];
	for (int k = 0; k < NKEYS; k++) {
		atomic_init(&logged[k], 0);
		atomic_init(&suppressed[k], 0);
	}

	pthread_barrier_t start;
	assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
	pthread_t tid[THREADS];
	worker_t w[THREADS];
	const uint32_t now = 5000;
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (worker_t){ lim, keys, now, i, logged, suppressed, &start };
		assert_int_equal(pthread_create(&tid[i], NULL, worker, &w[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	}
	pthread_barrier_destroy(&start);

	/* Exactly one line per key, whatever the thread count. */
	unsigned long long total = 0;
	for (int k = 0; k < NKEYS; k++) {
		assert_int_equal(atomic_load(&logged[k]), 1);
		assert_int_equal(atomic_load(&suppressed[k]), 0);
		total += atomic_load(&logged[k]);
	}

	/* Flush: the next line of each key carries everything not logged. */
	for (int k = 0; k < NKEYS; k++) {
		uint32_t supp = 0;
		assert_true(mxf_limiter_hit(lim, keys[k], now + INTERVAL + 1, INTERVAL, &supp));
		if (supp != (uint32_t)(THREADS * HITS / NKEYS - 1)) {
			print_error("key %d: suppressed %u, expected %u\n", k, supp,
			            THREADS * HITS / NKEYS - 1);
		}
		total += supp;
		assert_int_equal(supp, THREADS * HITS / NKEYS - 1);
	}
	assert_int_equal(total, (unsigned long long)THREADS * HITS);

	mxf_limiter_free(lim);
}

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
	assert_string_equal(mxf_action_str(MXF_ACTION_BLOCKED), "blocked");
	assert_string_equal(mxf_action_str(MXF_ACTION_AUDIT), "audit");
	assert_string_equal(mxf_action_str(MXF_ACTION_OBSERVED), "observed");
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
	mxf_legacy_t rec = {
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
	const char *want = "legacy MX blocked, owner your-domain.com., preference 5, "
	                   "exchange mailgate.your-domain.com., risk bypass, "
	                   "client 192.0.2.7, suppressed 0";
	size_t len = mxf_audit_format(buf, sizeof(buf), &rec, &client, 0);
	assert_string_equal(buf, want);
	assert_int_equal(len, strlen(want));

	/* IPv6 client, audit action, fallback, names lower-cased. */
	th_dname(owner, "Sub.YOUR-Domain.com.");
	th_dname(ex, "SMTP.Isp.Net.");
	rec.pref = 40;
	rec.risk = MXF_RISK_FALLBACK;
	rec.action = MXF_ACTION_AUDIT;
	set_v6(&client, "2001:db8::53", 53000);
	len = mxf_audit_format(buf, sizeof(buf), &rec, &client, 17);
	want = "legacy MX audit, owner sub.your-domain.com., preference 40, "
	       "exchange smtp.isp.net., risk fallback, client 2001:db8::53, "
	       "suppressed 17";
	assert_string_equal(buf, want);
	assert_int_equal(len, strlen(want));

	/* Unknown client, observed. */
	rec.action = MXF_ACTION_OBSERVED;
	rec.pref = 65535;
	len = mxf_audit_format(buf, sizeof(buf), &rec, NULL, 4294967295u);
	want = "legacy MX observed, owner sub.your-domain.com., preference 65535, "
	       "exchange smtp.isp.net., risk fallback, client -, "
	       "suppressed 4294967295";
	assert_string_equal(buf, want);
	assert_int_equal(len, strlen(want));

	/* Null MX replaced: the exchange is the root. */
	th_dname(ex, ".");
	rec.pref = 0;
	rec.risk = MXF_RISK_BYPASS;
	rec.action = MXF_ACTION_BLOCKED;
	set_v4(&client, "198.51.100.1", 1);
	mxf_audit_format(buf, sizeof(buf), &rec, &client, 0);
	assert_string_equal(buf, "legacy MX blocked, owner sub.your-domain.com., "
	                    "preference 0, exchange ., risk bypass, "
	                    "client 198.51.100.1, suppressed 0");
}

static void test_format_truncated(void **state)
{
	(void)state;
	knot_dname_storage_t owner, ex;
	mxf_legacy_t rec = {
		.owner = th_dname(owner, "your-domain.com."),
		.exchange = th_dname(ex, "mailgate.your-domain.com."),
		.pref = 5,
		.risk = MXF_RISK_BYPASS,
		.action = MXF_ACTION_BLOCKED,
	};
	char buf[16];
	memset(buf, 'x', sizeof(buf));

	size_t len = mxf_audit_format(buf, 10, &rec, NULL, 0);
	assert_int_equal(len, 9);
	assert_string_equal(buf, "legacy MX");
	assert_int_equal(buf[10], 'x');

	/* Nothing fits: nothing written, length 0. */
	memset(buf, 'x', sizeof(buf));
	len = mxf_audit_format(buf, 0, &rec, NULL, 0);
	assert_int_equal(len, 0);
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

/*** Per-query decisions: RRset keys in front of record keys. ***/

typedef struct {
	knot_dname_storage_t owner;
	knot_rrset_t rr;
	mxf_legacy_t rec[4];
	size_t n;
} legacy_set_t;

static void legacy_set(legacy_set_t *ls, const char *owner, const uint16_t *prefs,
                       const char *const *ex, size_t n)
{
	knot_rrset_init(&ls->rr, th_dname(ls->owner, owner), KNOT_RRTYPE_MX,
	                KNOT_CLASS_IN, 300);
	for (size_t i = 0; i < n; i++) {
		th_add_mx(&ls->rr, prefs[i], ex[i], NULL);
	}
	/* The records as the engine reports them (rdataset order). */
	const knot_rdata_t *rd = ls->rr.rrs.rdata;
	for (size_t i = 0; i < n; i++, rd = knot_rdataset_next((knot_rdata_t *)rd)) {
		ls->rec[i] = (mxf_legacy_t){ .owner = ls->rr.owner, .exchange = rd->data + 2,
		                             .pref = knot_wire_read_u16(rd->data),
		                             .action = MXF_ACTION_BLOCKED };
	}
	ls->n = n;
}

/* One answer holding \a ls at time \a now: lines[i] = suppressed, or -1. */
static bool answer(mxf_limiter_t *lim, const knot_dname_t *zone, uint32_t interval,
                   uint32_t now, legacy_set_t *ls, long *lines)
{
	mxf_audit_t a;
	mxf_audit_init(&a, lim, zone, interval);
	a.now = now;
	for (size_t i = 0; i < ls->n; i++) {
		lines[i] = -1;
	}
	if (!mxf_audit_set(&a, &ls->rr, false, MXF_ACTION_BLOCKED)) {
		return false;
	}
	for (size_t i = 0; i < ls->n; i++) {
		uint32_t supp = 0xDEAD;
		if (mxf_audit_record(&a, &ls->rec[i], &supp)) {
			lines[i] = supp;
		}
	}
	return true;
}

static void test_audit_sets(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	knot_dname_storage_t zone;
	th_dname(zone, "example.com.");
	const uint16_t prefs_a[] = { 5, 40 };
	const char *const ex_a[] = { "mailgate.example.com.", "smtp.isp.net." };
	const uint16_t prefs_b[] = { 5, 41 };
	const char *const ex_b[] = { "mailgate.example.com.", "other.isp.net." };
	legacy_set_t a, b;
	legacy_set(&a, "example.com.", prefs_a, ex_a, 2);
	legacy_set(&b, "example.com.", prefs_b, ex_b, 2);
	long lines[4];

	/* First answer: a line per record. Then 49 answers: the RRset key
	 * holds them back without looking at the records. */
	assert_true(answer(lim, zone, INTERVAL, 1000, &a, lines));
	assert_int_equal(lines[0], 0);
	assert_int_equal(lines[1], 0);
	for (int i = 0; i < 49; i++) {
		assert_false(answer(lim, zone, INTERVAL, 1000 + i % INTERVAL, &a, lines));
	}

	/* The zone changes: a new RRset, one record already logged. That
	 * record is held back (counted once), the new one gets its line. */
	assert_true(answer(lim, zone, INTERVAL, 1010, &b, lines));
	assert_int_equal(lines[0], -1);
	assert_int_equal(lines[1], 0);

	/* After the interval each record of the first RRset carries all its
	 * occurrences: 49 held back by the RRset key (+1 from the other RRset
	 * for the shared record). */
	assert_true(answer(lim, zone, INTERVAL, 1000 + INTERVAL + 1, &a, lines));
	assert_int_equal(lines[0], 50);
	assert_int_equal(lines[1], 49);
	knot_rdataset_clear(&a.rr.rrs, NULL);
	knot_rdataset_clear(&b.rr.rrs, NULL);
	mxf_limiter_free(lim);
}

static void test_audit_every_line(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	knot_dname_storage_t zone;
	th_dname(zone, "example.com.");
	const uint16_t prefs[] = { 5 };
	const char *const ex[] = { "mailgate.example.com." };
	legacy_set_t a;
	legacy_set(&a, "www.example.com.", prefs, ex, 1);
	long lines[4];
	for (int i = 0; i < 5; i++) {
		/* log-interval 0, or no limiter: every occurrence has a line. */
		assert_true(answer(lim, zone, 0, 1000, &a, lines));
		assert_int_equal(lines[0], 0);
		assert_true(answer(NULL, zone, INTERVAL, 1000, &a, lines));
		assert_int_equal(lines[0], 0);
	}
	knot_rdataset_clear(&a.rr.rrs, NULL);
	mxf_limiter_free(lim);
}

/* Wildcard answers are keyed by the zone, not by the query name. */
static void test_audit_wildcard(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	knot_dname_storage_t zone1, zone2;
	th_dname(zone1, "example.com.");
	th_dname(zone2, "example.net.");
	const uint16_t prefs[] = { 5 };
	const char *const ex[] = { "mailgate.example.com." };
	legacy_set_t x, y;
	legacy_set(&x, "random1.example.com.", prefs, ex, 1);
	legacy_set(&y, "random2.example.com.", prefs, ex, 1);
	x.rec[0].expanded = y.rec[0].expanded = true;

	mxf_audit_t a;
	mxf_audit_init(&a, lim, zone1, INTERVAL);
	a.now = 500;
	uint32_t supp;
	assert_true(mxf_audit_set(&a, &x.rr, true, MXF_ACTION_BLOCKED));
	assert_true(mxf_audit_record(&a, &x.rec[0], &supp));
	mxf_audit_init(&a, lim, zone1, INTERVAL);
	a.now = 501;
	assert_false(mxf_audit_set(&a, &y.rr, true, MXF_ACTION_BLOCKED));
	/* Another zone with the same wildcard data has keys of its own. */
	mxf_audit_init(&a, lim, zone2, INTERVAL);
	a.now = 501;
	assert_true(mxf_audit_set(&a, &y.rr, true, MXF_ACTION_BLOCKED));
	assert_true(mxf_audit_record(&a, &y.rec[0], &supp));
	knot_rdataset_clear(&x.rr.rrs, NULL);
	knot_rdataset_clear(&y.rr.rrs, NULL);
	mxf_limiter_free(lim);
}

static void test_limiter_weight(void **state)
{
	(void)state;
	mxf_limiter_t *lim = mxf_limiter_new(SLOTS_LOG2);
	uint64_t k = key_of(lim, "example.com.", "example.com.", 5, "mx.example.com.");
	uint32_t supp;
	assert_true(mxf_limiter_hit_n(lim, k, 100, INTERVAL, 3, &supp));
	assert_int_equal(supp, 2);
	assert_false(mxf_limiter_hit_n(lim, k, 101, INTERVAL, 10, &supp));
	assert_false(mxf_limiter_hit_n(lim, k, 102, INTERVAL, UINT32_MAX, &supp));
	assert_true(mxf_limiter_hit_n(lim, k, 100 + INTERVAL, INTERVAL, 1, &supp));
	assert_int_equal(supp, UINT32_MAX); /* Saturates. */
	mxf_limiter_free(lim);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limiter_basic),
		cmocka_unit_test(test_limiter_independent),
		cmocka_unit_test(test_limiter_key),
		cmocka_unit_test(test_limiter_threads),
		cmocka_unit_test(test_now),
		cmocka_unit_test(test_words),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_truncated),
		cmocka_unit_test(test_addr_str),
		cmocka_unit_test(test_audit_sets),
		cmocka_unit_test(test_audit_every_line),
		cmocka_unit_test(test_audit_wildcard),
		cmocka_unit_test(test_limiter_weight),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
