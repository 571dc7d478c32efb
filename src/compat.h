/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between PostgreSQL majors that stripe_idem meets,
 *	  in one place, so that call sites read the same on every major.
 *
 * Supported: PostgreSQL 15 and later (15 is the first with
 * shmem_request_hook, InitMaterializedSRF and MarkGUCPrefixReserved, all of
 * which the extension uses).
 *
 * Copyright (c) 2026, The stripe_idem developers
 * Licensed under the PostgreSQL License; see LICENSE.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STRIPE_IDEM_COMPAT_H
#define STRIPE_IDEM_COMPAT_H

#include "utils/guc.h"

#if PG_VERSION_NUM < 150000
#error "stripe_idem requires PostgreSQL 15 or later"
#endif

/*
 * Memory for a GUC check hook's *extra. The GUC machinery frees it with
 * free() up to 15 and with guc_free() (that is, pfree of a chunk of its own
 * context) from 16 on; handing 16+ a malloc'd block crashes the postmaster
 * at start. Both return NULL when out of memory, having logged at LOG.
 */
#if PG_VERSION_NUM >= 160000
#define si_guc_malloc(size)		guc_malloc(LOG, (size))
#define si_guc_free(ptr)		guc_free(ptr)
#else
#define si_guc_malloc(size)		malloc(size)
#define si_guc_free(ptr)		free(ptr)
#endif

/*
 * Wait events. From 17 an extension can name its own, which
 * pg_stat_activity.wait_event then shows (StripeIdemSweeperLauncherMain, ...);
 * before that every extension wait is the generic "Extension".
 * si_wait_event() registers the name on first use in each process.
 */
#if PG_VERSION_NUM >= 170000
#include "utils/wait_event.h"
#define si_wait_event(cache, name) \
	((cache) != 0 ? (cache) : ((cache) = WaitEventExtensionNew(name)))
#else
#define si_wait_event(cache, name)	((void) (cache), (uint32) PG_WAIT_EXTENSION)
#endif

/*
 * Reading the table through its primary key without the executor
 * (result.c). From 18 RelationGetPrimaryKeyIndex() asks whether a
 * deferrable key will do (ours is not deferrable), and index_beginscan()
 * takes instrumentation, which a lookup of one row does without.
 */
#if PG_VERSION_NUM >= 180000
#define si_primary_key_index(rel)	RelationGetPrimaryKeyIndex((rel), false)
#define si_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define si_primary_key_index(rel)	RelationGetPrimaryKeyIndex(rel)
#define si_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

#endif							/* STRIPE_IDEM_COMPAT_H */
