/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Audit rate limiter: exact, complete, bounded.
 *
 * The contract (DESIGN.md "Audit trail", docs/log-format.md "Rate
 * limiting"): a record is logged at most once and at least once per
 * log-interval, its first occurrence in an interval at once, and lines + the
 * sum of their "suppressed" = occurrences, for any number of zones and
 * records. The limiter's memory follows the records seen within an interval
 * and is returned after.
 *
 * Entries. One entry per record key: (zone, kind, action, owner, preference,
 * exchange) for legacy and missing records, (zone, owner) for errors; the
 * zone is its name (hashed with a secret seed), so that every module
 * instance of a zone shares its records. An entry's state is one 64-bit
 * word, changed only by compare-and-swap: the second its interval ends
 * ("until") and the occurrences held since its last line ("held"). An
 * occurrence either finds the interval over, and the thread whose CAS
 * starts the next interval writes the line with suppressed = held, or adds
 * itself to held. Any number of threads hitting one record serialise on
 * that one word, as on the single CAS before.
 *
 * RRset entries keep the busy path as cheap as it was. One per owner and
 * action, holding the rdata it was made for and pointers to its records'
 * entries (their reference counts keep them). While its interval runs, an
 * answer is one lookup and one CAS on it, whatever the number of records;
 * when it ends, the next answer carries the held count to every record
 * (each gets held + 1 occurrences at once). Its interval ends when the
 * first of its records' intervals ends (it is made and reopened with the
 * minimum of theirs), so while it holds occurrences back every record is
 * silent anyway: no record's first line is delayed by it. One per owner, so
 * a record is held back by at most one of them: when the owner's RRset
 * changes (a zone reload), the old entry hands what it held to its records
 * before any of them is looked at for the new RRset, so a line's
 * "suppressed" always counts exactly the occurrences since the previous
 * line. An RRset entry dies the same way (claimed, counts handed over, then
 * dead), so no query ever passes by a dead entry whose counts its records
 * miss.
 *
 * Exactness. An entry with held occurrences is never simply forgotten. When
 * its interval has ended and a whole log-interval passed without a new
 * occurrence, the reclaimer queues it on its zone; the zone's next MX or
 * ANY answer (or the load of its next module instance, at a reload) writes
 * one line for them: it stands for the last of them (suppressed = held - 1),
 * has no client, and starts an interval like any line, so lines stay at
 * least an interval apart. The reclaimer writes no line itself: Knot frees
 * a zone's name before it unloads the zone's module (zone_free(), every
 * series), so a line from any other thread could name freed memory. An
 * entry whose interval ended with nothing held is forgotten (its next
 * occurrence is a first occurrence anyway). When a zone's module instance
 * is unloaded, its entries go to the zone's newest other instance (a
 * reload loads the new ones first), intervals and counts untouched; when
 * there is none (the zone left the configuration, knotd stops), what they
 * hold is lost: nothing may be logged for the zone any more by then.
 *
 * The bound. Entries and the table are counted in bytes against a bound
 * (MXF_LIMITER_MAX_BYTES, docs/log-format.md gives the memory per record).
 * A record that finds no room is logged at that occurrence (suppressed 0,
 * still exact), and the caller writes one notice per interval
 * (mxf_audit_full()).
 *
 * Why not liburcu's cds_lfht. knotd already runs queries inside
 * rcu_read_lock() of the default flavour (liburcu.so, memb), which is what
 * the table below relies on, and cds_lfht (liburcu-cds) binds to whatever
 * flavour the includer mapped (cds_lfht_new() passes &rcu_flavor, i.e.
 * urcu_memb_flavor after <urcu.h> on liburcu 0.13 and 0.15), so it would
 * fit. But its lookup walks a split-ordered list: a bit reversal, an
 * indirect bucket call and one node per step; measured under callgrind at
 * about 145 instructions per hit with 10^3 keys and 450 with 10^5, where
 * the whole budget of the busy path (5 % of an enforced answer) is about 60.
 * Lookups here probe an open-addressing array of entry pointers (about 15
 * instructions, plus the key's comparison: the owner's bytes, skipped when
 * its address is the one the entry was made with and the 64-bit hashes are
 * equal; the RRset's rdata always). Writers (a new key, the reclaimer, a
 * zone's load and unload) are rare and take a mutex; lookups never do, and
 * never allocate. The table grows by copying into a larger array published
 * with a release store; old arrays and removed entries are freed after
 * synchronize_rcu() by the reclaimer thread, never on the query path, so a
 * reader may keep using what it found for as long as it holds
 * rcu_read_lock().
 *
 * Threads and locks. `lock` orders writers (insert, unlink, resize, the
 * zones' lists and registry, RRset references). `tick_lock` keeps a zone's
 * unload and a reclaimer pass apart. synchronize_rcu() is called with no
 * lock held (a query thread may be waiting on `lock` inside its read-side
 * critical section).
 */

#include <errno.h>
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <urcu.h>

#include "audit.h"
#include "wire.h"

/*** Entries. ***/

enum {
	KIND_LEGACY = MXF_LINE_LEGACY,
	KIND_MISSING = MXF_LINE_MISSING,
	KIND_ERROR = MXF_LINE_ERROR,
	KIND_SET,
};

typedef struct mxf_ent ent_t;

struct mxf_ent {
	_Atomic uint64_t state;    /* until << 32 | held, or DEAD */
	uint64_t hash;
	mxf_audit_zone_t *zone;    /* The instance whose list holds it. */
	const void *owner_ptr;     /* The owner's address when made: equal with an
	                              equal 64-bit hash, it is the same owner. */
	ent_t *prev, *next;        /* The zone's list (or its due list, or the
	                              graveyard: next). */
	uint32_t interval;         /* Of its last line. */
	uint32_t refs;             /* RRset entries, flushes pointing here (lock). */
	_Atomic int error;         /* KIND_ERROR: reason of the last failure. */
	uint16_t pref;
	uint16_t nrec;             /* KIND_SET: records. */
	uint16_t rdata_size;       /* KIND_SET: rdataset bytes. */
	uint8_t kind;
	uint8_t action;
	uint8_t risk;
	uint8_t owner_size;
	uint8_t exchange_size;     /* 0: no exchange (malformed rdata, errors). */
	uint8_t queued;            /* On its zone's due list (lock). */
	alignas(8) uint8_t data[]; /* Owner, exchange | owner, rdata, records. */
};

#define STATE(until, held)	(((uint64_t)(until) << 32) | (uint32_t)(held))
#define UNTIL(st)		((uint32_t)((st) >> 32))
#define HELD(st)		((uint32_t)(st))
#define DEAD			UINT64_MAX

static inline const uint8_t *ent_owner(const ent_t *e)
{
	return e->data;
}

static inline const uint8_t *ent_exchange(const ent_t *e)
{
	return e->exchange_size > 0 ? e->data + e->owner_size : NULL;
}

static inline const uint8_t *ent_rdata(const ent_t *e)
{
	return e->data + e->owner_size;
}

static inline size_t set_recs_off(size_t owner_size, size_t rdata_size)
{
	return (owner_size + rdata_size + 7) & ~(size_t)7;
}

static inline ent_t **ent_recs(ent_t *e)
{
	return (ent_t **)(void *)(e->data + set_recs_off(e->owner_size, e->rdata_size));
}

static uint32_t sat_add32(uint32_t a, uint32_t b)
{
	return (a > UINT32_MAX - b) ? UINT32_MAX : a + b;
}

static inline bool is_dead(const ent_t *e)
{
	return atomic_load_explicit(&((ent_t *)e)->state, memory_order_relaxed) == DEAD;
}

/*** The table: open addressing, linear probing, entry pointers. ***/

#define TOMB		((ent_t *)(uintptr_t)1)
#define MIN_SLOTS	1024

typedef struct table {
	size_t mask;
	size_t used;            /* Non-empty slots, tombstones included (writers). */
	struct table *retired;  /* Graveyard link. */
	_Atomic(ent_t *) slot[];
} table_t;

static size_t table_bytes(size_t slots)
{
	return sizeof(table_t) + slots * sizeof(_Atomic(ent_t *));
}

/*** The limiter. ***/

struct mxf_limiter {
	uint64_t seed[2];
	_Atomic(table_t *) table;
	pthread_mutex_t lock;     /* Writers. */
	pthread_mutex_t tick_lock; /* A reclaimer pass vs. a zone's unload. */
	size_t live;              /* Entries in the table (under lock). */
	_Atomic size_t bytes;     /* Changed under lock, read anywhere. */
	size_t max_bytes;
	size_t scan_pos;          /* Where the next pass goes on (tick_lock). */
	ent_t *graveyard;         /* Unlinked entries to free (under lock). */
	table_t *old_tables;      /* Replaced tables to free (under lock). */
	_Atomic uint32_t full_until; /* The bound notice is silent until then. */

	/* The zones' instances by name (under lock), newest first per name. */
	mxf_audit_zone_t **reg;
	size_t reg_mask;
	size_t reg_count;

	bool thread_on;
	bool stop;                /* Under thread_lock. */
	pthread_t thread;
	pthread_mutex_t thread_lock;
	pthread_cond_t thread_cond;
};

static table_t *table_new(size_t slots)
{
	table_t *t = calloc(1, table_bytes(slots));
	if (t != NULL) {
		t->mask = slots - 1;
	}
	return t;
}

static inline table_t *table_get(const mxf_limiter_t *lim)
{
	return atomic_load_explicit(&((mxf_limiter_t *)lim)->table, memory_order_acquire);
}

static void *thread_main(void *arg);

#define REG_MIN		1024

mxf_limiter_t *mxf_limiter_new(const mxf_limiter_opts_t *opts)
{
	mxf_limiter_t *lim = calloc(1, sizeof(*lim));
	if (lim == NULL) {
		return NULL;
	}
	/* A secret seed keeps zone data from steering keys into one probe run. */
	if (getrandom(lim->seed, sizeof(lim->seed), GRND_NONBLOCK) != sizeof(lim->seed)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		lim->seed[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL;
		lim->seed[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)lim;
	}
	lim->max_bytes = (opts != NULL && opts->max_bytes > 0) ? opts->max_bytes :
	                 MXF_LIMITER_MAX_BYTES;
	table_t *t = table_new(MIN_SLOTS);
	lim->reg = calloc(REG_MIN, sizeof(*lim->reg));
	if (t == NULL || lim->reg == NULL) {
		free(t);
		free(lim->reg);
		free(lim);
		return NULL;
	}
	lim->reg_mask = REG_MIN - 1;
	atomic_init(&lim->table, t);
	atomic_init(&lim->bytes, table_bytes(MIN_SLOTS));
	atomic_init(&lim->full_until, 0);
	pthread_mutex_init(&lim->lock, NULL);
	pthread_mutex_init(&lim->tick_lock, NULL);
	pthread_mutex_init(&lim->thread_lock, NULL);

	if (opts != NULL && opts->thread) {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&lim->thread_cond, &ca);
		pthread_condattr_destroy(&ca);

		/* The thread must not take signals meant for knotd's main thread. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int ret = pthread_create(&lim->thread, NULL, thread_main, lim);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (ret != 0) {
			pthread_cond_destroy(&lim->thread_cond);
			mxf_limiter_free(lim);
			return NULL;
		}
		lim->thread_on = true;
	}
	return lim;
}

/* Frees the graveyard's entries and tables (a grace period has passed). */
static void free_dead(ent_t *e, table_t *t)
{
	while (e != NULL) {
		ent_t *next = e->next;
		free(e);
		e = next;
	}
	while (t != NULL) {
		table_t *next = t->retired;
		free(t);
		t = next;
	}
}

void mxf_limiter_free(mxf_limiter_t *lim)
{
	if (lim == NULL) {
		return;
	}
	if (lim->thread_on) {
		pthread_mutex_lock(&lim->thread_lock);
		lim->stop = true;
		pthread_cond_signal(&lim->thread_cond);
		pthread_mutex_unlock(&lim->thread_lock);
		pthread_join(lim->thread, NULL);
		pthread_cond_destroy(&lim->thread_cond);
	}
	/* No reader is left: what is unlinked can go at once, and so can
	 * entries of zones never cleared (a caller's bug; nothing to log). */
	table_t *t = table_get(lim);
	for (size_t i = 0; i <= t->mask; i++) {
		ent_t *e = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
		if (e != NULL && e != TOMB) {
			free(e);
		}
	}
	free_dead(lim->graveyard, lim->old_tables);
	free(t);
	free(lim->reg);
	pthread_mutex_destroy(&lim->lock);
	pthread_mutex_destroy(&lim->tick_lock);
	pthread_mutex_destroy(&lim->thread_lock);
	free(lim);
}

void mxf_limiter_stats(mxf_limiter_t *lim, mxf_limiter_stats_t *st)
{
	pthread_mutex_lock(&lim->lock);
	st->entries = lim->live;
	st->bytes = atomic_load(&lim->bytes);
	st->max_bytes = lim->max_bytes;
	st->slots = table_get(lim)->mask + 1;
	pthread_mutex_unlock(&lim->lock);
}

/*** Keys. ***/

/* Label lengths are at most 63, so lower-casing the whole wire form only
 * touches letters. */
static inline uint64_t hash_name(uint64_t h, const uint8_t *name, size_t size)
{
	return mxf_hash_words(h, name, size, true);
}

/* The start of every key of a zone: its name's hash, kind and action. */
static inline uint64_t hash_start(const mxf_audit_zone_t *z, unsigned kind, unsigned action)
{
	uint64_t h = (z->name_hash ^ ((uint64_t)kind << 8 | action)) * MXF_HASH_MUL;
	return h ^ (h >> 29);
}

static inline size_t name_size(const knot_dname_t *name)
{
	return name != NULL ? mxf_flat_name_size(name) : 0;
}

/* The key of a record: what mxf_audit_record() and mxf_audit_error() look up. */
typedef struct {
	uint64_t hash;
	unsigned kind;
	unsigned action;
	uint16_t pref;
	const uint8_t *owner;
	size_t owner_size;
	const uint8_t *exchange; /* NULL: none. */
	size_t exchange_size;
} rec_key_t;

static void rec_key(const mxf_audit_zone_t *z, rec_key_t *k)
{
	uint64_t h = hash_start(z, k->kind, k->action);
	h = hash_name(h, k->owner, k->owner_size);
	h = (h ^ k->pref ^ ((uint64_t)1 << 32)) * MXF_HASH_MUL; /* Not a name: no folding. */
	if (k->exchange != NULL) {
		h = hash_name(h, k->exchange, k->exchange_size);
	}
	k->hash = mxf_hash_mix(h);
}

/* Owners are absolute names in one zone: with the zone in the hash, the
 * owner's bytes tell zones apart. */
static inline bool rec_match(const ent_t *e, const rec_key_t *k)
{
	return e->hash == k->hash && e->kind == k->kind &&
	       e->action == k->action && e->pref == k->pref &&
	       e->owner_size == k->owner_size &&
	       e->exchange_size == (k->exchange != NULL ? k->exchange_size : 0) &&
	       (e->owner_ptr == k->owner ||
	        mxf_wire_case_equal(k->owner, ent_owner(e), k->owner_size)) &&
	       (k->exchange == NULL ||
	        mxf_wire_case_equal(k->exchange, ent_exchange(e), k->exchange_size));
}

/* The key of an owner's RRset entry: owner (any case), action. One per
 * owner, so that a record is held back by at most one of them; the rdata
 * it was made for is kept to tell a changed RRset (a zone reload). */
typedef struct {
	uint64_t hash;
	unsigned action;
	const uint8_t *owner;
	size_t owner_size;
	const uint8_t *rdata;
	size_t rdata_size;
} set_key_t;

static inline bool set_match(const ent_t *e, const set_key_t *k)
{
	return e->hash == k->hash && e->kind == KIND_SET &&
	       e->action == k->action && e->owner_size == k->owner_size &&
	       (e->owner_ptr == k->owner ||
	        mxf_wire_case_equal(k->owner, ent_owner(e), k->owner_size));
}

static inline bool set_same_rdata(const ent_t *e, const set_key_t *k)
{
	return e->rdata_size == k->rdata_size &&
	       (k->rdata_size == 0 || memcmp(k->rdata, ent_rdata(e), k->rdata_size) == 0);
}

/* The lock-free look-up (rcu_read_lock() held): the probe run of \a hash
 * up to an empty slot. Always inlined, so that each key type's match is
 * too. Dead entries (unlinked soon) are passed over. */
static inline __attribute__((always_inline))
ent_t *probe(const mxf_limiter_t *lim, uint64_t hash,
             bool (*match)(const ent_t *, const void *), const void *key)
{
	table_t *t = table_get(lim);
	for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
		ent_t *e = atomic_load_explicit(&t->slot[i], memory_order_acquire);
		if (e == NULL) {
			return NULL;
		}
		if (e != TOMB && match(e, key) && !is_dead(e)) {
			return e;
		}
	}
}

static bool rec_match_key(const ent_t *e, const void *key)
{
	return rec_match(e, key);
}

static bool set_match_key(const ent_t *e, const void *key)
{
	return set_match(e, key);
}

static ent_t *lookup_rec(const mxf_limiter_t *lim, const rec_key_t *k)
{
	return probe(lim, k->hash, rec_match_key, k);
}

static inline __attribute__((always_inline))
ent_t *lookup_set(const mxf_limiter_t *lim, const set_key_t *k)
{
	return probe(lim, k->hash, set_match_key, k);
}

/*** State changes (lock-free). ***/

typedef enum { HIT_DEAD = 0, HIT_LINE, HIT_HELD } hit_t;

/* \a weight occurrences of \a e at \a now: the first starts an interval of
 * \a interval seconds (line, with everything held before) if the last one is
 * over. */
static inline hit_t hit(ent_t *e, uint32_t now, uint32_t interval, uint32_t weight,
                        uint32_t *suppressed, uint32_t *until)
{
	uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
	for (;;) {
		if (st == DEAD) {
			return HIT_DEAD;
		}
		uint64_t next;
		bool line = now >= UNTIL(st);
		if (line) {
			next = STATE(now + interval, 0);
		} else {
			next = STATE(UNTIL(st), sat_add32(HELD(st), weight));
		}
		if (atomic_compare_exchange_weak_explicit(&e->state, &st, next,
		                                          memory_order_acq_rel,
		                                          memory_order_relaxed)) {
			*until = UNTIL(next);
			if (line) {
				if (e->interval != interval) {
					e->interval = interval; /* A policy change. */
				}
				*suppressed = sat_add32(HELD(st), weight - 1);
				return HIT_LINE;
			}
			return HIT_HELD;
		}
	}
}

/* Adds \a n occurrences not logged, whatever the interval (an RRset entry
 * hands over what it held while the record was silent). */
static void add_held(ent_t *e, uint32_t n)
{
	uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
	while (n > 0 && st != DEAD &&
	       !atomic_compare_exchange_weak_explicit(&e->state, &st,
	                                              STATE(UNTIL(st), sat_add32(HELD(st), n)),
	                                              memory_order_acq_rel,
	                                              memory_order_relaxed)) {
	}
}

/* Marks \a e dead; returns what it held. */
static uint32_t ent_kill(ent_t *e)
{
	uint64_t st = atomic_exchange_explicit(&e->state, DEAD, memory_order_acq_rel);
	return st == DEAD ? 0 : HELD(st);
}

#define SET_GRACE	2
/* "until" of an RRset entry being killed: silent to every query. */
#define KILLING		(UINT32_MAX - 1)

/*
 * Kills an RRset entry without losing a count: claims it (its interval set
 * to KILLING, so that no query can open it any more: they add to what it
 * holds), hands what it holds to its records until nothing is left, then
 * marks it dead; a query that passes it by from then on counts its records
 * itself, after all of this. With \a expired, only an entry whose interval
 * ended SET_GRACE seconds ago (a busy one is reopened by a query first).
 * False if it was not claimed (busy, or another thread is killing it).
 */
static bool set_kill(ent_t *e, uint32_t now, bool expired)
{
	uint64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
	do {
		if (st == DEAD) {
			return true;
		}
		if (UNTIL(st) == KILLING || (expired && now < UNTIL(st) + SET_GRACE)) {
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(&e->state, &st,
	                                                STATE(KILLING, HELD(st)),
	                                                memory_order_acq_rel,
	                                                memory_order_acquire));
	st = STATE(KILLING, HELD(st));
	for (;;) {
		uint32_t held = HELD(st);
		uint64_t next = (held > 0) ? STATE(KILLING, 0) : DEAD;
		if (!atomic_compare_exchange_weak_explicit(&e->state, &st, next,
		                                           memory_order_acq_rel,
		                                           memory_order_acquire)) {
			continue;
		}
		if (next == DEAD) {
			return true;
		}
		ent_t **rec = ent_recs(e);
		for (uint16_t r = 0; r < e->nrec; r++) {
			add_held(rec[r], held);
		}
		st = next;
	}
}

/* Lowers the end of an RRset entry's interval to \a until. */
static void lower_until(ent_t *e, uint32_t until)
{
	uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
	while (st != DEAD && UNTIL(st) > until && UNTIL(st) != KILLING &&
	       !atomic_compare_exchange_weak_explicit(&e->state, &st,
	                                              STATE(until, HELD(st)),
	                                              memory_order_acq_rel,
	                                              memory_order_relaxed)) {
	}
}

/*** Writers (under lim->lock). ***/

static size_t ent_bytes(const ent_t *e)
{
	return malloc_usable_size((void *)e);
}

/* Copies the live entries of the current table into one of \a slots. */
static bool table_resize(mxf_limiter_t *lim, size_t slots)
{
	table_t *old = table_get(lim);
	size_t add = table_bytes(slots);
	if (atomic_load(&lim->bytes) + add > lim->max_bytes + table_bytes(old->mask + 1)) {
		return false;
	}
	table_t *t = table_new(slots);
	if (t == NULL) {
		return false;
	}
	for (size_t i = 0; i <= old->mask; i++) {
		ent_t *e = atomic_load_explicit(&old->slot[i], memory_order_relaxed);
		if (e == NULL || e == TOMB) {
			continue;
		}
		size_t j = e->hash & t->mask;
		while (atomic_load_explicit(&t->slot[j], memory_order_relaxed) != NULL) {
			j = (j + 1) & t->mask;
		}
		atomic_store_explicit(&t->slot[j], e, memory_order_relaxed);
		t->used++;
	}
	atomic_store_explicit(&lim->table, t, memory_order_release);
	atomic_fetch_add(&lim->bytes, add);
	atomic_fetch_sub(&lim->bytes, table_bytes(old->mask + 1));
	/* Readers may still be in it: freed after a grace period. */
	old->retired = lim->old_tables;
	lim->old_tables = old;
	return true;
}

/* Table size for \a live entries: at most a quarter full after a resize. */
static size_t slots_for(size_t live)
{
	size_t slots = MIN_SLOTS;
	while (slots < 4 * live) {
		slots *= 2;
	}
	return slots;
}

/* Lists: an entry is on its zone's list, or on its due list (queued). */
/* Heads are stored atomically: mxf_audit_due() reads the due list's
 * head without the lock. */
static void list_add(ent_t **head, ent_t *e)
{
	e->prev = NULL;
	e->next = *head;
	if (*head != NULL) {
		(*head)->prev = e;
	}
	__atomic_store_n(head, e, __ATOMIC_RELEASE);
}

static void list_del(ent_t **head, ent_t *e)
{
	if (e->prev != NULL) {
		e->prev->next = e->next;
	} else {
		__atomic_store_n(head, e->next, __ATOMIC_RELEASE);
	}
	if (e->next != NULL) {
		e->next->prev = e->prev;
	}
	e->prev = e->next = NULL;
}

static inline ent_t **due_head(mxf_audit_zone_t *z)
{
	return &z->due;
}

static void ent_list_del(ent_t *e)
{
	if (e->queued) {
		list_del(due_head(e->zone), e);
		e->queued = 0;
	} else {
		list_del(&e->zone->head, e);
	}
}

/* Links a new entry into the table and its zone's list. */
static bool link_ent(mxf_limiter_t *lim, ent_t *e)
{
	size_t bytes = ent_bytes(e);
	if (atomic_load(&lim->bytes) + bytes > lim->max_bytes) {
		return false;
	}
	table_t *t = table_get(lim);
	if (2 * (t->used + 1) > t->mask + 1) {
		if (!table_resize(lim, slots_for(lim->live + 1)) &&
		    4 * (t->used + 1) > 3 * (t->mask + 1)) {
			return false; /* No room to grow: keep probing short. */
		}
		t = table_get(lim);
	}
	size_t i = e->hash & t->mask;
	while (true) {
		ent_t *s = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
		if (s == NULL || s == TOMB) {
			t->used += (s == NULL);
			break;
		}
		i = (i + 1) & t->mask;
	}
	atomic_store_explicit(&t->slot[i], e, memory_order_release);
	lim->live++;
	atomic_fetch_add(&lim->bytes, bytes);
	e->queued = 0;
	list_add(&e->zone->head, e);
	return true;
}

/* Whether \a e is (still) in the table. */
static bool in_table(const mxf_limiter_t *lim, const ent_t *e)
{
	table_t *t = table_get(lim);
	for (size_t i = e->hash & t->mask;; i = (i + 1) & t->mask) {
		ent_t *s = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
		if (s == e) {
			return true;
		}
		if (s == NULL) {
			return false;
		}
	}
}

/* Removes a dead entry from the table and its zone's list; it is freed
 * after a grace period. */
static void unlink_ent(mxf_limiter_t *lim, ent_t *e)
{
	table_t *t = table_get(lim);
	for (size_t i = e->hash & t->mask;; i = (i + 1) & t->mask) {
		ent_t *s = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
		if (s == e) {
			atomic_store_explicit(&t->slot[i], TOMB, memory_order_release);
			break;
		}
		if (s == NULL) {
			break; /* Not linked (cannot happen). */
		}
	}
	lim->live--;
	atomic_fetch_sub(&lim->bytes, ent_bytes(e));
	if (e->kind == KIND_SET) {
		ent_t **rec = ent_recs(e);
		for (uint16_t r = 0; r < e->nrec; r++) {
			rec[r]->refs--;
		}
	}
	ent_list_del(e);
	e->next = lim->graveyard;
	lim->graveyard = e;
}

/* A new record entry (not linked). */
static ent_t *rec_new(mxf_audit_zone_t *z, const rec_key_t *k, uint32_t interval,
                      mxf_risk_t risk)
{
	size_t ex = k->exchange != NULL ? k->exchange_size : 0;
	ent_t *e = malloc(sizeof(*e) + k->owner_size + ex);
	if (e == NULL) {
		return NULL;
	}
	memset(e, 0, sizeof(*e));
	atomic_init(&e->state, 0); /* Interval over: the first hit logs. */
	atomic_init(&e->error, 0);
	e->hash = k->hash;
	e->zone = z;
	e->owner_ptr = k->owner;
	e->interval = interval;
	e->kind = k->kind;
	e->action = k->action;
	e->risk = risk;
	e->pref = k->pref;
	e->owner_size = k->owner_size;
	e->exchange_size = ex;
	/* Lower-case copies: lookups compare any case against them. */
	for (size_t i = 0; i < k->owner_size; i++) {
		e->data[i] = mxf_lower(k->owner[i]);
	}
	for (size_t i = 0; i < ex; i++) {
		e->data[k->owner_size + i] = mxf_lower(k->exchange[i]);
	}
	return e;
}

/* The entry of a record: found, or made. NULL: no room (or no memory). */
static ent_t *rec_get(mxf_audit_zone_t *z, const rec_key_t *k, uint32_t interval,
                      mxf_risk_t risk)
{
	mxf_limiter_t *lim = z->lim;
	ent_t *e = lookup_rec(lim, k);
	if (e != NULL) {
		return e;
	}
	ent_t *made = rec_new(z, k, interval, risk);
	if (made == NULL) {
		return NULL;
	}
	pthread_mutex_lock(&lim->lock);
	e = lookup_rec(lim, k); /* Another thread may have made it. */
	if (e == NULL) {
		e = link_ent(lim, made) ? made : NULL;
		made = (e == made) ? NULL : made;
	}
	pthread_mutex_unlock(&lim->lock);
	free(made);
	return e;
}

/*** Zones: the registry of instances (under lock). ***/

static size_t reg_bucket(const mxf_limiter_t *lim, uint64_t name_hash)
{
	return mxf_hash_mix(name_hash) & lim->reg_mask;
}

/* Doubles the registry; each chain keeps its order (newest first). */
static void reg_grow(mxf_limiter_t *lim)
{
	size_t size = 2 * (lim->reg_mask + 1);
	mxf_audit_zone_t **reg = calloc(size, sizeof(*reg));
	if (reg == NULL) {
		return; /* Longer chains; still correct. */
	}
	mxf_audit_zone_t **old = lim->reg;
	size_t old_size = lim->reg_mask + 1;
	lim->reg = reg;
	lim->reg_mask = size - 1;
	for (size_t b = 0; b < old_size; b++) {
		/* Reversed once into a stack, then pushed: the order is kept. */
		mxf_audit_zone_t *rev = NULL;
		for (mxf_audit_zone_t *z = old[b], *next; z != NULL; z = next) {
			next = z->next;
			z->next = rev;
			rev = z;
		}
		for (mxf_audit_zone_t *z = rev, *next; z != NULL; z = next) {
			next = z->next;
			size_t nb = reg_bucket(lim, z->name_hash);
			z->next = reg[nb];
			reg[nb] = z;
		}
	}
	free(old);
}

/* The newest instance of \a z's zone other than \a z, or NULL. */
static mxf_audit_zone_t *reg_other(const mxf_limiter_t *lim, const mxf_audit_zone_t *z)
{
	for (mxf_audit_zone_t *o = lim->reg[reg_bucket(lim, z->name_hash)]; o != NULL;
	     o = o->next) {
		if (o != z && o->name_hash == z->name_hash) {
			return o;
		}
	}
	return NULL;
}

static void reg_del(mxf_limiter_t *lim, mxf_audit_zone_t *z)
{
	for (mxf_audit_zone_t **p = &lim->reg[reg_bucket(lim, z->name_hash)]; *p != NULL;
	     p = &(*p)->next) {
		if (*p == z) {
			*p = z->next;
			lim->reg_count--;
			return;
		}
	}
}

void mxf_audit_zone_init(mxf_audit_zone_t *z, mxf_limiter_t *lim, const knot_dname_t *name)
{
	z->lim = lim;
	z->head = NULL;
	z->due = NULL;
	z->next = NULL;
	/* Instances of one zone share its records: keyed by the name. */
	z->name_hash = mxf_hash_mix(hash_name(lim->seed[0] ^ lim->seed[1], name, name_size(name)));
	pthread_mutex_lock(&lim->lock);
	if (lim->reg_count >= lim->reg_mask + 1) {
		reg_grow(lim);
	}
	size_t b = reg_bucket(lim, z->name_hash);
	z->next = lim->reg[b];
	lim->reg[b] = z;
	lim->reg_count++;
	pthread_mutex_unlock(&lim->lock);
}

/* Moves every entry on list \a *from to \a to's list of the same kind. */
static void hand_over(ent_t **from, mxf_audit_zone_t *to, bool queued)
{
	while (*from != NULL) {
		ent_t *e = *from;
		list_del(from, e);
		e->zone = to;
		list_add(queued ? due_head(to) : &to->head, e);
	}
}

uint64_t mxf_audit_zone_clear(mxf_audit_zone_t *z)
{
	mxf_limiter_t *lim = z->lim;
	if (lim == NULL) {
		return 0;
	}
	uint64_t lost = 0;
	pthread_mutex_lock(&lim->tick_lock);
	pthread_mutex_lock(&lim->lock);
	reg_del(lim, z);
	mxf_audit_zone_t *to = reg_other(lim, z);
	if (to != NULL) {
		/* A reload: the zone's newest instance keeps the records. */
		hand_over(&z->head, to, false);
		hand_over(due_head(z), to, true);
	} else {
		/* The zone is gone: nothing may be written about it any more. */
		for (ent_t **list = due_head(z); list != NULL;
		     list = (list == due_head(z)) ? &z->head : NULL) {
			while (*list != NULL) {
				ent_t *e = *list;
				uint32_t held = ent_kill(e);
				lost += (e->kind == KIND_SET) ? (uint64_t)held * e->nrec : held;
				unlink_ent(lim, e);
			}
		}
	}
	pthread_mutex_unlock(&lim->lock);
	pthread_mutex_unlock(&lim->tick_lock);
	z->lim = NULL;
	return lost;
}

/* The line of the occurrences an entry held, none of which was logged: it
 * stands for the last of them. */
static void held_line(const ent_t *e, uint32_t held, mxf_line_t *line)
{
	*line = (mxf_line_t){
		.kind = (mxf_line_kind_t)e->kind,
		.action = (mxf_action_t)e->action,
		.risk = (mxf_risk_t)e->risk,
		.pref = e->pref,
		.owner = ent_owner(e),
		.exchange = ent_exchange(e),
		.error = atomic_load_explicit(&((ent_t *)e)->error, memory_order_relaxed),
		.suppressed = held - 1,
		.client = NULL,
	};
}

size_t mxf_audit_flush(mxf_audit_zone_t *z, uint32_t now, mxf_emit_cb emit, void *ctx)
{
	mxf_limiter_t *lim = z->lim;
	if (lim == NULL) {
		return 0;
	}
	struct { ent_t *e; uint32_t held; } *v = NULL;
	size_t n = 0, cap = 0, at_once = 0;

	/* Under lock, from every instance of the zone: the lines to write,
	 * each entry kept alive (a reference) until written. */
	pthread_mutex_lock(&lim->lock);
	for (mxf_audit_zone_t *o = lim->reg[reg_bucket(lim, z->name_hash)]; o != NULL;
	     o = o->next) {
		if (o->name_hash != z->name_hash) {
			continue;
		}
		while (o->due != NULL) {
			ent_t *e = o->due;
			list_del(due_head(o), e);
			e->queued = 0;
			list_add(&o->head, e);
			/* A query may have written its line meanwhile. */
			uint64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
			while (st != DEAD && HELD(st) > 0 && now >= UNTIL(st) &&
			       !atomic_compare_exchange_weak_explicit(
			               &e->state, &st, STATE(now + e->interval, 0),
			               memory_order_acq_rel, memory_order_acquire)) {
			}
			if (st == DEAD || HELD(st) == 0 || now < UNTIL(st)) {
				continue;
			}
			if (n == cap) {
				void *nv = realloc(v, (cap > 0 ? 2 * cap : 16) * sizeof(*v));
				if (nv == NULL) {
					/* No memory to keep it: written at once. */
					mxf_line_t line;
					held_line(e, HELD(st), &line);
					emit(ctx, &line);
					at_once++;
					continue;
				}
				v = nv;
				cap = cap > 0 ? 2 * cap : 16;
			}
			e->refs++;
			v[n].e = e;
			v[n].held = HELD(st);
			n++;
		}
	}
	pthread_mutex_unlock(&lim->lock);

	for (size_t i = 0; i < n; i++) {
		mxf_line_t line;
		held_line(v[i].e, v[i].held, &line);
		emit(ctx, &line);
	}
	if (n > 0) {
		pthread_mutex_lock(&lim->lock);
		for (size_t i = 0; i < n; i++) {
			v[i].e->refs--;
		}
		pthread_mutex_unlock(&lim->lock);
	}
	free(v);
	return n + at_once;
}

/*** Per-query decisions. ***/

void mxf_audit_init(mxf_audit_t *a, mxf_audit_zone_t *z, uint32_t interval)
{
	a->zone = (z != NULL && z->lim != NULL) ? z : NULL;
	a->interval = interval;
	a->now = 0;
	a->owner = NULL;
	a->set = NULL;
	a->build = NULL;
	a->weight = 1;
	a->full = false; /* min_until and next: set with set or build. */
}

static inline uint32_t audit_now(mxf_audit_t *a)
{
	if (a->now == 0) {
		a->now = mxf_now();
	}
	return a->now;
}

/* Shares the RRset entry this query made, if every record it reported has
 * an entry; reference counts keep those alive while it points to them. */
static void publish(mxf_audit_t *a)
{
	ent_t *b = a->build;
	a->build = NULL;
	if (b == NULL) {
		return;
	}
	mxf_limiter_t *lim = a->zone->lim;
	size_t size = sizeof(*b) + set_recs_off(b->owner_size, b->rdata_size) +
	              b->nrec * sizeof(ent_t *);
	ent_t *e = (b->nrec > 0) ? realloc(b, size) : NULL;
	if (e == NULL) {
		free(b);
		return;
	}
	atomic_init(&e->state, STATE(a->min_until, 0));
	set_key_t k = {
		.hash = e->hash, .action = e->action, .owner = ent_owner(e),
		.owner_size = e->owner_size, .rdata = ent_rdata(e), .rdata_size = e->rdata_size,
	};
	ent_t **rec = ent_recs(e);
	pthread_mutex_lock(&lim->lock);
	/* Another query may have made one meanwhile: then it is the owner's. */
	bool ok = lookup_set(lim, &k) == NULL;
	for (uint16_t r = 0; ok && r < e->nrec; r++) {
		ok = atomic_load_explicit(&rec[r]->state, memory_order_relaxed) != DEAD;
	}
	if (ok && link_ent(lim, e)) {
		for (uint16_t r = 0; r < e->nrec; r++) {
			rec[r]->refs++;
		}
		e = NULL;
	}
	pthread_mutex_unlock(&lim->lock);
	free(e);
}

/* End of the current RRset: an RRset entry opened by this query ends its
 * interval with the first of its records'. */
static inline void finish_set(mxf_audit_t *a)
{
	if (a->set == NULL && a->build == NULL) {
		return; /* The busy path: the RRset was held back. */
	}
	if (a->set != NULL) {
		lower_until(a->set, a->min_until);
		a->set = NULL;
	}
	publish(a);
	a->weight = 1;
}

bool mxf_audit_set(mxf_audit_t *a, const knot_rrset_t *rr, const knot_dname_t *owner,
                   mxf_action_t action)
{
	if (a->zone == NULL || a->interval == 0) {
		a->owner = owner;
		return true;
	}
	finish_set(a);
	a->owner = owner;
	if (rr->rrs.count > MXF_AUDIT_SET_MAX || rr->rrs.size > UINT16_MAX || owner == NULL) {
		return true; /* Record by record. */
	}
	mxf_audit_zone_t *z = a->zone;
	mxf_limiter_t *lim = z->lim;
	set_key_t k = {
		.action = action,
		.owner = owner,
		.owner_size = mxf_flat_name_size(owner),
		.rdata = (const uint8_t *)rr->rrs.rdata,
		.rdata_size = rr->rrs.size,
	};
	/* hash_words() ends with a shift-xor that brings high bits down to the
	 * table index: no final mix on the busy path. */
	k.hash = hash_name(hash_start(z, KIND_SET, action), k.owner, k.owner_size);

	uint32_t now = audit_now(a);
	ent_t *e = lookup_set(lim, &k);
	if (e != NULL && set_same_rdata(e, &k)) {
		uint32_t held = 0, until;
		switch (hit(e, now, a->interval, 1, &held, &until)) {
		case HIT_HELD:
			return false;
		case HIT_LINE:
			/* This query opens it: each record gets what it held. */
			a->set = e;
			a->weight = held + 1;
			a->min_until = UINT32_MAX;
			a->next = 0;
			return true;
		case HIT_DEAD:
			break;
		}
	} else if (e != NULL) {
		/* The owner's RRset changed: the old entry's records get what
		 * it held before any of them is looked at for this one (if
		 * another thread is at it, it takes a few CAS to finish). */
		for (int spin = 0; !set_kill(e, now, false) && spin < 4096; spin++) {
			caa_cpu_relax();
		}
		pthread_mutex_lock(&lim->lock);
		if (in_table(lim, e)) {
			unlink_ent(lim, e);
		}
		pthread_mutex_unlock(&lim->lock);
	}

	/* A new RRset: its records are checked one by one this time and an
	 * RRset entry is made for the next occurrences (a copy of the key: the
	 * rdata may be gone once the answer is rewritten). */
	a->cap = rr->rrs.count + MXF_MAX_EXCHANGES; /* Legacy records, then missing. */
	size_t size = sizeof(ent_t) + set_recs_off(k.owner_size, k.rdata_size) +
	              a->cap * sizeof(ent_t *);
	ent_t *b = malloc(size);
	if (b != NULL) {
		memset(b, 0, sizeof(*b));
		b->hash = k.hash;
		b->zone = z;
		b->owner_ptr = owner;
		b->interval = a->interval;
		b->kind = KIND_SET;
		b->action = action;
		b->owner_size = k.owner_size;
		b->rdata_size = k.rdata_size;
		for (size_t i = 0; i < k.owner_size; i++) {
			b->data[i] = mxf_lower(owner[i]);
		}
		if (k.rdata_size > 0) {
			memcpy(b->data + k.owner_size, k.rdata, k.rdata_size);
		}
	}
	a->build = b;
	a->min_until = UINT32_MAX;
	return true;
}

/* The line of a record (suppressed to be filled in). */
static void rec_line(const mxf_audit_t *a, const mxf_legacy_t *rec, mxf_line_kind_t kind,
                     mxf_line_t *line)
{
	*line = (mxf_line_t){
		.kind = kind,
		.action = rec->action,
		.risk = rec->risk,
		.pref = rec->pref,
		.owner = a->owner != NULL ? a->owner : rec->owner,
		.exchange = rec->exchange,
	};
}

bool mxf_audit_record(mxf_audit_t *a, const mxf_legacy_t *rec, mxf_line_kind_t kind,
                      mxf_line_t *line)
{
	rec_line(a, rec, kind, line);
	if (a->zone == NULL || a->interval == 0) {
		return true;
	}
	uint32_t now = audit_now(a);
	uint32_t supp = 0, until = 0;

	/* An RRset entry opened by this query: its records in report order,
	 * each with what it held. */
	uint32_t weight = a->weight;
	ent_t *s = a->set;
	if (s != NULL) {
		ent_t *r = (a->next < s->nrec) ? ent_recs(s)[a->next] : NULL;
		a->next++;
		if (r != NULL && r->kind == (unsigned)kind && r->pref == rec->pref) {
			hit_t res = hit(r, now, a->interval, weight, &supp, &until);
			if (res != HIT_DEAD) {
				a->min_until = (until < a->min_until) ? until : a->min_until;
				line->suppressed = supp;
				return res == HIT_LINE;
			}
		}
		/* The record's entry went (its RRset entry was killed meanwhile)
		 * or is not this record (cannot happen): count it on its own,
		 * with the same weight. */
	}

	rec_key_t k = {
		.kind = kind,
		.action = rec->action,
		.pref = rec->pref,
		.owner = line->owner,
		.owner_size = name_size(line->owner),
		.exchange = rec->exchange,
		.exchange_size = name_size(rec->exchange),
	};
	rec_key(a->zone, &k);
	hit_t res = HIT_DEAD;
	ent_t *r = NULL;
	for (int tries = 0; tries < 4 && res == HIT_DEAD; tries++) {
		r = rec_get(a->zone, &k, a->interval, rec->risk);
		if (r == NULL) {
			break;
		}
		res = hit(r, now, a->interval, weight, &supp, &until);
	}
	if (res == HIT_DEAD) {
		/* No room: logged at this occurrence, so nothing is lost. */
		a->full = true;
		free(a->build);
		a->build = NULL;
		line->suppressed = weight - 1;
		return true;
	}
	ent_t *b = a->build;
	if (b != NULL) {
		if (b->nrec < a->cap) {
			ent_recs(b)[b->nrec++] = r;
			a->min_until = (until < a->min_until) ? until : a->min_until;
		} else {
			free(b);
			a->build = NULL;
		}
	}
	line->suppressed = supp;
	return res == HIT_LINE;
}

void mxf_audit_finish(mxf_audit_t *a)
{
	if (a->zone != NULL) {
		finish_set(a);
	}
}

bool mxf_audit_full(mxf_audit_t *a, mxf_limiter_stats_t *st)
{
	if (!a->full || a->zone == NULL) {
		return false;
	}
	a->full = false;
	mxf_limiter_t *lim = a->zone->lim;
	uint32_t now = audit_now(a);
	uint32_t until = atomic_load(&lim->full_until);
	if (now < until ||
	    !atomic_compare_exchange_strong(&lim->full_until, &until, now + a->interval)) {
		return false;
	}
	mxf_limiter_stats(lim, st);
	return true;
}

bool mxf_audit_error(mxf_audit_zone_t *z, const knot_dname_t *owner, int error,
                     uint32_t now, mxf_line_t *line)
{
	*line = (mxf_line_t){ .kind = MXF_LINE_ERROR, .owner = owner, .error = error };
	if (z == NULL || z->lim == NULL || owner == NULL) {
		return true;
	}
	now = (now != 0) ? now : mxf_now();
	rec_key_t k = {
		.kind = KIND_ERROR,
		.owner = owner,
		.owner_size = mxf_flat_name_size(owner),
	};
	rec_key(z, &k);
	for (int tries = 0; tries < 4; tries++) {
		ent_t *e = rec_get(z, &k, MXF_ERROR_INTERVAL, MXF_RISK_BYPASS);
		if (e == NULL) {
			break;
		}
		atomic_store_explicit(&e->error, error, memory_order_relaxed);
		uint32_t until;
		hit_t res = hit(e, now, MXF_ERROR_INTERVAL, 1, &line->suppressed, &until);
		if (res != HIT_DEAD) {
			return res == HIT_LINE;
		}
	}
	return true; /* No room: logged. */
}

/*** The reclaimer. ***/

/* Slots looked at under one hold of `lock`. */
#define SCAN_CHUNK	4096

/* What a pass does with one entry (under lock). */
static void reclaim(mxf_limiter_t *lim, ent_t *e, uint32_t now)
{
	uint64_t st = atomic_load_explicit(&e->state, memory_order_acquire);
	if (st == DEAD) {
		unlink_ent(lim, e); /* Killed by a query (an RRset that changed). */
		return;
	}
	if (e->kind == KIND_SET) {
		if (set_kill(e, now, true)) {
			unlink_ent(lim, e);
		}
		return;
	}
	if (e->refs > 0 || e->queued) {
		return; /* Its RRset entries go first; a queued one is written first. */
	}
	uint32_t until = UNTIL(st), held = HELD(st);
	if (held == 0 && now > until) {
		/* Quiet: nothing to write, its next occurrence is a first one. */
		if (atomic_compare_exchange_strong(&e->state, &st, DEAD)) {
			unlink_ent(lim, e);
		}
	} else if (held > 0 && now >= until + e->interval) {
		/* Quiet for a whole interval after occurrences not logged: the
		 * zone's next answer (or its next instance) writes their line. */
		mxf_audit_zone_t *z = e->zone;
		list_del(&z->head, e);
		list_add(due_head(z), e);
		e->queued = 1;
	}
}

/* A pass over \a part of the table (1: all of it), chunk by chunk. */
static void tick(mxf_limiter_t *lim, uint32_t now, size_t part)
{
	pthread_mutex_lock(&lim->tick_lock);

	pthread_mutex_lock(&lim->lock);
	size_t slots = table_get(lim)->mask + 1;
	size_t live = lim->live;
	pthread_mutex_unlock(&lim->lock);
	size_t todo = (live == 0) ? 0 : (slots / part > 65536) ? slots / part : slots;
	while (todo > 0) {
		pthread_mutex_lock(&lim->lock);
		table_t *t = table_get(lim);
		size_t n = todo < SCAN_CHUNK ? todo : SCAN_CHUNK;
		for (size_t i = 0; i < n; i++) {
			size_t pos = (lim->scan_pos + i) & t->mask;
			ent_t *e = atomic_load_explicit(&t->slot[pos], memory_order_relaxed);
			if (e != NULL && e != TOMB) {
				reclaim(lim, e, now);
			}
		}
		lim->scan_pos = (lim->scan_pos + n) & t->mask;
		todo -= n;
		pthread_mutex_unlock(&lim->lock);
	}

	/* Shrink a table much larger than needed, or full of tombstones. */
	pthread_mutex_lock(&lim->lock);
	table_t *t = table_get(lim);
	size_t want = slots_for(lim->live);
	if (want < (t->mask + 1) / 4 || 2 * t->used > t->mask + 1) {
		(void)table_resize(lim, want);
	}
	ent_t *dead = lim->graveyard;
	table_t *old = lim->old_tables;
	lim->graveyard = NULL;
	lim->old_tables = NULL;
	pthread_mutex_unlock(&lim->lock);
	pthread_mutex_unlock(&lim->tick_lock);

	/* No lock held: readers may be waiting for one inside rcu_read_lock(). */
	if (dead != NULL || old != NULL) {
		synchronize_rcu();
		free_dead(dead, old);
	}
}

/* The thread's passes cover a large table in TICK_PARTS seconds, which
 * bounds its work per second (about 10 ms for 10^6 entries). */
#define TICK_PARTS	8

static void *thread_main(void *arg)
{
	mxf_limiter_t *lim = arg;
	pthread_mutex_lock(&lim->thread_lock);
	while (!lim->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		while (!lim->stop && pthread_cond_timedwait(&lim->thread_cond,
		                                            &lim->thread_lock, &ts) != ETIMEDOUT) {
		}
		if (lim->stop) {
			break;
		}
		pthread_mutex_unlock(&lim->thread_lock);
		tick(lim, mxf_now(), TICK_PARTS);
		pthread_mutex_lock(&lim->thread_lock);
	}
	pthread_mutex_unlock(&lim->thread_lock);
	return NULL;
}

/*** Clock. ***/

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

const char *mxf_action_str(mxf_line_kind_t kind, mxf_action_t action)
{
	switch (action) {
	case MXF_ACTION_BLOCKED:  return kind == MXF_LINE_MISSING ? "added" : "blocked";
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

/* Lower-case presentation form of a name; its length. */
static size_t name_str(const knot_dname_t *name, char *buf, size_t size)
{
	if (name == NULL || knot_dname_to_str(buf, name, size) == NULL) {
		snprintf(buf, size, "(malformed)");
		return strlen(buf);
	}
	size_t len = 0;
	for (char *c = buf; *c != '\0'; c++, len++) {
		if (*c >= 'A' && *c <= 'Z') {
			*c += 'a' - 'A';
		}
	}
	return len;
}

/* Start of the escape ("\X" or "\DDD") or character holding offset \a pos
 * of presentation text \a s. */
static size_t char_start(const char *s, size_t pos)
{
	size_t i = 0;
	while (true) {
		size_t w = (s[i] != '\\') ? 1 : (s[i + 1] >= '0' && s[i + 1] <= '9') ? 4 : 2;
		if (pos < i + w) {
			return i;
		}
		i += w;
	}
}

/* Shortens presentation text \a s of \a len characters to at most \a max
 * (>= 5): its beginning, "...", its end, cut between characters. */
static size_t shorten(char *s, size_t len, size_t max)
{
	if (len <= max) {
		return len;
	}
	size_t keep = max - 3;
	size_t head = char_start(s, keep / 2);
	size_t tail = len - (keep - keep / 2);
	/* The tail starts on a character boundary at or after its mark. */
	size_t t = char_start(s, tail);
	if (t < tail) {
		size_t w = (s[t + 1] >= '0' && s[t + 1] <= '9') ? 4 : 2;
		t += w;
	}
	memmove(s + head + 3, s + t, len - t + 1);
	memcpy(s + head, "...", 3);
	return head + 3 + (len - t);
}

/* Fits two names in \a room characters together (each at least 5). */
static void fit_names(char *a, size_t *alen, char *b, size_t *blen, size_t room)
{
	if (*alen + *blen <= room) {
		return;
	}
	size_t half = room / 2;
	size_t amax = (*blen <= half) ? room - *blen : (*alen <= half) ? *alen : half;
	amax = (amax < 5) ? 5 : amax;
	*alen = shorten(a, *alen, amax);
	size_t bmax = (room > *alen + 5) ? room - *alen : 5;
	*blen = shorten(b, *blen, bmax);
}

size_t mxf_line_format(char *buf, size_t size, const mxf_line_t *line)
{
	char owner[KNOT_DNAME_TXT_MAXLEN + 1];
	char exchange[KNOT_DNAME_TXT_MAXLEN + 1];
	char addr[INET6_ADDRSTRLEN];
	char fixed[256];

	if (size == 0) {
		return 0;
	}
	buf[0] = '\0';
	size_t olen = name_str(line->owner, owner, sizeof(owner));
	size_t elen = 0;
	exchange[0] = '\0';
	if (line->kind != MXF_LINE_ERROR) {
		elen = name_str(line->exchange, exchange, sizeof(exchange));
	}
	mxf_addr_str(line->client, addr, sizeof(addr));

	/* The line without its names, to know the room left for them. */
	int n;
	switch (line->kind) {
	case MXF_LINE_LEGACY:
		n = snprintf(fixed, sizeof(fixed), "legacy MX %s, owner , preference %u, "
		             "exchange , risk %s, client %s, suppressed %u",
		             mxf_action_str(line->kind, line->action), line->pref,
		             mxf_risk_str(line->risk), addr, line->suppressed);
		break;
	case MXF_LINE_MISSING:
		n = snprintf(fixed, sizeof(fixed), "missing MX %s, owner , preference %u, "
		             "exchange , client %s, suppressed %u",
		             mxf_action_str(line->kind, line->action), line->pref, addr,
		             line->suppressed);
		break;
	default:
		n = snprintf(fixed, sizeof(fixed), "failed to enforce MX, owner , answered "
		             "SERVFAIL, suppressed %u (%s)", line->suppressed,
		             knot_strerror(line->error));
		break;
	}
	/* Names shortened to the room left (if even short names cannot fit,
	 * the prefix Knot adds is absurdly long: written as it is). */
	if (n >= 0 && (size_t)n + 5 + (elen > 0 ? 5 : 0) <= size - 1) {
		size_t room = size - 1 - (size_t)n;
		if (line->kind == MXF_LINE_ERROR) {
			olen = shorten(owner, olen, room);
		} else {
			fit_names(owner, &olen, exchange, &elen, room);
		}
	}

	switch (line->kind) {
	case MXF_LINE_LEGACY:
		n = snprintf(buf, size, "legacy MX %s, owner %s, preference %u, "
		             "exchange %s, risk %s, client %s, suppressed %u",
		             mxf_action_str(line->kind, line->action), owner, line->pref,
		             exchange, mxf_risk_str(line->risk), addr, line->suppressed);
		break;
	case MXF_LINE_MISSING:
		n = snprintf(buf, size, "missing MX %s, owner %s, preference %u, "
		             "exchange %s, client %s, suppressed %u",
		             mxf_action_str(line->kind, line->action), owner, line->pref,
		             exchange, addr, line->suppressed);
		break;
	default:
		n = snprintf(buf, size, "failed to enforce MX, owner %s, answered SERVFAIL, "
		             "suppressed %u (%s)", owner, line->suppressed,
		             knot_strerror(line->error));
		break;
	}
	if (n < 0) {
		buf[0] = '\0';
		return 0;
	}
	return ((size_t)n < size) ? (size_t)n : size - 1;
}
