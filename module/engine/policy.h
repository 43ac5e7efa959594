/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief Filtering policy: the configured exchange set and options, parsed
 *        (engine-internal; include/mxfilter/conf.h has the configuration).
 *
 * A policy is immutable once built. Zones whose policy settings are
 * identical share one policy through the registry, whatever mod-mxfilter id
 * they come from (two ids with the same settings share too):
 * mxf_policy_acquire() parses only the first time a given configuration is
 * seen, later calls take a reference.
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <libknot/libknot.h>

#include "mxfilter/conf.h"

/*! One exchange of the filtering set. */
typedef struct {
	uint16_t pref;
	uint16_t size;               /*!< Wire size of name. */
	const knot_dname_t *name;    /*!< Lower-case, points into the policy's rdata. */
} mxf_exchange_t;

/*! Parsed, immutable policy. */
typedef struct mxf_policy {
	mxf_mode_t mode;
	mxf_scope_t scope;
	bool synthesize;
	mxf_nullmx_t null_mx;
	bool ttl_set;
	uint32_t ttl;
	uint32_t log_interval;
	mxf_transfer_t transfer;

	uint16_t min_pref;           /*!< Lowest filtering preference (risk threshold). */
	uint16_t count;              /*!< Number of exchanges. */
	uint64_t pref_bits;          /*!< Bit (pref % 64) set for each exchange: a
	                                  record whose bit is clear is legacy. */
	mxf_exchange_t ex[MXF_MAX_EXCHANGES]; /*!< Sorted as in the rdataset. */
	knot_rdataset_t rrs;         /*!< The filtering set as MX rdata, canonical order. */
	struct mxf_image *image;     /*!< The set's wire form (writer.h, W1), or NULL. */
} mxf_policy_t;

/*!
 * \brief Builds a policy (not shared) from \a conf.
 *
 * \param err  On error, set to a static reason.
 *
 * \return New policy, or NULL (err set).
 */
mxf_policy_t *mxf_policy_new(const mxf_conf_t *conf, const char **err);

/*! \brief Frees a policy made by mxf_policy_new(). */
void mxf_policy_free(mxf_policy_t *policy);

/*!
 * \brief Returns the shared policy for \a conf, building it on first use.
 *
 * Thread-safe; meant for module load, not for the query path.
 */
const mxf_policy_t *mxf_policy_acquire(const mxf_conf_t *conf, const char **err);

/*! \brief Drops a reference taken by mxf_policy_acquire(). */
void mxf_policy_release(const mxf_policy_t *policy);

/*! \brief References held on a shared policy (1 right after it was built). */
size_t mxf_policy_refs(const mxf_policy_t *policy);

/*! \brief Whether \a rrs is byte for byte the policy's set (canonical order,
 *         lower-case names): the common compliant case, one memcmp. */
static inline bool mxf_policy_is_rrs(const mxf_policy_t *policy,
                                     const knot_rdataset_t *rrs)
{
	return rrs->count == policy->rrs.count && rrs->size == policy->rrs.size &&
	       memcmp(rrs->rdata, policy->rrs.rdata, rrs->size) == 0;
}

/*! \brief Whether \a rr is an RRset of the policy's own rdata (written by
 *         mxf_write_set()). */
static inline bool mxf_is_own_set(const mxf_policy_t *policy, const knot_rrset_t *rr)
{
	return rr->rrs.rdata == policy->rrs.rdata;
}

/*! \brief TTL of the filtering set replacing an RRset of TTL \a ttl. */
static inline uint32_t mxf_policy_ttl(const mxf_policy_t *policy, uint32_t ttl)
{
	return policy->ttl_set ? policy->ttl : ttl;
}
