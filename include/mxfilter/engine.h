/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief The engine as the Knot glue uses it: a zone, and one call per
 *        stage of Knot's query processing that says what to do.
 *
 * The engine decides and writes; the glue (module/mxfilter.c) reads the
 * configuration, registers the hooks mxf_zone_stages() asks for and the
 * counters, fills an mxf_query_t from Knot's query data, calls the stage,
 * counts what the engine counts (mxf_server_t.count), sets the rcode and
 * returns the Knot state for what the stage says. The engine writes its
 * lines through the glue's log callback (text and syslog level, for
 * knotd_mod_log()).
 *
 * The engine depends on libknot, libdnssec and liburcu only. Zone data
 * comes through mxf_server_t, which the glue implements with Knot's module
 * API; the engine never sees a knotd type. Threads: the stage calls run in
 * knotd's workers, inside rcu_read_lock() (as knotd runs every query);
 * mxf_zone_new() and mxf_zone_free() at module load and unload.
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <libknot/libknot.h>

#include "mxfilter/conf.h"

/*! Writes one line of text at a syslog level (LOG_ERR ... LOG_DEBUG). */
typedef void (*mxf_log_cb)(void *data, int level, const char *text);

/*** Zones. ***/

typedef struct mxf_zone mxf_zone_t;

/*! A zone as the module is configured for it. */
typedef struct {
	const knot_dname_t *name;     /*!< The zone's name, alive at load and
	                                   while the zone's queries run. */
	const mxf_conf_t *conf;       /*!< The module's section. */
	bool counters;                /*!< "counters: on": the glue counts. */
	bool signs;                   /*!< Knot signs the zone (dnssec-signing). */
	const char *const *keystores; /*!< If signs: the PEM key store
	                                   directories, in Knot's search order. */
	size_t keystore_count;
	const char *keystore_error;   /*!< If signs: why the zone's keys cannot
	                                   be read (no signer then), or NULL. */
	bool rotation;                /*!< Knot rotates RRsets (answer-rotation). */
	uint16_t line_prefix;         /*!< What Knot writes before each line of
	                                   the zone (its log line holds 512). */
	mxf_log_cb log;               /*!< Lines written at load. */
	void *log_data;
} mxf_zone_conf_t;

/*!
 * \brief Sets up the engine for one zone: its shared policy, its part of
 *        the audit limiter, a signer when Knot signs it. Writes, through
 *        conf->log, the lines of the zone's previous instance (a reload)
 *        and why the zone cannot be signed for.
 *
 * \param err  On failure, a short reason (static).
 * \return The zone, or NULL: then the glue must fail closed (mxf_unloaded()).
 */
mxf_zone_t *mxf_zone_new(const mxf_zone_conf_t *conf, const char **err);

/*! \brief Frees a zone (at unload; its name may already be freed). */
void mxf_zone_free(mxf_zone_t *zone);

/*! Stages a zone needs hooks on (mxf_zone_stages()). */
enum {
	MXF_STAGE_BEGIN     = 1 << 0, /*!< Transfers refused (transfer: refuse). */
	MXF_STAGE_PREANSWER = 1 << 1, /*!< MX answered before Knot writes it. */
	MXF_STAGE_ANSWER    = 1 << 2, /*!< MX and ANY answers as Knot wrote them. */
	MXF_STAGE_AUTHORITY = 1 << 3, /*!< Denial records (DNSSEC answers). */
	MXF_STAGE_END_MX    = 1 << 4, /*!< END: MX and ANY answers (leaks). */
	MXF_STAGE_END_XFR   = 1 << 5, /*!< END: served transfers (accounting). */
	MXF_STAGE_END_DO    = 1 << 6, /*!< END: DNSSEC answers (denial records). */
};

/*!
 * \brief The stages \a zone needs, from its configuration and signing state
 *        alone (Knot reloads a zone's contents without reloading its
 *        modules): the glue registers exactly these. A stage that nothing
 *        of the zone can reach has no hook, so costs its queries nothing.
 */
unsigned mxf_zone_stages(const mxf_zone_t *zone);

/*!
 * \brief The glue registered hooks on \a stages (all of mxf_zone_stages(),
 *        or, if a registration failed, those before it): the zone answers
 *        queries from now on. Writes "policy loaded" for a policy seen for
 *        the first time.
 */
void mxf_zone_ready(mxf_zone_t *zone, unsigned stages, mxf_log_cb log, void *log_data);

/*** Queries. ***/

struct mxf_query;

/*! What the engine asks of the server during a query: zone data, read by
 *  the glue through Knot's module API, the client, and the log. */
typedef struct {
	/*! The zone's RRset of \a type at the apex (empty when none). */
	knot_rrset_t (*apex)(void *data, uint16_t type);
	/*! The zone's RRset of \a type at \a name (KNOT_EOK, possibly
	 *  empty); NULL where the server gives modules no look below the
	 *  apex (Knot 3.2). */
	int (*rrset)(void *data, const knot_dname_t *name, uint16_t type,
	             knot_rrset_t *out);
	/*! The query's client. */
	const struct sockaddr_storage *(*client)(void *data);
	/*! Writes a line about the query's zone (\a log_data of the query). */
	mxf_log_cb log;
	/*! Adds \a n to value \a val (MXF_VAL_*) of the query's zone; called
	 *  only when the zone has "counters: on". */
	void (*count)(const struct mxf_query *q, unsigned val, uint32_t n);
} mxf_server_t;

/*! What a query is (the values of Knot's knotd_query_type_t, the same in
 *  every series: the glue copies Knot's and checks that at build time). */
typedef enum {
	MXF_QUERY_INVALID = 0,
	MXF_QUERY_NORMAL,
	MXF_QUERY_AXFR,
	MXF_QUERY_IXFR,
	MXF_QUERY_NOTIFY,
	MXF_QUERY_UPDATE,
} mxf_query_type_t;

/*! Knot's state at the hook, as far as the engine needs it. */
typedef enum {
	MXF_KNOT_BEGIN = 0, /*!< PREANSWER: nothing answered yet. */
	MXF_KNOT_NODATA,    /*!< ANSWER: Knot found no RRset of the type. */
	MXF_KNOT_DONE,      /*!< END: the last message of the response. */
	MXF_KNOT_OTHER,
} mxf_knot_state_t;

/*! One hook call (on the glue's stack). */
typedef struct mxf_query {
	knot_pkt_t *pkt;              /*!< The response being built. */
	const knot_pkt_t *query;      /*!< The query (its DO bit). */
	const knot_dname_t *name;     /*!< ANSWER: the name Knot answered for
	                                   (a CNAME chain's last). */
	const mxf_server_t *server;
	void *data;                   /*!< The server calls' first argument. */
	void *log_data;               /*!< The log's. */
	uint8_t type;                 /*!< mxf_query_type_t. */
	uint8_t state;                /*!< mxf_knot_state_t. */
	bool udp;
} mxf_query_t;

/*! What a stage says to do with the query. */
typedef enum {
	MXF_PASS = 0,      /*!< Go on as Knot would (the state unchanged). */
	MXF_HIT,           /*!< Answered: skip Knot's own answer. */
	MXF_TRUNC,         /*!< Does not fit over UDP: TC, the client retries. */
	MXF_SERVFAIL,      /*!< Fail closed (failed counted, error line written). */
	MXF_EMPTY_TC,      /*!< END: send an empty truncated answer instead. */
	MXF_REFUSED,       /*!< BEGIN: a transfer refused. */
} mxf_step_t;

/*! Counters (registered in this order; mxf_counters names them). */
enum {
	MXF_CTR_ENFORCED = 0,
	MXF_CTR_SYNTHESIZED,
	MXF_CTR_BLOCKED,     /*!< Split: bypass, fallback. */
	MXF_CTR_AUDITED,
	MXF_CTR_COMPLIANT,
	MXF_CTR_FAILED,
	MXF_CTR_TRANSFERS,   /*!< Split: allowed, refused. */
	MXF_CTR_COUNT,
};

/*! A counter: its name and the names of its parts (NULL: one part). */
typedef struct {
	const char *name;
	uint32_t parts;
	const char *const *part;
} mxf_counter_t;

extern const mxf_counter_t mxf_counters[MXF_CTR_COUNT];

/*! The values a stage counts: a counter and one of its parts each. */
enum {
	MXF_VAL_ENFORCED = 0,
	MXF_VAL_SYNTHESIZED,
	MXF_VAL_BYPASS,
	MXF_VAL_FALLBACK,
	MXF_VAL_AUDITED,
	MXF_VAL_COMPLIANT,
	MXF_VAL_FAILED,
	MXF_VAL_XFR_ALLOWED,
	MXF_VAL_XFR_REFUSED,
	MXF_VAL_COUNT,
};

/*! Counter and part of each value. */
extern const uint8_t mxf_val_counter[MXF_VAL_COUNT];
extern const uint8_t mxf_val_part[MXF_VAL_COUNT];

/*
 * The stages. Each says what to do with the query (the glue maps it to
 * Knot's state and rcode) and counts through server->count.
 */

/*! \brief The query type as cheaply as it can be read (the first test of
 *         every hook, on every query to the zone). A response without a
 *         question (qname_size 0) reads two header bytes instead, which at
 *         worst sends it down a stage call, where the type is read again. */
static inline uint16_t mxf_qtype(const knot_pkt_t *pkt)
{
	return knot_wire_read_u16(pkt->wire + KNOT_WIRE_HEADER_SIZE + pkt->qname_size);
}

/*! \brief Whether mxf_preanswer() has anything to do with \a pkt's query. */
static inline bool mxf_preanswer_wants(const knot_pkt_t *pkt)
{
	return mxf_qtype(pkt) == KNOT_RRTYPE_MX;
}

/*! \brief Whether mxf_answer() (and END_MX) has anything to do with it. */
static inline bool mxf_answer_wants(const knot_pkt_t *pkt)
{
	uint16_t qtype = mxf_qtype(pkt);
	return qtype == KNOT_RRTYPE_MX || qtype == KNOT_RRTYPE_ANY;
}

/*! BEGIN: a transfer of a zone with "transfer: refuse". */
mxf_step_t mxf_begin(mxf_zone_t *zone, const mxf_query_t *q);

/*! PREANSWER: an MX query whose RRset the engine can read (the apex; any
 *  plain authoritative name where the server has rrset) is answered here,
 *  before Knot writes the zone's RRset. */
mxf_step_t mxf_preanswer(mxf_zone_t *zone, const mxf_query_t *q);

/*! \brief Whether mxf_preanswer() can answer \a pkt's MX query at all:
 *         nothing is answered yet (\a begun: Knot's state is the first) and
 *         the QNAME is the apex, or any name where the server can read
 *         below the apex (\a below). Cheaper than setting up the query. */
bool mxf_preanswer_reaches(const mxf_zone_t *zone, const knot_pkt_t *pkt, bool begun,
                           bool below);

/*! ANSWER: the MX RRsets Knot wrote (below the apex on Knot 3.2, wildcards,
 *  CNAME targets, ANY), and an apex without MX reached through a CNAME. */
mxf_step_t mxf_answer(mxf_zone_t *zone, const mxf_query_t *q);

/*! AUTHORITY: a DNSSEC answer's apex NSEC/NSEC3 lists MX (zones that may
 *  synthesize the apex MX under DNSSEC). */
mxf_step_t mxf_authority(mxf_zone_t *zone, const mxf_query_t *q);

/*! END: a response that still holds a legacy MX or an unedited apex denial
 *  record (Knot skips every later hook once it truncates) fails; a served
 *  transfer is counted and logged. */
mxf_step_t mxf_end(mxf_zone_t *zone, const mxf_query_t *q);

/*! \brief For a zone whose engine could not be set up (load failed): MX and
 *         ANY queries fail closed (SERVFAIL), everything else passes. */
mxf_step_t mxf_unloaded(const knot_pkt_t *query, mxf_query_type_t type);
