/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*!
 * \file
 *
 * \brief The module's configuration as the engine takes it: the options of
 *        a mod-mxfilter section, their defaults and limits, and the checks
 *        of an exchange list.
 *
 * The Knot glue's schema (module/mxfilter.c) uses the defaults and
 * limits here, so each is written once.
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libknot/libknot.h>

/*! Most exchanges a policy may hold (an RRset of them must fit a packet). */
#define MXF_MAX_EXCHANGES	32

/*! Longest log-interval accepted, in seconds (one day). */
#define MXF_MAX_LOG_INTERVAL	86400

/*! PEM key stores a zone's signer searches (Knot 3.5: a policy may name
 *  several). */
#define MXF_MAX_KEYSTORES	8

typedef enum {
	MXF_MODE_ENFORCE = 0,
	MXF_MODE_AUDIT,
} mxf_mode_t;

typedef enum {
	MXF_SCOPE_ZONE = 0,
	MXF_SCOPE_APEX,
} mxf_scope_t;

typedef enum {
	MXF_NULLMX_KEEP = 0,
	MXF_NULLMX_REPLACE,
} mxf_nullmx_t;

typedef enum {
	MXF_XFR_ALLOW = 0,
	MXF_XFR_LOG,
	MXF_XFR_REFUSE,
} mxf_transfer_t;

/*! Defaults (DESIGN.md); no exchange given: mxf_default_exchanges. */
#define MXF_DEFAULT_MODE		MXF_MODE_ENFORCE
#define MXF_DEFAULT_SCOPE		MXF_SCOPE_ZONE
#define MXF_DEFAULT_SYNTHESIZE		true
#define MXF_DEFAULT_NULL_MX		MXF_NULLMX_KEEP
#define MXF_DEFAULT_LOG_INTERVAL	60
#define MXF_DEFAULT_TRANSFER		MXF_XFR_LOG
#define MXF_DEFAULT_COUNTERS		true

/*! Configuration as read from knot.conf (strings are not owned). */
typedef struct {
	const char *const *exchange; /*!< "PREFERENCE NAME" values; none = default set. */
	size_t exchange_count;
	mxf_mode_t mode;
	mxf_scope_t scope;
	bool synthesize;
	mxf_nullmx_t null_mx;
	bool ttl_set;                /*!< False: inherit the replaced RRset's TTL. */
	uint32_t ttl;
	uint32_t log_interval;       /*!< Seconds; 0 logs every occurrence. */
	mxf_transfer_t transfer;
} mxf_conf_t;

/*! The built-in default exchanges (DESIGN.md). */
extern const char *const mxf_default_exchanges[];
extern const size_t mxf_default_exchange_count;

/*! Fill \a conf with the documented defaults. */
void mxf_conf_default(mxf_conf_t *conf);

/*!
 * \brief Parses one "PREFERENCE NAME" exchange value.
 *
 * \param text     Value as written in the configuration.
 * \param pref     Output preference.
 * \param name     Output name, lower-case, absolute.
 *
 * \return NULL on success, else a short lower-case reason.
 */
const char *mxf_exchange_parse(const char *text, uint16_t *pref,
                               knot_dname_storage_t name);

/*!
 * \brief Checks a whole exchange list (syntax, duplicates, count).
 *
 * \param bad  On error, set to the offending value.
 *
 * \return NULL if valid, else a short lower-case reason.
 */
const char *mxf_exchange_list_check(const char *const *values, size_t count,
                                    const char **bad);
