/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief Signatures for enforced RRsets in signed zones, and their cache.
 *
 * Knot's module API gives a module a signing context whose clock and key
 * set are fixed when the module loads, so signatures made through it would
 * expire and miss key rollovers. The signer instead follows what the zone
 * itself publishes: it signs with the keys, algorithm and validity period of
 * the zone's own RRSIGs over its SOA (which Knot's automatic signing keeps
 * fresh), taking the private keys from the zone's PEM key store.
 *
 * The zone's *signing state* is the exact bytes of those SOA RRSIGs with the
 * private key of each; keys are loaded when the state changes, never per
 * RRset. Each signed RRset is kept in one server-wide cache, keyed exactly
 * by (signing state, owner, type, class, TTL, rdata), until the state
 * changes (Knot re-signed the zone or rolled a key: the zone's entries are
 * dropped at once) or the cache needs the room:
 *
 * - The cache holds at most MXF_SIGCACHE_BASE bytes plus
 *   MXF_SIGCACHE_PER_ZONE per signer (entries and index, allocator overhead
 *   included).
 * - When it is full, room comes from the zone that holds the most, as long
 *   as it holds more than the zone asking would: a zone can only take
 *   memory from zones larger than itself (max-min fair sharing), so every
 *   zone can keep at least its share (budget / signers, at least
 *   MXF_SIGCACHE_PER_ZONE) whatever the others do.
 * - A zone whose new signature can only be cached by evicting one of its own
 *   (its working set exceeds what it may hold) signs at most
 *   MXF_SIGCACHE_RATE such signatures per second (bucket depth
 *   MXF_SIGCACHE_BURST); past that mxf_signer_sign() fails with KNOT_ELIMIT
 *   and the caller answers SERVFAIL.
 *
 * Lookups take no lock: the index is published with RCU (the liburcu
 * flavour knotd links; knotd answers queries inside rcu_read_lock()) and
 * entries are freed after a grace period. A miss signs under the zone's
 * mutex; the cache's own mutex is held only to account, evict and insert.
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libknot/libknot.h>

#include "mxfilter/conf.h"

/*! Server-wide cache budget: bytes for all zones together ... */
#define MXF_SIGCACHE_BASE	(64u << 20)
/*! ... plus bytes per signed enrolled zone (each zone's minimum share). */
#define MXF_SIGCACHE_PER_ZONE	1024u
/*! Signatures per second and zone that evict the zone's own entries. */
#define MXF_SIGCACHE_RATE	100u
/*! Depth of that rate's bucket (signatures at once after a quiet time). */
#define MXF_SIGCACHE_BURST	100u

typedef struct mxf_signer mxf_signer_t;

/*! What the zone publishes at its apex (shallow views into zone data). */
typedef struct {
	const knot_rdataset_t *rrsig;  /*!< Apex RRSIGs; those over SOA are used. */
	const knot_rdataset_t *dnskey; /*!< Apex DNSKEY set, or NULL: */
	/*! Optional, when dnskey is NULL: reads the DNSKEY set, called only
	 *  when the zone's signing state changed (not for cached RRsets). */
	const knot_rdataset_t *(*get_dnskey)(void *data);
	void *get_data;                /*!< get_dnskey's argument. */
} mxf_zone_keys_t;

/*! Limits of the signature cache (see the file comment). */
typedef struct {
	size_t base;       /*!< Bytes for all zones together. */
	size_t per_zone;   /*!< Bytes more per signer. */
	uint32_t rate;     /*!< Self-evicting signatures per second and zone. */
	uint32_t burst;    /*!< Bucket depth of that rate. */
} mxf_sigcache_limits_t;

/*! What one mxf_signer_sign_info() call did. */
typedef struct {
	uint32_t signatures; /*!< RRSIGs made (0: served from the cache). */
} mxf_sign_info_t;

/*!
 * \brief Creates a signer for \a zone reading private keys from the PEM
 *        key store directory \a keystore_dir.
 *
 * \param limits  The server-wide cache's limits from now on, or NULL to
 *                keep them (MXF_SIGCACHE_* until given).
 * \param err     On error, set to a static reason.
 */
mxf_signer_t *mxf_signer_new(const knot_dname_t *zone, const char *keystore_dir,
                             const mxf_sigcache_limits_t *limits, const char **err);

/*!
 * \brief Adds the PEM key store directory \a keystore_dir, searched for a
 *        private key after the ones before it (in Knot's order).
 *
 * \retval KNOT_EOK     Added.
 * \retval KNOT_ELIMIT  Already MXF_MAX_KEYSTORES stores.
 * \retval <0           Other error (no memory, bad arguments).
 */
int mxf_signer_add_keystore(mxf_signer_t *signer, const char *keystore_dir);

/*!
 * \brief Frees the signer (no reader may use it any more).
 *
 * Must not be called inside an RCU read-side critical section. The last
 * signer's free also frees the cache and waits for its pending callbacks.
 */
void mxf_signer_free(mxf_signer_t *signer);

/*! \brief Whether the apex RRSIGs include one over SOA (the zone is signed). */
bool mxf_zone_is_signed(const knot_rdataset_t *apex_rrsig);

/*!
 * \brief Gets the RRSIGs of \a set, an RRset of any type owned in the zone,
 *        telling in \a info (may be NULL) what it did.
 *
 * One RRSIG per SOA signature of the zone, over \a set->type, with that
 * signature's algorithm, key tag, inception and expiration; labels from the
 * owner (a wildcard owner counts one label less), original TTL \a set->ttl.
 * The rdata is signed as given: canonical order and case are the caller's
 * (a libknot rdataset is in canonical order).
 *
 * Must be called inside an RCU read-side critical section by a registered
 * thread; \a rrsig points to cached memory that stays valid until that
 * section ends. The RRSIG owner is \a set's owner (its spelling kept).
 *
 * \retval KNOT_EOK      rrsig filled.
 * \retval KNOT_ENOENT   The zone publishes no signature over SOA.
 * \retval KNOT_ELIMIT   Not cached and over the zone's signing rate.
 * \retval <0            Signing failed (no private key, crypto error, ...).
 */
int mxf_signer_sign_info(mxf_signer_t *signer, const knot_rrset_t *set,
                         const mxf_zone_keys_t *zk, knot_rrset_t *rrsig,
                         mxf_sign_info_t *info);
