/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Engine-internal (not installed): the filtering set's wire image.
 *
 * Writing an RRset with knot_pkt_put() costs more than everything else in
 * an enforced answer: libknot walks the RRset's descriptor and compresses
 * every exchange label by label. The filtering set is the same in every
 * answer, and so is its wire form, up to a few position-dependent fields.
 * The image is that wire form, made once per policy by knot_pkt_put()
 * itself, with a list of what depends on the position:
 *
 *   - every record's owner, a compression pointer to the caller's hint;
 *   - every record's TTL;
 *   - the compression pointers between exchanges ("europe" pointing into
 *     "france.security-mail.net."), relative to where the image starts;
 *   - the compression hints and the compression suffix that knot_pkt_put()
 *     leaves behind for the names written after the set.
 *
 * mxf_image_put() copies the image and fixes those fields: the packet then
 * holds exactly the bytes and bookkeeping that knot_pkt_put() would have
 * produced. It applies only where that is guaranteed, and says no
 * otherwise (the caller then uses knot_pkt_put()):
 *
 *   - the owner is written as a pointer (a compression hint is given);
 *   - the compression suffix is the QNAME and its last label differs from
 *     the first exchange's, so libknot would not point into the question;
 *   - the image fits the space left and the rr arrays, and ends below the
 *     reach of compression pointers.
 *
 * tests/unit/test_rewrite.c compares both byte for byte.
 */

#pragma once

#include <stdbool.h>

#include <libknot/libknot.h>

#include "mxfilter/policy.h"

/*! \brief Builds the image of \a policy's set (policy->image, or NULL when
 *         the set has no image: then every put goes through libknot). */
int mxf_image_build(mxf_policy_t *policy);

/*! \brief Frees policy->image. */
void mxf_image_free(mxf_policy_t *policy);

/*!
 * \brief Appends \a rr (the policy's set, owned by rr->owner) from the image
 *        when the result is guaranteed to equal knot_pkt_put().
 *
 * Like knot_pkt_put(), it stores \a rr as given, additional (glue) pointer
 * included: whether Knot may later follow that pointer is the caller's
 * concern (a PREANSWER answer must not carry one, see module/mxfilter.c).
 *
 * \return True if written; false if nothing was touched.
 */
bool mxf_image_put(knot_pkt_t *pkt, const mxf_policy_t *policy,
                   const knot_rrset_t *rr, uint16_t hint, uint16_t flags);
