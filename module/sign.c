/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <libdnssec/binary.h>
#include <libdnssec/error.h>
#include <libdnssec/key.h>
#include <libdnssec/keystore.h>
#include <libdnssec/keytag.h>
#include <libdnssec/sign.h>
#include <urcu.h>

#include "mxfilter/sign.h"

/* Private keys kept loaded (a zone signs with one or two at a time). */
#define MAX_KEYS	8

/* RRSIG rdata before the signer name: type, alg, labels, TTL, times, tag. */
#define RRSIG_FIXED	18

typedef struct {
	uint16_t keytag;
	uint8_t alg;
	dnssec_binary_t rdata; /* DNSKEY rdata the key was loaded for. */
	dnssec_key_t *key;
} loaded_key_t;

typedef struct entry {
	struct rcu_head rcu;
	uint64_t gen;          /* Identity of the zone's SOA signatures. */
	uint32_t ttl;
	uint16_t type;
	knot_rdataset_t data;  /* The signed rdata (the apex NSEC's changes with
	                          the zone; the MX set's is the policy's). */
	knot_rdataset_t rrsig;
	knot_dname_t owner[];  /* Lower-case. */
} entry_t;

/* The slot after the MX slots holds the one other RRset a zone signs: its
 * apex NSEC or NSEC3 (engine/denial.c), so it never evicts an MX entry. */
#define DENIAL_SLOT	MXF_SIGNER_SLOTS

struct mxf_signer {
	entry_t *slots[MXF_SIGNER_SLOTS + 1]; /* RCU-protected. */
	pthread_mutex_t lock;             /* Misses: signing, key loading. */
	dnssec_keystore_t *keystore[MXF_SIGNER_KEYSTORES]; /* Opened on use. */
	char *keystore_dir[MXF_SIGNER_KEYSTORES];          /* Search order. */
	size_t keystore_count;
	loaded_key_t keys[MAX_KEYS];
	size_t key_count;
	_Atomic uint64_t signatures;
	knot_dname_t *zone;
};

/*** Zone signature state. ***/

static const knot_rdata_t *rd_next(const knot_rdata_t *rd)
{
	return knot_rdataset_next((knot_rdata_t *)rd);
}

static bool is_soa_sig(const knot_rdata_t *rd)
{
	return rd->len > RRSIG_FIXED && knot_rrsig_type_covered(rd) == KNOT_RRTYPE_SOA;
}

bool mxf_zone_is_signed(const knot_rdataset_t *apex_rrsig)
{
	if (apex_rrsig == NULL) {
		return false;
	}
	const knot_rdata_t *rd = apex_rrsig->rdata;
	for (uint16_t i = 0; i < apex_rrsig->count; i++, rd = rd_next(rd)) {
		if (is_soa_sig(rd)) {
			return true;
		}
	}
	return false;
}

/* Identity of the zone's current SOA signatures: algorithm, key tag and
 * validity of each. It changes whenever Knot re-signs or rolls a key. */
static uint64_t zone_generation(const knot_rdataset_t *apex_rrsig)
{
	uint64_t gen = 0xcbf29ce484222325ULL;
	const knot_rdata_t *rd = apex_rrsig->rdata;
	for (uint16_t i = 0; i < apex_rrsig->count; i++, rd = rd_next(rd)) {
		if (!is_soa_sig(rd)) {
			continue;
		}
		/* Bytes 2..17: alg, labels, TTL, expiration, inception, tag. */
		for (int b = 2; b < RRSIG_FIXED; b++) {
			gen = (gen ^ rd->data[b]) * 0x100000001b3ULL;
		}
	}
	return gen;
}

/*** Keys. ***/

static void key_clear(loaded_key_t *k)
{
	dnssec_key_free(k->key);
	dnssec_binary_free(&k->rdata);
	memset(k, 0, sizeof(*k));
}

/* Key store \a i, opened on first use (NULL while it cannot be opened). */
static dnssec_keystore_t *keystore_at(mxf_signer_t *s, size_t i)
{
	if (s->keystore[i] != NULL) {
		return s->keystore[i];
	}
	dnssec_keystore_t *ks = NULL;
	if (dnssec_keystore_init_pkcs8(&ks) != DNSSEC_EOK) {
		return NULL;
	}
	if (dnssec_keystore_open(ks, s->keystore_dir[i]) != DNSSEC_EOK) {
		dnssec_keystore_deinit(ks);
		return NULL;
	}
	s->keystore[i] = ks;
	return ks;
}

/* The private part of \a key from the first store holding it, searched in
 * order as Knot does. */
static int get_private(mxf_signer_t *s, const char *id, dnssec_key_t *key)
{
	int ret = DNSSEC_ENOENT;
	for (size_t i = 0; i < s->keystore_count && ret != DNSSEC_EOK; i++) {
		dnssec_keystore_t *ks = keystore_at(s, i);
		if (ks != NULL) {
			ret = dnssec_keystore_get_private(ks, id, key);
		}
	}
	return ret;
}

/* Finds or loads the private key of the published DNSKEY with \a tag/alg. */
static dnssec_key_t *get_key(mxf_signer_t *s, const knot_rdataset_t *dnskey,
                             uint16_t tag, uint8_t alg)
{
	const knot_rdata_t *rd = dnskey->rdata;
	for (uint16_t i = 0; i < dnskey->count; i++, rd = rd_next(rd)) {
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

		dnssec_key_t *key = NULL;
		char *id = NULL;
		int ret = dnssec_key_new(&key);
		if (ret == DNSSEC_EOK) {
			ret = dnssec_key_set_dname(key, s->zone);
		}
		if (ret == DNSSEC_EOK) {
			ret = dnssec_key_set_rdata(key, &bin);
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
			continue; /* Maybe another key shares the tag. */
		}

		/* Keep it; forget the oldest when full (rollovers add keys). */
		if (s->key_count == MAX_KEYS) {
			key_clear(&s->keys[0]);
			memmove(&s->keys[0], &s->keys[1], (MAX_KEYS - 1) * sizeof(s->keys[0]));
			memset(&s->keys[MAX_KEYS - 1], 0, sizeof(s->keys[0]));
			s->key_count--;
		}
		loaded_key_t *slot = &s->keys[s->key_count];
		if (dnssec_binary_dup(&bin, &slot->rdata) != DNSSEC_EOK) {
			dnssec_key_free(key);
			return NULL;
		}
		slot->keytag = tag;
		slot->alg = alg;
		slot->key = key;
		s->key_count++;
		return key;
	}
	return NULL;
}

/*** Signing. ***/

static int sign_add(dnssec_sign_ctx_t *ctx, const uint8_t *data, size_t len)
{
	dnssec_binary_t bin = { .size = len, .data = (uint8_t *)data };
	return dnssec_sign_add(ctx, &bin);
}

/* One RRSIG over \a set, shaped like the zone's SOA signature \a soa_sig. */
static int sign_like(mxf_signer_t *s, const knot_rrset_t *set, const knot_dname_t *owner,
                     const knot_rdata_t *soa_sig, const knot_rdataset_t *dnskey,
                     knot_rdataset_t *out)
{
	uint8_t alg = knot_rrsig_alg(soa_sig);
	uint16_t tag = knot_rrsig_key_tag(soa_sig);
	dnssec_key_t *key = get_key(s, dnskey, tag, alg);
	if (key == NULL) {
		return KNOT_DNSSEC_ENOKEY;
	}

	/* RRSIG rdata up to the signature (RFC 4034, 3.1). */
	size_t signer_len = knot_dname_size(s->zone);
	uint8_t head[RRSIG_FIXED + KNOT_DNAME_MAXLEN];
	int labels = (int)knot_dname_labels(owner, NULL) - (knot_dname_is_wildcard(owner) ? 1 : 0);
	knot_wire_write_u16(head, set->type);
	head[2] = alg;
	head[3] = (uint8_t)labels;
	knot_wire_write_u32(head + 4, set->ttl);
	knot_wire_write_u32(head + 8, knot_rrsig_sig_expiration(soa_sig));
	knot_wire_write_u32(head + 12, knot_rrsig_sig_inception(soa_sig));
	knot_wire_write_u16(head + 16, tag);
	memcpy(head + RRSIG_FIXED, s->zone, signer_len);
	size_t head_len = RRSIG_FIXED + signer_len;

	/* Signed data: the header, then each RR in canonical form and order
	 * (the owner is already lower-case, the rdataset canonically sorted
	 * and its names lower-case). */
	dnssec_sign_ctx_t *ctx = NULL;
	int ret = dnssec_sign_new(&ctx, key);
	if (ret != DNSSEC_EOK) {
		return KNOT_DNSSEC_ENOSIG;
	}
	ret = sign_add(ctx, head, head_len);
	size_t owner_len = knot_dname_size(owner);
	const knot_rdata_t *rd = set->rrs.rdata;
	for (uint16_t i = 0; i < set->rrs.count && ret == DNSSEC_EOK; i++, rd = rd_next(rd)) {
		uint8_t fixed[10];
		knot_wire_write_u16(fixed, set->type);
		knot_wire_write_u16(fixed + 2, set->rclass);
		knot_wire_write_u32(fixed + 4, set->ttl);
		knot_wire_write_u16(fixed + 8, rd->len);
		ret = sign_add(ctx, owner, owner_len);
		if (ret == DNSSEC_EOK) {
			ret = sign_add(ctx, fixed, sizeof(fixed));
		}
		if (ret == DNSSEC_EOK) {
			ret = sign_add(ctx, rd->data, rd->len);
		}
	}
	dnssec_binary_t sig = { 0 };
	if (ret == DNSSEC_EOK) {
		ret = dnssec_sign_write(ctx, DNSSEC_SIGN_NORMAL, &sig);
	}
	dnssec_sign_free(ctx);
	if (ret != DNSSEC_EOK) {
		return KNOT_DNSSEC_ENOSIG;
	}

	size_t len = head_len + sig.size;
	knot_rdata_t *rrsig = malloc(knot_rdata_size(len));
	uint8_t *data = malloc(len);
	if (rrsig == NULL || data == NULL || len > UINT16_MAX) {
		free(rrsig);
		free(data);
		dnssec_binary_free(&sig);
		return KNOT_ENOMEM;
	}
	memcpy(data, head, head_len);
	memcpy(data + head_len, sig.data, sig.size);
	knot_rdata_init(rrsig, (uint16_t)len, data);
	ret = knot_rdataset_add(out, rrsig, NULL);
	free(rrsig);
	free(data);
	dnssec_binary_free(&sig);
	return ret;
}

static void entry_free(entry_t *e)
{
	if (e != NULL) {
		knot_rdataset_clear(&e->rrsig, NULL);
		knot_rdataset_clear(&e->data, NULL);
		free(e);
	}
}

/* Retired entries still waiting for their grace period. They run code of
 * this shared object, so it must not be unloaded while any is pending. */
static _Atomic long pending_frees;

static void entry_free_rcu(struct rcu_head *head)
{
	entry_free(caa_container_of(head, entry_t, rcu));
	atomic_fetch_sub(&pending_frees, 1);
}

static void entry_retire(entry_t *e)
{
	atomic_fetch_add(&pending_frees, 1);
	call_rcu(&e->rcu, entry_free_rcu);
}

static entry_t *entry_make(mxf_signer_t *s, const knot_rrset_t *set,
                           const knot_dname_t *owner, const mxf_zone_keys_t *zk,
                           uint64_t gen, int *ret)
{
	size_t owner_len = knot_dname_size(owner);
	entry_t *e = calloc(1, sizeof(*e) + owner_len);
	if (e == NULL) {
		*ret = KNOT_ENOMEM;
		return NULL;
	}
	memcpy(e->owner, owner, owner_len);
	e->gen = gen;
	e->ttl = set->ttl;
	e->type = set->type;
	*ret = knot_rdataset_copy(&e->data, &set->rrs, NULL);
	if (*ret != KNOT_EOK) {
		entry_free(e);
		return NULL;
	}

	*ret = KNOT_ENOENT;
	const knot_rdata_t *rd = zk->rrsig->rdata;
	for (uint16_t i = 0; i < zk->rrsig->count; i++, rd = rd_next(rd)) {
		if (!is_soa_sig(rd)) {
			continue;
		}
		*ret = sign_like(s, set, e->owner, rd, zk->dnskey, &e->rrsig);
		if (*ret != KNOT_EOK) {
			break;
		}
	}
	if (*ret != KNOT_EOK) {
		entry_free(e);
		return NULL;
	}
	atomic_fetch_add(&s->signatures, e->rrsig.count);
	return e;
}

/*** Public API. ***/

mxf_signer_t *mxf_signer_new(const knot_dname_t *zone, const char *keystore_dir,
                             const char **err)
{
	mxf_signer_t *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*err = "out of memory";
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->zone = knot_dname_copy(zone, NULL);
	if (s->zone == NULL) {
		mxf_signer_free(s);
		*err = "out of memory";
		return NULL;
	}
	knot_dname_to_lower(s->zone);

	if (mxf_signer_add_keystore(s, keystore_dir) != KNOT_EOK) {
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
	if (s->keystore_count == MXF_SIGNER_KEYSTORES) {
		return KNOT_ELIMIT;
	}
	/* Opened on first use: when the module loads for a new zone, Knot has
	 * not generated its keys yet. */
	s->keystore_dir[s->keystore_count] = strdup(keystore_dir);
	if (s->keystore_dir[s->keystore_count] == NULL) {
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
	/* Knot unloads modules outside any read-side critical section, after
	 * the readers are gone; wait for retired entries only if there are. */
	if (atomic_load(&pending_frees) > 0) {
		rcu_barrier();
	}
	for (size_t i = 0; i <= MXF_SIGNER_SLOTS; i++) {
		entry_free(s->slots[i]);
	}
	for (size_t i = 0; i < s->key_count; i++) {
		key_clear(&s->keys[i]);
	}
	for (size_t i = 0; i < s->keystore_count; i++) {
		if (s->keystore[i] != NULL) {
			dnssec_keystore_close(s->keystore[i]);
			dnssec_keystore_deinit(s->keystore[i]);
		}
		free(s->keystore_dir[i]);
	}
	pthread_mutex_destroy(&s->lock);
	knot_dname_free(s->zone, NULL);
	free(s);
}

uint64_t mxf_signer_signatures(const mxf_signer_t *s)
{
	return atomic_load(&((mxf_signer_t *)s)->signatures);
}

static size_t slot_of(const knot_dname_t *owner, uint32_t ttl)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ ttl;
	for (size_t i = 0, n = knot_dname_size(owner); i < n; i++) {
		uint8_t c = owner[i];
		if (c >= 'A' && c <= 'Z') {
			c += 'a' - 'A';
		}
		h = (h ^ c) * 0x100000001b3ULL;
	}
	return (size_t)(h ^ (h >> 29)) % MXF_SIGNER_SLOTS;
}

static bool entry_fits(const entry_t *e, const knot_rrset_t *set,
                       const knot_dname_t *owner, uint64_t gen)
{
	return e != NULL && e->gen == gen && e->ttl == set->ttl && e->type == set->type &&
	       e->data.count == set->rrs.count && e->data.size == set->rrs.size &&
	       knot_dname_is_case_equal(e->owner, owner) &&
	       (e->data.size == 0 || memcmp(e->data.rdata, set->rrs.rdata, e->data.size) == 0);
}

int mxf_signer_sign(mxf_signer_t *s, const knot_rrset_t *set,
                    const mxf_zone_keys_t *zk, knot_rrset_t *rrsig)
{
	if (s == NULL || set == NULL || zk == NULL || zk->rrsig == NULL ||
	    zk->dnskey == NULL || rrsig == NULL) {
		return KNOT_EINVAL;
	}
	if (!mxf_zone_is_signed(zk->rrsig)) {
		return KNOT_ENOENT;
	}

	uint64_t gen = zone_generation(zk->rrsig);
	size_t idx = (set->type == KNOT_RRTYPE_MX) ? slot_of(set->owner, set->ttl) : DENIAL_SLOT;

	entry_t *e = rcu_dereference(s->slots[idx]);
	if (!entry_fits(e, set, set->owner, gen)) {
		/* Miss: sign under the lock, publish, retire the old entry. */
		knot_dname_storage_t owner;
		if (knot_dname_store(owner, set->owner) == 0) {
			return KNOT_EINVAL;
		}
		knot_dname_to_lower(owner);

		int ret = KNOT_EOK;
		pthread_mutex_lock(&s->lock);
		e = s->slots[idx];
		if (!entry_fits(e, set, owner, gen)) {
			e = entry_make(s, set, owner, zk, gen, &ret);
			if (e != NULL) {
				entry_t *old = rcu_xchg_pointer(&s->slots[idx], e);
				if (old != NULL) {
					entry_retire(old);
				}
			}
		}
		pthread_mutex_unlock(&s->lock);
		if (e == NULL) {
			return ret;
		}
	}

	knot_rrset_init(rrsig, set->owner, KNOT_RRTYPE_RRSIG, set->rclass, set->ttl);
	rrsig->rrs = e->rrsig;
	return KNOT_EOK;
}
