/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief The one place for calls whose form differs between Knot DNS 3.2
 *        (module ABI 400) and 3.4 (module ABI 600).
 *
 * The engine depends on libknot only, so the helpers here use libknot alone.
 * Module-API differences (knotd_qdata_zone_rrset() since ABI 600) are decided
 * in module/mxfilter.c with KNOTD_MOD_ABI_VERSION.
 */

#pragma once

#include <libknot/libknot.h>

/*!
 * \brief Next label of an uncompressed domain name (not a name in a packet).
 *
 * Do not call knot_wire_next_label(name, NULL): libknot 3.4 declares its wire
 * argument non-null (-Werror=nonnull) and asserts it; the 3.4 replacement,
 * knot_dname_next_label(), does not exist in 3.2.
 *
 * \param name  Uncompressed name, not the root.
 */
static inline const knot_dname_t *mxf_dname_next_label(const knot_dname_t *name)
{
	return name + name[0] + 1;
}
