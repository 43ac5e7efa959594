/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief What the module reads of Knot's own configuration, beyond its
 *        module section: the one place that knows Knot's items, their
 *        values and how Knot itself reads them.
 *
 * Signing (the zone's dnssec-signing and dnssec-policy, the policy's key
 * stores with Knot 3.5's lists and ksk-only, database storage and kasp-db),
 * the server's answer-rotation, the zone's module references (another
 * module that signs answers, this instance's id) and the length of the
 * prefix Knot writes before a module's log line. docs/knot-series.md says
 * what differs between the series; tests/unit/test_knotconf.c runs this
 * file against a configuration shaped as each series answers it, and the
 * end-to-end tests (test_keystores.py, test_config.py) against the real
 * knotd.
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <knot/module.h>

#include "mxfilter/conf.h"

/*! Where the zone's private keys are, as Knot finds them. */
typedef struct {
	char *dir[MXF_MAX_KEYSTORES]; /*!< PEM key store directories, absolute,
	                                    in the order Knot searches them. */
	size_t count;
	const char *error;             /*!< Why the zone's keys cannot be read
	                                    (then count may be 0), or NULL. */
} mxf_knot_keys_t;

/*! What the zone's module references say (templates resolved). */
typedef struct {
	bool onlinesign; /*!< mod-onlinesign runs on the zone too. */
	size_t id_len;   /*!< Length of this instance's id, 0 without one (with
	                      two ids on one zone: the longer). */
} mxf_knot_modules_t;

/*! \brief Whether Knot signs the zone (dnssec-signing: on). */
bool mxf_knot_signs(knotd_mod_t *mod);

/*!
 * \brief The PEM key stores of the zone's policy, in Knot's search order.
 *
 * Knot's default store (PEM "keys") without a policy or a policy key store;
 * each directory found as Knot finds it ("config" relative to database
 * "kasp-db", itself relative to "storage"). The store Knot 3.5 generates
 * ZSKs in (the first that is not "ksk-only") must be PEM (keys->error
 * otherwise): the module signs with the key that signs the SOA; a PKCS #11
 * store may hold the KSK. Free with mxf_knot_keys_free().
 */
void mxf_knot_keystores(knotd_mod_t *mod, mxf_knot_keys_t *keys);

/*! \brief Frees the directories of mxf_knot_keystores(). */
void mxf_knot_keys_free(mxf_knot_keys_t *keys);

/*! \brief Whether the server reorders RRsets per query (answer-rotation). */
bool mxf_knot_rotation(knotd_mod_t *mod);

/*! \brief Reads the zone's module references. */
void mxf_knot_modules(knotd_mod_t *mod, mxf_knot_modules_t *out);

/*!
 * \brief Length of "[ZONE.] module 'mod-mxfilter/ID', ", which Knot writes
 *        before the text of each of this instance's log lines.
 */
uint16_t mxf_knot_line_prefix(knotd_mod_t *mod, size_t id_len);
