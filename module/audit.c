/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Audit rate limiter.
 *
 * One table of 2^k slots, direct-mapped by the record's key. A slot holds
 * the key and a state word: the time (seconds) until which the key is
 * silent, and the number of occurrences suppressed since its last line.
 * Both words are only ever changed with compare-and-swap, so any number of
 * worker threads may hit the same slot without a lock:
 *
 *  - the key's slot is found by its low bits;
 *  - a slot whose silence has expired (or that was never used) may be taken
 *    over by another key: CAS the key, then reset the state;
 *  - once the key matches, the thread that moves the state from "expired"
 *    to "silent until now + interval" logs, carrying the suppressed count;
 *    every other thread adds one to the suppressed count.
 *
 * So a key is logged at most once per interval whatever the thread count.
 * A key whose slot is held by another key that is still silent is not
 * logged until that slot expires (it is logged late, never more often);
 * the table is large enough for this to be rare.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "mxfilter/audit.h"
#include "wire.h"

typedef struct {
	_Atomic uint64_t key;
	_Atomic uint64_t state; /* silent_until << 32 | suppressed */
} slot_t;

struct mxf_limiter {
	uint64_t seed[2];
	uint64_t mask;
	slot_t slots[];
};

#define STATE(until, supp)	(((uint64_t)(until) << 32) | (uint32_t)(supp))
#define UNTIL(state)		((uint32_t)((state) >> 32))
#define SUPP(state)		((uint32_t)(state))

/* Attempts to take a slot over from another key before giving up. */
#define MAX_TRIES	16

mxf_limiter_t *mxf_limiter_new(unsigned slots_log2)
{
	if (slots_log2 > 24) {
		return NULL;
	}
	size_t n = (size_t)1 << slots_log2;
	mxf_limiter_t *lim = calloc(1, sizeof(*lim) + n * sizeof(slot_t));
	if (lim == NULL) {
		return NULL;
	}
	lim->mask = n - 1;

	/* A secret seed keeps a client from steering records into one slot. */
	if (getrandom(lim->seed, sizeof(lim->seed), GRND_NONBLOCK) != sizeof(lim->seed)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		lim->seed[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL;
		lim->seed[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)lim;
	}
	for (size_t i = 0; i < n; i++) {
		atomic_init(&lim->slots[i].key, 0);
		atomic_init(&lim->slots[i].state, 0);
	}
	return lim;
}

void mxf_limiter_free(mxf_limiter_t *lim)
{
	free(lim);
}

/* Folds a name into \a h, case-insensitively. Label lengths are at most
 * 63, so lower-casing the whole wire form only touches letters. */
static uint64_t hash_name(uint64_t h, const knot_dname_t *name)
{
	if (name == NULL) {
		return (h ^ 0xff) * MXF_HASH_MUL;
	}
	return mxf_hash_words(h, name, mxf_flat_name_size(name), true);
}

uint64_t mxf_limiter_key(const mxf_limiter_t *lim, const knot_dname_t *zone,
                         const knot_dname_t *owner, uint16_t pref,
                         const knot_dname_t *exchange)
{
	uint64_t h = lim->seed[0] ^ 0xcbf29ce484222325ULL;
	h = hash_name(h, zone);
	h = hash_name(h ^ lim->seed[1], owner);
	h = (h ^ pref ^ ((uint64_t)1 << 32)) * MXF_HASH_MUL; /* Not a name: no folding. */
	h = hash_name(h, exchange);
	return mxf_hash_mix(h) | 1; /* 0 marks a free slot. */
}

bool mxf_limiter_hit(mxf_limiter_t *lim, uint64_t key, uint32_t now,
                     uint32_t interval, uint32_t *suppressed)
{
	return mxf_limiter_hit_n(lim, key, now, interval, 1, suppressed);
}

static uint32_t sat_add32(uint32_t a, uint32_t b)
{
	return (a > UINT32_MAX - b) ? UINT32_MAX : a + b;
}

bool mxf_limiter_hit_n(mxf_limiter_t *lim, uint64_t key, uint32_t now,
                       uint32_t interval, uint32_t weight, uint32_t *suppressed)
{
	if (weight == 0) {
		weight = 1;
	}
	slot_t *slot = &lim->slots[key & lim->mask];

	/* Taking a slot over is retried a bounded number of times; once the
	 * key is in place, the loop below only repeats when another thread
	 * changed the state meanwhile (lock-free: one of them always wins). */
	int takeovers = 0;
	for (;;) {
		uint64_t k = atomic_load(&slot->key);
		uint64_t st = atomic_load(&slot->state);
		bool expired = now >= UNTIL(st);

		if (k != key) {
			if (!expired || takeovers++ >= MAX_TRIES) {
				return false; /* Held by another key still silent. */
			}
			if (atomic_compare_exchange_strong(&slot->key, &k, key)) {
				atomic_compare_exchange_strong(&slot->state, &st, 0);
			}
			continue;
		}

		if (expired) {
			uint64_t next = STATE(now + interval, 0);
			if (atomic_compare_exchange_strong(&slot->state, &st, next)) {
				*suppressed = sat_add32(SUPP(st), weight - 1);
				return true;
			}
		} else {
			uint64_t next = STATE(UNTIL(st), sat_add32(SUPP(st), weight));
			if (atomic_compare_exchange_strong(&slot->state, &st, next)) {
				return false;
			}
		}
	}
}

/*** Per-query audit decisions. ***/

#define WILDCARD	((const knot_dname_t *)"\x01*")
#define SET_DOMAIN	0x5e75e75e75e75e75ULL /* RRset keys apart from record keys. */

void mxf_audit_init(mxf_audit_t *a, mxf_limiter_t *lim, const knot_dname_t *zone,
                    uint32_t interval)
{
	a->lim = lim;
	a->zone = zone;
	a->interval = interval;
	a->now = 0;
	a->carry = 0;
}

static uint32_t audit_now(mxf_audit_t *a)
{
	if (a->now == 0) {
		a->now = mxf_now();
	}
	return a->now;
}

bool mxf_audit_set(mxf_audit_t *a, const knot_rrset_t *rr, bool expanded,
                   mxf_action_t action)
{
	a->carry = 0;
	if (a->interval == 0 || a->lim == NULL) {
		return true;
	}
	const mxf_limiter_t *lim = a->lim;
	uint64_t h = lim->seed[1] ^ SET_DOMAIN;
	h = hash_name(h, expanded ? a->zone : NULL);
	h = hash_name(h ^ lim->seed[0], expanded ? WILDCARD : rr->owner);
	/* Raw bytes, no case folding: an RRset key is exact. */
	h = mxf_hash_words(h ^ action, (const uint8_t *)rr->rrs.rdata, rr->rrs.size, false);
	uint32_t held = 0;
	if (!mxf_limiter_hit_n(a->lim, mxf_hash_mix(h) | 1, audit_now(a), a->interval, 1, &held)) {
		return false;
	}
	a->carry = held;
	return true;
}

bool mxf_audit_record(mxf_audit_t *a, const mxf_legacy_t *rec, uint32_t *suppressed)
{
	*suppressed = 0;
	if (a->interval == 0 || a->lim == NULL) {
		return true;
	}
	uint64_t key = mxf_limiter_key(a->lim, rec->expanded ? a->zone : NULL,
	                               rec->expanded ? WILDCARD : rec->owner,
	                               rec->pref, rec->exchange);
	/* Lines of different actions are limited apart: switching a zone from
	 * audit to enforce shows its first "blocked" line at once. */
	key ^= (uint64_t)rec->action << 40;
	return mxf_limiter_hit_n(a->lim, key, audit_now(a), a->interval,
	                         sat_add32(a->carry, 1), suppressed);
}

uint32_t mxf_now(void)
{
	struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
	clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
	return (uint32_t)ts.tv_sec + 1;
}

/*** Log lines. ***/

const char *mxf_action_str(mxf_action_t action)
{
	switch (action) {
	case MXF_ACTION_BLOCKED:  return "blocked";
	case MXF_ACTION_AUDIT:    return "audit";
	case MXF_ACTION_OBSERVED: return "observed";
	}
	return "unknown";
}

const char *mxf_risk_str(mxf_risk_t risk)
{
	return (risk == MXF_RISK_BYPASS) ? "bypass" : "fallback";
}

void mxf_addr_str(const struct sockaddr_storage *addr, char *buf, size_t size)
{
	const char *ok = NULL;
	if (addr != NULL && addr->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		ok = inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)size);
	} else if (addr != NULL && addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		ok = inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
	}
	if (ok == NULL && size > 0) {
		snprintf(buf, size, "-");
	}
}

/* Lower-case presentation form of a name. */
static void name_str(const knot_dname_t *name, char *buf, size_t size)
{
	if (name == NULL || knot_dname_to_str(buf, name, size) == NULL) {
		snprintf(buf, size, "(malformed)");
		return;
	}
	for (char *c = buf; *c != '\0'; c++) {
		if (*c >= 'A' && *c <= 'Z') {
			*c += 'a' - 'A';
		}
	}
}

size_t mxf_audit_format(char *buf, size_t size, const mxf_legacy_t *rec,
                        const struct sockaddr_storage *client,
                        uint32_t suppressed)
{
	char owner[KNOT_DNAME_TXT_MAXLEN + 1];
	char exchange[KNOT_DNAME_TXT_MAXLEN + 1];
	char addr[INET6_ADDRSTRLEN];

	name_str(rec->owner, owner, sizeof(owner));
	name_str(rec->exchange, exchange, sizeof(exchange));
	mxf_addr_str(client, addr, sizeof(addr));

	if (size == 0) {
		return 0;
	}
	int n = snprintf(buf, size, "legacy MX %s, owner %s, preference %u, "
	                 "exchange %s, risk %s, client %s, suppressed %u",
	                 mxf_action_str(rec->action), owner, rec->pref, exchange,
	                 mxf_risk_str(rec->risk), addr, suppressed);
	if (n < 0) {
		buf[0] = '\0';
		return 0;
	}
	return ((size_t)n < size) ? (size_t)n : size - 1;
}
