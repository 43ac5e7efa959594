/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief The packet writer: every way the module writes into a response.
 *
 * The rest of the engine decides what an answer becomes; this is the only
 * code that changes a packet: it appends the filtering set (and its RRSIGs),
 * cuts a packet back and writes its tail again with entries replaced or
 * dropped, patches denial records in place, and sets the AA and TC bits.
 * libknot only appends (knot_pkt_put()), and no Knot module removes a
 * record once written, so the invariants below are the contract of
 * everything here; writer.c keeps them, the unit tests (test_writer.c,
 * test_rewrite.c, test_denial.c) and the fuzzer check them.
 *
 * What a packet is when the writer gets it (knotd, every series):
 *
 *  Q   At most one question, at offset 12 (qname_size 0: none). A cut
 *      resets the compression suffix to the QNAME, or to none without a
 *      question (libknot then compresses nothing).
 *  T   No TSIG: knotd signs a response after the ANSWER, AUTHORITY and
 *      ADDITIONAL stages (process_query_sign_response()). A rebuild of a
 *      packet holding one would invalidate it: the writer refuses
 *      (KNOT_EDENIED) and cuts the packet at the first entry it was to
 *      change (I7).
 *  F   An entry flagged KNOT_PF_FREE owns its owner and rdata in the
 *      packet's memory. For an MX RRset in the answer that happens only for
 *      an expanded wildcard with no compression hint (knotd's
 *      process_query_put_rr(): process_query.c 938 in v3.2.6, 1013 in
 *      v3.4.6, 992 in v3.5.6), which is how the engine tells an expanded
 *      owner (mxf_legacy_t.expanded). The writer frees a dropped entry
 *      with the packet's memory, hands a written one back to the packet,
 *      and never flags the policy's rdata, shared by every query.
 *
 * Rebuild (mxf_write_rebuild(), mxf_write_tail()): cut the packet back to
 * the first entry that changes and write everything from there again, in
 * the original order, with knot_pkt_put():
 *
 *  I1  Only whole RRsets are cut: the wire is truncated at rr_info[cut].pos.
 *      Bytes before the cut, the compression pointers in them and the
 *      compression hints in rr_info[0..cut) remain valid because nothing
 *      before the cut moves.
 *  I2  The compression suffix hint (pkt->compr.suffix) may point past the
 *      cut; it is reset as Q says, so no pointer written after the cut can
 *      target rewritten bytes.
 *  I3  Section bookkeeping is recomputed at the cut: sections[].pos/count of
 *      the cut's section and of later ones, pkt->current, and the wire
 *      counts (ANCOUNT, NSCOUNT, ARCOUNT) from the records kept before the
 *      cut; knot_pkt_put() adds the rest as it writes, every section begun
 *      again in order up to the one the caller was in.
 *  I4  pkt->reserved is untouched: space reserved for OPT and TSIG stays
 *      reserved, so the server can still finish the packet.
 *  I5  A KNOT_PF_FREE entry that is dropped is freed (F); a replacement
 *      carries KNOT_PF_FREE only when it owns a private copy of its rdata.
 *  I6  pkt->opt_rr is cleared when the OPT RRset is cut, and set again by
 *      knot_pkt_put() when it is written back.
 *  I7  Nothing marked for removal is ever written back, and on failure the
 *      packet ends at the last RRset written: whatever the outcome, no
 *      entry the caller replaces or drops remains in its original form.
 *  I8  An owner written after the cut as a pointer to the owner of an
 *      earlier entry after the cut (an RRSIG after its RRset) points to that
 *      entry's owner as written again, so the rebuilt tail is compressed as
 *      the original was. Any other owner keeps its pointer to a name before
 *      the cut, or points to the question when it is the QNAME.
 *  I9  Entries written again are written without answer rotation (libknot
 *      rotates a set only as knotd first writes it; the order of the
 *      records in an RRset means nothing), so with "answer-rotation" the
 *      rewritten tail is in canonical order.
 *
 * In place (mxf_write_replace(), when every replacement has the wire size
 * of what it replaces; otherwise the rebuild):
 *
 *  P1  Each record of the replaced entry is found on the wire, after its
 *      owner, with exactly the original rdata bytes (written verbatim: no
 *      compression inside, no rotation); the replacement has as many
 *      records, each of the same rdata length, the same owner and type.
 *  P2  The names inside the rdata (by the type's descriptor) are the same
 *      bytes in both, so no compression pointer into them can change
 *      meaning; only other rdata bytes and the TTL (as knot_pkt_put() would
 *      write it) are overwritten. Owners, sizes, counts and compression
 *      hints stay as they are.
 *  P3  rr[] then holds the replacement (KNOT_PF_FREE as the caller owns
 *      it), the original freed if it was the packet's: the wire holds what
 *      rr[] says, as after a rebuild. Every entry is checked before the
 *      first byte changes: all in place, or the rebuild.
 *
 * The filtering set (mxf_write_set(), mxf_write_verbatim()) is written from
 * the policy's wire image when the result is guaranteed to be what
 * knot_pkt_put() would write, by knot_pkt_put() otherwise (the image saves
 * about 1,000 instructions per enforced answer, docs/performance.md):
 *
 *  W1  The image is the set's wire form as knot_pkt_put() itself wrote it
 *      once per policy, with the list of what depends on its position:
 *      each record's owner (a pointer to the caller's hint) and TTL, the
 *      compression pointers between exchanges, and the compression hints
 *      and suffix knot_pkt_put() leaves for the names written after it.
 *  W2  It is used only when libknot would write exactly those bytes: the
 *      owner is a pointer (a hint is given), the compression suffix is the
 *      QNAME and its last label differs from the first exchange's (libknot
 *      would not point into the question), no KNOT_PF_CHECKDUP, and the
 *      image fits the space left (reserve kept) below the reach of
 *      compression pointers. Then the rr, rr_info, section and wire counts
 *      and the compression state are what knot_pkt_put() leaves
 *      (test_writer.c compares both on every shape it builds).
 *  W3  libknot alone grows the rr arrays: when they are full, an empty
 *      RRset is put first, which reserves an entry and writes nothing
 *      (knot_pkt_put_rotate(): pkt_rr_array_alloc() comes first, an RRset
 *      without records adds nothing; the same in v3.2.6, v3.4.6, v3.5.6;
 *      test_writer.c checks it against the libknot it runs with).
 *
 * Header bits: AA only on an answer the engine gave itself (mxf_write_aa()),
 * TC only where the enforced answer does not fit over UDP (knot_pkt_put()
 * on KNOT_ESPACE, mxf_write_tc()).
 */

#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <libknot/libknot.h>

#include "policy.h"
#include "wire.h"

/*!
 * Signs an RRset: fills \a rrsig (memory owned by the callee, valid while
 * the packet is built). Returns KNOT_EOK or an error (fail closed).
 */
typedef int (*mxf_sign_cb)(void *data, const knot_rrset_t *set, knot_rrset_t *rrsig);

/*! The filtering set as the writer puts it: the policy's set, signed by
 *  \a sign when set. */
typedef struct {
	const mxf_policy_t *policy;
	mxf_sign_cb sign;   /*!< Optional: RRSIGs for each set written. */
	void *sign_data;
} mxf_set_writer_t;

/*! What becomes of a packet entry in mxf_write_rebuild() (act[]). */
enum {
	MXF_W_KEEP = 0,    /*!< Written again as it was. */
	MXF_W_SET,         /*!< The filtering set at its owner (TTL per policy). */
	MXF_W_DROP,        /*!< Removed. */
	MXF_W_SUBST,       /*!< A caller's replacement (mxf_subst_t). */
	MXF_W_SEEN = 0x80, /*!< Flag free for the caller (ignored here). */
};

/*! The action of an act[] byte, without MXF_W_SEEN. */
#define MXF_W_ACT(a)	((a) & 0x7f)

/*! One packet entry to replace (MXF_W_SUBST). */
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
 * \brief Appends the filtering set owned by \a owner to the current section.
 *
 * \param hint  Compression hint for the owner (KNOT_COMPR_HINT_QNAME when
 *              the owner is the QNAME, to keep the query's spelling).
 * \param flags KNOT_PF_* flags; KNOT_PF_FREE is refused (the rdata is shared).
 */
int mxf_write_set(knot_pkt_t *pkt, const mxf_policy_t *policy,
                  const knot_dname_t *owner, uint32_t ttl, uint16_t hint,
                  uint16_t flags);

/*!
 * \brief Appends \a rr, an MX RRset whose rdata equals the policy's set byte
 *        for byte (a compliant zone RRset), from the set's wire image.
 *
 * The packet then holds exactly what knot_pkt_put(pkt, hint, rr, flags)
 * would have produced, \a rr itself included (its rdata and additional
 * pointers: whether Knot may later follow that pointer is the caller's
 * concern). Where that cannot be guaranteed nothing is written.
 *
 * \return True if written.
 */
bool mxf_write_verbatim(knot_pkt_t *pkt, const mxf_policy_t *policy,
                        const knot_rrset_t *rr, uint16_t hint, uint16_t flags);

/*!
 * \brief Appends the RRSIGs of the RRset just written (the last one in the
 *        packet) through w->sign, its owner written as the RRset's was;
 *        nothing when w->sign is NULL.
 */
int mxf_write_rrsig(knot_pkt_t *pkt, const mxf_set_writer_t *w, uint16_t flags);

/*!
 * \brief Whether entry \a idx and everything after it can be replaced by a
 *        cut there (mxf_write_tail()): idx is the last entry of the section
 *        being written, or followed there only by an RRSIG over its type
 *        written with its owner pointer or at its owner (knotd's order
 *        with DO).
 */
static inline bool mxf_write_is_tail(const knot_pkt_t *pkt, uint16_t idx)
{
	/* In the section being written, which ends the packet. */
	uint16_t count = pkt->rrset_count;
	const knot_pktsection_t *sec = &pkt->sections[pkt->current];
	if (idx >= count || idx < sec->pos || sec->pos + sec->count != count) {
		return false;
	}
	if (idx + 1 == count) {
		return true;
	}
	/* knotd writes an RRset's RRSIG right after it, owned by a copy of its
	 * owner (or, for a wildcard reached through a CNAME, by the wildcard),
	 * with its owner's compression pointer. */
	const knot_rrset_t *rr = &pkt->rr[idx + 1];
	uint16_t ptr = pkt->rr_info[idx + 1].compress_ptr[KNOT_COMPR_HINT_OWNER];
	return idx + 2 == count && mxf_rrsig_covers(rr, pkt->rr[idx].type) &&
	       (knot_dname_is_case_equal(rr->owner, pkt->rr[idx].owner) ||
	        (ptr >= KNOT_WIRE_HEADER_SIZE &&
	         ptr == pkt->rr_info[idx].compress_ptr[KNOT_COMPR_HINT_OWNER]));
}

/*!
 * \brief Replaces entry \a idx (an MX RRset) and what follows it (its
 *        RRSIG) by the filtering set at idx's owner and its RRSIGs: a cut
 *        and an append, the rebuild's result for a tail that
 *        mxf_write_is_tail() accepts (\a idx must be one).
 *
 * \retval KNOT_EOK, KNOT_ESPACE (TC as knot_pkt_put() sets it), <0: as
 *         mxf_write_rebuild().
 */
int mxf_write_tail(knot_pkt_t *pkt, uint16_t idx, const mxf_set_writer_t *w);

/*!
 * \brief Rebuilds the packet from the first entry whose act[] is not
 *        MXF_W_KEEP (I1-I9): each entry written again, as its act says.
 *
 * \param act    One byte per entry (pkt->rrset_count).
 * \param subst  The replacements of the MXF_W_SUBST entries (an entry
 *               without one is dropped); owned ones are consumed only if
 *               written, the caller frees the rest (mxf_write_replace()
 *               does).
 * \param w      How to write MXF_W_SET entries (NULL: there are none).
 *
 * \retval KNOT_EOK     Done (also when nothing changes).
 * \retval KNOT_ESPACE  Does not fit; TC set unless the entry was written
 *                      with KNOT_PF_NOTRUNC.
 * \retval KNOT_EDENIED The packet holds a TSIG (T).
 * \retval <0           Other error.
 *
 * On error the packet ends at the last RRset written (I7).
 */
int mxf_write_rebuild(knot_pkt_t *pkt, const uint8_t *act, mxf_subst_t *subst,
                      uint16_t subst_count, const mxf_set_writer_t *w);

/*!
 * \brief Replaces or drops whole entries: in place when every replacement
 *        has the wire size of its entry (P1-P3), by mxf_write_rebuild()
 *        otherwise, with the same result.
 *
 * Owned replacements are consumed whatever the outcome. Return values as
 * mxf_write_rebuild(), KNOT_EINVAL for an index out of range (nothing
 * changed).
 */
int mxf_write_replace(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count);

/*!
 * \brief Fails closed: drops entry \a idx and everything after it (I5, I7),
 *        in the section of \a idx.
 */
void mxf_write_drop_from(knot_pkt_t *pkt, uint16_t idx);

/*! \brief Marks the answer authoritative (an answer given by the engine). */
static inline void mxf_write_aa(knot_pkt_t *pkt)
{
	knot_wire_set_aa(pkt->wire);
}

/*! \brief Sets TC: the answer does not fit, the client retries over TCP. */
static inline void mxf_write_tc(knot_pkt_t *pkt)
{
	knot_wire_set_tc(pkt->wire);
}

/*! \brief Index of the section holding entry \a idx, or -1. */
static inline int mxf_section_of(const knot_pkt_t *pkt, uint16_t idx)
{
	for (int s = KNOT_ANSWER; s <= KNOT_ADDITIONAL; s++) {
		const knot_pktsection_t *sec = &pkt->sections[s];
		if (idx >= sec->pos && idx < sec->pos + sec->count) {
			return s;
		}
	}
	return -1;
}

/*! \brief Builds the wire image of \a policy's set (W1): policy->image, or
 *         NULL when the set has none (then every put goes through libknot). */
int mxf_image_build(mxf_policy_t *policy);

/*! \brief Frees policy->image. */
void mxf_image_free(mxf_policy_t *policy);

/*!
 * \brief Appends \a rr (the policy's set, owned by rr->owner) from the image
 *        when W2 holds; mxf_write_set() and mxf_write_verbatim() use it.
 *
 * \return True if written; false if nothing was touched.
 */
bool mxf_image_put(knot_pkt_t *pkt, const mxf_policy_t *policy,
                   const knot_rrset_t *rr, uint16_t hint, uint16_t flags);
