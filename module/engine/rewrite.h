/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief MX classification and response rewriting.
 *
 * libknot can only append to a packet, so enforcing the filtering set means
 * rebuilding what was already written. mxf_process() is the one place that
 * does it; the invariants it keeps are listed in rewrite.c and checked by the
 * unit tests and the fuzzer.
 */

#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <libknot/libknot.h>

#include "mxfilter/policy.h"

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

/*!
 * Signs an enforced RRset: fills \a rrsig (memory owned by the callee, valid
 * while the packet is built). Returns KNOT_EOK or an error (fail closed).
 */
typedef int (*mxf_sign_cb)(void *data, const knot_rrset_t *set, knot_rrset_t *rrsig);

/*! Per-call context (lives on the caller's stack). */
typedef struct {
	const mxf_policy_t *policy;
	const knot_dname_t *zone;  /*!< Zone apex, lower-case. */
	mxf_legacy_cb on_legacy;   /*!< Optional. */
	mxf_legacy_set_cb on_legacy_set; /*!< Optional (NULL: every record is reported). */
	/*! Optional: each filtering exchange that an owner's non-compliant MX
	 *  RRset without legacy records lacks (a partial set, or an empty
	 *  RRset given to mxf_report()), after its legacy records. */
	mxf_legacy_cb on_missing;
	void *cb_data;
	mxf_sign_cb sign;          /*!< Optional: RRSIGs for each enforced RRset. */
	void *sign_data;
	bool general_only;         /*!< Tests: no shortcut for the usual packet shape. */
} mxf_ctx_t;

/*! Outcome of one mxf_process() call. */
typedef struct {
	uint16_t enforced;   /*!< MX RRsets replaced by the filtering set. */
	uint16_t compliant;  /*!< Zone MX RRsets already compliant. */
	uint16_t nullmx;     /*!< Null MX RRsets kept. */
	uint16_t blocked[2]; /*!< Legacy records removed, by risk. */
	uint16_t served;     /*!< Legacy records served (audit / out of scope). */
	uint16_t glue;       /*!< Additional records of blocked exchangers removed. */
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
 * \brief Appends the filtering set owned by \a owner to the current section.
 *
 * \param hint  Compression hint for the owner (KNOT_COMPR_HINT_QNAME when
 *              the owner is the QNAME, to keep the query's spelling).
 * \param flags KNOT_PF_* flags; KNOT_PF_FREE is refused (the rdata is shared).
 */
int mxf_put_set(knot_pkt_t *pkt, const mxf_policy_t *policy,
                const knot_dname_t *owner, uint32_t ttl, uint16_t hint,
                uint16_t flags);

/*!
 * \brief Appends \a rr, an MX RRset whose rdata equals the policy's set byte
 *        for byte (a compliant zone RRset), from the set's wire image.
 *
 * The packet then holds exactly what knot_pkt_put(pkt, hint, rr, flags)
 * would have produced, \a rr itself included (its rdata and additional
 * pointers). Where that cannot be guaranteed nothing is written.
 *
 * \return True if written.
 */
bool mxf_put_verbatim(knot_pkt_t *pkt, const mxf_policy_t *policy,
                      const knot_rrset_t *rr, uint16_t hint, uint16_t flags);

/*!
 * \brief Appends the RRSIGs of the RRset just written (the last one in the
 *        packet) through ctx->sign; nothing when ctx->sign is NULL.
 */
int mxf_put_rrsig(knot_pkt_t *pkt, const mxf_ctx_t *ctx, uint16_t flags);

/*! \brief Whether \a rr is an RRset put by mxf_put_set(). */
static inline bool mxf_is_own_set(const mxf_policy_t *policy, const knot_rrset_t *rr)
{
	return rr->rrs.rdata == policy->rrs.rdata;
}

/*!
 * \brief Enforces the policy on a response packet.
 *
 * Classifies every MX RRset owned in the zone, reports each legacy record
 * through the callback and, where the policy says so, replaces the RRset by
 * the filtering set (followed by its RRSIGs when ctx->sign is set), drops
 * the RRSIGs that covered the old RRset and the additional records of
 * blocked exchangers. Works on a packet at any stage of
 * construction (sections up to pkt->current); a packet without MX is not
 * touched and nothing is allocated.
 *
 * \retval KNOT_EOK     Done (possibly nothing to do).
 * \retval KNOT_ESPACE  The enforced answer does not fit; the packet holds the
 *                      records before the first replaced one, TC is set when
 *                      allowed, and no legacy MX.
 * \retval <0           Other error; the packet holds no legacy MX either, but
 *                      the caller must not send it as a complete answer.
 *
 * In audit mode the packet is never changed, whatever the outcome.
 */
int mxf_process(knot_pkt_t *pkt, const mxf_ctx_t *ctx, mxf_result_t *res);

/*! One packet entry to replace, for mxf_pkt_replace(). */
typedef struct {
	uint16_t idx;             /*!< Index of the entry in pkt->rr[]. */
	knot_rrset_t rr;          /*!< Written in its place; an empty RRset
	                               (knot_rrset_init_empty()) drops the entry. */
	bool owned;               /*!< rr (owner and rdata) was allocated from the
	                               packet's memory context and is handed over:
	                               freed with the packet once written, freed
	                               by the call otherwise. */
	const knot_rrset_t *sig;  /*!< Optional: written right after rr (its
	                               RRSIGs), memory owned by the caller. */
} mxf_subst_t;

/*!
 * \brief Replaces or drops whole entries of a response packet.
 *
 * The same rebuild as mxf_process() (invariants I1-I8 of rewrite.c): the
 * packet is cut back to the first entry in \a subst and everything from
 * there is written again in its original order, each listed entry as its
 * replacement (with the entry's write flags, KNOT_PF_FREE as \a owned
 * says). Works at any stage of construction; every later section is begun
 * again up to the current one. When every replacement has the wire size of
 * its entry (same owner, type, record count and rdata lengths, the same
 * names inside) and the entries were written verbatim, the wire is patched
 * in place instead (P1-P3 of rewrite.c), with the same result.
 *
 * \param rebuild_only  Tests: always rebuild.
 *
 * \retval KNOT_EOK     Done.
 * \retval KNOT_EDENIED A TSIG follows the first change (nothing changed).
 * \retval KNOT_ESPACE  The rebuilt packet does not fit (TC set unless the
 *                      entries were written with KNOT_PF_NOTRUNC).
 * \retval <0           Other error.
 *
 * On error the packet ends at the last RRset written: an entry listed here
 * is never written back in its original form. Owned replacements are
 * consumed whatever the outcome.
 */
int mxf_pkt_replace(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count,
                    bool rebuild_only);

/*!
 * \brief Whether \a pkt still holds an MX RRset that the policy would replace.
 *
 * Read-only check used as a last line of defence (the END stage).
 */
bool mxf_pkt_has_leak(const knot_pkt_t *pkt, const mxf_ctx_t *ctx);

/*! \brief Index of the first RRset mxf_pkt_has_leak() objects to, or -1. */
int mxf_pkt_leak(const knot_pkt_t *pkt, const mxf_ctx_t *ctx);
