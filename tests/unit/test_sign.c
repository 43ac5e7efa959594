/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * The signer of enforced MX RRsets (module/sign.c), without a server: keys
 * generated with libdnssec into a temporary PEM key store, a DNSKEY set and
 * an apex RRSIG over SOA built by hand (its signature bytes are fake: the
 * signer only reads the header). Every RRSIG the signer makes is verified
 * with libdnssec over the canonical RRset (RFC 4034, 3.1.8.1).
 */

#define _GNU_SOURCE /* nftw */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libdnssec/binary.h>
#include <libdnssec/crypto.h>
#include <libdnssec/error.h>
#include <libdnssec/key.h>
#include <libdnssec/keystore.h>
#include <libdnssec/keytag.h>
#include <libdnssec/sign.h>
#include <libknot/libknot.h>
#include <urcu.h>

#include "mxfilter/sign.h"

#define ZONE		"Sign.Test."
#define ALG		DNSSEC_KEY_ALGORITHM_ECDSA_P256_SHA256
#define INCEPTION	1700000000u
#define EXPIRATION	1800000000u
#define BOUND_OWNERS	10000

typedef struct {
	dnssec_key_t *pub;      /* Public part only, for verification. */
	dnssec_binary_t rdata;  /* DNSKEY rdata. */
	uint16_t tag;
} test_key_t;

/* Shared by all tests (created once in the group setup). */
static struct {
	char dir[64];           /* Key store with key[0], key[1]. */
	char other_dir[64];     /* Key store with key[2] only. */
	test_key_t key[3];
	knot_dname_t *zone;
} G;

/*** Helpers. ***/

static void add_rdata(knot_rdataset_t *rrs, const uint8_t *data, uint16_t len)
{
	knot_rdata_t *rd = malloc(knot_rdata_size(len));
	assert_non_null(rd);
	knot_rdata_init(rd, len, data);
	assert_int_equal(knot_rdataset_add(rrs, rd, NULL), KNOT_EOK);
	free(rd);
}

static void gen_key(const char *dir, test_key_t *out)
{
	dnssec_keystore_t *ks = NULL;
	assert_int_equal(dnssec_keystore_init_pkcs8(&ks), DNSSEC_EOK);
	assert_int_equal(dnssec_keystore_init(ks, dir), DNSSEC_EOK);
	assert_int_equal(dnssec_keystore_open(ks, dir), DNSSEC_EOK);
	char *id = NULL;
	assert_int_equal(dnssec_keystore_generate(ks, ALG, 256, NULL, &id), DNSSEC_EOK);

	dnssec_key_t *key = NULL;
	assert_int_equal(dnssec_key_new(&key), DNSSEC_EOK);
	assert_int_equal(dnssec_key_set_dname(key, G.zone), DNSSEC_EOK);
	assert_int_equal(dnssec_key_set_flags(key, 256), DNSSEC_EOK);
	assert_int_equal(dnssec_key_set_algorithm(key, ALG), DNSSEC_EOK);
	assert_int_equal(dnssec_keystore_get_private(ks, id, key), DNSSEC_EOK);

	dnssec_binary_t rdata = { 0 };
	assert_int_equal(dnssec_key_get_rdata(key, &rdata), DNSSEC_EOK);
	assert_int_equal(dnssec_binary_dup(&rdata, &out->rdata), DNSSEC_EOK);
	assert_int_equal(dnssec_keytag(&out->rdata, &out->tag), DNSSEC_EOK);
	assert_int_equal(out->tag, dnssec_key_get_keytag(key));

	/* A verification key from the DNSKEY rdata alone. */
	assert_int_equal(dnssec_key_new(&out->pub), DNSSEC_EOK);
	assert_int_equal(dnssec_key_set_rdata(out->pub, &out->rdata), DNSSEC_EOK);
	assert_true(dnssec_key_can_verify(out->pub));
	assert_false(dnssec_key_can_sign(out->pub));

	dnssec_key_free(key);
	free(id);
	dnssec_keystore_close(ks);
	dnssec_keystore_deinit(ks);
}

/* An apex RRSIG rdata over \a covered, with fake signature bytes. */
static void add_apex_sig(knot_rdataset_t *rrs, uint16_t covered, uint16_t tag,
                         uint32_t inception, uint32_t expiration)
{
	uint8_t buf[18 + KNOT_DNAME_MAXLEN + 64];
	knot_wire_write_u16(buf, covered);
	buf[2] = ALG;
	buf[3] = 2;
	knot_wire_write_u32(buf + 4, 3600);
	knot_wire_write_u32(buf + 8, expiration);
	knot_wire_write_u32(buf + 12, inception);
	knot_wire_write_u16(buf + 16, tag);
	size_t zlen = knot_dname_size(G.zone);
	memcpy(buf + 18, G.zone, zlen);
	memset(buf + 18 + zlen, 0xA5, 64);
	add_rdata(rrs, buf, (uint16_t)(18 + zlen + 64));
}

static void dnskeys(knot_rdataset_t *rrs, int first, int count)
{
	for (int i = first; i < first + count; i++) {
		add_rdata(rrs, G.key[i].rdata.data, (uint16_t)G.key[i].rdata.size);
	}
}

/* An MX RRset at \a owner (case kept) with two records. */
static knot_rrset_t *mx_set(const char *owner, uint32_t ttl)
{
	knot_dname_t *name = knot_dname_from_str_alloc(owner);
	assert_non_null(name);
	knot_rrset_t *rr = knot_rrset_new(name, KNOT_RRTYPE_MX, KNOT_CLASS_IN, ttl, NULL);
	knot_dname_free(name, NULL);
	assert_non_null(rr);
	const char *ex[] = { "france.security-mail.net.", "europe.security-mail.net." };
	for (int i = 0; i < 2; i++) {
		uint8_t buf[2 + KNOT_DNAME_MAXLEN];
		knot_wire_write_u16(buf, (uint16_t)(10 * (i + 1)));
		assert_non_null(knot_dname_from_str(buf + 2, ex[i], KNOT_DNAME_MAXLEN));
		size_t len = 2 + knot_dname_size(buf + 2);
		assert_int_equal(knot_rrset_add_rdata(rr, buf, (uint16_t)len, NULL), KNOT_EOK);
	}
	return rr;
}

static int sig_add(dnssec_sign_ctx_t *ctx, const uint8_t *data, size_t len)
{
	dnssec_binary_t bin = { .size = len, .data = (uint8_t *)data };
	return dnssec_sign_add(ctx, &bin);
}

/* Verifies RRSIG rdata \a sig over \a set with \a key; \a flip corrupts one
 * byte of the signed data (negative control). */
static int verify(const knot_rdata_t *sig, const knot_rrset_t *set,
                  const test_key_t *key, bool flip)
{
	const knot_dname_t *signer = knot_rrsig_signer_name(sig);
	size_t head_len = 18 + knot_dname_size(signer);

	knot_dname_storage_t owner;
	assert_int_not_equal(knot_dname_store(owner, set->owner), 0);
	knot_dname_to_lower(owner);
	size_t owner_len = knot_dname_size(owner);

	dnssec_sign_ctx_t *ctx = NULL;
	assert_int_equal(dnssec_sign_new(&ctx, key->pub), DNSSEC_EOK);
	assert_int_equal(sig_add(ctx, sig->data, head_len), DNSSEC_EOK);
	/* The rdataset is kept in canonical order by libknot. */
	knot_rdata_t *rd = set->rrs.rdata;
	for (uint16_t i = 0; i < set->rrs.count; i++, rd = knot_rdataset_next(rd)) {
		uint8_t fixed[10];
		knot_wire_write_u16(fixed, set->type);
		knot_wire_write_u16(fixed + 2, set->rclass);
		knot_wire_write_u32(fixed + 4, knot_rrsig_original_ttl(sig));
		knot_wire_write_u16(fixed + 8, rd->len);
		uint8_t data[KNOT_DNAME_MAXLEN + 64];
		assert_true(rd->len <= sizeof(data));
		memcpy(data, rd->data, rd->len);
		if (set->type == KNOT_RRTYPE_MX) {
			knot_dname_to_lower(data + 2);
		}
		if (flip && i == 0) {
			data[1] ^= 1;
		}
		assert_int_equal(sig_add(ctx, owner, owner_len), DNSSEC_EOK);
		assert_int_equal(sig_add(ctx, fixed, sizeof(fixed)), DNSSEC_EOK);
		assert_int_equal(sig_add(ctx, data, rd->len), DNSSEC_EOK);
	}
	dnssec_binary_t bin = {
		.size = knot_rrsig_signature_len(sig),
		.data = (uint8_t *)knot_rrsig_signature(sig),
	};
	int ret = dnssec_sign_verify(ctx, false, &bin);
	dnssec_sign_free(ctx);
	return ret;
}

/* Checks every field of \a sig against the zone's SOA signature. */
static void check_header(const knot_rdata_t *sig, const knot_rrset_t *set,
                         uint16_t tag, uint32_t inception, uint32_t expiration)
{
	int labels = knot_dname_labels(set->owner, NULL) -
	             (knot_dname_is_wildcard(set->owner) ? 1 : 0);
	knot_dname_storage_t zone;
	assert_int_not_equal(knot_dname_store(zone, G.zone), 0);
	knot_dname_to_lower(zone);

	assert_int_equal(knot_rrsig_type_covered(sig), set->type);
	assert_int_equal(knot_rrsig_alg(sig), ALG);
	assert_int_equal(knot_rrsig_labels(sig), labels);
	assert_int_equal(knot_rrsig_original_ttl(sig), set->ttl);
	assert_int_equal(knot_rrsig_sig_inception(sig), inception);
	assert_int_equal(knot_rrsig_sig_expiration(sig), expiration);
	assert_int_equal(knot_rrsig_key_tag(sig), tag);
	assert_true(knot_dname_is_equal(knot_rrsig_signer_name(sig), zone));
	assert_int_equal(knot_rrsig_signature_len(sig), 64); /* P-256 r||s */
}

/* The zone state of most tests: key[0] and key[1] published, SOA signed
 * by key[0] (and an NS signature by key[1] that must be ignored). */
typedef struct {
	knot_rdataset_t rrsig;
	knot_rdataset_t dnskey;
	mxf_zone_keys_t zk;
	mxf_signer_t *signer;
} zone_t;

static void zone_init(zone_t *z, const char *dir)
{
	memset(z, 0, sizeof(*z));
	dnskeys(&z->dnskey, 0, 2);
	add_apex_sig(&z->rrsig, KNOT_RRTYPE_NS, G.key[1].tag, INCEPTION - 5, EXPIRATION - 5);
	add_apex_sig(&z->rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION, EXPIRATION);
	z->zk.rrsig = &z->rrsig;
	z->zk.dnskey = &z->dnskey;
	const char *err = NULL;
	z->signer = mxf_signer_new(G.zone, dir, &err);
	assert_non_null(z->signer);
}

static void zone_clear(zone_t *z)
{
	rcu_barrier(); /* Retired cache entries are freed by call_rcu. */
	mxf_signer_free(z->signer);
	knot_rdataset_clear(&z->rrsig, NULL);
	knot_rdataset_clear(&z->dnskey, NULL);
}

/* Signs \a set; returns the result code, copies the first RRSIG rdata
 * pointer (valid until the next grace period: use inside the lock). */
static int sign_locked(zone_t *z, const knot_rrset_t *set, knot_rrset_t *out)
{
	memset(out, 0, sizeof(*out));
	return mxf_signer_sign(z->signer, set, &z->zk, out);
}

/*** Tests. ***/

static void test_sign_and_verify(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *set = mx_set("Mail.SIGN.test.", 300);

	rcu_read_lock();
	knot_rrset_t sig;
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(sig.type, KNOT_RRTYPE_RRSIG);
	assert_int_equal(sig.ttl, 300);
	assert_ptr_equal(sig.owner, set->owner); /* The query's spelling. */
	assert_int_equal(sig.rrs.count, 1);      /* One SOA signature, one key. */
	check_header(sig.rrs.rdata, set, G.key[0].tag, INCEPTION, EXPIRATION);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[0], false), DNSSEC_EOK);
	assert_int_not_equal(verify(sig.rrs.rdata, set, &G.key[0], true), DNSSEC_EOK);
	assert_int_not_equal(verify(sig.rrs.rdata, set, &G.key[1], false), DNSSEC_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 1);

	knot_rrset_free(set, NULL);
	zone_clear(&z);
}

static void test_wildcard_labels(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *set = mx_set("*.Wild.sign.test.", 60);

	rcu_read_lock();
	knot_rrset_t sig;
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(knot_rrsig_labels(sig.rrs.rdata), 3); /* 4 labels - '*' */
	check_header(sig.rrs.rdata, set, G.key[0].tag, INCEPTION, EXPIRATION);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();

	/* The apex itself: labels 2. */
	knot_rrset_t *apex = mx_set(ZONE, 60);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, apex, &sig), KNOT_EOK);
	assert_int_equal(knot_rrsig_labels(sig.rrs.rdata), 2);
	assert_int_equal(verify(sig.rrs.rdata, apex, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();

	knot_rrset_free(apex, NULL);
	knot_rrset_free(set, NULL);
	zone_clear(&z);
}

static void test_cache_hit(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *set = mx_set("mail.sign.test.", 300);
	knot_rrset_t *upper = mx_set("MAIL.Sign.TEST.", 300);

	rcu_read_lock();
	knot_rrset_t a, b, c;
	assert_int_equal(sign_locked(&z, set, &a), KNOT_EOK);
	uint64_t n = mxf_signer_signatures(z.signer);
	assert_int_equal(sign_locked(&z, set, &b), KNOT_EOK);
	assert_int_equal(mxf_signer_signatures(z.signer), n);
	assert_ptr_equal(a.rrs.rdata, b.rrs.rdata);
	/* Another spelling of the owner hits the same entry; the RRSIG
	 * takes that spelling. */
	assert_int_equal(sign_locked(&z, upper, &c), KNOT_EOK);
	assert_int_equal(mxf_signer_signatures(z.signer), n);
	assert_ptr_equal(a.rrs.rdata, c.rrs.rdata);
	assert_ptr_equal(c.owner, upper->owner);
	assert_int_equal(verify(c.rrs.rdata, upper, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();

	knot_rrset_free(upper, NULL);
	knot_rrset_free(set, NULL);
	zone_clear(&z);
}

static void test_resign_on_zone_change(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *set = mx_set("mail.sign.test.", 300);
	knot_rrset_t sig;

	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 1);

	/* Knot re-signed the zone: new validity period. */
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION + 100, EXPIRATION + 100);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	check_header(sig.rrs.rdata, set, G.key[0].tag, INCEPTION + 100, EXPIRATION + 100);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 2);

	/* ZSK rollover: the SOA is signed by key[1] now. */
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[1].tag, INCEPTION + 200, EXPIRATION + 200);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(sig.rrs.count, 1);
	check_header(sig.rrs.rdata, set, G.key[1].tag, INCEPTION + 200, EXPIRATION + 200);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[1], false), DNSSEC_EOK);
	assert_int_not_equal(verify(sig.rrs.rdata, set, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 3);

	/* Two active ZSKs sign the SOA: one RRSIG per key, each valid. */
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION + 200, EXPIRATION + 200);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(sig.rrs.count, 2);
	bool seen[2] = { false, false };
	knot_rdata_t *rd = sig.rrs.rdata;
	for (int i = 0; i < 2; i++, rd = knot_rdataset_next(rd)) {
		int k = knot_rrsig_key_tag(rd) == G.key[0].tag ? 0 : 1;
		assert_int_equal(knot_rrsig_key_tag(rd), G.key[k].tag);
		check_header(rd, set, G.key[k].tag, INCEPTION + 200, EXPIRATION + 200);
		assert_int_equal(verify(rd, set, &G.key[k], false), DNSSEC_EOK);
		seen[k] = true;
	}
	assert_true(seen[0] && seen[1]);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 5);

	/* Back to the same state: a hit. */
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 5);

	knot_rrset_free(set, NULL);
	zone_clear(&z);
}

static void test_ttl_separate_entry(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *a = mx_set("mail.sign.test.", 300);
	knot_rrset_t *b = mx_set("mail.sign.test.", 600);
	knot_rrset_t sig;

	rcu_read_lock();
	assert_int_equal(sign_locked(&z, a, &sig), KNOT_EOK);
	assert_int_equal(knot_rrsig_original_ttl(sig.rrs.rdata), 300);
	assert_int_equal(sig.ttl, 300);
	assert_int_equal(sign_locked(&z, b, &sig), KNOT_EOK);
	assert_int_equal(mxf_signer_signatures(z.signer), 2); /* Not the 300 s entry. */
	assert_int_equal(knot_rrsig_original_ttl(sig.rrs.rdata), 600);
	assert_int_equal(sig.ttl, 600);
	assert_int_equal(verify(sig.rrs.rdata, b, &G.key[0], false), DNSSEC_EOK);
	assert_int_equal(sign_locked(&z, b, &sig), KNOT_EOK);
	assert_int_equal(mxf_signer_signatures(z.signer), 2);
	rcu_read_unlock();

	knot_rrset_free(a, NULL);
	knot_rrset_free(b, NULL);
	zone_clear(&z);
}

static void test_cache_bound(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *sets[BOUND_OWNERS];
	for (int i = 0; i < BOUND_OWNERS; i++) {
		char owner[64];
		(void)snprintf(owner, sizeof(owner), "o%d.sign.test.", i);
		sets[i] = mx_set(owner, 300);
	}

	knot_rrset_t sig;
	for (int i = 0; i < BOUND_OWNERS; i++) {
		rcu_read_lock();
		assert_int_equal(sign_locked(&z, sets[i], &sig), KNOT_EOK);
		rcu_read_unlock();
	}
	assert_int_equal(mxf_signer_signatures(z.signer), BOUND_OWNERS);

	/* The first owner was evicted long ago: a miss again. */
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, sets[0], &sig), KNOT_EOK);
	assert_int_equal(verify(sig.rrs.rdata, sets[0], &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), BOUND_OWNERS + 1);

	/* All owners again: at most MXF_SIGNER_SLOTS of them can still be
	 * cached, whatever the order, so at most that many hits. */
	uint64_t before = mxf_signer_signatures(z.signer);
	for (int i = BOUND_OWNERS - 1; i >= 0; i--) {
		rcu_read_lock();
		assert_int_equal(sign_locked(&z, sets[i], &sig), KNOT_EOK);
		rcu_read_unlock();
	}
	uint64_t misses = mxf_signer_signatures(z.signer) - before;
	uint64_t hits = BOUND_OWNERS - misses;
	print_message("bound: %d owners re-queried, %llu hits (slots %d)\n", BOUND_OWNERS,
	              (unsigned long long)hits, MXF_SIGNER_SLOTS);
	assert_true(hits <= MXF_SIGNER_SLOTS);
	assert_true(hits > 0); /* The cache does work. */

	for (int i = 0; i < BOUND_OWNERS; i++) {
		knot_rrset_free(sets[i], NULL);
	}
	zone_clear(&z);
}

static void test_missing_private_key(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *set = mx_set("mail.sign.test.", 300);
	knot_rrset_t sig;

	/* key[2] is published but its private key is in another store. */
	dnskeys(&z.dnskey, 2, 1);
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[2].tag, INCEPTION, EXPIRATION);
	rcu_read_lock();
	int ret = sign_locked(&z, set, &sig);
	rcu_read_unlock();
	assert_true(ret < 0);
	assert_int_not_equal(ret, KNOT_ENOENT);

	/* Two SOA signatures, one of them without a private key: error, no
	 * half-signed RRset. */
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION, EXPIRATION);
	rcu_read_lock();
	assert_true(sign_locked(&z, set, &sig) < 0);
	rcu_read_unlock();

	/* A key tag the DNSKEY set does not hold. */
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, (uint16_t)(G.key[0].tag ^ 0x5555),
	             INCEPTION, EXPIRATION);
	rcu_read_lock();
	assert_true(sign_locked(&z, set, &sig) < 0);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 0);

	/* Back to a usable key: the signer recovers. */
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION, EXPIRATION);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();

	knot_rrset_free(set, NULL);
	zone_clear(&z);

	/* A key store directory that does not exist. */
	zone_init(&z, "/nonexistent/mxfilter-keys");
	set = mx_set("mail.sign.test.", 300);
	rcu_read_lock();
	ret = sign_locked(&z, set, &sig);
	rcu_read_unlock();
	assert_true(ret < 0);
	knot_rrset_free(set, NULL);
	zone_clear(&z);
}

/* Several key stores (Knot 3.5 policies): searched in order, a store that
 * cannot be opened skipped, a bounded list. */
static void test_keystore_order(void **state)
{
	zone_t z;
	knot_rrset_t *set = mx_set("mail.sign.test.", 300);
	knot_rrset_t sig;

	/* key[2]'s private key is in the second store only. */
	zone_init(&z, G.dir);
	assert_int_equal(mxf_signer_add_keystore(z.signer, G.other_dir), KNOT_EOK);
	dnskeys(&z.dnskey, 2, 1);
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[2].tag, INCEPTION, EXPIRATION);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[2], false), DNSSEC_EOK);
	rcu_read_unlock();

	/* And key[0] still from the first. */
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION, EXPIRATION);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(sig.rrs.count, 2);
	rcu_read_unlock();
	zone_clear(&z);

	/* A first store that does not exist does not hide the next one. */
	zone_init(&z, "/nonexistent/mxfilter-keys");
	assert_int_equal(mxf_signer_add_keystore(z.signer, G.dir), KNOT_EOK);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();

	/* At most MXF_SIGNER_KEYSTORES stores. */
	for (int i = 2; i < MXF_SIGNER_KEYSTORES; i++) {
		assert_int_equal(mxf_signer_add_keystore(z.signer, G.other_dir), KNOT_EOK);
	}
	assert_int_equal(mxf_signer_add_keystore(z.signer, G.other_dir), KNOT_ELIMIT);
	assert_int_equal(mxf_signer_add_keystore(z.signer, NULL), KNOT_EINVAL);
	assert_int_equal(mxf_signer_add_keystore(NULL, G.dir), KNOT_EINVAL);
	zone_clear(&z);
	knot_rrset_free(set, NULL);
}

static void test_unsigned_zone(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *set = mx_set("mail.sign.test.", 300);
	knot_rrset_t sig;

	/* Apex RRSIGs, none over SOA. */
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_NS, G.key[0].tag, INCEPTION, EXPIRATION);
	assert_false(mxf_zone_is_signed(&z.rrsig));
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_ENOENT);
	rcu_read_unlock();

	/* No apex RRSIG at all. */
	knot_rdataset_clear(&z.rrsig, NULL);
	assert_false(mxf_zone_is_signed(&z.rrsig));
	assert_false(mxf_zone_is_signed(NULL));
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_ENOENT);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 0);

	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION, EXPIRATION);
	assert_true(mxf_zone_is_signed(&z.rrsig));

	/* Bad arguments. */
	assert_int_equal(mxf_signer_sign(NULL, set, &z.zk, &sig), KNOT_EINVAL);
	assert_int_equal(mxf_signer_sign(z.signer, NULL, &z.zk, &sig), KNOT_EINVAL);
	assert_int_equal(mxf_signer_sign(z.signer, set, NULL, &sig), KNOT_EINVAL);

	knot_rrset_free(set, NULL);
	zone_clear(&z);
}

/* The apex's NSEC (engine/denial.c) next to the apex MX, same owner and
 * TTL: its own entry, signed over its rdata; a new rdata (the zone changed
 * within the same second of signing) is signed anew; the MX entry stays. */
static void test_denial_record(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *mx = mx_set(ZONE, 300);
	knot_rrset_t *nsec = knot_rrset_new(mx->owner, KNOT_RRTYPE_NSEC, KNOT_CLASS_IN, 300, NULL);
	assert_non_null(nsec);
	/* next "a.sign.test.", types NS SOA MX RRSIG NSEC */
	const uint8_t rd1[] = { 1, 'a', 4, 's', 'i', 'g', 'n', 4, 't', 'e', 's', 't', 0,
	                        0, 6, 0x22, 0x01, 0x00, 0x00, 0x00, 0x03 };
	assert_int_equal(knot_rrset_add_rdata(nsec, rd1, sizeof(rd1), NULL), KNOT_EOK);
	knot_rrset_t sig_mx, sig_nsec;

	rcu_read_lock();
	assert_int_equal(sign_locked(&z, mx, &sig_mx), KNOT_EOK);
	assert_int_equal(sign_locked(&z, nsec, &sig_nsec), KNOT_EOK);
	assert_ptr_not_equal(sig_mx.rrs.rdata, sig_nsec.rrs.rdata);
	check_header(sig_nsec.rrs.rdata, nsec, G.key[0].tag, INCEPTION, EXPIRATION);
	assert_int_equal(verify(sig_nsec.rrs.rdata, nsec, &G.key[0], false), DNSSEC_EOK);
	assert_int_not_equal(verify(sig_nsec.rrs.rdata, nsec, &G.key[0], true), DNSSEC_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 2);

	/* Both hit, whatever the order. */
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, nsec, &sig_nsec), KNOT_EOK);
	assert_int_equal(sign_locked(&z, mx, &sig_mx), KNOT_EOK);
	check_header(sig_mx.rrs.rdata, mx, G.key[0].tag, INCEPTION, EXPIRATION);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 2);

	/* The NSEC's next name changed, the SOA signature did not. */
	knot_rrset_t *nsec2 = knot_rrset_new(mx->owner, KNOT_RRTYPE_NSEC, KNOT_CLASS_IN, 300, NULL);
	assert_non_null(nsec2);
	uint8_t rd2[sizeof(rd1)];
	memcpy(rd2, rd1, sizeof(rd1));
	rd2[1] = 'b';
	assert_int_equal(knot_rrset_add_rdata(nsec2, rd2, sizeof(rd2), NULL), KNOT_EOK);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, nsec2, &sig_nsec), KNOT_EOK);
	assert_int_equal(verify(sig_nsec.rrs.rdata, nsec2, &G.key[0], false), DNSSEC_EOK);
	assert_int_equal(sign_locked(&z, mx, &sig_mx), KNOT_EOK);
	rcu_read_unlock();
	assert_int_equal(mxf_signer_signatures(z.signer), 3);

	knot_rrset_free(nsec2, NULL);
	knot_rrset_free(nsec, NULL);
	knot_rrset_free(mx, NULL);
	zone_clear(&z);
}

/*** Setup. ***/

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int group_setup(void **state)
{
	rcu_register_thread();
	dnssec_crypto_init();
	G.zone = knot_dname_from_str_alloc(ZONE);
	if (G.zone == NULL) {
		return -1;
	}
	strcpy(G.dir, "/tmp/mxf-sign-XXXXXX");
	strcpy(G.other_dir, "/tmp/mxf-sign-XXXXXX");
	if (mkdtemp(G.dir) == NULL || mkdtemp(G.other_dir) == NULL) {
		return -1;
	}
	gen_key(G.dir, &G.key[0]);
	gen_key(G.dir, &G.key[1]);
	gen_key(G.other_dir, &G.key[2]);
	if (G.key[0].tag == G.key[1].tag || G.key[0].tag == G.key[2].tag ||
	    G.key[1].tag == G.key[2].tag) {
		return -1; /* 1 in ~20,000: key tags collide; rerun. */
	}
	return 0;
}

static int group_teardown(void **state)
{
	rcu_barrier();
	for (int i = 0; i < 3; i++) {
		dnssec_key_free(G.key[i].pub);
		dnssec_binary_free(&G.key[i].rdata);
	}
	knot_dname_free(G.zone, NULL);
	(void)nftw(G.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	(void)nftw(G.other_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	dnssec_crypto_cleanup();
	rcu_unregister_thread();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_and_verify),
		cmocka_unit_test(test_wildcard_labels),
		cmocka_unit_test(test_cache_hit),
		cmocka_unit_test(test_resign_on_zone_change),
		cmocka_unit_test(test_ttl_separate_entry),
		cmocka_unit_test(test_cache_bound),
		cmocka_unit_test(test_missing_private_key),
		cmocka_unit_test(test_keystore_order),
		cmocka_unit_test(test_unsigned_zone),
		cmocka_unit_test(test_denial_record),
	};
	return cmocka_run_group_tests_name("sign", tests, group_setup, group_teardown);
}
