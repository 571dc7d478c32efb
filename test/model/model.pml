/*
 * model.pml: the stripe_idem 1.2 protocol against Stripe's memory, for Spin.
 *
 * One operation (one row of stripe_idempotency_keys), NCALLERS callers of it,
 * the background sweeper, Stripe, and a discrete clock. Each step below is
 * one SQL statement of the extension (atomic: it runs under the row lock) or
 * one call over the network, and names the C function it stands for.
 * docs/GUARANTEES.md ("The model") says what is checked and what is not;
 * test/model/run.sh runs it (make model).
 *
 * Time. Every timestamp is kept relative to "now" and clamped where the
 * protocol stops telling values apart, so the clock runs for ever in a
 * finite state space:
 *   r_lease  locked_until - now + LM   in 0..L+LM   (live above LM; LM is 0
 *                                                     but for UNRESOLVED_MARGIN)
 *   r_exp    expires_at - now + R      in 0..T+R    (R: expires_at = now;
 *                                                     0: expires_at + R <= now)
 *   r_win    created_at + W - now      in 0..W      (takeover needs >= L)
 *   s_left   first use + W - now       in 0..W      (0: Stripe may forget)
 *   c_lease  the caller's own lease    in 0..L
 * A Tick lowers them all by one (the clock's granularity is one tick; L, W,
 * T and R are small numbers of ticks, see the defaults below).
 *
 * Lives of a row. An operation whose row became ABSENT (completed and past
 * its ttl, or in_progress and past ttl + retention) starts over under a new
 * key by design: a second Stripe object then is a new operation, not a
 * duplicate. The ghost fields below tell one life from the next by the
 * design's rule, whatever the row in the table says: a row deleted or
 * rolled back before the design allows keeps its life (its fields stay, as
 * ghosts, with r_present = 0), and a life never ends while a caller still
 * holds one of its keys.
 *
 * Assumptions (the application's side of the contract, README and docs/API.md):
 *   - a holder sends its key to Stripe only while its lease is live;
 *   - begin commits before the Stripe call (begin refuses to run inside a
 *     transaction block: a rolled-back begin is BROKEN_ROLLED_BACK_BEGIN);
 *   - nobody calls Stripe after in_progress / unresolved (mismatch needs a
 *     second set of parameters and is left out: it hands out no key);
 *   - a caller holding a key finishes (records, gives up or crashes) before
 *     the row could become absent, i.e. within ttl + retention (30 days by
 *     default): the clock does not pass that point while it is busy;
 *   - at most FAULTS faults in a run: a crash, a lease that runs out before
 *     the holder called Stripe, a release. This bounds the number of keys.
 *
 * Properties (CHECK is a bit mask, all on by default):
 *   1 ONE_OBJECT    never two Stripe objects in one life of the operation
 *   2 KEY_REMEMBERED no key reaches Stripe once Stripe may have forgotten it
 *   4 ANSWER_STABLE every completed answer of a life is the first one
 *   LIVENESS (-DLIVENESS, pan -a -f): every caller ends with an answer.
 *
 * Broken variants (each removes one safeguard; test/model/run.sh expects a
 * counterexample from each):
 *   BROKEN_TAKEOVER_WINDOW    takeover ignores the key window
 *   BROKEN_EXPIRED_FRESH_KEY  an expired in_progress row gets a new key (1.1)
 *   BROKEN_SWEEP_UNRESOLVED   the sweeper deletes in_progress rows at expiry
 *   BROKEN_CHECK_THEN_CALL    check, call Stripe with a new key, record
 *   BROKEN_ROLLED_BACK_BEGIN  begin's transaction rolls back after the caller
 *                             saw the key; the caller calls Stripe anyway
 *
 * A harsher Stripe (not in the design's assumptions, see GUARANTEES.md):
 *   SLOW_STRIPE        a request leaves while the lease is live, but Stripe
 *                      may act on it up to D ticks later, after the caller's
 *                      SDK gave up and its lease ran out (the reconcile's
 *                      question may come before Stripe made the object)
 *   WINDOW_MARGIN      remedy, half one: takeover only while
 *                      now + L + D <= created_at + W
 *   UNRESOLVED_MARGIN  remedy, half two: begin answers unresolved (and
 *                      restart accepts a row) only once the lease has been
 *                      over for D ticks; until then in_progress. release
 *                      ends the lease now instead of setting it to NULL.
 */

#ifndef NCALLERS
#define NCALLERS 3		/* callers of the one operation (at most 4) */
#endif
#ifndef FAULTS
#define FAULTS 3		/* crashes, lapsed leases and releases, in all */
#endif
#ifndef L
#define L 1				/* lease */
#endif
#ifndef W
#define W 2				/* key window: Stripe remembers a key this long */
#endif
#ifndef T
#define T 3				/* ttl */
#endif
#ifndef R
#define R 1				/* stripe_idem.unresolved_retention */
#endif
#ifndef CHECK
#define CHECK 7
#endif
#ifndef D
#define D 1				/* SLOW_STRIPE: the longest Stripe takes to act */
#endif
#ifdef UNRESOLVED_MARGIN
#define LM D			/* how long a lease's end is remembered */
#else
#define LM 0
#endif

#define MAXK 8			/* keys 1..MAXK; asserted never to run out */

/* begin's and restart's answers */
#define ACQUIRED	1
#define COMPLETED	2
#define IN_PROGRESS	3
#define UNRESOLVED	4
#define REFUSED		5	/* restart: 55000; record: 23505 */

/* Stripe's memory of a key */
#define UNUSED		0
#define REMEMBERED	1

/* The row (stripe_idempotency_keys), and its ghost when r_present = 0. */
bit  r_present;
bit  r_completed;		/* status: 0 in_progress, 1 completed */
byte r_key;				/* stripe_idempotency_key */
byte r_holder;			/* attempts, as "which acquisition": caller + 1 */
byte r_lease;
byte r_exp;
byte r_win;
byte r_result;			/* stripe_resource_id */

/* Stripe: per key, whether it remembers it, how long surely, its object. */
byte s_state[MAXK + 1];
byte s_left[MAXK + 1];
byte s_obj[MAXK + 1];	/* the object made with this key (in its metadata) */

byte nkeys;				/* keys handed out so far (the key generator) */
byte nobj;				/* Stripe objects made so far, all lives */
byte life_objs;			/* ghost: Stripe objects made in this life */
byte g_answer;			/* ghost: the first completed answer of this life */
byte faults = FAULTS;
byte nbusy;				/* callers holding a key */
byte ndone;				/* callers that got their final answer */

/* per caller, read by the clock */
/* SLOW_STRIPE: the request a caller sent and Stripe has not acted on yet */
byte pend[4];			/* its key, 0: none */
byte pend_age[4];		/* ticks since it left */
byte c_obj[4];			/* Stripe's answer, if the caller still waits */

bit  busy[4];			/* holds a key it may still send or record */
bit  unsent[4];			/* holds a lease and has not called Stripe yet */
byte c_lease[4];

#define EXPIRED		(r_exp <= R)	/* expires_at <= now */
#define ABSENT		((r_completed && r_exp <= R) || (!r_completed && r_exp == 0))
#define LIVE_LEASE	(r_lease > LM)
#define SETTLED		(r_lease == 0)	/* no lease for LM ticks at least */
#ifdef WINDOW_MARGIN
#define IN_WINDOW	(r_win >= L + D)	/* now + L + D <= created_at + W */
#else
#define IN_WINDOW	(r_win >= L)	/* now + L <= created_at + W */
#endif
#define UNRESOLVED_ROW	(!r_completed && SETTLED && (EXPIRED || !IN_WINDOW))
/* the design's end of a life: the row (or its ghost) is absent, no key out */
#define LIFE_OVER	(ABSENT && nbusy == 0)

/* a Tick would end the lease of a holder that has not called Stripe */
#define LAPSE(i)	((i) < NCALLERS && unsent[i] && c_lease[i] == 1)
#define LAPSES		(LAPSE(0) + LAPSE(1) + LAPSE(2) + LAPSE(3))
/* a Tick would take a request in flight past D */
#define DUE(i)		(pend[i] != 0 && pend_age[i] >= D)
#define ANY_DUE		(DUE(0) || DUE(1) || DUE(2) || DUE(3))
/* a Tick would make the row absent */
#define WOULD_VANISH	(r_present && ((r_completed && r_exp == R + 1) || (!r_completed && r_exp == 1)))

/* the safeguards the broken variants take away */
#ifdef BROKEN_TAKEOVER_WINDOW
#define TAKEOVER_WINDOW	true		/* broken: the key window is not checked */
#else
#define TAKEOVER_WINDOW	IN_WINDOW
#endif
#ifdef BROKEN_EXPIRED_FRESH_KEY
/* broken (1.1): an expired in_progress row counts as absent */
#define EXPIRED_IS_ABSENT	(!r_completed && !LIVE_LEASE && EXPIRED)
#else
#define EXPIRED_IS_ABSENT	false
#endif
#ifdef BROKEN_SWEEP_UNRESOLVED
/* broken: unresolved rows deleted at expiry, retention ignored */
#define SWEEP_RETENTION	true
#else
#define SWEEP_RETENTION	(r_completed || r_exp == 0)
#endif

#define P_ONE_OBJECT		(!(CHECK & 1) || life_objs <= 1)
#define P_KEY_REMEMBERED(k)	(!(CHECK & 2) || s_state[k] == UNUSED || s_left[k] > 0)
#define P_ANSWER_STABLE(x)	(!(CHECK & 4) || g_answer == 0 || g_answer == (x))

/*
 * Reachability probes: with -DCOVER=n, probe n is an assertion that fails
 * where the model reaches the situation it names, so a clean search can
 * not come from a model that never gets there (test/model/run.sh checks
 * that every probe is reached). Without COVER they are nothing.
 */
#ifdef COVER
#define reached(n)	assert(COVER != n)
#else
#define reached(n)	skip
#endif

#define dec(x)	if :: (x) > 0 -> x-- :: else -> skip fi

/*
 * The clock. One tick: every lease, expiry, window and Stripe memory moves
 * one step closer to its end. A holder whose lease runs out before it
 * called Stripe spends a fault (LAPSES); the clock does not make a row
 * absent while a caller holds one of its keys (see the assumptions).
 */
active proctype Tick()
{
	byte i;
end_tick:
	do
	:: d_step {
		LAPSES <= faults && !(WOULD_VANISH && nbusy > 0) && !ANY_DUE ->
		faults = faults - LAPSES;
		printf("clock: tick\n");
		dec(r_lease);
		dec(r_exp);
		dec(r_win);
		i = 1;
		do
		:: i <= nkeys -> dec(s_left[i]); i++
		:: else -> break
		od;
		i = 0;
		do
		:: i < NCALLERS ->
			dec(c_lease[i]);
			if
			:: pend[i] != 0 -> pend_age[i]++
			:: else -> skip
			fi;
			i++
		:: else -> break
		od;
		i = 0
	}
	od
}


inline clear_row()
{
	r_completed = 0; r_key = 0; r_holder = 0; r_lease = 0;
	r_exp = 0; r_win = 0; r_result = 0
}

/*
 * cleanup.c si_cleanup_batch (the sweeper, sweeper_worker.c, and
 * cleanup_expired_idempotency_keys): the batch DELETE, one row at a time
 * here: expires_at <= now, no live lease, and (completed or expires_at + R
 * <= now); FOR UPDATE SKIP LOCKED makes it one atomic step per row.
 */
active proctype Sweeper()
{
end_sweep:
	do
	:: d_step {
		r_present && EXPIRED && !LIVE_LEASE && SWEEP_RETENTION ->
		printf("sweeper: row deleted (completed %d, key %d)\n", r_completed, r_key);
		if
		:: r_completed -> reached(10)
		:: else -> reached(11)
		fi;
		r_present = 0;
		/* nothing of a finished life is kept; a life cut short stays a ghost */
		if
		:: LIFE_OVER -> clear_row()
		:: else -> skip
		fi
	}
	od
}

/*
 * Stripe: a key it does not remember makes a new object; a key it
 * remembers returns the first object. Forgetting is decided when a key
 * arrives: once its window has passed (s_left = 0) Stripe may have
 * forgotten it, and the model takes both answers. Forgotten keys that never
 * come back make no difference to anyone, so this loses nothing.
 */
inline stripe_call(k, obj)
{
	assert(P_KEY_REMEMBERED(k));
	if
	:: s_state[k] == REMEMBERED ->
		obj = s_obj[k];
		reached(13);
		printf("stripe: key %d remembered, object %d again\n", k, obj)
	:: s_state[k] == UNUSED || s_left[k] == 0 ->
		nobj++;
		life_objs++;
		assert(P_ONE_OBJECT);
		obj = nobj;
		s_state[k] = REMEMBERED;
		s_left[k] = W;
		s_obj[k] = obj;
		printf("stripe: key %d unknown, new object %d (%d in this life)\n", k, obj, life_objs)
	fi
}

#ifdef SLOW_STRIPE
/*
 * Stripe acts on the request caller i sent, at any time within D ticks.
 * (A request whose key's first request is still running gets 409 from
 * Stripe; here it waits its turn and gets the object: nothing the
 * properties look at changes.)
 */
inline deliver(i)
{
	stripe_call(pend[i], o);
	if
	:: unsent[i] -> c_obj[i] = o
	:: else -> skip
	fi;
	pend[i] = 0; pend_age[i] = 0; o = 0
}

active proctype StripeApi()
{
	byte o;
end_api:
	do
	:: atomic { pend[0] != 0 -> deliver(0) }
	:: atomic { pend[1] != 0 -> deliver(1) }
	:: atomic { pend[2] != 0 -> deliver(2) }
	:: atomic { pend[3] != 0 -> deliver(3) }
	od
}
#endif

/* begin/restart: a new key, created_at = now, the lease taken */
inline new_key_row(me, k)
{
	nkeys++;
	assert(nkeys <= MAXK);
	r_present = 1; r_completed = 0; r_key = nkeys; r_holder = me + 1;
	r_lease = L + LM; r_exp = T + R; r_win = W; r_result = 0;
	k = nkeys
}

inline hold(me)
{
	busy[me] = 1; unsent[me] = 1; c_lease[me] = L; nbusy++
}

inline let_go(me)
{
	if
	:: busy[me] -> nbusy--
	:: else -> skip
	fi;
	busy[me] = 0; unsent[me] = 0; c_lease[me] = 0; c_obj[me] = 0
}

inline answer(x)
{
	assert(P_ANSWER_STABLE(x));
	g_answer = x
}

proctype Caller(byte me)
{
	byte k;			/* the key this caller holds, if any */
	byte obj;		/* what Stripe answered */
	byte res;
	bit fresh;		/* begin made a new key (for BROKEN_ROLLED_BACK_BEGIN) */

start:
	atomic { let_go(me); k = 0; obj = 0; res = 0; fresh = 0 };

#ifdef BROKEN_CHECK_THEN_CALL
	/*
	 * The seed's flow, broken: check_stripe_idempotency (check.c); if
	 * nothing completed is there, call Stripe with a new random key
	 * (new_stripe_idempotency_key, keygen.c), then record. No lease.
	 */
	d_step {
		if
		:: r_present && !ABSENT && r_completed ->
			obj = r_result; res = COMPLETED;
			printf("caller %d: check -> completed, object %d\n", me, obj);
			answer(obj); ndone++
		:: else ->
			if
			:: LIFE_OVER -> life_objs = 0; g_answer = 0
			:: else -> skip
			fi;
			nkeys++;
			assert(nkeys <= MAXK);
			k = nkeys;
			busy[me] = 1; nbusy++;
			printf("caller %d: check -> nothing completed, new key %d\n", me, k);
			res = ACQUIRED
		fi
	};
	if
	:: res == COMPLETED -> goto done
	:: res == ACQUIRED -> skip
	fi;
	if
	:: atomic { stripe_call(k, obj) }; goto answered
	:: d_step { faults > 0 -> faults-- }; goto start	/* crash before the call */
	fi;
#else
	/*
	 * begin.c begin_stripe_idempotency: the row read, then the INSERT (no
	 * row), the REPLACE (absent row), the conditional takeover UPDATE, or
	 * the answer from the row as read; one atomic step (the statements run
	 * under the row lock, and begin's retry loop ends in one of these).
	 */
	d_step {
		if
		:: !r_present || ABSENT || EXPIRED_IS_ABSENT ->
			/* SI_PLAN_INSERT_ACQUIRE / SI_PLAN_REPLACE_EXPIRED: a new key */
			if
			:: LIFE_OVER ->
				if
				:: nobj > 0 -> reached(12)
				:: else -> skip
				fi;
				life_objs = 0; g_answer = 0
			:: else -> skip
			fi;
			new_key_row(me, k);
			hold(me);
			fresh = 1;
			printf("caller %d: begin -> acquired, new key %d\n", me, k);
			res = ACQUIRED
		:: else ->
			if
			:: r_completed ->
				/* completed: the stored key and result */
				k = r_key; obj = r_result; res = COMPLETED;
				reached(14);
				printf("caller %d: begin -> completed, key %d, object %d\n", me, k, obj);
				answer(obj); ndone++
			:: !r_completed && LIVE_LEASE ->
				/* in_progress: no key, retry_after */
				reached(15);
				printf("caller %d: begin -> in_progress\n", me);
				res = IN_PROGRESS
			:: !r_completed && !LIVE_LEASE && !EXPIRED && TAKEOVER_WINDOW ->
				/* SI_PLAN_TAKEOVER: same key, attempts + 1, locked_until =
				 * now + L, expires_at = GREATEST(expires_at, now + L) */
				r_holder = me + 1;
				r_lease = L + LM;
				if
				:: r_exp < L + R -> r_exp = L + R
				:: else -> skip
				fi;
				k = r_key;
				hold(me);
				reached(1);
				printf("caller %d: begin -> acquired by takeover, same key %d\n", me, k);
				res = ACQUIRED
			:: !r_completed && !LIVE_LEASE && !SETTLED ->
				/* UNRESOLVED_MARGIN: the lease ended less than D ago */
				printf("caller %d: begin -> in_progress (lease just ended)\n", me);
				res = IN_PROGRESS
			:: else ->
				/* unresolved: the stored key, nothing written */
				k = r_key;
				busy[me] = 1; nbusy++;
				if
				:: EXPIRED -> reached(3)
				:: else -> reached(2)
				fi;
				printf("caller %d: begin -> unresolved, key %d (expired %d)\n", me, k, EXPIRED);
				res = UNRESOLVED
			fi
		fi
	};
	if
	:: res == ACQUIRED -> skip
	:: res == COMPLETED -> goto done
	:: res == IN_PROGRESS -> goto start		/* wait retry_after, begin again */
	:: res == UNRESOLVED -> goto reconcile
	fi;

#ifdef BROKEN_ROLLED_BACK_BEGIN
	/*
	 * broken: begin ran inside the caller's transaction, which rolls back
	 * after the caller read the key: the new row vanishes (its life stays,
	 * as a ghost), and the caller calls Stripe all the same.
	 */
	if
	:: fresh -> r_present = 0;
		printf("caller %d: begin's transaction rolled back, key %d kept\n", me, k)
	:: skip
	fi;
#endif

holding:
	/* The holder: the application's Stripe call with key k as its
	 * Idempotency-Key, made only while the lease is live. */
	if
#ifdef SLOW_STRIPE
	:: d_step {
		c_lease[me] > 0 && pend[me] == 0 ->
		pend[me] = k; pend_age[me] = 0; c_obj[me] = 0;
		printf("caller %d: request with key %d sent\n", me, k)
	};
		goto waiting
#else
	:: atomic { c_lease[me] > 0 -> stripe_call(k, obj); unsent[me] = 0 };
		goto answered
#endif
	:: c_lease[me] == 0 ->
		/* the lease ran out first (the clock spent a fault): no call */
		printf("caller %d: lease ran out before the Stripe call\n", me);
		goto start
	:: d_step {
		faults > 0 -> faults--;
		printf("caller %d: crash before the Stripe call\n", me)
	};
		/* crash after begin committed, before the Stripe call */
		goto start
	:: d_step {
		faults > 0 -> faults--;
		/* release.c release_stripe_idempotency (SI_PLAN_RELEASE): the
		 * holder gives up without calling Stripe */
		if
		:: r_present && !r_completed && r_key == k && r_holder == me + 1 && !EXPIRED ->
			if
			:: LIVE_LEASE -> reached(9); r_lease = LM
			:: else -> skip
			fi
		:: else -> skip
		fi;
		printf("caller %d: release, key %d\n", me, k)
	};
		goto start
	fi;

#ifdef SLOW_STRIPE
waiting:
	/* the SDK waits for Stripe's answer while the lease lives */
	if
	:: d_step { c_obj[me] != 0 -> obj = c_obj[me]; c_obj[me] = 0; unsent[me] = 0 };
		goto answered
	:: c_lease[me] == 0 ->
		/* the SDK gave up (the clock spent a fault); the request may
		 * still reach Stripe */
		printf("caller %d: no answer before the lease ended, gave up\n", me);
		goto start
	:: d_step { faults > 0 -> faults--; printf("caller %d: crash waiting for Stripe\n", me) };
		goto start
	fi;
#endif

reconcile:
	/*
	 * The application's reconcile path for unresolved: ask Stripe whether
	 * an object was made for the operation (with key k in its metadata; a
	 * key replaced by restart never made one). If so, record it with k;
	 * if not, restart.c restart_stripe_idempotency for a fresh key.
	 */
	if
	:: s_obj[k] != 0 ->
		obj = s_obj[k];
		reached(4);
		printf("caller %d: reconcile: Stripe has object %d for key %d\n", me, obj, k);
		goto answered
	:: s_obj[k] == 0 ->
		d_step {
			/* restart.c: only an unresolved in_progress row with key k */
			if
			:: r_present && !ABSENT && r_key == k && UNRESOLVED_ROW ->
				let_go(me);
				new_key_row(me, k);
				hold(me);
				reached(5);
				printf("caller %d: reconcile: no object; restart -> new key %d\n", me, k);
				res = ACQUIRED
			:: else ->
				/* 55000, nothing written */
				reached(6);
				printf("caller %d: reconcile: no object; restart refused\n", me);
				res = REFUSED
			fi
		};
		if
		:: res == ACQUIRED -> goto holding
		:: else -> goto start
		fi
	fi;
#endif /* BROKEN_CHECK_THEN_CALL */

answered:
	/* Stripe answered with obj: record it. */
	if
	:: d_step {
		/* record.c record_stripe_idempotency */
		if
		:: r_present && !ABSENT && !r_completed && r_key == k ->
			/* SI_PLAN_COMPLETE_OWN: completed, lease dropped, new expiry */
			r_completed = 1; r_result = obj; r_lease = 0; r_exp = T + R;
			printf("caller %d: record key %d, object %d -> completed\n", me, k, obj);
			res = COMPLETED
		:: r_present && !ABSENT && r_completed ->
			/* recorded = false: the first result is returned */
			obj = r_result;
			reached(8);
			printf("caller %d: record -> already completed, object %d\n", me, obj);
			res = COMPLETED
		:: !r_present || ABSENT ->
			/* SI_PLAN_INSERT_COMPLETED / _REPLACE_EXPIRED_COMPLETED */
			r_present = 1; r_completed = 1; r_key = k; r_holder = 0;
			r_lease = 0; r_exp = T + R; r_win = W; r_result = obj;
			reached(16);
			printf("caller %d: record key %d, object %d -> inserted completed\n", me, k, obj);
			res = COMPLETED
		:: else ->
			/* in_progress under another key: 23505, nothing written */
			reached(7);
			printf("caller %d: record key %d refused (23505)\n", me, k);
			res = REFUSED
		fi;
		if
		:: res == COMPLETED -> answer(obj); let_go(me); ndone++
		:: else -> skip
		fi
	};
		if
		:: res == COMPLETED -> goto done
		:: else -> goto start
		fi
	:: d_step {
		faults > 0 -> faults--;
		printf("caller %d: crash after Stripe answered\n", me)
	};
		/* crash after Stripe answered (or the answer was lost), or inside
		 * record: its statement rolls back, nothing written */
		goto start
	fi;

done:
	skip
}

init
{
	atomic {
		run Caller(0);
#if NCALLERS > 1
		run Caller(1);
#endif
#if NCALLERS > 2
		run Caller(2);
#endif
#if NCALLERS > 3
		run Caller(3);
#endif
	}
}

#ifdef LIVENESS
/* with weak fairness (pan -a -f): every caller ends with an answer */
ltl all_answered { <> (ndone == NCALLERS) }
#endif
