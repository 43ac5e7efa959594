/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * The signer of enforced RRsets and its cache (module/sign.c), without a
 * server: keys generated with libdnssec into a temporary PEM key store, a
 * DNSKEY set and an apex RRSIG over SOA built by hand (its signature bytes
 * are fake: the signer only reads the header). Every RRSIG the signer makes
 * is verified with libdnssec over the canonical RRset (RFC 4034, 3.1.8.1).
 *
 * Built twice (tests/unit/meson.build): against the engine, and with
 * module/sign.c compiled in with MXF_SIGN_HASH_MASK=3, where every key
 * hashes to one of four values, so the cache must tell keys apart by
 * comparing them exactly.
 */

#define _GNU_SOURCE /* nftw */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* The engine's signer compiled in: this test reads the cache's internals
 * (the product has no getters for them). */
#include "engine/sign.c"

#define ZONE		"Sign.Test."
#define ALG		DNSSEC_KEY_ALGORITHM_ECDSA_P256_SHA256
#define ALG_FAST	DNSSEC_KEY_ALGORITHM_ED25519
#define INCEPTION	1700000000u
#define EXPIRATION	1800000000u

/* Owners of the large test: 10^5, or fewer where all keys collide. */
#ifdef MXF_SIGN_HASH_MASK
#define MANY_OWNERS	2000
#else
#define MANY_OWNERS	100000
#endif

typedef struct {
	dnssec_key_t *pub;      /* Public part only, for verification. */
	dnssec_binary_t rdata;  /* DNSKEY rdata. */
	uint16_t tag;
} test_key_t;

/* Shared by all tests (created once in the group setup). */
static struct {
	char dir[64];           /* Key store with key[0], key[1]. */
	char other_dir[64];     /* Key store with key[2] only. */
	test_key_t key[4];      /* key[3]: Ed25519, in dir (fast signing). */
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

static void gen_key(const char *dir, test_key_t *out, dnssec_key_algorithm_t alg)
{
	dnssec_keystore_t *ks = NULL;
	assert_int_equal(dnssec_keystore_init_pkcs8(&ks), DNSSEC_EOK);
	assert_int_equal(dnssec_keystore_init(ks, dir), DNSSEC_EOK);
	assert_int_equal(dnssec_keystore_open(ks, dir), DNSSEC_EOK);
	char *id = NULL;
	assert_int_equal(dnssec_keystore_generate(ks, alg, 256, NULL, &id), DNSSEC_EOK);

	dnssec_key_t *key = NULL;
	assert_int_equal(dnssec_key_new(&key), DNSSEC_EOK);
	assert_int_equal(dnssec_key_set_dname(key, G.zone), DNSSEC_EOK);
	assert_int_equal(dnssec_key_set_flags(key, 256), DNSSEC_EOK);
	assert_int_equal(dnssec_key_set_algorithm(key, alg), DNSSEC_EOK);
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
static void add_apex_sig_alg(knot_rdataset_t *rrs, uint16_t covered, uint8_t alg,
                             uint16_t tag, uint32_t inception, uint32_t expiration)
{
	uint8_t buf[18 + KNOT_DNAME_MAXLEN + 64];
	knot_wire_write_u16(buf, covered);
	buf[2] = alg;
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

static void add_apex_sig(knot_rdataset_t *rrs, uint16_t covered, uint16_t tag,
                         uint32_t inception, uint32_t expiration)
{
	add_apex_sig_alg(rrs, covered, ALG, tag, inception, expiration);
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
	_Atomic uint64_t made;      /* RRSIGs the signer made (sign_info). */
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
	z->signer = mxf_signer_new(G.zone, dir, NULL, &err);
	assert_non_null(z->signer);
}

static void zone_clear(zone_t *z)
{
	rcu_barrier(); /* Retired cache entries are freed by call_rcu. */
	mxf_signer_free(z->signer);
	knot_rdataset_clear(&z->rrsig, NULL);
	knot_rdataset_clear(&z->dnskey, NULL);
}

/* Signs \a set for \a z, counting the RRSIGs made. */
static int sign_counted(zone_t *z, const knot_rrset_t *set, knot_rrset_t *out)
{
	mxf_sign_info_t info;
	int ret = mxf_signer_sign_info(z->signer, set, &z->zk, out, &info);
	atomic_fetch_add(&z->made, info.signatures);
	return ret;
}

/* RRSIGs \a z's signer made so far. */
static uint64_t made_by(zone_t *z)
{
	return atomic_load(&z->made);
}

/* Signs \a set; returns the result code, copies the first RRSIG rdata
 * pointer (valid until the next grace period: use inside the lock). */
static int sign_locked(zone_t *z, const knot_rrset_t *set, knot_rrset_t *out)
{
	memset(out, 0, sizeof(*out));
	return sign_counted(z, set, out);
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
	assert_int_equal(made_by(&z), 1);

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
	uint64_t n = made_by(&z);
	assert_int_equal(sign_locked(&z, set, &b), KNOT_EOK);
	assert_int_equal(made_by(&z), n);
	assert_ptr_equal(a.rrs.rdata, b.rrs.rdata);
	/* Another spelling of the owner hits the same entry; the RRSIG
	 * takes that spelling. */
	assert_int_equal(sign_locked(&z, upper, &c), KNOT_EOK);
	assert_int_equal(made_by(&z), n);
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
	assert_int_equal(made_by(&z), 1);

	/* Knot re-signed the zone: new validity period. */
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION + 100, EXPIRATION + 100);
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	check_header(sig.rrs.rdata, set, G.key[0].tag, INCEPTION + 100, EXPIRATION + 100);
	assert_int_equal(verify(sig.rrs.rdata, set, &G.key[0], false), DNSSEC_EOK);
	rcu_read_unlock();
	assert_int_equal(made_by(&z), 2);

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
	assert_int_equal(made_by(&z), 3);

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
	assert_int_equal(made_by(&z), 5);

	/* Back to the same state: a hit. */
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
	rcu_read_unlock();
	assert_int_equal(made_by(&z), 5);

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
	assert_int_equal(made_by(&z), 2); /* Not the 300 s entry. */
	assert_int_equal(knot_rrsig_original_ttl(sig.rrs.rdata), 600);
	assert_int_equal(sig.ttl, 600);
	assert_int_equal(verify(sig.rrs.rdata, b, &G.key[0], false), DNSSEC_EOK);
	assert_int_equal(sign_locked(&z, b, &sig), KNOT_EOK);
	assert_int_equal(made_by(&z), 2);
	rcu_read_unlock();

	knot_rrset_free(a, NULL);
	knot_rrset_free(b, NULL);
	zone_clear(&z);
}

static void sign_ok(zone_t *z, const knot_rrset_t *set, knot_rrset_t *sig)
{
	rcu_read_lock();
	assert_int_equal(sign_locked(z, set, sig), KNOT_EOK);
	rcu_read_unlock();
}

/* A zone whose SOA is signed by the Ed25519 key (fast signing). */
static void zone_init_fast(zone_t *z)
{
	memset(z, 0, sizeof(*z));
	dnskeys(&z->dnskey, 3, 1);
	add_apex_sig_alg(&z->rrsig, KNOT_RRTYPE_SOA, ALG_FAST, G.key[3].tag,
	                 INCEPTION, EXPIRATION);
	z->zk.rrsig = &z->rrsig;
	z->zk.dnskey = &z->dnskey;
	const char *err = NULL;
	z->signer = mxf_signer_new(G.zone, G.dir, NULL, &err);
	assert_non_null(z->signer);
}

/* MX at owner number \a i (names of equal size: entries of equal size). */
static knot_rrset_t *owner_mx(const char *prefix, int i)
{
	char owner[64];
	(void)snprintf(owner, sizeof(owner), "%s%06d.sign.test.", prefix, i);
	return mx_set(owner, 300);
}

/* Signs owner \a i of \a prefix; returns the result code. */
static int sign_owner(zone_t *z, const char *prefix, int i)
{
	knot_rrset_t *set = owner_mx(prefix, i);
	knot_rrset_t sig;
	rcu_read_lock();
	int ret = sign_locked(z, set, &sig);
	if (ret == KNOT_EOK) {
		assert_int_equal(sig.rrs.count, 1);
		assert_ptr_equal(sig.owner, set->owner);
	}
	rcu_read_unlock();
	knot_rrset_free(set, NULL);
	return ret;
}

/*** The cache's state, read from its internals. ***/

typedef struct {
	size_t budget;       /* Current bound in bytes. */
	size_t used;         /* Bytes accounted (entries and index). */
	size_t entries;      /* Signed RRsets cached. */
	size_t signers;      /* Zones that have a signer. */
	uint64_t evicted;    /* Entries evicted for room (not by a state change). */
	uint64_t limited;    /* Signatures refused by the rate cap. */
	uint64_t key_loads;  /* Private keys read from key stores (attempts). */
} mxf_sigcache_stats_t;

static mxf_sigcache_stats_t stats(void)
{
	pthread_mutex_lock(&C.lock);
	budget_update();
	mxf_sigcache_stats_t st = {
		.budget = C.budget,
		.used = C.used,
		.entries = C.live,
		.signers = C.signers,
		.evicted = C.evicted,
		.limited = C.limited,
		.key_loads = atomic_load(&C.key_loads),
	};
	pthread_mutex_unlock(&C.lock);
	return st;
}

/* Bytes of the cache a signer's entries hold. */
static size_t mxf_signer_cached(const mxf_signer_t *s)
{
	pthread_mutex_lock(&C.lock);
	size_t used = s->used;
	pthread_mutex_unlock(&C.lock);
	return used;
}

/* The cache's limits from now on (NULL: the defaults), for every signer. */
static void mxf_sigcache_set_limits(const mxf_sigcache_limits_t *limits)
{
	static const mxf_sigcache_limits_t defaults = {
		MXF_SIGCACHE_BASE, MXF_SIGCACHE_PER_ZONE, MXF_SIGCACHE_RATE, MXF_SIGCACHE_BURST
	};
	pthread_mutex_lock(&C.lock);
	C.limits = (limits != NULL) ? *limits : defaults;
	budget_update();
	pthread_mutex_unlock(&C.lock);
}

static void test_any_type(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);

	/* The apex NSEC with MX in its bitmap (what the denial change signs):
	 * next name a.sign.test., types NS SOA MX RRSIG NSEC DNSKEY. */
	knot_dname_t *apex = knot_dname_from_str_alloc("sign.test.");
	knot_rrset_t *nsec = knot_rrset_new(apex, KNOT_RRTYPE_NSEC, KNOT_CLASS_IN, 60, NULL);
	knot_dname_free(apex, NULL);
	assert_non_null(nsec);
	uint8_t rd[64];
	assert_non_null(knot_dname_from_str(rd, "a.sign.test.", KNOT_DNAME_MAXLEN));
	size_t n = knot_dname_size(rd);
	const uint8_t bitmap[] = { 0, 7, 0x22, 0x01, 0, 0, 0, 0x03, 0x80 };
	memcpy(rd + n, bitmap, sizeof(bitmap));
	assert_int_equal(knot_rrset_add_rdata(nsec, rd, (uint16_t)(n + sizeof(bitmap)), NULL),
	                 KNOT_EOK);
	knot_rrset_t *mx = mx_set("sign.test.", 60);

	knot_rrset_t sig, again;
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, nsec, &sig), KNOT_EOK);
	check_header(sig.rrs.rdata, nsec, G.key[0].tag, INCEPTION, EXPIRATION);
	assert_int_equal(knot_rrsig_type_covered(sig.rrs.rdata), KNOT_RRTYPE_NSEC);
	assert_int_equal(verify(sig.rrs.rdata, nsec, &G.key[0], false), DNSSEC_EOK);
	/* The MX at the same owner, TTL and state: another entry. */
	assert_int_equal(sign_locked(&z, mx, &again), KNOT_EOK);
	assert_ptr_not_equal(again.rrs.rdata, sig.rrs.rdata);
	assert_int_equal(knot_rrsig_type_covered(again.rrs.rdata), KNOT_RRTYPE_MX);
	assert_int_equal(verify(again.rrs.rdata, mx, &G.key[0], false), DNSSEC_EOK);
	assert_int_equal(made_by(&z), 2);
	assert_int_equal(sign_locked(&z, nsec, &again), KNOT_EOK);
	assert_ptr_equal(again.rrs.rdata, sig.rrs.rdata);
	rcu_read_unlock();
	assert_int_equal(made_by(&z), 2);

	knot_rrset_free(mx, NULL);
	knot_rrset_free(nsec, NULL);
	zone_clear(&z);
}

/* Every part of the key makes its own entry; none of them is mistaken for
 * another (in the collision build all hash alike). */
static void test_key_parts(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	knot_rrset_t *v[6];
	v[0] = mx_set("mail.sign.test.", 300);
	v[1] = mx_set("mail.sign.test.", 301);                 /* TTL */
	v[2] = mx_set("mail.sign.test.", 300);                 /* one rdata byte */
	v[2]->rrs.rdata->data[1] ^= 1;
	v[3] = mx_set("mail.sign.test.", 300);                 /* class */
	v[3]->rclass = KNOT_CLASS_CH;
	v[4] = mx_set("mail.sign.test.", 300);                 /* type */
	v[4]->type = KNOT_RRTYPE_KX;
	v[5] = mx_set("maim.sign.test.", 300);                 /* owner */
	knot_rrset_t *spelled = mx_set("MAIL.sign.TEST.", 300); /* same as v[0] */

	const knot_rdata_t *got[6];
	knot_rrset_t sig;
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 6; i++) {
			rcu_read_lock();
			assert_int_equal(sign_locked(&z, v[i], &sig), KNOT_EOK);
			assert_int_equal(knot_rrsig_type_covered(sig.rrs.rdata), v[i]->type);
			assert_int_equal(knot_rrsig_original_ttl(sig.rrs.rdata), v[i]->ttl);
			assert_int_equal(sig.rclass, v[i]->rclass);
			if (v[i]->rclass == KNOT_CLASS_IN) {
				assert_int_equal(verify(sig.rrs.rdata, v[i], &G.key[0], false),
				                 DNSSEC_EOK);
			}
			if (round == 0) {
				got[i] = sig.rrs.rdata;
				for (int j = 0; j < i; j++) {
					assert_ptr_not_equal(got[i], got[j]);
				}
			} else {
				assert_ptr_equal(got[i], sig.rrs.rdata);
			}
			rcu_read_unlock();
		}
		assert_int_equal(made_by(&z), 6);
	}
	sign_ok(&z, spelled, &sig);
	assert_int_equal(made_by(&z), 6);
	assert_int_equal(stats().entries, 6);

	for (int i = 0; i < 6; i++) {
		knot_rrset_free(v[i], NULL);
	}
	knot_rrset_free(spelled, NULL);
	zone_clear(&z);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* MANY_OWNERS owners each signed once, then all served from the cache. */
static void test_many_owners(void **state)
{
	zone_t z;
	zone_init_fast(&z);
	double t0 = now_s();
	for (int i = 0; i < MANY_OWNERS; i++) {
		assert_int_equal(sign_owner(&z, "o", i), KNOT_EOK);
	}
	double t1 = now_s();
	assert_int_equal(made_by(&z), MANY_OWNERS);
	mxf_sigcache_stats_t st = stats();
	assert_int_equal(st.entries, MANY_OWNERS);
	assert_true(st.used <= st.budget);
	assert_int_equal(st.evicted, 0);

	for (int i = MANY_OWNERS - 1; i >= 0; i--) {
		assert_int_equal(sign_owner(&z, "o", i), KNOT_EOK);
	}
	double t2 = now_s();
	assert_int_equal(made_by(&z), MANY_OWNERS);

	/* A sample of them verifies, with the owner each was asked for. */
	for (int i = 0; i < MANY_OWNERS; i += MANY_OWNERS / 50) {
		knot_rrset_t *set = owner_mx("o", i);
		knot_rrset_t sig;
		rcu_read_lock();
		assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
		assert_int_equal(verify(sig.rrs.rdata, set, &G.key[3], false), DNSSEC_EOK);
		rcu_read_unlock();
		knot_rrset_free(set, NULL);
	}
	assert_int_equal(made_by(&z), MANY_OWNERS);
	print_message("%d owners: signed in %.2f s, all hits in %.2f s; cache %zu bytes "
	              "(%zu per entry, index included), budget %zu\n", MANY_OWNERS,
	              t1 - t0, t2 - t1, st.used, st.used / st.entries, st.budget);
	zone_clear(&z);
}

/* Re-signing or a key roll drops the zone's entries at once. */
static void test_flush_on_state_change(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	for (int i = 0; i < 30; i++) {
		assert_int_equal(sign_owner(&z, "f", i), KNOT_EOK);
	}
	size_t one = mxf_signer_cached(z.signer) / 30;
	assert_int_equal(mxf_signer_cached(z.signer), 30 * one);

	for (int change = 0; change < 2; change++) {
		knot_rdataset_clear(&z.rrsig, NULL);
		uint16_t tag = G.key[change].tag; /* Re-signed, then rolled to key[1]. */
		add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, tag, INCEPTION + 10 + change,
		             EXPIRATION + 10 + change);
		uint64_t before = made_by(&z);
		assert_int_equal(sign_owner(&z, "f", 0), KNOT_EOK);
		assert_int_equal(mxf_signer_cached(z.signer), one); /* The others went. */
		assert_int_equal(stats().entries, 1);
		for (int round = 0; round < 2; round++) {
			for (int i = 0; i < 30; i++) {
				assert_int_equal(sign_owner(&z, "f", i), KNOT_EOK);
			}
		}
		assert_int_equal(made_by(&z), before + 30);
		assert_int_equal(mxf_signer_cached(z.signer), 30 * one);
	}
	zone_clear(&z);
}

/* Private keys are read when the signing state changes, never per RRset. */
static void test_keys_loaded_once(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	uint64_t loads = stats().key_loads;
	for (int i = 0; i < 20; i++) {
		assert_int_equal(sign_owner(&z, "k", i), KNOT_EOK);
	}
	assert_int_equal(stats().key_loads, loads + 1);

	/* Re-signed with the same key: nothing read. */
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION + 1, EXPIRATION + 1);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(sign_owner(&z, "k", i), KNOT_EOK);
	}
	assert_int_equal(stats().key_loads, loads + 1);

	/* Both keys sign the SOA: key[1] is read once. */
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[1].tag, INCEPTION + 1, EXPIRATION + 1);
	for (int i = 0; i < 20; i++) {
		knot_rrset_t *set = owner_mx("k", i);
		knot_rrset_t sig;
		rcu_read_lock();
		assert_int_equal(sign_locked(&z, set, &sig), KNOT_EOK);
		assert_int_equal(sig.rrs.count, 2);
		rcu_read_unlock();
		knot_rrset_free(set, NULL);
	}
	assert_int_equal(stats().key_loads, loads + 2);

	/* A published key without its private key: one attempt, then the
	 * failure is remembered (RETRY_MS) instead of read again. */
	dnskeys(&z.dnskey, 2, 1);
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[2].tag, INCEPTION + 2, EXPIRATION + 2);
	uint64_t failed = stats().key_loads;
	for (int i = 0; i < 20; i++) {
		assert_true(sign_owner(&z, "k", i) < 0);
	}
	assert_int_equal(stats().key_loads, failed + 1);
	zone_clear(&z);
}

static int dnskey_reads;

static const knot_rdataset_t *read_dnskey(void *data)
{
	dnskey_reads++;
	return &((zone_t *)data)->dnskey;
}

/* Without a DNSKEY set up front, the signer asks for it only when the
 * zone's signing state changes. */
static void test_dnskey_on_demand(void **state)
{
	zone_t z;
	zone_init(&z, G.dir);
	z.zk.dnskey = NULL;
	z.zk.get_dnskey = read_dnskey;
	z.zk.get_data = &z;
	dnskey_reads = 0;
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 10; i++) {
			assert_int_equal(sign_owner(&z, "d", i), KNOT_EOK);
		}
	}
	assert_int_equal(dnskey_reads, 1);
	knot_rdataset_clear(&z.rrsig, NULL);
	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[1].tag, INCEPTION + 3, EXPIRATION + 3);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(sign_owner(&z, "d", i), KNOT_EOK);
	}
	assert_int_equal(dnskey_reads, 2);
	assert_int_equal(made_by(&z), 20);
	zone_clear(&z);
}

/* Entry and index bytes of one cached RRset, from a fresh cache. */
static void measure(size_t *entry, size_t *index)
{
	zone_t z;
	zone_init_fast(&z);
	assert_int_equal(sign_owner(&z, "m", 0), KNOT_EOK);
	*entry = mxf_signer_cached(z.signer);
	*index = stats().used - *entry;
	zone_clear(&z);
}

/* One zone past the budget: it evicts its own entries, at most `burst`
 * of them (rate 0), then KNOT_ELIMIT; used never exceeds the budget. */
static void test_budget_reached(void **state)
{
	size_t one, index;
	measure(&one, &index);
	mxf_sigcache_limits_t lim = {
		.base = index + 20 * one + one / 2, .per_zone = 0, .rate = 0, .burst = 5
	};
	mxf_sigcache_set_limits(&lim);
	zone_t z;
	zone_init_fast(&z);
	mxf_sigcache_stats_t st0 = stats();
	for (int i = 0; i < 20; i++) {
		assert_int_equal(sign_owner(&z, "b", i), KNOT_EOK);
	}
	assert_int_equal(stats().evicted, st0.evicted);
	for (int i = 20; i < 25; i++) {
		assert_int_equal(sign_owner(&z, "b", i), KNOT_EOK);
		assert_true(stats().used <= stats().budget);
	}
	mxf_sigcache_stats_t st = stats();
	assert_int_equal(st.evicted, st0.evicted + 5);
	assert_int_equal(st.entries, 20);
	assert_int_equal(sign_owner(&z, "b", 25), KNOT_ELIMIT);
	assert_int_equal(stats().limited, st0.limited + 1);
	uint64_t made = made_by(&z);
	assert_int_equal(made, 25);
	/* What is cached is still served; nothing was signed past the cap. */
	for (int i = 5; i < 25; i++) {
		assert_int_equal(sign_owner(&z, "b", i), KNOT_EOK);
	}
	assert_int_equal(made_by(&z), made);
	assert_true(stats().used <= stats().budget);
	zone_clear(&z);
	mxf_sigcache_set_limits(NULL);
}

/* Room comes from the largest zone only while it holds more than the zone
 * asking would: a small zone keeps its entries against a large one, and
 * two zones that both want more end up with equal shares. */
static void test_fairness(void **state)
{
	size_t one, index;
	measure(&one, &index);
	mxf_sigcache_limits_t lim = {
		.base = index + 40 * one + one / 2, .per_zone = 0, .rate = 0, .burst = 10000
	};
	mxf_sigcache_set_limits(&lim);
	zone_t a, b;
	zone_init_fast(&a);
	zone_init_fast(&b);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(sign_owner(&a, "a", i), KNOT_EOK);
	}
	assert_int_equal(mxf_signer_cached(a.signer), 40 * one);

	/* B takes its 10 from A, the larger. */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(sign_owner(&b, "b", i), KNOT_EOK);
	}
	assert_int_equal(mxf_signer_cached(b.signer), 10 * one);
	assert_int_equal(mxf_signer_cached(a.signer), 30 * one);

	/* A keeps missing: it evicts its own entries, never B's. */
	for (int i = 100; i < 300; i++) {
		assert_int_equal(sign_owner(&a, "a", i), KNOT_EOK);
	}
	assert_int_equal(mxf_signer_cached(a.signer), 30 * one);
	uint64_t made = made_by(&b);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(sign_owner(&b, "b", i), KNOT_EOK);
	}
	assert_int_equal(made_by(&b), made);

	/* B wants 40 as well: it grows until both hold about as much. */
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 40; i++) {
			assert_int_equal(sign_owner(&b, "b", i), KNOT_EOK);
		}
	}
	size_t ca = mxf_signer_cached(a.signer), cb = mxf_signer_cached(b.signer);
	print_message("fairness: A %zu entries, B %zu entries (budget %zu entries)\n",
	              ca / one, cb / one, (size_t)40);
	assert_true(ca + cb <= 40 * one);
	assert_true(ca >= 19 * one && cb >= 19 * one);
	assert_true(stats().used <= stats().budget);
	zone_clear(&a);
	zone_clear(&b);
	mxf_sigcache_set_limits(NULL);
}

/* A freed zone's entries leave the index at once; their memory stays
 * accounted until the next miss hands it to call_rcu(); the last signer's
 * free empties the cache. */
static void test_unload(void **state)
{
	zone_t a, b;
	zone_init_fast(&a);
	zone_init_fast(&b);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(sign_owner(&a, "u", i), KNOT_EOK);
	}
	assert_int_equal(sign_owner(&b, "u", 0), KNOT_EOK);
	size_t one = mxf_signer_cached(b.signer);
	mxf_sigcache_stats_t st = stats();
	assert_int_equal(st.entries, 11);
	assert_int_equal(st.signers, 2);

	zone_clear(&a);
	mxf_sigcache_stats_t after = stats();
	assert_int_equal(after.entries, 1);
	assert_int_equal(after.signers, 1);
	assert_int_equal(after.used, st.used);
	assert_int_equal(after.budget, st.budget - MXF_SIGCACHE_PER_ZONE);

	assert_int_equal(sign_owner(&b, "u", 1), KNOT_EOK);
	after = stats();
	assert_int_equal(after.entries, 2);
	assert_int_equal(after.used, st.used - 10 * one + one);
	zone_clear(&b);
	after = stats();
	assert_int_equal(after.entries, 0);
	assert_int_equal(after.used, 0);
	assert_int_equal(after.signers, 0);
}

/* Threads hitting, missing and evicting at once (for the sanitizers). */
#define THREADS		4
#define THREAD_OPS	3000
#define THREAD_OWNERS	300

typedef struct {
	zone_t *z[2];
	unsigned seed;
	_Atomic int *bad;
} thread_arg_t;

static void *thread_main(void *data)
{
	thread_arg_t *arg = data;
	rcu_register_thread();
	for (int n = 0; n < THREAD_OPS; n++) {
		zone_t *z = arg->z[rand_r(&arg->seed) % 2];
		knot_rrset_t *set = owner_mx("t", rand_r(&arg->seed) % THREAD_OWNERS);
		knot_rrset_t sig;
		rcu_read_lock();
		int ret = sign_counted(z, set, &sig);
		if (ret != KNOT_EOK || sig.rrs.count != 1 ||
		    knot_rrsig_key_tag(sig.rrs.rdata) != G.key[3].tag ||
		    (n % 100 == 0 && verify(sig.rrs.rdata, set, &G.key[3], false) != DNSSEC_EOK)) {
			atomic_fetch_add(arg->bad, 1);
		}
		rcu_read_unlock();
		knot_rrset_free(set, NULL);
	}
	rcu_unregister_thread();
	return NULL;
}

static void test_threads(void **state)
{
	size_t one, index;
	measure(&one, &index);
	mxf_sigcache_limits_t lim = {
		.base = index + 100 * one, .per_zone = 0, .rate = 0, .burst = 1000000
	};
	mxf_sigcache_set_limits(&lim);
	zone_t a, b;
	zone_init_fast(&a);
	zone_init_fast(&b);
	_Atomic int bad = 0;
	pthread_t tid[THREADS];
	thread_arg_t arg[THREADS];
	for (int i = 0; i < THREADS; i++) {
		arg[i] = (thread_arg_t) { .z = { &a, &b }, .seed = 7u * i + 1, .bad = &bad };
		assert_int_equal(pthread_create(&tid[i], NULL, thread_main, &arg[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	}
	assert_int_equal(atomic_load(&bad), 0);
	mxf_sigcache_stats_t st = stats();
	print_message("threads: %d x %d lookups, %llu + %llu signatures, %llu evictions\n",
	              THREADS, THREAD_OPS,
	              (unsigned long long)made_by(&a),
	              (unsigned long long)made_by(&b),
	              (unsigned long long)st.evicted);
	assert_true(st.used <= st.budget);
	zone_clear(&a);
	zone_clear(&b);
	mxf_sigcache_set_limits(NULL);
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
	assert_int_equal(made_by(&z), 0);

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

	/* At most MXF_MAX_KEYSTORES stores. */
	for (int i = 2; i < MXF_MAX_KEYSTORES; i++) {
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
	assert_int_equal(made_by(&z), 0);

	add_apex_sig(&z.rrsig, KNOT_RRTYPE_SOA, G.key[0].tag, INCEPTION, EXPIRATION);
	assert_true(mxf_zone_is_signed(&z.rrsig));

	/* Bad arguments. */
	assert_int_equal(mxf_signer_sign_info(NULL, set, &z.zk, &sig, NULL), KNOT_EINVAL);
	assert_int_equal(mxf_signer_sign_info(z.signer, NULL, &z.zk, &sig, NULL), KNOT_EINVAL);
	assert_int_equal(mxf_signer_sign_info(z.signer, set, NULL, &sig, NULL), KNOT_EINVAL);

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
	assert_int_equal(made_by(&z), 2);

	/* Both hit, whatever the order. */
	rcu_read_lock();
	assert_int_equal(sign_locked(&z, nsec, &sig_nsec), KNOT_EOK);
	assert_int_equal(sign_locked(&z, mx, &sig_mx), KNOT_EOK);
	check_header(sig_mx.rrs.rdata, mx, G.key[0].tag, INCEPTION, EXPIRATION);
	rcu_read_unlock();
	assert_int_equal(made_by(&z), 2);

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
	assert_int_equal(made_by(&z), 3);

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
	gen_key(G.dir, &G.key[0], ALG);
	gen_key(G.dir, &G.key[1], ALG);
	gen_key(G.other_dir, &G.key[2], ALG);
	gen_key(G.dir, &G.key[3], ALG_FAST);
	for (int i = 0; i < 4; i++) {
		for (int j = 0; j < i; j++) {
			if (G.key[i].tag == G.key[j].tag) {
				return -1; /* 1 in ~10,000: key tags collide; rerun. */
			}
		}
	}
	return 0;
}

static int group_teardown(void **state)
{
	rcu_barrier();
	for (int i = 0; i < 4; i++) {
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
		cmocka_unit_test(test_any_type),
		cmocka_unit_test(test_key_parts),
		cmocka_unit_test(test_many_owners),
		cmocka_unit_test(test_flush_on_state_change),
		cmocka_unit_test(test_keys_loaded_once),
		cmocka_unit_test(test_dnskey_on_demand),
		cmocka_unit_test(test_budget_reached),
		cmocka_unit_test(test_fairness),
		cmocka_unit_test(test_unload),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_missing_private_key),
		cmocka_unit_test(test_keystore_order),
		cmocka_unit_test(test_unsigned_zone),
		cmocka_unit_test(test_denial_record),
	};
	return cmocka_run_group_tests_name("sign", tests, group_setup, group_teardown);
}
