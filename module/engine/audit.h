/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief Audit trail: an exact rate limiter for log lines, and their format.
 *
 * Every line the module writes about a record (legacy MX, missing MX) or a
 * failure goes through one limiter shared by every zone and worker thread.
 * A record is logged at most once and at least once per log-interval, and
 * the occurrences not logged are counted exactly: lines + the sum of their
 * "suppressed" = occurrences (docs/log-format.md, "Rate limiting", states
 * the rule this implements). audit.c explains the design.
 *
 * Threads: mxf_audit_set(), mxf_audit_record(), mxf_audit_done(),
 * mxf_audit_full() and mxf_audit_error() look entries up without a lock:
 * they must run in a thread registered with the default liburcu flavour
 * (rcu_register_thread(), as knotd registers its workers) inside
 * rcu_read_lock() (knotd holds it while it processes a query). The others
 * may run in any thread outside a read-side critical section. The limiter
 * never writes a line from a thread of its own: Knot frees a zone's name
 * before it unloads the zone's module, so only a query of the zone or the
 * load of its module may safely write about it (mxf_audit_flush()).
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <libknot/libknot.h>

#include "rewrite.h"

/*! Memory the limiter may hold by default (entries and table): about four
 *  million records, two million legacy RRsets of two records (audit.c). */
#define MXF_LIMITER_MAX_BYTES	((size_t)1 << 30)

/*! Interval of the error lines, whatever log-interval says. */
#define MXF_ERROR_INTERVAL	60

/*! Largest RRset given an RRset-level entry (larger ones go record by record). */
#define MXF_AUDIT_SET_MAX	4096

typedef struct mxf_limiter mxf_limiter_t;
struct mxf_ent;

/*! What a line is about. */
typedef enum {
	MXF_LINE_LEGACY = 0, /*!< "legacy MX blocked|audit|observed" */
	MXF_LINE_MISSING,    /*!< "missing MX added|audit|observed" */
	MXF_LINE_ERROR,      /*!< "failed to enforce MX" */
} mxf_line_kind_t;

/*! One log line, as decided by the limiter. */
typedef struct {
	mxf_line_kind_t kind;
	mxf_action_t action;
	mxf_risk_t risk;
	uint16_t pref;
	const knot_dname_t *owner;
	const knot_dname_t *exchange; /*!< NULL: malformed rdata. */
	int error;                    /*!< MXF_LINE_ERROR: the reason (KNOT_E*). */
	uint32_t suppressed;
	/*! The query's client; NULL for the line of occurrences held by a
	 *  record gone quiet, written by mxf_audit_flush() ("client -"). */
	const struct sockaddr_storage *client;
} mxf_line_t;

/*! Writes a line (mxf_audit_flush()). */
typedef void (*mxf_emit_cb)(void *ctx, const mxf_line_t *line);

typedef struct {
	size_t max_bytes; /*!< Memory bound; 0: MXF_LIMITER_MAX_BYTES. */
	bool thread;      /*!< Run the periodic work (forget records gone quiet,
	                       queue the lines they hold) every second in a
	                       thread of the limiter's; false: nobody does. */
} mxf_limiter_opts_t;

typedef struct {
	size_t entries;   /*!< Live entries (records, RRsets, errors). */
	size_t bytes;     /*!< Memory held: entries and table (the bound's count). */
	size_t max_bytes;
	size_t slots;     /*!< Table size. */
} mxf_limiter_stats_t;

/*! \brief Creates a limiter (NULL on error, e.g. the thread cannot start). */
mxf_limiter_t *mxf_limiter_new(const mxf_limiter_opts_t *opts);

/*!
 * \brief Frees a limiter. Every zone must have been cleared and no thread
 *        may use it any more.
 */
void mxf_limiter_free(mxf_limiter_t *lim);

/*! \brief Current size of the limiter. */
void mxf_limiter_stats(mxf_limiter_t *lim, mxf_limiter_stats_t *st);

/*!
 * \brief One zone's part of the limiter, one per module instance (the
 *        engine's zone, zone.h, embeds it). Fields are private.
 *
 * Records are keyed by the zone's name, not by the instance: the instances
 * of one zone (a reload loads the new ones before it unloads the old) share
 * them, and an unloaded instance hands its records to the zone's newest.
 */
typedef struct mxf_audit_zone {
	mxf_limiter_t *lim;
	uint64_t name_hash;         /*!< The zone's name, hashed with the seed. */
	struct mxf_audit_zone *next; /*!< Registry chain. */
	struct mxf_ent *head;       /*!< Records whose entries this one keeps. */
	struct mxf_ent *due;        /*!< Quiet records with a line to write (atomic). */
} mxf_audit_zone_t;

/*! \brief Attaches an instance of zone \a name to \a lim. */
void mxf_audit_zone_init(mxf_audit_zone_t *z, mxf_limiter_t *lim, const knot_dname_t *name);

/*!
 * \brief Detaches an instance (at unload, when Knot has already freed the
 *        zone's name: no line can be written). Its records go to the newest
 *        other instance of the zone; without one (the zone is gone, or
 *        knotd stops), they are forgotten with what they hold.
 *
 * \return Occurrences forgotten (held, never logged).
 */
uint64_t mxf_audit_zone_clear(mxf_audit_zone_t *z);

/*! \brief Whether mxf_audit_flush() has lines to write for \a z (cheap). */
static inline bool mxf_audit_due(const mxf_audit_zone_t *z)
{
	return z->lim != NULL && __atomic_load_n(&z->due, __ATOMIC_RELAXED) != NULL;
}

/*!
 * \brief Writes, through \a emit (\a ctx its first argument), the line of
 *        each quiet record of this zone that holds occurrences not logged,
 *        from every instance of the zone. To be called where the zone's
 *        name is alive: a query of the zone, or the load of an instance.
 *
 * \return Lines written.
 */
size_t mxf_audit_flush(mxf_audit_zone_t *z, uint32_t now, mxf_emit_cb emit, void *ctx);

/*!
 * \brief Which records of one answer get a line (on the caller's stack for
 *        one query; fields are private).
 *
 * For each RRset that holds legacy records or lacks filtering exchangers:
 * mxf_audit_set(), then mxf_audit_record() for each record the engine
 * reports (only if mxf_audit_set() said true); mxf_audit_done() at the end.
 */
typedef struct {
	mxf_audit_zone_t *zone;
	uint32_t interval;        /*!< 0: every record gets a line. */
	uint32_t now;             /*!< Clock, read once per query; 0 until needed. */
	const knot_dname_t *owner; /*!< Owner logged for the current RRset. */
	struct mxf_ent *set;      /*!< RRset entry opened by this query. */
	struct mxf_ent *build;    /*!< RRset entry being made (not yet shared). */
	uint32_t weight;          /*!< Occurrences per record of the current RRset. */
	uint32_t min_until;       /*!< Earliest end of its records' intervals. */
	uint16_t next;            /*!< Next record of the RRset entry. */
	uint16_t cap;             /*!< Records the entry being made has room for. */
	bool full;                /*!< The memory bound was met. */
} mxf_audit_t;

/*! \brief Prepares \a a for one query (\a z NULL: every record gets a line). */
void mxf_audit_init(mxf_audit_t *a, mxf_audit_zone_t *z, uint32_t interval);

/*!
 * \brief RRset level: false if its records get no line this time (they are
 *        counted all the same).
 *
 * \param rr      The RRset as in the answer (its rdata identifies it).
 * \param owner   The owner to key and log its records by: the RRset's owner,
 *                or the wildcard's owner for an expanded wildcard.
 */
bool mxf_audit_set(mxf_audit_t *a, const knot_rrset_t *rr, const knot_dname_t *owner,
                   mxf_action_t action);

/*!
 * \brief Record level: true if \a rec gets a line now, described in \a line
 *        (client left NULL for the caller).
 *
 * \param kind  MXF_LINE_LEGACY or MXF_LINE_MISSING.
 */
bool mxf_audit_record(mxf_audit_t *a, const mxf_legacy_t *rec, mxf_line_kind_t kind,
                      mxf_line_t *line);

/*! \brief mxf_audit_done() when there is something to do. */
void mxf_audit_finish(mxf_audit_t *a);

/*! \brief End of the query's reports: shares the RRset entries it made. */
static inline void mxf_audit_done(mxf_audit_t *a)
{
	if (a->set != NULL || a->build != NULL) {
		mxf_audit_finish(a);
	}
}

/*!
 * \brief Whether the notice "limiter full" is due: true at most once per
 *        interval, after a record of this query found no room.
 */
bool mxf_audit_full(mxf_audit_t *a, mxf_limiter_stats_t *st);

/*!
 * \brief An answer of zone \a z failed (SERVFAIL) for \a owner: true if it
 *        gets an error line now, described in \a line.
 *
 * \param now  mxf_now() seconds, or 0 to read the clock.
 */
bool mxf_audit_error(mxf_audit_zone_t *z, const knot_dname_t *owner, int error,
                     uint32_t now, mxf_line_t *line);

/*! \brief Coarse monotonic clock in seconds, never 0 (vDSO, no syscall). */
uint32_t mxf_now(void);

/*! \brief Action word: blocked|audit|observed (legacy), added|audit|observed
 *         (missing). */
const char *mxf_action_str(mxf_line_kind_t kind, mxf_action_t action);

/*! \brief Risk word in the log line: bypass, fallback. */
const char *mxf_risk_str(mxf_risk_t risk);

/*!
 * \brief Formats a line (without Knot's level/zone/module prefix) in at most
 *        \a size - 1 characters, every field present.
 *
 * "legacy MX blocked, owner X., preference 5, exchange Y., risk bypass,
 *  client 192.0.2.7, suppressed 0". Names are printed lower-case; a name
 * that would not fit is shortened in the middle to "head...tail" (never
 * inside an escape), which no name's presentation form contains.
 *
 * \return Length written (at most \a size - 1).
 */
size_t mxf_line_format(char *buf, size_t size, const mxf_line_t *line);

/*! \brief Formats an address without port ("-" if unknown). */
void mxf_addr_str(const struct sockaddr_storage *addr, char *buf, size_t size);
