/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Signer and signature cache (sign.h has the contract).
 *
 * Signing state. A zone's state is a copy of its SOA RRSIGs (every byte)
 * and the private key of each, built under the zone's mutex when a query
 * sees apex RRSIGs that differ from it. A query compares the apex it sees
 * with the published state (a few memcmp); the cache key holds the state's
 * address, and a zone's entries are all dropped before its old state is
 * retired, so an address can only name the state its entries were made in.
 * A state that could not be built (no private key, ...) is kept aside and
 * retried after RETRY_MS, so a broken zone costs a comparison per query,
 * not a key store access.
 *
 * Index. One server-wide open-addressing table of entry pointers, linear
 * probing, a keyed hash (seed from libdnssec's random source, so owner
 * names cannot be chosen to collide). Readers load the table and slot
 * pointers with rcu_dereference() and compare keys exactly; writers hold
 * the cache mutex. A removed entry leaves a tombstone, so a reader never
 * misses an entry that is present; the table is rebuilt (published with
 * rcu_assign_pointer, the old one freed after a grace period) when used
 * and dead slots reach half of it, at four times the live entries.
 *
 * Budget and fairness. Every entry is accounted with its allocation (and
 * MALLOC_OVERHEAD), the index with its allocation. Zones sit in a max-heap
 * by the bytes they hold. Over budget, room comes from the heap's top if it
 * holds more than the zone asking would after the insertion, else from the
 * asking zone itself (CLOCK with a bounded scan: an entry read since the
 * hand last passed gets a second chance, at most CLOCK_SCAN of them per
 * eviction). A miss that can only be cached that way spends a token of the
 * zone's bucket first (rate, burst: sign.h); without one it fails with
 * KNOT_ELIMIT before any signing.
 *
 * Reclamation. Evicted and flushed entries, retired states and old tables
 * are freed by call_rcu() (the caller is a registered reader: a knotd
 * worker). A signer is freed by knotd's unload, which may run on a thread
 * that is not registered: its entries then go to a graveyard (still
 * accounted) that the next miss hands to call_rcu(), and the last signer's
 * free waits for a grace period, frees what is left and waits for pending
 * callbacks (rcu_barrier) before the shared object may be unloaded.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libdnssec/binary.h>
#include <libdnssec/error.h>
#include <libdnssec/key.h>
#include <libdnssec/keystore.h>
#include <libdnssec/keytag.h>
#include <libdnssec/random.h>
#include <libdnssec/sign.h>
#include <urcu.h>

#include "sign.h"
#include "wire.h"

/* RRSIG rdata before the signer name: type, alg, labels, TTL, times, tag. */
#define RRSIG_FIXED	18
/* SOA signatures of one state (an algorithm rollover has two). */
#define MAX_SIGS	8
/* Upper bound of one signature's size (RSA-4096), for estimates. */
#define SIG_MAX		512
/* Allocator overhead accounted per allocation (glibc: 8-16 bytes). */
#define MALLOC_OVERHEAD	16
/* Smallest index (slots). */
#define TABLE_MIN	256
/* Test builds only: fewer hash bits, to make keys collide. */
#ifndef MXF_SIGN_HASH_MASK
#define MXF_SIGN_HASH_MASK	UINT64_MAX
#endif
/* Second chances per eviction at most. */
#define CLOCK_SCAN	8
/* A signing state that failed is rebuilt at most this often (ms). */
#define RETRY_MS	1000

/*** Structures. ***/

typedef struct {
	dnssec_key_t *key;           /* Owned by the signer's key list. */
	const knot_rdata_t *soa_sig; /* Copy of the zone's RRSIG over SOA. */
} state_sig_t;

typedef struct {
	struct rcu_head rcu;
	size_t rrsig_size;   /* RRSIG rdata bytes per RRset (0: not known yet). */
	uint16_t count;      /* SOA signatures. */
	state_sig_t sig[];   /* Then the copies of their rdata. */
} state_t;

typedef struct entry {
	uint64_t hash;
	const state_t *state;
	uint32_t ttl;
	uint16_t type;
	uint16_t rclass;
	uint16_t owner_size;
	uint16_t rr_count;
	uint32_t rr_size;
	uint32_t acct;          /* Bytes accounted. */
	uint8_t referenced;     /* CLOCK bit: set by readers, cleared by the hand. */
	struct entry *prev;     /* The zone's list, oldest first (cache lock); */
	struct entry *next;     /* next also chains retired entries. */
	struct rcu_head rcu;
	knot_rdataset_t rrsig;  /* In data. */
	uint8_t data[];         /* RRSIG rdata, the RRset's rdata, owner (lower case). */
} entry_t;

typedef struct {
	struct rcu_head rcu;
	size_t mask;
	entry_t *slot[];        /* NULL: free, TOMB: removed. */
} table_t;

static char tomb_mark;
#define TOMB	((entry_t *)&tomb_mark)

typedef struct {
	dnssec_binary_t rdata;  /* DNSKEY rdata the key was loaded for. */
	dnssec_key_t *key;
} loaded_key_t;

/* A PEM key store, opened on first use (when the module loads for a new
 * zone, Knot has not generated its keys yet). */
typedef struct {
	char *dir;
	dnssec_keystore_t *ks;
} keystore_t;

struct mxf_signer {
	state_t *state;             /* RCU-protected; written under lock. */
	pthread_mutex_t lock;       /* Misses: state, keys, signing, bucket. */
	keystore_t *keystores;      /* Searched in order, as Knot does. */
	size_t keystore_count;
	loaded_key_t *keys;
	size_t key_count;
	state_t *failed;            /* Last state that could not be built. */
	uint64_t failed_at;
	int failed_ret;
	uint32_t tokens;            /* Rate bucket. */
	uint64_t tokens_at;
	/* Under the cache lock. */
	entry_t *head, *tail;       /* Its entries, oldest first. */
	size_t count;
	size_t used;
	size_t heap_idx;
	bool registered;
	knot_dname_t *zone;         /* Lower case. */
	size_t zone_size;
};

/* The cache. Readers use table (RCU) and seed; the rest is under lock. */
static struct {
	pthread_mutex_t lock;
	pthread_mutex_t life;       /* Signer creation vs the last signer's free. */
	table_t *table;
	uint64_t seed;
	size_t live, tombs;
	size_t used, budget;
	mxf_sigcache_limits_t limits;
	mxf_signer_t **heap;        /* Max-heap by used. */
	size_t signers, heap_cap;
	entry_t *grave;             /* Entries of freed signers, still accounted. */
	size_t grave_bytes;
	uint64_t evicted, limited;
	_Atomic uint64_t key_loads;
} C = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.life = PTHREAD_MUTEX_INITIALIZER,
	.limits = { MXF_SIGCACHE_BASE, MXF_SIGCACHE_PER_ZONE,
	            MXF_SIGCACHE_RATE, MXF_SIGCACHE_BURST },
};

/* Milliseconds (misses only: the rate bucket and retries). */
static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*** Zone signing state. ***/

static bool is_soa_sig(const knot_rdata_t *rd)
{
	return rd->len > RRSIG_FIXED && knot_rrsig_type_covered(rd) == KNOT_RRTYPE_SOA;
}

/* Where a walk over apex RRSIGs stands: a libknot rdataset is in canonical
 * order, so by type covered; the SOA ones come after those over A and NS,
 * and none follows the first over a later type. */
enum { SIG_BEFORE, SIG_SOA, SIG_AFTER };

static int sig_place(const knot_rdata_t *rd)
{
	if (rd->len < 2) {
		return SIG_BEFORE;
	}
	uint16_t covered = knot_rrsig_type_covered(rd);
	if (covered != KNOT_RRTYPE_SOA) {
		return (covered < KNOT_RRTYPE_SOA) ? SIG_BEFORE : SIG_AFTER;
	}
	return is_soa_sig(rd) ? SIG_SOA : SIG_BEFORE;
}

bool mxf_zone_is_signed(const knot_rdataset_t *apex_rrsig)
{
	if (apex_rrsig == NULL) {
		return false;
	}
	const knot_rdata_t *rd = apex_rrsig->rdata;
	for (uint16_t i = 0; i < apex_rrsig->count; i++, rd = mxf_rd_next(rd)) {
		int place = sig_place(rd);
		if (place != SIG_BEFORE) {
			return place == SIG_SOA;
		}
	}
	return false;
}

enum { ST_MATCH, ST_DIFFER, ST_UNSIGNED };

/* Whether the SOA RRSIGs of \a apex are exactly those of \a st. */
static int state_match(const state_t *st, const knot_rdataset_t *apex)
{
	bool differ = (st == NULL);
	uint16_t n = 0;
	const knot_rdata_t *rd = apex->rdata;
	for (uint16_t i = 0; i < apex->count; i++, rd = mxf_rd_next(rd)) {
		int place = sig_place(rd);
		if (place == SIG_AFTER) {
			break;
		} else if (place == SIG_BEFORE) {
			continue;
		}
		if (!differ) {
			const knot_rdata_t *own = (n < st->count) ? st->sig[n].soa_sig : NULL;
			differ = own == NULL || own->len != rd->len ||
			         memcmp(own->data, rd->data, rd->len) != 0;
		}
		n++;
	}
	if (n == 0) {
		return ST_UNSIGNED;
	}
	return (differ || n != st->count) ? ST_DIFFER : ST_MATCH;
}

static void state_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, state_t, rcu));
}

/*** Keys. ***/

/* Key store \a k, opened on first use (NULL while it cannot be opened). */
static dnssec_keystore_t *keystore_open(keystore_t *k)
{
	if (k->ks != NULL) {
		return k->ks;
	}
	dnssec_keystore_t *ks = NULL;
	if (dnssec_keystore_init_pkcs8(&ks) != DNSSEC_EOK) {
		return NULL;
	}
	if (dnssec_keystore_open(ks, k->dir) != DNSSEC_EOK) {
		dnssec_keystore_deinit(ks);
		return NULL;
	}
	k->ks = ks;
	return ks;
}

/* The private part of \a key from the first store holding it. */
static int get_private(mxf_signer_t *s, const char *id, dnssec_key_t *key)
{
	int ret = DNSSEC_ENOENT;
	for (size_t i = 0; i < s->keystore_count && ret != DNSSEC_EOK; i++) {
		dnssec_keystore_t *ks = keystore_open(&s->keystores[i]);
		if (ks != NULL) {
			ret = dnssec_keystore_get_private(ks, id, key);
		}
	}
	return ret;
}

static dnssec_key_t *key_load(mxf_signer_t *s, const dnssec_binary_t *bin)
{
	atomic_fetch_add(&C.key_loads, 1);
	dnssec_key_t *key = NULL;
	char *id = NULL;
	int ret = dnssec_key_new(&key);
	if (ret == DNSSEC_EOK) {
		ret = dnssec_key_set_dname(key, s->zone);
	}
	if (ret == DNSSEC_EOK) {
		ret = dnssec_key_set_rdata(key, bin);
	}
	if (ret == DNSSEC_EOK) {
		ret = dnssec_key_get_keyid(key, &id);
	}
	if (ret == DNSSEC_EOK) {
		ret = get_private(s, id, key);
	}
	free(id);
	if (ret != DNSSEC_EOK) {
		dnssec_key_free(key);
		return NULL;
	}
	return key;
}

/* Finds or loads the private key of the published DNSKEY with \a tag/alg. */
static dnssec_key_t *get_key(mxf_signer_t *s, const knot_rdataset_t *dnskey,
                             uint16_t tag, uint8_t alg)
{
	const knot_rdata_t *rd = dnskey->rdata;
	for (uint16_t i = 0; i < dnskey->count; i++, rd = mxf_rd_next(rd)) {
		if (rd->len < 4 || rd->data[3] != alg) {
			continue;
		}
		dnssec_binary_t bin = { .size = rd->len, .data = (uint8_t *)rd->data };
		uint16_t rd_tag = 0;
		if (dnssec_keytag(&bin, &rd_tag) != DNSSEC_EOK || rd_tag != tag) {
			continue;
		}
		for (size_t k = 0; k < s->key_count; k++) {
			if (dnssec_binary_cmp(&s->keys[k].rdata, &bin) == 0) {
				return s->keys[k].key;
			}
		}
		dnssec_key_t *key = key_load(s, &bin);
		if (key == NULL) {
			continue; /* Maybe another key shares the tag. */
		}
		loaded_key_t *keys = realloc(s->keys, (s->key_count + 1) * sizeof(*keys));
		if (keys == NULL) {
			dnssec_key_free(key);
			return NULL;
		}
		s->keys = keys;
		loaded_key_t *k = &keys[s->key_count];
		if (dnssec_binary_dup(&bin, &k->rdata) != DNSSEC_EOK) {
			dnssec_key_free(key);
			return NULL;
		}
		k->key = key;
		s->key_count++;
		return key;
	}
	return NULL;
}

static bool state_uses(const state_t *st, const dnssec_key_t *key)
{
	for (uint16_t i = 0; st != NULL && i < st->count; i++) {
		if (st->sig[i].key == key) {
			return true;
		}
	}
	return false;
}

/* Frees the keys neither the current nor the failed state uses. */
static void keys_prune(mxf_signer_t *s)
{
	size_t kept = 0;
	for (size_t k = 0; k < s->key_count; k++) {
		loaded_key_t *lk = &s->keys[k];
		if (state_uses(s->state, lk->key) || state_uses(s->failed, lk->key)) {
			s->keys[kept++] = *lk;
		} else {
			dnssec_key_free(lk->key);
			dnssec_binary_free(&lk->rdata);
		}
	}
	s->key_count = kept;
}

/* A state for the SOA RRSIGs of \a zk, keys loaded. On a key error it is
 * still returned (without that key), with the error. */
static int state_build(mxf_signer_t *s, const mxf_zone_keys_t *zk, state_t **out)
{
	uint16_t count = 0;
	size_t bytes = 0;
	const knot_rdata_t *rd = zk->rrsig->rdata;
	for (uint16_t i = 0; i < zk->rrsig->count; i++, rd = mxf_rd_next(rd)) {
		if (is_soa_sig(rd)) {
			count++;
			bytes += knot_rdata_size(rd->len);
		}
	}
	if (count == 0) {
		return KNOT_ENOENT;
	} else if (count > MAX_SIGS) {
		return KNOT_ENOTSUP;
	}

	const knot_rdataset_t *dnskey = zk->dnskey;
	if (dnskey == NULL) {
		dnskey = zk->get_dnskey(zk->get_data);
	}
	if (dnskey == NULL) {
		return KNOT_DNSSEC_ENOKEY;
	}

	size_t head = sizeof(state_t) + count * sizeof(state_sig_t);
	state_t *st = calloc(1, head + bytes);
	if (st == NULL) {
		return KNOT_ENOMEM;
	}
	st->count = count;
	uint8_t *copy = (uint8_t *)st + head;
	int ret = KNOT_EOK;
	rd = zk->rrsig->rdata;
	for (uint16_t i = 0, n = 0; i < zk->rrsig->count; i++, rd = mxf_rd_next(rd)) {
		if (!is_soa_sig(rd)) {
			continue;
		}
		knot_rdata_init((knot_rdata_t *)copy, rd->len, rd->data);
		st->sig[n].soa_sig = (const knot_rdata_t *)copy;
		copy += knot_rdata_size(rd->len);
		st->sig[n].key = get_key(s, dnskey, knot_rrsig_key_tag(rd),
		                         knot_rrsig_alg(rd));
		if (st->sig[n].key == NULL) {
			ret = KNOT_DNSSEC_ENOKEY;
		}
		n++;
	}
	*out = st;
	return ret;
}

/*** Cache: index. ***/

static size_t table_bytes(const table_t *t)
{
	return sizeof(*t) + (t->mask + 1) * sizeof(t->slot[0]) + MALLOC_OVERHEAD;
}

static void table_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, table_t, rcu));
}

static void slot_put(table_t *t, entry_t *e)
{
	size_t i = e->hash & t->mask;
	while (t->slot[i] != NULL && t->slot[i] != TOMB) {
		i = (i + 1) & t->mask;
	}
	if (t->slot[i] == TOMB) {
		C.tombs--;
	}
	rcu_assign_pointer(t->slot[i], e);
	C.live++;
}

/* A new index for the live entries and \a more, published with RCU. */
static void table_rebuild(size_t more)
{
	size_t cap = TABLE_MIN;
	while (cap < 4 * (C.live + more)) {
		cap <<= 1;
	}
	table_t *t = calloc(1, sizeof(*t) + cap * sizeof(t->slot[0]));
	if (t == NULL) {
		return;
	}
	t->mask = cap - 1;
	table_t *old = C.table;
	C.live = 0;
	C.tombs = 0;
	for (size_t i = 0; old != NULL && i <= old->mask; i++) {
		if (old->slot[i] != NULL && old->slot[i] != TOMB) {
			slot_put(t, old->slot[i]);
		}
	}
	rcu_assign_pointer(C.table, t);
	C.used += table_bytes(t);
	if (old != NULL) {
		C.used -= table_bytes(old);
		call_rcu(&old->rcu, table_free_rcu);
	}
}

static bool table_insert(entry_t *e)
{
	table_t *t = C.table;
	if (t == NULL || (C.live + C.tombs + 1) * 2 > t->mask + 1) {
		table_rebuild(1);
		t = C.table;
	}
	/* Keep a free slot whatever happens: it ends every probe. */
	if (t == NULL || C.live + C.tombs + 2 > t->mask + 1) {
		return false;
	}
	slot_put(t, e);
	return true;
}

static void table_remove(entry_t *e)
{
	table_t *t = C.table;
	for (size_t i = e->hash & t->mask; t->slot[i] != NULL; i = (i + 1) & t->mask) {
		if (t->slot[i] == e) {
			rcu_assign_pointer(t->slot[i], TOMB);
			C.live--;
			C.tombs++;
			return;
		}
	}
}

/*** Cache: keys of entries. ***/

static const knot_rdata_t *entry_rdata(const entry_t *e)
{
	return (const knot_rdata_t *)(e->data + e->rrsig.size);
}

static const uint8_t *entry_owner(const entry_t *e)
{
	return e->data + e->rrsig.size + e->rr_size;
}

/* The owner, type, class and TTL, the rdataset's size and the start of its
 * first record: what differs between a zone's entries (their rdata is
 * mostly the policy's set, the same for every owner). Keys are compared in
 * full anyway. */
static uint64_t key_hash(const state_t *st, const knot_rrset_t *set, size_t owner_size)
{
	uint64_t h = C.seed ^ (uint64_t)(uintptr_t)st;
	h = mxf_hash_words(h, set->owner, owner_size, true);
	h ^= ((uint64_t)set->type << 48) | ((uint64_t)set->rclass << 32) | set->ttl;
	const knot_rdata_t *rd = set->rrs.rdata;
	h = mxf_hash_words(h ^ ((uint64_t)set->rrs.count << 32 | set->rrs.size),
	                   rd->data, (rd->len < 8) ? rd->len : 8, false);
	return mxf_hash_mix(h) & MXF_SIGN_HASH_MASK;
}

static bool key_equal(const entry_t *e, const state_t *st, const knot_rrset_t *set,
                      size_t owner_size)
{
	if (e->state != st || e->type != set->type || e->ttl != set->ttl ||
	    e->rclass != set->rclass || e->owner_size != owner_size ||
	    e->rr_count != set->rrs.count || e->rr_size != set->rrs.size) {
		return false;
	}
	/* One comparison of the whole rdata array; record by record only if
	 * it differs (the odd records' padding bytes are not rdata). */
	const knot_rdata_t *a = set->rrs.rdata;
	const knot_rdata_t *b = entry_rdata(e);
	if (memcmp(a, b, e->rr_size) != 0) {
		for (uint16_t i = 0; i < e->rr_count; i++, a = mxf_rd_next(a), b = mxf_rd_next(b)) {
			if (a->len != b->len || memcmp(a->data, b->data, a->len) != 0) {
				return false;
			}
		}
	}
	return mxf_wire_case_equal(set->owner, entry_owner(e), owner_size);
}

static entry_t *lookup(const table_t *t, uint64_t h, const state_t *st,
                       const knot_rrset_t *set, size_t owner_size)
{
	if (t == NULL) {
		return NULL;
	}
	for (size_t i = h & t->mask, n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
		entry_t *e = rcu_dereference(t->slot[i]);
		if (e == NULL) {
			break;
		}
		if (e != TOMB && e->hash == h && key_equal(e, st, set, owner_size)) {
			return e;
		}
	}
	return NULL;
}

/*** Cache: zones, budget, eviction. ***/

static void heap_set(size_t i, mxf_signer_t *s)
{
	C.heap[i] = s;
	s->heap_idx = i;
}

static void heap_fix(mxf_signer_t *s)
{
	size_t i = s->heap_idx;
	while (i > 0 && C.heap[(i - 1) / 2]->used < s->used) {
		heap_set(i, C.heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t big = i, l = 2 * i + 1, r = l + 1;
		size_t big_used = s->used;
		if (l < C.signers && C.heap[l]->used > big_used) {
			big = l;
			big_used = C.heap[l]->used;
		}
		if (r < C.signers && C.heap[r]->used > big_used) {
			big = r;
		}
		if (big == i) {
			break;
		}
		heap_set(i, C.heap[big]);
		i = big;
	}
	heap_set(i, s);
}

static void budget_update(void)
{
	C.budget = C.limits.base + C.signers * C.limits.per_zone;
}

static void list_unlink(mxf_signer_t *s, entry_t *e)
{
	if (e->prev != NULL) {
		e->prev->next = e->next;
	} else {
		s->head = e->next;
	}
	if (e->next != NULL) {
		e->next->prev = e->prev;
	} else {
		s->tail = e->prev;
	}
	e->prev = e->next = NULL;
}

static void list_append(mxf_signer_t *s, entry_t *e)
{
	e->next = NULL;
	e->prev = s->tail;
	if (s->tail != NULL) {
		s->tail->next = e;
	} else {
		s->head = e;
	}
	s->tail = e;
}

/* Takes \a e out of the index and its zone's list onto \a chain; the
 * cache's total is the caller's. */
static void entry_detach(mxf_signer_t *s, entry_t *e, entry_t **chain)
{
	table_remove(e);
	list_unlink(s, e);
	s->count--;
	s->used -= e->acct;
	e->next = *chain;
	*chain = e;
}

static void entry_drop(mxf_signer_t *s, entry_t *e, entry_t **chain)
{
	C.used -= e->acct;
	entry_detach(s, e, chain);
}

static void zone_flush(mxf_signer_t *s, entry_t **chain)
{
	while (s->head != NULL) {
		entry_drop(s, s->head, chain);
	}
	heap_fix(s);
}

/* CLOCK: the oldest entry not read since the hand passed it (at most
 * CLOCK_SCAN second chances, then the oldest). */
static void evict_one(mxf_signer_t *s, entry_t **chain)
{
	for (int n = 0; n < CLOCK_SCAN && s->head != s->tail; n++) {
		entry_t *e = s->head;
		if (!__atomic_load_n(&e->referenced, __ATOMIC_RELAXED)) {
			break;
		}
		__atomic_store_n(&e->referenced, 0, __ATOMIC_RELAXED);
		list_unlink(s, e);
		list_append(s, e);
	}
	entry_drop(s, s->head, chain);
	heap_fix(s);
	C.evicted++;
}

/* The zone to take \a size bytes from when the cache is full: the largest,
 * if it holds more than \a s would after the insertion, else \a s. */
static mxf_signer_t *victim(mxf_signer_t *s, size_t size)
{
	mxf_signer_t *big = C.heap[0];
	return (big != s && big->used > s->used + size) ? big : s;
}

static bool make_room(mxf_signer_t *s, size_t size, entry_t **chain)
{
	while (C.used + size > C.budget) {
		mxf_signer_t *v = victim(s, size);
		if (v->head == NULL) {
			return false;
		}
		evict_one(v, chain);
	}
	return true;
}

static void chain_free_rcu(struct rcu_head *head)
{
	entry_t *e = caa_container_of(head, entry_t, rcu);
	while (e != NULL) {
		entry_t *next = e->next;
		free(e);
		e = next;
	}
}

/* Frees a chain after a grace period (the caller is a registered reader). */
static void chain_retire(entry_t *chain)
{
	if (chain != NULL) {
		call_rcu(&chain->rcu, chain_free_rcu);
	}
}

/* Takes the graveyard (a chain) for chain_retire(). */
static entry_t *grave_take(void)
{
	entry_t *grave = C.grave;
	C.grave = NULL;
	C.used -= C.grave_bytes;
	C.grave_bytes = 0;
	return grave;
}

/* The rate bucket: whether one more self-evicting signature is allowed. */
static bool take_token(mxf_signer_t *s, uint32_t rate, uint32_t burst)
{
	uint64_t now = now_ms();
	if (rate > 0 && now > s->tokens_at) {
		uint64_t add = (now - s->tokens_at) * rate / 1000;
		if (add > 0) {
			s->tokens_at += add * 1000 / rate;
			s->tokens = (s->tokens + add >= burst) ? burst : s->tokens + (uint32_t)add;
		}
	}
	if (s->tokens >= burst) {
		s->tokens = burst;
		s->tokens_at = now;
	}
	if (s->tokens == 0) {
		return false;
	}
	s->tokens--;
	return true;
}

/*** Signing. ***/

static size_t rrsig_head(uint8_t *out, const mxf_signer_t *s, uint16_t type,
                         uint8_t labels, uint32_t ttl, const knot_rdata_t *soa_sig)
{
	knot_wire_write_u16(out, type);
	out[2] = knot_rrsig_alg(soa_sig);
	out[3] = labels;
	knot_wire_write_u32(out + 4, ttl);
	knot_wire_write_u32(out + 8, knot_rrsig_sig_expiration(soa_sig));
	knot_wire_write_u32(out + 12, knot_rrsig_sig_inception(soa_sig));
	knot_wire_write_u16(out + 16, knot_rrsig_key_tag(soa_sig));
	memcpy(out + RRSIG_FIXED, s->zone, s->zone_size);
	return RRSIG_FIXED + s->zone_size;
}

static int sign_add(dnssec_sign_ctx_t *ctx, const uint8_t *data, size_t len)
{
	dnssec_binary_t bin = { .size = len, .data = (uint8_t *)data };
	return dnssec_sign_add(ctx, &bin);
}

/* The signature over \a set (owner \a owner, lower case) with \a key and
 * the RRSIG header \a head (RFC 4034, 3.1.8.1). */
static int sign_rrset(dnssec_key_t *key, const uint8_t *head, size_t head_len,
                      const knot_rrset_t *set, const uint8_t *owner,
                      size_t owner_size, dnssec_binary_t *sig)
{
	dnssec_sign_ctx_t *ctx = NULL;
	if (dnssec_sign_new(&ctx, key) != DNSSEC_EOK) {
		return KNOT_DNSSEC_ENOSIG;
	}
	int ret = sign_add(ctx, head, head_len);
	const knot_rdata_t *rd = set->rrs.rdata;
	for (uint16_t i = 0; i < set->rrs.count && ret == DNSSEC_EOK; i++, rd = mxf_rd_next(rd)) {
		uint8_t fixed[10];
		knot_wire_write_u16(fixed, set->type);
		knot_wire_write_u16(fixed + 2, set->rclass);
		knot_wire_write_u32(fixed + 4, set->ttl);
		knot_wire_write_u16(fixed + 8, rd->len);
		ret = sign_add(ctx, owner, owner_size);
		if (ret == DNSSEC_EOK) {
			ret = sign_add(ctx, fixed, sizeof(fixed));
		}
		if (ret == DNSSEC_EOK) {
			ret = sign_add(ctx, rd->data, rd->len);
		}
	}
	if (ret == DNSSEC_EOK) {
		ret = dnssec_sign_write(ctx, DNSSEC_SIGN_NORMAL, sig);
	}
	dnssec_sign_free(ctx);
	return (ret == DNSSEC_EOK) ? KNOT_EOK : KNOT_DNSSEC_ENOSIG;
}

static size_t entry_estimate(const state_t *st, const mxf_signer_t *s,
                             const knot_rrset_t *set, size_t owner_size)
{
	size_t rrsig = st->rrsig_size;
	if (rrsig == 0) {
		rrsig = st->count * knot_rdata_size(RRSIG_FIXED + s->zone_size + SIG_MAX);
	}
	return sizeof(entry_t) + rrsig + set->rrs.size + owner_size + MALLOC_OVERHEAD;
}

/* A new entry: one RRSIG over \a set per SOA signature of \a st. */
static entry_t *entry_make(mxf_signer_t *s, state_t *st, const knot_rrset_t *set,
                           const uint8_t *owner, size_t owner_size, uint64_t h,
                           int *ret)
{
	uint8_t head[RRSIG_FIXED + KNOT_DNAME_MAXLEN];
	uint8_t labels = (uint8_t)(knot_dname_labels(owner, NULL) -
	                           (knot_dname_is_wildcard(owner) ? 1 : 0));
	dnssec_binary_t sig[MAX_SIGS] = { { 0 } };
	size_t rrsig_size = 0;
	*ret = KNOT_EOK;
	for (uint16_t i = 0; i < st->count && *ret == KNOT_EOK; i++) {
		size_t head_len = rrsig_head(head, s, set->type, labels, set->ttl,
		                             st->sig[i].soa_sig);
		*ret = sign_rrset(st->sig[i].key, head, head_len, set, owner, owner_size,
		                  &sig[i]);
		if (*ret == KNOT_EOK && head_len + sig[i].size > UINT16_MAX) {
			*ret = KNOT_ESPACE;
		}
		rrsig_size += knot_rdata_size(head_len + sig[i].size);
	}

	entry_t *e = NULL;
	size_t bytes = sizeof(entry_t) + rrsig_size + set->rrs.size + owner_size;
	if (*ret == KNOT_EOK && (e = calloc(1, bytes)) == NULL) {
		*ret = KNOT_ENOMEM;
	}
	if (e != NULL) {
		e->hash = h;
		e->state = st;
		e->ttl = set->ttl;
		e->type = set->type;
		e->rclass = set->rclass;
		e->owner_size = (uint16_t)owner_size;
		e->rr_count = set->rrs.count;
		e->rr_size = set->rrs.size;
		e->acct = (uint32_t)(bytes + MALLOC_OVERHEAD);
		e->rrsig.count = st->count;
		e->rrsig.size = (uint32_t)rrsig_size;
		e->rrsig.rdata = (knot_rdata_t *)e->data;
		knot_rdata_t *rd = e->rrsig.rdata;
		for (uint16_t i = 0; i < st->count; i++, rd = knot_rdataset_next(rd)) {
			size_t head_len = rrsig_head(rd->data, s, set->type, labels, set->ttl,
			                             st->sig[i].soa_sig);
			memcpy(rd->data + head_len, sig[i].data, sig[i].size);
			rd->len = (uint16_t)(head_len + sig[i].size);
		}
		memcpy(e->data + rrsig_size, set->rrs.rdata, set->rrs.size);
		memcpy(e->data + rrsig_size + set->rrs.size, owner, owner_size);
		st->rrsig_size = rrsig_size;
	}
	for (uint16_t i = 0; i < st->count; i++) {
		dnssec_binary_free(&sig[i]);
	}
	return e;
}

/*** Misses. ***/

/* Makes the zone's state that of \a zk (zone mutex held). */
static int state_switch(mxf_signer_t *s, const mxf_zone_keys_t *zk, entry_t **chain)
{
	uint64_t now = now_ms();
	if (s->failed != NULL && now - s->failed_at < RETRY_MS &&
	    state_match(s->failed, zk->rrsig) == ST_MATCH) {
		return s->failed_ret;
	}
	state_t *st = NULL;
	int ret = state_build(s, zk, &st);
	free(s->failed);
	s->failed = NULL;
	if (ret != KNOT_EOK) {
		s->failed = st;
		s->failed_at = now;
		s->failed_ret = ret;
		keys_prune(s);
		return ret;
	}

	/* The old state's entries go before the state itself. Another worker
	 * still answering from the previous zone version may switch back for
	 * a moment; that costs signatures, never a wrong one. */
	pthread_mutex_lock(&C.lock);
	zone_flush(s, chain);
	pthread_mutex_unlock(&C.lock);
	state_t *old = s->state;
	rcu_assign_pointer(s->state, st);
	if (old != NULL) {
		call_rcu(&old->rcu, state_free_rcu);
	}
	keys_prune(s);
	return KNOT_EOK;
}

/* Caches the new entry \a e of \a s, or, when no room can be made, puts
 * it on \a chain: served once, freed after the query. */
static void cache_insert(mxf_signer_t *s, entry_t *e, entry_t **chain)
{
	pthread_mutex_lock(&C.lock);
	if (make_room(s, e->acct, chain) && table_insert(e)) {
		list_append(s, e);
		s->count++;
		s->used += e->acct;
		C.used += e->acct;
		heap_fix(s);
	} else {
		e->next = *chain;
		*chain = e;
	}
	pthread_mutex_unlock(&C.lock);
}

static int sign_miss(mxf_signer_t *s, const knot_rrset_t *set, const mxf_zone_keys_t *zk,
                     size_t owner_size, entry_t **out, mxf_sign_info_t *info)
{
	knot_dname_storage_t owner;
	memcpy(owner, set->owner, owner_size);
	knot_dname_to_lower(owner);
	entry_t *chain = NULL;
	entry_t *grave = NULL;
	entry_t *e = NULL;
	int ret = KNOT_EOK;

	pthread_mutex_lock(&s->lock);
	if (state_match(s->state, zk->rrsig) != ST_MATCH) {
		ret = state_switch(s, zk, &chain);
	}
	state_t *st = s->state;
	if (ret == KNOT_EOK) {
		uint64_t h = key_hash(st, set, owner_size);
		size_t size = entry_estimate(st, s, set, owner_size);

		/* Exact under the lock (only this zone's mutex adds its entries),
		 * and whether caching will cost one of the zone's own entries. */
		pthread_mutex_lock(&C.lock);
		grave = grave_take();
		e = lookup(C.table, h, st, set, owner_size);
		bool own = e == NULL && C.used + size > C.budget && victim(s, size) == s;
		uint32_t rate = C.limits.rate, burst = C.limits.burst;
		if (own && !take_token(s, rate, burst)) {
			C.limited++;
			ret = KNOT_ELIMIT;
		}
		pthread_mutex_unlock(&C.lock);

		if (e == NULL && ret == KNOT_EOK) {
			e = entry_make(s, st, set, owner, owner_size, h, &ret);
			if (e != NULL) {
				cache_insert(s, e, &chain);
				if (info != NULL) {
					info->signatures = st->count;
				}
			}
		}
	}
	pthread_mutex_unlock(&s->lock);

	chain_retire(chain);
	chain_retire(grave);
	*out = e;
	return ret;
}

/*** Public API. ***/

static bool cache_register(mxf_signer_t *s, const mxf_sigcache_limits_t *limits)
{
	pthread_mutex_lock(&C.lock);
	if (limits != NULL) {
		C.limits = *limits;
	}
	if (C.signers == C.heap_cap) {
		size_t cap = C.heap_cap ? 2 * C.heap_cap : 64;
		mxf_signer_t **heap = realloc(C.heap, cap * sizeof(*heap));
		if (heap == NULL) {
			pthread_mutex_unlock(&C.lock);
			return false;
		}
		C.heap = heap;
		C.heap_cap = cap;
	}
	if (C.seed == 0 && dnssec_random_buffer((uint8_t *)&C.seed, sizeof(C.seed)) != DNSSEC_EOK) {
		C.seed = now_ms() ^ (uint64_t)(uintptr_t)s;
	}
	heap_set(C.signers++, s);
	heap_fix(s);
	budget_update();
	s->registered = true;
	s->tokens = C.limits.burst;
	s->tokens_at = now_ms();
	pthread_mutex_unlock(&C.lock);
	return true;
}

/* The last signer is gone: no reader can reach the cache any more. */
static void cache_destroy(void)
{
	pthread_mutex_lock(&C.lock);
	if (C.signers > 0) {
		pthread_mutex_unlock(&C.lock);
		return;
	}
	table_t *t = C.table;
	entry_t *grave = C.grave;
	C.table = NULL;
	C.grave = NULL;
	C.grave_bytes = 0;
	C.used = C.live = C.tombs = 0;
	free(C.heap);
	C.heap = NULL;
	C.heap_cap = 0;
	pthread_mutex_unlock(&C.lock);

	synchronize_rcu();
	while (grave != NULL) {
		entry_t *next = grave->next;
		free(grave);
		grave = next;
	}
	free(t);
	/* Callbacks run code of this shared object: wait for them. */
	rcu_barrier();
}

mxf_signer_t *mxf_signer_new(const knot_dname_t *zone, const char *keystore_dir,
                             const mxf_sigcache_limits_t *limits, const char **err)
{
	mxf_signer_t *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*err = "out of memory";
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->zone = knot_dname_copy(zone, NULL);
	if (s->zone == NULL || mxf_signer_add_keystore(s, keystore_dir) != KNOT_EOK) {
		mxf_signer_free(s);
		*err = "out of memory";
		return NULL;
	}
	knot_dname_to_lower(s->zone);
	s->zone_size = knot_dname_size(s->zone);

	pthread_mutex_lock(&C.life);
	bool ok = cache_register(s, limits);
	pthread_mutex_unlock(&C.life);
	if (!ok) {
		mxf_signer_free(s);
		*err = "out of memory";
		return NULL;
	}
	return s;
}

int mxf_signer_add_keystore(mxf_signer_t *s, const char *keystore_dir)
{
	if (s == NULL || keystore_dir == NULL) {
		return KNOT_EINVAL;
	}
	if (s->keystore_count == MXF_MAX_KEYSTORES) {
		return KNOT_ELIMIT;
	}
	keystore_t *ks = realloc(s->keystores, (s->keystore_count + 1) * sizeof(*ks));
	if (ks == NULL) {
		return KNOT_ENOMEM;
	}
	s->keystores = ks;
	ks[s->keystore_count] = (keystore_t) { .dir = strdup(keystore_dir) };
	if (ks[s->keystore_count].dir == NULL) {
		return KNOT_ENOMEM;
	}
	s->keystore_count++;
	return KNOT_EOK;
}

void mxf_signer_free(mxf_signer_t *s)
{
	if (s == NULL) {
		return;
	}
	if (s->registered) {
		pthread_mutex_lock(&C.life);
		pthread_mutex_lock(&C.lock);
		/* Other zones' readers may still be probing these entries. */
		while (s->head != NULL) {
			C.grave_bytes += s->head->acct; /* Still accounted in C.used. */
			entry_detach(s, s->head, &C.grave);
		}
		size_t i = s->heap_idx;
		mxf_signer_t *last = C.heap[--C.signers];
		if (last != s) {
			heap_set(i, last);
			heap_fix(last);
		}
		budget_update();
		bool empty = C.signers == 0;
		pthread_mutex_unlock(&C.lock);
		if (empty) {
			cache_destroy();
		}
		pthread_mutex_unlock(&C.life);
	}
	/* Knot unloads a zone's module after that zone's readers are gone. */
	free(s->state);
	free(s->failed);
	for (size_t k = 0; k < s->key_count; k++) {
		dnssec_key_free(s->keys[k].key);
		dnssec_binary_free(&s->keys[k].rdata);
	}
	free(s->keys);
	for (size_t i = 0; i < s->keystore_count; i++) {
		if (s->keystores[i].ks != NULL) {
			dnssec_keystore_close(s->keystores[i].ks);
			dnssec_keystore_deinit(s->keystores[i].ks);
		}
		free(s->keystores[i].dir);
	}
	free(s->keystores);
	pthread_mutex_destroy(&s->lock);
	knot_dname_free(s->zone, NULL);
	free(s);
}

int mxf_signer_sign_info(mxf_signer_t *s, const knot_rrset_t *set,
                         const mxf_zone_keys_t *zk, knot_rrset_t *rrsig,
                         mxf_sign_info_t *info)
{
	if (info != NULL) {
		info->signatures = 0;
	}
	if (s == NULL || set == NULL || set->owner == NULL || set->rrs.count == 0 ||
	    zk == NULL || zk->rrsig == NULL ||
	    (zk->dnskey == NULL && zk->get_dnskey == NULL) || rrsig == NULL) {
		return KNOT_EINVAL;
	}

	const state_t *st = rcu_dereference(s->state);
	int match = state_match(st, zk->rrsig);
	if (match == ST_UNSIGNED) {
		return KNOT_ENOENT;
	}
	size_t owner_size = mxf_flat_name_size(set->owner);
	entry_t *e = NULL;
	if (match == ST_MATCH) {
		uint64_t h = key_hash(st, set, owner_size);
		e = lookup(rcu_dereference(C.table), h, st, set, owner_size);
		if (e != NULL && !__atomic_load_n(&e->referenced, __ATOMIC_RELAXED)) {
			__atomic_store_n(&e->referenced, 1, __ATOMIC_RELAXED);
		}
	}
	if (e == NULL) {
		int ret = sign_miss(s, set, zk, owner_size, &e, info);
		if (ret != KNOT_EOK) {
			return ret;
		}
	}

	knot_rrset_init(rrsig, set->owner, KNOT_RRTYPE_RRSIG, set->rclass, set->ttl);
	rrsig->rrs = e->rrsig;
	return KNOT_EOK;
}
