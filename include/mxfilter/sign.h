/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief Signatures for enforced MX RRsets in signed zones.
 *
 * Knot's module API gives a module a signing context whose clock and key
 * set are fixed when the module loads, so signatures made through it would
 * expire and miss key rollovers. The signer instead follows what the zone
 * itself publishes: it signs with the keys, algorithm and validity period of
 * the zone's own RRSIG over its SOA (which Knot's automatic signing keeps
 * fresh), taking the private keys from the zone's PEM key store. When Knot
 * re-signs the zone or rolls a key, the SOA signature changes and the next
 * enforced answer is signed anew.
 *
 * Signed RRsets are cached per owner, type, TTL and rdata in a small
 * direct-mapped table per zone (MXF_SIGNER_SLOTS entries for MX, one more for
 * the zone's apex NSEC/NSEC3): lookups are lock-free under RCU (the
 * liburcu flavour knotd links; knotd answers queries inside
 * rcu_read_lock()), misses sign under the signer's mutex and retire the
 * replaced entry with call_rcu().
 */

#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <libknot/libknot.h>

/*! Cached signed MX RRsets per zone (memory bound: slots + 1 for the apex
 *  denial record, x one RRSIG set and the signed rdata). */
#define MXF_SIGNER_SLOTS	64

/*! PEM key stores a signer searches (Knot 3.5: a policy may name several). */
#define MXF_SIGNER_KEYSTORES	8

typedef struct mxf_signer mxf_signer_t;

/*! What the zone publishes at its apex (shallow views into zone data). */
typedef struct {
	const knot_rdataset_t *rrsig;  /*!< Apex RRSIGs; those over SOA are used. */
	const knot_rdataset_t *dnskey; /*!< Apex DNSKEY set. */
} mxf_zone_keys_t;

/*!
 * \brief Creates a signer for \a zone reading private keys from the PEM
 *        key store directory \a keystore_dir.
 *
 * \param err  On error, set to a static reason.
 */
mxf_signer_t *mxf_signer_new(const knot_dname_t *zone, const char *keystore_dir,
                             const char **err);

/*!
 * \brief Adds the PEM key store directory \a keystore_dir, searched for a
 *        private key after the ones before it (in Knot's order).
 *
 * \retval KNOT_EOK     Added.
 * \retval KNOT_ELIMIT  Already MXF_SIGNER_KEYSTORES stores.
 * \retval <0           Other error (no memory, bad arguments).
 */
int mxf_signer_add_keystore(mxf_signer_t *signer, const char *keystore_dir);

/*! \brief Frees the signer (no reader may use it any more). */
void mxf_signer_free(mxf_signer_t *signer);

/*! \brief Whether the apex RRSIGs include one over SOA (the zone is signed). */
bool mxf_zone_is_signed(const knot_rdataset_t *apex_rrsig);

/*!
 * \brief Gets the RRSIGs of \a set: an enforced MX RRset owned in the zone,
 *        or the zone's apex NSEC/NSEC3 record listing MX.
 *
 * Must be called inside an RCU read-side critical section; \a rrsig points
 * to cached memory that stays valid until that section ends. The RRSIG
 * owner is \a set's owner.
 *
 * \retval KNOT_EOK      rrsig filled.
 * \retval KNOT_ENOENT   The zone publishes no usable signature over SOA.
 * \retval <0            Signing failed (no private key, crypto error, ...).
 */
int mxf_signer_sign(mxf_signer_t *signer, const knot_rrset_t *set,
                    const mxf_zone_keys_t *zk, knot_rrset_t *rrsig);

/*! \brief Signatures made so far (cache misses), for tests and counters. */
uint64_t mxf_signer_signatures(const mxf_signer_t *signer);
