/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief MX classification, reports, and what an answer's MX RRsets become.
 *
 * mxf_process() classifies every MX RRset of a response, reports its legacy
 * records and marks what the writer (writer.h, with its invariants) keeps,
 * replaces by the filtering set or drops.
 */

#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <libknot/libknot.h>

#include "policy.h"
#include "writer.h"

/*! Risk of a legacy record. */
typedef enum {
	MXF_RISK_BYPASS = 0,   /*!< Preference <= lowest filtering preference. */
	MXF_RISK_FALLBACK = 1, /*!< Reachable when the filter is slow. */
} mxf_risk_t;

/*! What happened to a legacy record. */
typedef enum {
	MXF_ACTION_BLOCKED = 0, /*!< Enforce mode: removed from the answer. */
	MXF_ACTION_AUDIT,       /*!< Audit mode: served, logged. */
	MXF_ACTION_OBSERVED,    /*!< Outside scope: served, logged. */
} mxf_action_t;

/*! Verdict on one MX RRset. */
typedef enum {
	MXF_SET_COMPLIANT = 0, /*!< Exactly the filtering set. */
	MXF_SET_NULLMX,        /*!< Lone "0 ." (RFC 7505). */
	MXF_SET_LEGACY,        /*!< Anything else. */
} mxf_verdict_t;

/*! One legacy record, as reported to the caller (for mxf_ctx_t.on_missing:
 *  one filtering exchange the owner lacks). */
typedef struct {
	const knot_dname_t *owner;
	const knot_dname_t *exchange; /*!< NULL if the rdata is malformed. */
	uint16_t pref;
	mxf_risk_t risk;
	mxf_action_t action;
	bool expanded; /*!< Owner made for this answer (KNOT_PF_FREE: Knot copies
	                    an owner only to expand a wildcard). */
} mxf_legacy_t;

/*! Called once per legacy record found. */
typedef void (*mxf_legacy_cb)(const mxf_legacy_t *rec, void *data);

/*!
 * Called once per RRset holding legacy records or lacking filtering
 * exchanges, before they are reported; false skips the mxf_legacy_cb calls
 * of its records (they are counted in mxf_result_t all the same). expanded
 * as in mxf_legacy_t.
 */
typedef bool (*mxf_legacy_set_cb)(const knot_rrset_t *rr, bool expanded,
                                  mxf_action_t action, void *data);

/*! Per-call context (lives on the caller's stack). */
typedef struct {
	const mxf_policy_t *policy;
	const knot_dname_t *zone;  /*!< Zone apex, lower-case. */
	size_t zone_size;          /*!< Its wire size, if known (0: computed). */
	mxf_legacy_cb on_legacy;   /*!< Optional. */
	mxf_legacy_set_cb on_legacy_set; /*!< Optional (NULL: every record is reported). */
	/*! Optional: each filtering exchange that an owner's non-compliant MX
	 *  RRset without legacy records lacks (a partial set, or an empty
	 *  RRset given to mxf_report()), after its legacy records. */
	mxf_legacy_cb on_missing;
	void *cb_data;
	mxf_sign_cb sign;          /*!< Optional: RRSIGs for each enforced RRset. */
	void *sign_data;
} mxf_ctx_t;

/*! What one mxf_process() call counts (the zone's counters). */
typedef struct {
	uint16_t enforced;   /*!< MX RRsets replaced by the filtering set. */
	uint16_t compliant;  /*!< Zone MX RRsets already compliant. */
	uint16_t blocked[2]; /*!< Legacy records removed, by risk. */
	uint16_t served;     /*!< Legacy records served (audit / out of scope). */
} mxf_result_t;

/*! \brief Risk of a legacy record with preference \a pref. */
static inline mxf_risk_t mxf_risk(const mxf_policy_t *policy, uint16_t pref)
{
	return pref <= policy->min_pref ? MXF_RISK_BYPASS : MXF_RISK_FALLBACK;
}

/*! \brief Classifies one MX rdataset against the policy. */
mxf_verdict_t mxf_classify(const mxf_policy_t *policy, const knot_rdataset_t *rrs);

/*!
 * \brief Whether one MX rdata is legacy, i.e. not a filtering exchange.
 *
 * A malformed rdata is legacy.
 */
bool mxf_rdata_is_legacy(const mxf_policy_t *policy, const knot_rdata_t *rd);

/*!
 * \brief Reports the legacy records of one MX RRset and counts them in \a res.
 *
 * For callers that decide on an RRset before it is written (the apex
 * answer built at PREANSWER). An empty \a rr (owner set, no records) stands
 * for an owner without MX: every filtering exchange is reported missing.
 */
void mxf_report(const mxf_ctx_t *ctx, const knot_rrset_t *rr, bool expanded,
                mxf_action_t action, mxf_result_t *res);

/*!
 * \brief Enforces the policy on a response packet.
 *
 * Classifies every MX RRset owned in the zone, reports each legacy record
 * through the callback and, where the policy says so, replaces the RRset by
 * the filtering set (followed by its RRSIGs when ctx->sign is set), drops
 * the RRSIGs that covered the old RRset and the additional records of
 * blocked exchangers, through the writer (writer.h). Works on a packet at
 * any stage of construction (sections up to pkt->current); a packet without
 * MX is not touched and nothing is allocated.
 *
 * \retval KNOT_EOK     Done (possibly nothing to do).
 * \retval KNOT_ESPACE  The enforced answer does not fit; the packet holds the
 *                      records before the first replaced one, TC is set when
 *                      allowed, and no legacy MX.
 * \retval KNOT_EDENIED The packet holds a TSIG (knotd never: writer.h, T);
 *                      cut at the first replaced RRset.
 * \retval <0           Other error; the packet holds no legacy MX either, but
 *                      the caller must not send it as a complete answer.
 *
 * In audit mode the packet is never changed, whatever the outcome.
 */
int mxf_process(knot_pkt_t *pkt, const mxf_ctx_t *ctx, mxf_result_t *res);

/*!
 * \brief Index of the first RRset of \a pkt that the policy would still
 *        replace, or -1: a read-only check, the last line of defence (the
 *        END stage).
 */
int mxf_pkt_leak(const knot_pkt_t *pkt, const mxf_ctx_t *ctx);
