-- 011_ledger_keys.sql
--
-- Every primary, unique and foreign key of the ledger tables includes ledger_id (docs/scale-out.md),
-- so that a distributed PostgreSQL (Citus) can shard them by ledger_id, co-located, with every key
-- checked inside one shard:
--
--   dual_ledger_outbox           primary key (id) -> (id, ledger_id).
--   dual_ledger_outbox_attempts  gains ledger_id (its outbox row's, backfilled, NOT NULL);
--                                primary key (id) -> (id, ledger_id); foreign key (outbox_id) ->
--                                (ledger_id, outbox_id) referencing the outbox's (ledger_id, id).
--                                The outbox functions write ledger_id (db/functions/outbox.sql).
--   ledger_entries               ledger_entries_id_key UNIQUE (id) -> ledger_entries_id_ledger_id_key
--                                UNIQUE (id, ledger_id). Every reader of an entry by id also names
--                                its ledger (the posting function's reversal and retry look-ups,
--                                internal/ledger), so the new index serves them; nothing references
--                                the entries' id (the outbox references (ledger_id, seq)).
--   bank_accounts                already (ledger_id, id) and (ledger_id, id, currency_code, asset_type).
--
-- The new keys lead with id, not ledger_id: a distributed table needs its distribution column in
-- the key, in any position. Led by id, the outbox's primary key still serves the outbox functions'
-- look-ups by row id alone (their signatures, the worker's contract, take the id), so no second
-- index is maintained on every insert; and ids grow, so inserts land at the right edge of each
-- index as they did with the keys on (id) alone.
--
-- The ids stay unique in practice (each is drawn from its identity sequence) but no constraint
-- says so across ledgers any more: a distributed table cannot enforce a unique key without its
-- distribution column.
--
-- Reference tables (currencies, banks, api_keys, operator_actions, operator_actions_head) are
-- unchanged. db/ledger_keys_test.go enforces the rule for every table and key.
--
-- The index builds hold an exclusive lock on the outbox, its attempts and the entries for as long
-- as they take (proportional to the tables' sizes). db/checks/011_ledger_keys.before.sql lists
-- attempts whose outbox row is missing (their ledger_id could not be filled).
--
-- Every statement is idempotent: the file is also applied with plain psql
-- (scripts/run-migrations.sh, one transaction per file).

-- ---------------------------------------------------------------------------------------------
-- The attempts carry their outbox row's ledger_id.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE dual_ledger_outbox_attempts ADD COLUMN IF NOT EXISTS ledger_id text;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM dual_ledger_outbox_attempts WHERE ledger_id IS NULL) THEN
        -- The attempts are insert-only (003's trigger); this backfill is the one update they get,
        -- by the owner, inside this migration's transaction.
        ALTER TABLE dual_ledger_outbox_attempts DISABLE TRIGGER dual_ledger_outbox_attempts_append_only;
        UPDATE dual_ledger_outbox_attempts a SET ledger_id = o.ledger_id
          FROM dual_ledger_outbox o
         WHERE o.id = a.outbox_id AND a.ledger_id IS NULL;
        ALTER TABLE dual_ledger_outbox_attempts ENABLE TRIGGER dual_ledger_outbox_attempts_append_only;
    END IF;
END $$;

ALTER TABLE dual_ledger_outbox_attempts ALTER COLUMN ledger_id SET NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- The keys.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    v_name text;
BEGIN
    -- The attempts' foreign key on outbox_id alone depends on the outbox's primary key on id:
    -- dropped first (whatever its name), replaced by the composite one below.
    FOR v_name IN
        SELECT conname FROM pg_constraint
         WHERE conrelid = 'dual_ledger_outbox_attempts'::regclass AND contype = 'f'
           AND confrelid = 'dual_ledger_outbox'::regclass
           AND pg_get_constraintdef(oid) = 'FOREIGN KEY (outbox_id) REFERENCES dual_ledger_outbox(id)'
    LOOP
        EXECUTE format('ALTER TABLE dual_ledger_outbox_attempts DROP CONSTRAINT %I', v_name);
    END LOOP;

    IF (SELECT pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = 'dual_ledger_outbox'::regclass AND contype = 'p') = 'PRIMARY KEY (id)' THEN
        ALTER TABLE dual_ledger_outbox DROP CONSTRAINT dual_ledger_outbox_pkey;
        ALTER TABLE dual_ledger_outbox ADD CONSTRAINT dual_ledger_outbox_pkey PRIMARY KEY (id, ledger_id);
    END IF;

    IF (SELECT pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = 'dual_ledger_outbox_attempts'::regclass AND contype = 'p') = 'PRIMARY KEY (id)' THEN
        ALTER TABLE dual_ledger_outbox_attempts DROP CONSTRAINT dual_ledger_outbox_attempts_pkey;
        ALTER TABLE dual_ledger_outbox_attempts ADD CONSTRAINT dual_ledger_outbox_attempts_pkey PRIMARY KEY (id, ledger_id);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'dual_ledger_outbox_attempts'::regclass
                    AND conname = 'dual_ledger_outbox_attempts_outbox_fkey') THEN
        ALTER TABLE dual_ledger_outbox_attempts ADD CONSTRAINT dual_ledger_outbox_attempts_outbox_fkey
            FOREIGN KEY (ledger_id, outbox_id) REFERENCES dual_ledger_outbox (ledger_id, id);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'ledger_entries'::regclass
                    AND conname = 'ledger_entries_id_ledger_id_key') THEN
        ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_id_ledger_id_key UNIQUE (id, ledger_id);
    END IF;
    ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_id_key;
END $$;
