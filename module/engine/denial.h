/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief Denial records that agree with a synthesized apex MX.
 *
 * In a signed zone without MX at its apex, the module answers an apex MX
 * query with the filtering set (synthesize: on), while the zone's apex NSEC
 * (or the NSEC3 record of the apex's hash) says in its type bitmap that the
 * apex holds no MX. A validating resolver that reuses cached denial records
 * (RFC 8198) would then answer MX with NODATA itself, and a sender with no
 * MX delivers to the name's address (RFC 5321 implicit MX), unfiltered.
 *
 * So in every response of such a zone that carries the apex's denial record
 * the record gains MX in its bitmap, and its RRSIGs are replaced by ones
 * made over the edited record (the caller's signing callback, the zone's
 * keys). The apex's record is recognised without hashing: it is the only
 * NSEC/NSEC3 record of a zone whose bitmap lists SOA, owned by the apex
 * (NSEC) or by a name one label below it (NSEC3).
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libknot/libknot.h>

#include "writer.h"

/*! At most this many bytes more in a bitmap with one type added. */
#define MXF_BITMAP_GROWTH	34

/*! Apex denial entries handled in one response (knotd writes at most one). */
#define MXF_DENIAL_MAX		4

/*!
 * \brief Whether a type bitmap (RFC 4034, 4.1.2) is well formed: windows in
 *        increasing order, each of 1 to 32 bytes, filling \a len exactly.
 */
bool mxf_bitmap_valid(const uint8_t *bitmap, size_t len);

/*! \brief Whether well-formed \a bitmap lists \a type. */
bool mxf_bitmap_has(const uint8_t *bitmap, size_t len, uint16_t type);

/*!
 * \brief Writes \a bitmap with \a type added to \a out.
 *
 * \param out      At least len + MXF_BITMAP_GROWTH bytes (not overlapping).
 * \param out_len  Length written; equal to \a len when the type was listed
 *                 already or fits in its window's last byte.
 *
 * \retval KNOT_EOK   Written (the same bytes if the type was listed).
 * \retval KNOT_EMALF The bitmap is not well formed.
 */
int mxf_bitmap_add(const uint8_t *bitmap, size_t len, uint16_t type,
                   uint8_t *out, size_t *out_len);

/*!
 * \brief Offset of the type bitmap in an NSEC or NSEC3 rdata.
 *
 * \retval KNOT_EOK   \a offset set (the bitmap is the rest of the rdata).
 * \retval KNOT_EMALF Not a well-formed rdata of \a type.
 */
int mxf_denial_bitmap(uint16_t type, const knot_rdata_t *rd, size_t *offset);

/*!
 * \brief Finds the apex denial entries of a response that lack \a type: the
 *        apex's NSEC, or the NSEC3 of the apex's hash, of \a zone
 *        (lower-case) that does not list \a type in every rdata.
 *
 * Looks at the ANSWER and AUTHORITY sections (a query of type NSEC puts the
 * record in the answer, every proof in the authority).
 *
 * \param idx  Filled with up to \a max entry indexes.
 * \return     Number of entries found (at most \a max).
 */
size_t mxf_denial_find(const knot_pkt_t *pkt, const knot_dname_t *zone, uint16_t type,
                       uint16_t *idx, size_t max);

/*! What mxf_denial_rewrite() needs (lives on the caller's stack). */
typedef struct {
	uint16_t type;      /*!< The type added (KNOT_RRTYPE_MX). */
	mxf_sign_cb sign;   /*!< RRSIGs of an edited record (required). */
	void *sign_data;
} mxf_denial_ctx_t;

/*!
 * \brief Replaces the entries \a idx (from mxf_denial_find()) by copies
 *        listing ctx->type, and the RRSIGs over each by ctx->sign's.
 *
 * The RRSIGs over an edited record are those in its section covering its
 * type at its owner: the first is replaced in place, the others dropped; if
 * there is none, the new RRSIGs follow the record. Every other entry stays
 * as it was (mxf_write_replace(): in place when the sizes agree, as they do
 * for a Knot-signed apex record, whose bitmap already reaches past MX, and
 * signatures made with the zone's own keys).
 *
 * \retval KNOT_EOK     Done.
 * \retval KNOT_ESPACE  The edited response does not fit; the packet ends at
 *                      the last RRset written and holds none of those
 *                      entries (nor their RRSIGs) in their original form.
 * \retval <0           Signing or another error: the caller must not send
 *                      the packet (fail closed).
 */
int mxf_denial_rewrite(knot_pkt_t *pkt, const mxf_denial_ctx_t *ctx,
                       const uint16_t *idx, size_t count);
