/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief Audit trail: rate limiting of log lines and their format.
 *
 * The limiter is a fixed table of slots shared by every thread and every
 * zone; a record's key is a seeded hash of (zone, owner, preference,
 * exchange). Each slot is updated with compare-and-swap only: no lock, no
 * allocation and no system call on the query path.
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <libknot/libknot.h>

#include "mxfilter/rewrite.h"

typedef struct mxf_limiter mxf_limiter_t;

/*! \brief Creates a limiter of 2^\a slots_log2 slots (NULL on error). */
mxf_limiter_t *mxf_limiter_new(unsigned slots_log2);

/*! \brief Frees a limiter. */
void mxf_limiter_free(mxf_limiter_t *lim);

/*! \brief Seeded 64-bit key of a record (names compared case-insensitively). */
uint64_t mxf_limiter_key(const mxf_limiter_t *lim, const knot_dname_t *zone,
                         const knot_dname_t *owner, uint16_t pref,
                         const knot_dname_t *exchange);

/*!
 * \brief Decides whether an occurrence of \a key is logged now.
 *
 * \param now         Seconds from mxf_now().
 * \param interval    log-interval in seconds (> 0).
 * \param suppressed  When true is returned: occurrences not logged since
 *                    the previous line of this key.
 *
 * \return true if the caller should log a line.
 */
bool mxf_limiter_hit(mxf_limiter_t *lim, uint64_t key, uint32_t now,
                     uint32_t interval, uint32_t *suppressed);

/*! \brief mxf_limiter_hit() for \a weight occurrences at once (>= 1): a
 *         line carries the \a weight - 1 others in \a suppressed. */
bool mxf_limiter_hit_n(mxf_limiter_t *lim, uint64_t key, uint32_t now,
                       uint32_t interval, uint32_t weight, uint32_t *suppressed);

/*!
 * \brief Which legacy records of one answer get a log line.
 *
 * Two levels of keys share the limiter. An RRset holding legacy records is
 * checked first, as a whole (owner, its exact rdata, action): while the
 * same RRset was seen within the interval, its records are only counted —
 * one hash per RRset instead of one per record on the busy path. When the
 * RRset's key opens, each record is checked with its own key (owner,
 * preference, exchange, action) and carries the occurrences the RRset's key
 * held back, so a record is still logged at most once per interval and its
 * "suppressed N" still counts every occurrence not logged.
 *
 * Owners are absolute names, so the zone is not part of a key, except for
 * wildcard answers: those are keyed by the zone and "*", so that random
 * query names cannot flood the log.
 *
 * Lives on the caller's stack for one query.
 */
typedef struct {
	mxf_limiter_t *lim;
	const knot_dname_t *zone;
	uint32_t interval; /*!< 0: every record gets a line. */
	uint32_t now;      /*!< Clock read once per query; 0 until needed. */
	uint32_t carry;    /*!< Occurrences held back by the current RRset's key. */
} mxf_audit_t;

/*! \brief Prepares \a a for one query (\a lim may be NULL: every line). */
void mxf_audit_init(mxf_audit_t *a, mxf_limiter_t *lim, const knot_dname_t *zone,
                    uint32_t interval);

/*! \brief RRset level: false if its records get no line this time. */
bool mxf_audit_set(mxf_audit_t *a, const knot_rrset_t *rr, bool expanded,
                   mxf_action_t action);

/*! \brief Record level (after mxf_audit_set() said true for its RRset):
 *         true if \a rec gets a line, with \a suppressed for it. */
bool mxf_audit_record(mxf_audit_t *a, const mxf_legacy_t *rec, uint32_t *suppressed);

/*! \brief Coarse monotonic clock in seconds, never 0 (vDSO, no syscall). */
uint32_t mxf_now(void);

/*! \brief Action word in the log line: blocked, audit, observed. */
const char *mxf_action_str(mxf_action_t action);

/*! \brief Risk word in the log line: bypass, fallback. */
const char *mxf_risk_str(mxf_risk_t risk);

/*!
 * \brief Formats the audit line (without Knot's zone/module prefix).
 *
 * "legacy MX blocked, owner X., preference 5, exchange Y., risk bypass,
 *  client 192.0.2.7, suppressed 0". Names are printed lower-case.
 *
 * \return Length written (truncated to \a size - 1 at most).
 */
size_t mxf_audit_format(char *buf, size_t size, const mxf_legacy_t *rec,
                        const struct sockaddr_storage *client,
                        uint32_t suppressed);

/*! \brief Formats an address without port ("-" if unknown). */
void mxf_addr_str(const struct sockaddr_storage *addr, char *buf, size_t size);
