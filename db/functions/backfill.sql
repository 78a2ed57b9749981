-- The writes of `dualledger backfill` (migration 012, docs/backfill.md). The command runs as the
-- schema owner (an operator's command); these functions are the only writers of the two tables,
-- and nobody else may call them.
--
--   backfill_start            create the source's checkpoint or take it up again (resume)
--   backfill_checkpoint       one committed batch: totals, position, report length, seq ranges;
--                             called in the batch's own transaction, after post_ledger_entries
--   backfill_finish           COMPLETED, PAUSED or FAILED
--   backfill_rollback_begin   start (or take up again) a rollback, in the operator log
--   backfill_rollback_progress  reversals a batch of the rollback created (in its transaction)
--   backfill_rollback_finish  the rollback's outcome

CREATE OR REPLACE FUNCTION backfill_start(p_source_type text, p_source_id text, p_ledger_id text, p_errors_file text, p_metadata jsonb)
RETURNS ledger_backfill_checkpoints
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c ledger_backfill_checkpoints;
BEGIN
    SELECT * INTO c FROM ledger_backfill_checkpoints
     WHERE source_id = p_source_id AND source_type = p_source_type FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ledger_backfill_checkpoints (source_id, source_type, ledger_id, errors_file, metadata)
        VALUES (p_source_id, p_source_type, p_ledger_id, p_errors_file, coalesce(p_metadata, '{}'::jsonb))
        RETURNING * INTO c;
        RETURN c;
    END IF;
    -- A completed run is left as it is (the caller says so and posts nothing); a rolled-back one
    -- must not post again (its references would replay as if the reversed entries still counted).
    IF c.status = 'COMPLETED' OR c.rollback_status IS NOT NULL THEN
        RETURN c;
    END IF;
    UPDATE ledger_backfill_checkpoints
       SET status = 'IN_PROGRESS', runs = runs + 1, error_message = NULL, last_checkpoint_at = now(),
           errors_file = coalesce(errors_file, p_errors_file)
           -- metadata stays what the first run recorded (source, mapping digest): the CLI refuses
           -- to resume with another input, and the record must show the input the seqs came from.
     WHERE source_id = p_source_id AND source_type = p_source_type
    RETURNING * INTO c;
    RETURN c;
END $$;
REVOKE ALL ON FUNCTION backfill_start(text, text, text, text, jsonb) FROM PUBLIC;

-- p_batches: [{"ledger_id": ..., "first_seq": ..., "last_seq": ..., "created": ...}], one per
-- ledger of the batch that created entries. p_metadata is merged into the row's metadata (the
-- source's fingerprint of the rows read so far, for a resume to check).
DROP FUNCTION IF EXISTS backfill_checkpoint(text, text, text, timestamptz, bigint, bigint, bigint, bigint, bigint, jsonb);
CREATE OR REPLACE FUNCTION backfill_checkpoint(
    p_source_type text, p_source_id text, p_last_processed_id text, p_last_processed_timestamp timestamptz,
    p_processed bigint, p_successful bigint, p_failed bigint, p_skipped bigint, p_errors_offset bigint, p_batches jsonb,
    p_metadata jsonb)
RETURNS ledger_backfill_checkpoints
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c ledger_backfill_checkpoints;
BEGIN
    UPDATE ledger_backfill_checkpoints
       SET last_processed_id = p_last_processed_id,
           last_processed_timestamp = coalesce(p_last_processed_timestamp, last_processed_timestamp),
           total_processed = total_processed + p_processed,
           total_successful = total_successful + p_successful,
           total_failed = total_failed + p_failed,
           total_skipped = total_skipped + p_skipped,
           errors_offset = p_errors_offset,
           metadata = metadata || coalesce(p_metadata, '{}'::jsonb),
           batches = batches + 1,
           last_checkpoint_at = now()
     WHERE source_id = p_source_id AND source_type = p_source_type AND status = 'IN_PROGRESS' AND rollback_status IS NULL
    RETURNING * INTO c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'backfill %/% is not in progress', p_source_type, p_source_id USING ERRCODE = 'DL009';
    END IF;
    INSERT INTO ledger_backfill_batches (ledger_id, source_type, source_id, batch_no, first_seq, last_seq, created)
    SELECT b.ledger_id, p_source_type, p_source_id, c.batches, b.first_seq, b.last_seq, b.created
      FROM jsonb_to_recordset(coalesce(p_batches, '[]'::jsonb)) AS b(ledger_id text, first_seq bigint, last_seq bigint, created integer);
    RETURN c;
END $$;
REVOKE ALL ON FUNCTION backfill_checkpoint(text, text, text, timestamptz, bigint, bigint, bigint, bigint, bigint, jsonb, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION backfill_finish(p_source_type text, p_source_id text, p_status text, p_error_message text)
RETURNS ledger_backfill_checkpoints
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c ledger_backfill_checkpoints;
BEGIN
    IF p_status NOT IN ('COMPLETED', 'PAUSED', 'FAILED') THEN
        RAISE EXCEPTION 'a run finishes COMPLETED, PAUSED or FAILED, not %', p_status USING ERRCODE = 'DL009';
    END IF;
    UPDATE ledger_backfill_checkpoints
       SET status = p_status, error_message = p_error_message, last_checkpoint_at = now(),
           completed_at = CASE WHEN p_status = 'COMPLETED' THEN now() END
     WHERE source_id = p_source_id AND source_type = p_source_type AND status = 'IN_PROGRESS'
    RETURNING * INTO c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'backfill %/% is not in progress', p_source_type, p_source_id USING ERRCODE = 'DL009';
    END IF;
    RETURN c;
END $$;
REVOKE ALL ON FUNCTION backfill_finish(text, text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION backfill_rollback_begin(p_actor text, p_source_type text, p_source_id text, p_reason text)
RETURNS ledger_backfill_checkpoints
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c ledger_backfill_checkpoints;
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a rollback needs a reason' USING ERRCODE = 'DL009';
    END IF;
    PERFORM dl_begin_act(p_actor, p_reason);
    SELECT * INTO c FROM ledger_backfill_checkpoints
     WHERE source_id = p_source_id AND source_type = p_source_type FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no backfill of %/%', p_source_type, p_source_id USING ERRCODE = 'DL009';
    END IF;
    IF c.status = 'IN_PROGRESS' THEN
        -- The caller holds the run's lock, so no run is alive: the one that left this was killed.
        c.status := 'FAILED';
    END IF;
    -- The first rollback's reason and times stay (the operator log keeps every later one): the
    -- run again of a completed rollback, which finds every reversal made, changes neither.
    UPDATE ledger_backfill_checkpoints
       SET status = c.status,
           rollback_status = CASE WHEN rollback_status = 'COMPLETED' THEN 'COMPLETED' ELSE 'IN_PROGRESS' END,
           rollback_reason = coalesce(rollback_reason, p_reason),
           rollback_started_at = coalesce(rollback_started_at, now()),
           rollback_completed_at = CASE WHEN rollback_status = 'COMPLETED' THEN rollback_completed_at END,
           error_message = CASE WHEN status = 'IN_PROGRESS' THEN 'interrupted, then rolled back' ELSE error_message END
     WHERE source_id = p_source_id AND source_type = p_source_type
    RETURNING * INTO c;
    PERFORM record_operator_action(p_actor, 'backfill.rollback', p_source_type || '/' || p_source_id, NULL,
        jsonb_build_object('source_type', p_source_type, 'source_id', p_source_id, 'status', c.status,
                           'total_successful', c.total_successful, 'total_reversed', c.total_reversed),
        p_reason);
    PERFORM dl_end_act();
    RETURN c;
END $$;
REVOKE ALL ON FUNCTION backfill_rollback_begin(text, text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION backfill_rollback_finish(p_source_type text, p_source_id text, p_status text, p_reversed bigint, p_error_message text)
RETURNS ledger_backfill_checkpoints
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c ledger_backfill_checkpoints;
BEGIN
    IF p_status NOT IN ('COMPLETED', 'FAILED') THEN
        RAISE EXCEPTION 'a rollback finishes COMPLETED or FAILED, not %', p_status USING ERRCODE = 'DL009';
    END IF;
    UPDATE ledger_backfill_checkpoints
       SET rollback_status = p_status, total_reversed = p_reversed,
           rollback_completed_at = CASE WHEN p_status = 'COMPLETED' THEN coalesce(rollback_completed_at, now()) END,
           error_message = coalesce(p_error_message, error_message)
     WHERE source_id = p_source_id AND source_type = p_source_type AND rollback_status IS NOT NULL
    RETURNING * INTO c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rollback of %/% was started', p_source_type, p_source_id USING ERRCODE = 'DL009';
    END IF;
    RETURN c;
END $$;
REVOKE ALL ON FUNCTION backfill_rollback_finish(text, text, text, bigint, text) FROM PUBLIC;

-- Called in the transaction of each batch of reversals: total_reversed then counts what is
-- committed, also after a rollback killed before its end (backfill_rollback_finish sets the
-- final count, replays of a resumed rollback included).
CREATE OR REPLACE FUNCTION backfill_rollback_progress(p_source_type text, p_source_id text, p_created bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    UPDATE public.ledger_backfill_checkpoints
       SET total_reversed = total_reversed + p_created
     WHERE source_id = p_source_id AND source_type = p_source_type AND rollback_status = 'IN_PROGRESS';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rollback of %/% is in progress', p_source_type, p_source_id USING ERRCODE = 'DL009';
    END IF;
END $$;
REVOKE ALL ON FUNCTION backfill_rollback_progress(text, text, bigint) FROM PUBLIC;
