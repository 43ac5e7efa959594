/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Engine-internal: what a zone holds (zone.c sets it up, stage.c answers
 * from it), and the lines both write.
 */

#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "mxfilter/engine.h"
#include "audit.h"
#include "policy.h"
#include "sign.h"

/* All a zone holds: the shared policy, a signer if Knot signs it, its part
 * of the audit limiter and a few flags read at load ("counters" is the
 * glue's, so ids that differ in nothing else share one policy). A few
 * dozen bytes: a server may hold 10^6 zones. */
struct mxf_zone {
	const knot_dname_t *name;   /* Knot's: alive at load and in queries. */
	const mxf_policy_t *policy;
	mxf_signer_t *signer;
	mxf_audit_zone_t audit;     /* The zone's part of the audit limiter. */
	uint16_t zone_size;         /* Wire size of the zone's name. */
	uint16_t prefix;            /* What Knot writes before a line's text. */
	bool signs;                 /* Knot signs the zone (dnssec-signing). */
	bool rotation;              /* Knot reorders RRsets per query. */
	bool counters;              /* The glue counts (counters: on). */
	uint8_t stages;             /* MXF_STAGE_* hooked (mxf_zone_ready()). */
};

/* Writes an audit line (legacy, missing, error) within Knot's 512-byte
 * line, at its level. */
void mxf_zone_line(const mxf_zone_t *zone, mxf_log_cb log, void *log_data,
                   const mxf_line_t *line);

/* Writes the lines of occurrences held by records of the zone gone quiet
 * (\a now 0: read the clock). */
void mxf_zone_flush(mxf_zone_t *zone, mxf_log_cb log, void *log_data, uint32_t now);

/* Writes a formatted line at \a level. */
__attribute__((format(printf, 4, 5)))
void mxf_zone_log(mxf_log_cb log, void *log_data, int level, const char *fmt, ...);
