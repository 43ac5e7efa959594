/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief The one place for libknot calls whose form differs between the
 *        Knot DNS series the module builds against (3.2, 3.4, 3.5).
 *
 * The engine depends on libknot only, so the helpers here use libknot alone.
 * Module-API differences (knotd_qdata_zone_rrset() since Knot 3.4) are
 * feature-tested by module/meson.build (HAVE_KNOTD_QDATA_ZONE_RRSET) and
 * decided in module/mxfilter.c. libknot 3.5 changed nothing the engine
 * calls; docs/knot-series.md lists what changed between the series.
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
