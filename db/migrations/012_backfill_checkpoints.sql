-- 012_backfill_checkpoints.sql
--
-- The state of `dualledger backfill` (docs/backfill.md), the seed's BACKFILL_STRATEGY tables:
--
--   ledger_backfill_checkpoints  one row per source (UNIQUE (source_id, source_type), the seed's
--                                columns and statuses, plus the run's own bookkeeping). Updated
--                                in the transaction of every batch the run posts, so that the
--                                checkpoint never runs ahead of or behind the ledger. A reference
--                                table (docs/scale-out.md): few rows, one per source.
--   ledger_backfill_batches      one row per (batch, ledger) that created entries: the seq range
--                                the batch's new entries occupy. Written in the same transaction
--                                as the batch. A ledger's batch holds the ledger's head lock, so
--                                the entries it creates have consecutive seqs: the ranges name
--                                exactly the entries the run created (and nothing it merely found
--                                already there), which is what `backfill rollback` reverses and
--                                `backfill verify` counts. Distributed by ledger_id.
--
-- Both are written only through the functions of db/functions/backfill.sql (the operator's
-- command runs as the schema owner); dualledger_readonly may read them (the seed's monitoring
-- queries run unchanged as that role).
--
-- Every statement is idempotent: the file is also applied with plain psql
-- (scripts/run-migrations.sh, one transaction per file).

CREATE TABLE IF NOT EXISTS ledger_backfill_checkpoints (
    source_id                text NOT NULL,
    source_type              text NOT NULL,
    -- The ledger of rows that name none (--ledger).
    ledger_id                text NOT NULL,
    status                   text NOT NULL DEFAULT 'IN_PROGRESS',
    -- The source position of the last row of the last committed batch (a CSV data row number, a
    -- database key, an API cursor), as text.
    last_processed_id        text,
    -- The business time of the last row of the last committed batch that had one.
    last_processed_timestamp timestamptz,
    total_processed          bigint NOT NULL DEFAULT 0,  -- rows read, whatever became of them
    total_successful         bigint NOT NULL DEFAULT 0,  -- rows that created an entry
    total_failed             bigint NOT NULL DEFAULT 0,  -- rows rejected (in the error report)
    total_skipped            bigint NOT NULL DEFAULT 0,  -- rows already in the ledger with the same content
    batches                  bigint NOT NULL DEFAULT 0,  -- committed batches
    runs                     integer NOT NULL DEFAULT 1, -- how many times the run was started
    error_message            text,
    -- The error report (JSON lines) and its length after the last committed batch: a line past
    -- it belongs to a batch that did not commit and is written again by the next run.
    errors_file              text,
    errors_offset            bigint NOT NULL DEFAULT 0,
    metadata                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at               timestamptz NOT NULL DEFAULT now(),
    last_checkpoint_at       timestamptz NOT NULL DEFAULT now(),
    completed_at             timestamptz,
    -- `backfill rollback`: reversals of every entry the run created.
    rollback_status          text,
    rollback_reason          text,
    rollback_started_at      timestamptz,
    rollback_completed_at    timestamptz,
    total_reversed           bigint NOT NULL DEFAULT 0,
    CONSTRAINT ledger_backfill_checkpoints_pkey PRIMARY KEY (source_id, source_type),
    CONSTRAINT ledger_backfill_checkpoints_source_id CHECK (source_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$'),
    CONSTRAINT ledger_backfill_checkpoints_source_type CHECK (source_type IN ('csv', 'database', 'api', 'scb')),
    CONSTRAINT ledger_backfill_checkpoints_status CHECK (status IN ('IN_PROGRESS', 'COMPLETED', 'FAILED', 'PAUSED')),
    CONSTRAINT ledger_backfill_checkpoints_rollback_status CHECK (rollback_status IN ('IN_PROGRESS', 'COMPLETED', 'FAILED')),
    CONSTRAINT ledger_backfill_checkpoints_totals CHECK (
        total_successful >= 0 AND total_failed >= 0 AND total_skipped >= 0 AND batches >= 0 AND errors_offset >= 0
        AND total_reversed >= 0 AND total_processed = total_successful + total_failed + total_skipped),
    CONSTRAINT ledger_backfill_checkpoints_completed CHECK ((status = 'COMPLETED') = (completed_at IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS ledger_backfill_batches (
    ledger_id    text NOT NULL,
    source_type  text NOT NULL,
    source_id    text NOT NULL,
    batch_no     bigint NOT NULL,
    first_seq    bigint NOT NULL,
    last_seq     bigint NOT NULL,
    created      integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_backfill_batches_pkey PRIMARY KEY (ledger_id, source_type, source_id, batch_no),
    CONSTRAINT ledger_backfill_batches_range CHECK (first_seq >= 1 AND created >= 1 AND last_seq - first_seq + 1 = created)
);

REVOKE ALL ON ledger_backfill_checkpoints, ledger_backfill_batches FROM PUBLIC;
GRANT SELECT ON ledger_backfill_checkpoints, ledger_backfill_batches TO dualledger_readonly;
