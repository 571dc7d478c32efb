-- Baseline 1: the stripe_idem API written by hand in PL/pgSQL, the plainest
-- way a team writes it without the extension, over the seed's table
-- (plain_table.sql): same functions, same results for the same valid calls:
--   * keys are "operation_type:operation_id:" || gen_random_uuid();
--   * fingerprints are sha256 of the jsonb text, hex (no pgcrypto needed);
--   * "now" is statement_timestamp(); expired rows count as absent;
--   * lease 90 s and ttl 1 day when the caller passes NULL;
--   * INSERT ... ON CONFLICT DO NOTHING first, the row read only when the
--     insert met one.
-- No argument checks a team would not write: no range checks on lease and
-- ttl, no format checks; a NULL where a value is required fails on the
-- table's NOT NULL (or finds nothing) instead of raising 22004 first. Table
-- names are schema-qualified and there is no SET search_path, and the
-- functions are not SECURITY DEFINER: the callers own the table.
--
-- It implements 1.1's protocol. The 1.2 unresolved state (an in_progress
-- row whose lease ran out past the ttl or the key window is answered
-- "unresolved" instead of being taken over or replaced) and the key window
-- are not here, as a team's hand-written version would not have them; the
-- C functions pay for them, and for SECURITY DEFINER, inside their numbers.
--
--   psql -f plain_table.sql -v schema=plpgsql_idem && psql -f plpgsql_idem.sql

CREATE FUNCTION plpgsql_idem.begin_stripe_idempotency(
	operation_type text,
	operation_id text,
	request_params jsonb DEFAULT NULL,
	lease interval DEFAULT NULL,
	ttl interval DEFAULT NULL)
RETURNS TABLE (
	state text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb,
	retry_after interval,
	attempts integer)
LANGUAGE plpgsql VOLATILE ROWS 1
AS $$
DECLARE
	v_type text := $1;
	v_id text := $2;
	v_now timestamptz := statement_timestamp();
	v_lease interval := coalesce($4, interval '90 seconds');
	v_ttl interval := coalesce($5, interval '1 day');
	v_fp text;
	v_key text;
	v_attempts integer;
	r plpgsql_idem.stripe_idempotency_keys;
BEGIN
	IF $3 IS NOT NULL THEN
		v_fp := encode(sha256(convert_to($3::text, 'UTF8')), 'hex');
	END IF;

	-- A bounded number of rounds: each failed UPDATE means another session
	-- changed the row between our SELECT and UPDATE.
	FOR round IN 1..5 LOOP
		INSERT INTO plpgsql_idem.stripe_idempotency_keys AS k
			(operation_type, operation_id, stripe_idempotency_key,
			 request_fingerprint, status, attempts, locked_until,
			 created_at, updated_at, expires_at)
		VALUES (v_type, v_id, v_type || ':' || v_id || ':' || gen_random_uuid(),
				v_fp, 'in_progress', 1, v_now + v_lease,
				v_now, v_now, v_now + v_ttl)
		ON CONFLICT ON CONSTRAINT stripe_idempotency_keys_pkey DO NOTHING
		RETURNING k.stripe_idempotency_key INTO v_key;
		IF FOUND THEN
			RETURN QUERY SELECT 'acquired'::text, v_key, NULL::text, NULL::jsonb,
				NULL::interval, 1;
			RETURN;
		END IF;

		SELECT * INTO r
		FROM plpgsql_idem.stripe_idempotency_keys k
		WHERE k.operation_type = v_type AND k.operation_id = v_id;
		CONTINUE WHEN NOT FOUND;	-- deleted meanwhile: insert again

		IF r.expires_at <= v_now THEN
			-- An expired row counts as absent: a fresh operation replaces it.
			UPDATE plpgsql_idem.stripe_idempotency_keys k
			SET stripe_idempotency_key = v_type || ':' || v_id || ':' || gen_random_uuid(),
				request_fingerprint = v_fp,
				status = 'in_progress',
				stripe_resource_id = NULL,
				response = NULL,
				attempts = 1,
				locked_until = v_now + v_lease,
				created_at = v_now,
				updated_at = v_now,
				completed_at = NULL,
				expires_at = v_now + v_ttl
			WHERE k.operation_type = v_type AND k.operation_id = v_id
			  AND k.expires_at <= v_now
			RETURNING k.stripe_idempotency_key INTO v_key;
			IF FOUND THEN
				RETURN QUERY SELECT 'acquired'::text, v_key, NULL::text, NULL::jsonb,
					NULL::interval, 1;
				RETURN;
			END IF;
			CONTINUE;
		END IF;

		IF v_fp IS NOT NULL AND r.request_fingerprint IS DISTINCT FROM v_fp THEN
			RETURN QUERY SELECT 'mismatch'::text, NULL::text, NULL::text, NULL::jsonb,
				NULL::interval, NULL::integer;
			RETURN;
		END IF;

		IF r.status = 'completed' THEN
			RETURN QUERY SELECT 'completed'::text, r.stripe_idempotency_key,
				r.stripe_resource_id, r.response, NULL::interval, r.attempts;
			RETURN;
		END IF;

		IF r.locked_until > v_now THEN
			RETURN QUERY SELECT 'in_progress'::text, NULL::text, NULL::text, NULL::jsonb,
				r.locked_until - v_now, r.attempts;
			RETURN;
		END IF;

		-- In progress, but the lease expired or was released: take it over
		-- under the same key, so Stripe replays if the first call got through.
		UPDATE plpgsql_idem.stripe_idempotency_keys k
		SET attempts = k.attempts + 1,
			locked_until = v_now + v_lease,
			expires_at = greatest(k.expires_at, v_now + v_lease),
			updated_at = v_now
		WHERE k.operation_type = v_type AND k.operation_id = v_id
		  AND k.stripe_idempotency_key = r.stripe_idempotency_key
		  AND k.status = 'in_progress'
		  AND (k.locked_until IS NULL OR k.locked_until <= v_now)
		  AND k.expires_at > v_now
		RETURNING k.stripe_idempotency_key, k.attempts INTO v_key, v_attempts;
		IF FOUND THEN
			RETURN QUERY SELECT 'acquired'::text, v_key, NULL::text, NULL::jsonb,
				NULL::interval, v_attempts;
			RETURN;
		END IF;
	END LOOP;

	RAISE EXCEPTION 'could not settle operation % after 5 attempts', v_id
		USING ERRCODE = '40001';
END;
$$;

CREATE FUNCTION plpgsql_idem.check_stripe_idempotency(operation_type text, operation_id text)
RETURNS TABLE (
	found boolean,
	status text,
	stripe_idempotency_key text,
	stripe_resource_id text,
	response jsonb,
	created_at timestamptz,
	expires_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 1
AS $$
BEGIN
	RETURN QUERY
		SELECT true, k.status, k.stripe_idempotency_key, k.stripe_resource_id,
			   k.response, k.created_at, k.expires_at
		FROM plpgsql_idem.stripe_idempotency_keys k
		WHERE k.operation_type = $1 AND k.operation_id = $2
		  AND k.expires_at > statement_timestamp();
	IF NOT FOUND THEN
		RETURN QUERY SELECT false, NULL::text, NULL::text, NULL::text, NULL::jsonb,
			NULL::timestamptz, NULL::timestamptz;
	END IF;
END;
$$;

-- PL/pgSQL cannot name an input and an output column alike, so the two
-- inputs that are echoed back are called new_resource_id and new_response
-- here; callers passing arguments by position see no difference.
CREATE FUNCTION plpgsql_idem.record_stripe_idempotency(
	operation_type text,
	operation_id text,
	stripe_idempotency_key text,
	new_resource_id text,
	new_response jsonb DEFAULT NULL,
	ttl interval DEFAULT NULL)
RETURNS TABLE (
	recorded boolean,
	stripe_resource_id text,
	response jsonb)
LANGUAGE plpgsql VOLATILE ROWS 1
AS $$
DECLARE
	v_type text := $1;
	v_id text := $2;
	v_key text := $3;
	v_now timestamptz := statement_timestamp();
	v_ttl interval := coalesce($6, interval '1 day');
	v_res text;
	v_resp jsonb;
	r plpgsql_idem.stripe_idempotency_keys;
BEGIN
	FOR round IN 1..5 LOOP
		-- The usual case: our own lease, completed.
		UPDATE plpgsql_idem.stripe_idempotency_keys k
		SET status = 'completed',
			stripe_resource_id = $4,
			response = $5,
			locked_until = NULL,
			completed_at = v_now,
			updated_at = v_now,
			expires_at = v_now + v_ttl
		WHERE k.operation_type = v_type AND k.operation_id = v_id
		  AND k.stripe_idempotency_key = v_key
		  AND k.status = 'in_progress'
		RETURNING k.stripe_resource_id, k.response INTO v_res, v_resp;
		IF FOUND THEN
			RETURN QUERY SELECT true, v_res, v_resp;
			RETURN;
		END IF;

		-- No row of ours: store the result as a completed row (a key that
		-- belongs to another operation fails on its unique constraint).
		INSERT INTO plpgsql_idem.stripe_idempotency_keys AS k
			(operation_type, operation_id, stripe_idempotency_key, status,
			 stripe_resource_id, response, attempts, created_at, updated_at,
			 completed_at, expires_at)
		VALUES (v_type, v_id, v_key, 'completed', $4, $5, 1,
				v_now, v_now, v_now, v_now + v_ttl)
		ON CONFLICT ON CONSTRAINT stripe_idempotency_keys_pkey DO NOTHING
		RETURNING k.stripe_resource_id, k.response INTO v_res, v_resp;
		IF FOUND THEN
			RETURN QUERY SELECT true, v_res, v_resp;
			RETURN;
		END IF;

		SELECT * INTO r
		FROM plpgsql_idem.stripe_idempotency_keys k
		WHERE k.operation_type = v_type AND k.operation_id = v_id;
		CONTINUE WHEN NOT FOUND;

		IF r.expires_at <= v_now THEN
			-- An expired row counts as absent: replace it with the result.
			UPDATE plpgsql_idem.stripe_idempotency_keys k
			SET stripe_idempotency_key = v_key,
				request_fingerprint = NULL,
				status = 'completed',
				stripe_resource_id = $4,
				response = $5,
				attempts = 1,
				locked_until = NULL,
				created_at = v_now,
				updated_at = v_now,
				completed_at = v_now,
				expires_at = v_now + v_ttl
			WHERE k.operation_type = v_type AND k.operation_id = v_id
			  AND k.expires_at <= v_now
			RETURNING k.stripe_resource_id, k.response INTO v_res, v_resp;
			IF FOUND THEN
				RETURN QUERY SELECT true, v_res, v_resp;
				RETURN;
			END IF;
			CONTINUE;
		END IF;

		IF r.status = 'completed' THEN
			RETURN QUERY SELECT false, r.stripe_resource_id, r.response;
			RETURN;
		END IF;

		CONTINUE WHEN r.stripe_idempotency_key = v_key;	-- ours; it changed under us
		RAISE EXCEPTION 'operation %:% is in progress under another key', v_type, v_id
			USING ERRCODE = '23505';
	END LOOP;

	RAISE EXCEPTION 'could not settle operation % after 5 attempts', v_id
		USING ERRCODE = '40001';
END;
$$;

CREATE FUNCTION plpgsql_idem.release_stripe_idempotency(
	operation_type text,
	operation_id text,
	stripe_idempotency_key text,
	attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	UPDATE plpgsql_idem.stripe_idempotency_keys k
	SET locked_until = NULL, updated_at = statement_timestamp()
	WHERE k.operation_type = $1 AND k.operation_id = $2
	  AND k.stripe_idempotency_key = $3
	  AND k.status = 'in_progress'
	  AND ($4 IS NULL OR k.attempts = $4)
	  AND k.expires_at > statement_timestamp();
	RETURN FOUND;
END;
$$;

-- The seed's cleanup: one DELETE of every expired row that holds no live
-- lease. (A loop of batches inside one function call would still be one
-- transaction, holding every deleted row's lock to the end, so it buys
-- nothing over the one statement.)
CREATE FUNCTION plpgsql_idem.cleanup_expired_idempotency_keys()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	v_n bigint;
BEGIN
	DELETE FROM plpgsql_idem.stripe_idempotency_keys k
	WHERE k.expires_at <= statement_timestamp()
	  AND (k.locked_until IS NULL OR k.locked_until <= statement_timestamp());
	GET DIAGNOSTICS v_n = ROW_COUNT;
	RETURN v_n;
END;
$$;
