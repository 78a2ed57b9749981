-- 000_base_schema.sql
--
-- The base tables that the seed's migrations 001-005 assume already exist (in the seed they came
-- from an earlier Prisma schema): currencies, ledgers, banks, bank_accounts, ledger_entries, the
-- canonical hash encoding of an entry, and the triggers that make entries append-only and chained.
--
-- Every statement is idempotent so that the file can be applied with plain `psql -f` as well as by
-- `dualledger migrate` (which records it in dualledger_schema_version).

DO $$
BEGIN
    -- The canonical hash encoding hashes UTF-8 bytes; a database in another encoding would hash
    -- different bytes for the same text.
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'dualledger needs a UTF8 database, this one is %', current_setting('server_encoding')
            USING HINT = 'CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0';
    END IF;
END $$;

-- ISO 4217 currencies (and the precious-metal / SDR codes, whose minor unit ISO gives as "N.A.":
-- here 18, any precision). Kept equal to internal/money's table by a test (TestCurrenciesMatchSQL).
CREATE TABLE IF NOT EXISTS currencies (
    code       text     PRIMARY KEY CONSTRAINT currencies_code_format CHECK (code ~ '^[A-Z]{3}$'),
    minor_unit smallint NOT NULL CONSTRAINT currencies_minor_unit_range CHECK (minor_unit BETWEEN 0 AND 18),
    name       text     NOT NULL
);

INSERT INTO currencies (code, minor_unit, name) VALUES
    ('AED', 2, 'UAE Dirham'),
    ('AFN', 2, 'Afghani'),
    ('ALL', 2, 'Lek'),
    ('AMD', 2, 'Armenian Dram'),
    ('AOA', 2, 'Kwanza'),
    ('ARS', 2, 'Argentine Peso'),
    ('AUD', 2, 'Australian Dollar'),
    ('AWG', 2, 'Aruban Florin'),
    ('AZN', 2, 'Azerbaijan Manat'),
    ('BAM', 2, 'Convertible Mark'),
    ('BBD', 2, 'Barbados Dollar'),
    ('BDT', 2, 'Taka'),
    ('BGN', 2, 'Bulgarian Lev'),
    ('BHD', 3, 'Bahraini Dinar'),
    ('BIF', 0, 'Burundi Franc'),
    ('BMD', 2, 'Bermudian Dollar'),
    ('BND', 2, 'Brunei Dollar'),
    ('BOB', 2, 'Boliviano'),
    ('BOV', 2, 'Mvdol'),
    ('BRL', 2, 'Brazilian Real'),
    ('BSD', 2, 'Bahamian Dollar'),
    ('BTN', 2, 'Ngultrum'),
    ('BWP', 2, 'Pula'),
    ('BYN', 2, 'Belarusian Ruble'),
    ('BZD', 2, 'Belize Dollar'),
    ('CAD', 2, 'Canadian Dollar'),
    ('CDF', 2, 'Congolese Franc'),
    ('CHE', 2, 'WIR Euro'),
    ('CHF', 2, 'Swiss Franc'),
    ('CHW', 2, 'WIR Franc'),
    ('CLF', 4, 'Unidad de Fomento'),
    ('CLP', 0, 'Chilean Peso'),
    ('CNY', 2, 'Yuan Renminbi'),
    ('COP', 2, 'Colombian Peso'),
    ('COU', 2, 'Unidad de Valor Real'),
    ('CRC', 2, 'Costa Rican Colon'),
    ('CUC', 2, 'Peso Convertible'),
    ('CUP', 2, 'Cuban Peso'),
    ('CVE', 2, 'Cabo Verde Escudo'),
    ('CZK', 2, 'Czech Koruna'),
    ('DJF', 0, 'Djibouti Franc'),
    ('DKK', 2, 'Danish Krone'),
    ('DOP', 2, 'Dominican Peso'),
    ('DZD', 2, 'Algerian Dinar'),
    ('EGP', 2, 'Egyptian Pound'),
    ('ERN', 2, 'Nakfa'),
    ('ETB', 2, 'Ethiopian Birr'),
    ('EUR', 2, 'Euro'),
    ('FJD', 2, 'Fiji Dollar'),
    ('FKP', 2, 'Falkland Islands Pound'),
    ('GBP', 2, 'Pound Sterling'),
    ('GEL', 2, 'Lari'),
    ('GHS', 2, 'Ghana Cedi'),
    ('GIP', 2, 'Gibraltar Pound'),
    ('GMD', 2, 'Dalasi'),
    ('GNF', 0, 'Guinean Franc'),
    ('GTQ', 2, 'Quetzal'),
    ('GYD', 2, 'Guyana Dollar'),
    ('HKD', 2, 'Hong Kong Dollar'),
    ('HNL', 2, 'Lempira'),
    ('HTG', 2, 'Gourde'),
    ('HUF', 2, 'Forint'),
    ('IDR', 2, 'Rupiah'),
    ('ILS', 2, 'New Israeli Sheqel'),
    ('INR', 2, 'Indian Rupee'),
    ('IQD', 3, 'Iraqi Dinar'),
    ('IRR', 2, 'Iranian Rial'),
    ('ISK', 0, 'Iceland Krona'),
    ('JMD', 2, 'Jamaican Dollar'),
    ('JOD', 3, 'Jordanian Dinar'),
    ('JPY', 0, 'Yen'),
    ('KES', 2, 'Kenyan Shilling'),
    ('KGS', 2, 'Som'),
    ('KHR', 2, 'Riel'),
    ('KMF', 0, 'Comorian Franc'),
    ('KPW', 2, 'North Korean Won'),
    ('KRW', 0, 'Won'),
    ('KWD', 3, 'Kuwaiti Dinar'),
    ('KYD', 2, 'Cayman Islands Dollar'),
    ('KZT', 2, 'Tenge'),
    ('LAK', 2, 'Lao Kip'),
    ('LBP', 2, 'Lebanese Pound'),
    ('LKR', 2, 'Sri Lanka Rupee'),
    ('LRD', 2, 'Liberian Dollar'),
    ('LSL', 2, 'Loti'),
    ('LYD', 3, 'Libyan Dinar'),
    ('MAD', 2, 'Moroccan Dirham'),
    ('MDL', 2, 'Moldovan Leu'),
    ('MGA', 2, 'Malagasy Ariary'),
    ('MKD', 2, 'Denar'),
    ('MMK', 2, 'Kyat'),
    ('MNT', 2, 'Tugrik'),
    ('MOP', 2, 'Pataca'),
    ('MRU', 2, 'Ouguiya'),
    ('MUR', 2, 'Mauritius Rupee'),
    ('MVR', 2, 'Rufiyaa'),
    ('MWK', 2, 'Malawi Kwacha'),
    ('MXN', 2, 'Mexican Peso'),
    ('MXV', 2, 'Mexican Unidad de Inversion (UDI)'),
    ('MYR', 2, 'Malaysian Ringgit'),
    ('MZN', 2, 'Mozambique Metical'),
    ('NAD', 2, 'Namibia Dollar'),
    ('NGN', 2, 'Naira'),
    ('NIO', 2, 'Cordoba Oro'),
    ('NOK', 2, 'Norwegian Krone'),
    ('NPR', 2, 'Nepalese Rupee'),
    ('NZD', 2, 'New Zealand Dollar'),
    ('OMR', 3, 'Rial Omani'),
    ('PAB', 2, 'Balboa'),
    ('PEN', 2, 'Sol'),
    ('PGK', 2, 'Kina'),
    ('PHP', 2, 'Philippine Peso'),
    ('PKR', 2, 'Pakistan Rupee'),
    ('PLN', 2, 'Zloty'),
    ('PYG', 0, 'Guarani'),
    ('QAR', 2, 'Qatari Rial'),
    ('RON', 2, 'Romanian Leu'),
    ('RSD', 2, 'Serbian Dinar'),
    ('RUB', 2, 'Russian Ruble'),
    ('RWF', 0, 'Rwanda Franc'),
    ('SAR', 2, 'Saudi Riyal'),
    ('SBD', 2, 'Solomon Islands Dollar'),
    ('SCR', 2, 'Seychelles Rupee'),
    ('SDG', 2, 'Sudanese Pound'),
    ('SEK', 2, 'Swedish Krona'),
    ('SGD', 2, 'Singapore Dollar'),
    ('SHP', 2, 'Saint Helena Pound'),
    ('SLE', 2, 'Leone'),
    ('SOS', 2, 'Somali Shilling'),
    ('SRD', 2, 'Surinam Dollar'),
    ('SSP', 2, 'South Sudanese Pound'),
    ('STN', 2, 'Dobra'),
    ('SVC', 2, 'El Salvador Colon'),
    ('SYP', 2, 'Syrian Pound'),
    ('SZL', 2, 'Lilangeni'),
    ('THB', 2, 'Baht'),
    ('TJS', 2, 'Somoni'),
    ('TMT', 2, 'Turkmenistan New Manat'),
    ('TND', 3, 'Tunisian Dinar'),
    ('TOP', 2, 'Pa''anga'),
    ('TRY', 2, 'Turkish Lira'),
    ('TTD', 2, 'Trinidad and Tobago Dollar'),
    ('TWD', 2, 'New Taiwan Dollar'),
    ('TZS', 2, 'Tanzanian Shilling'),
    ('UAH', 2, 'Hryvnia'),
    ('UGX', 0, 'Uganda Shilling'),
    ('USD', 2, 'US Dollar'),
    ('USN', 2, 'US Dollar (Next day)'),
    ('UYI', 0, 'Uruguay Peso en Unidades Indexadas (UI)'),
    ('UYU', 2, 'Peso Uruguayo'),
    ('UYW', 4, 'Unidad Previsional'),
    ('UZS', 2, 'Uzbekistan Sum'),
    ('VED', 2, 'Bolivar Soberano'),
    ('VES', 2, 'Bolivar Soberano'),
    ('VND', 0, 'Dong'),
    ('VUV', 0, 'Vatu'),
    ('WST', 2, 'Tala'),
    ('XAF', 0, 'CFA Franc BEAC'),
    ('XAG', 18, 'Silver'),
    ('XAU', 18, 'Gold'),
    ('XBA', 18, 'Bond Markets Unit European Composite Unit (EURCO)'),
    ('XBB', 18, 'Bond Markets Unit European Monetary Unit (E.M.U.-6)'),
    ('XBC', 18, 'Bond Markets Unit European Unit of Account 9 (E.U.A.-9)'),
    ('XBD', 18, 'Bond Markets Unit European Unit of Account 17 (E.U.A.-17)'),
    ('XCD', 2, 'East Caribbean Dollar'),
    ('XCG', 2, 'Caribbean Guilder'),
    ('XDR', 18, 'SDR (Special Drawing Right)'),
    ('XOF', 0, 'CFA Franc BCEAO'),
    ('XPD', 18, 'Palladium'),
    ('XPF', 0, 'CFP Franc'),
    ('XPT', 18, 'Platinum'),
    ('XSU', 18, 'Sucre'),
    ('XUA', 18, 'ADB Unit of Account'),
    ('YER', 2, 'Yemeni Rial'),
    ('ZAR', 2, 'Rand'),
    ('ZMW', 2, 'Zambian Kwacha'),
    ('ZWG', 2, 'Zimbabwe Gold')
ON CONFLICT (code) DO UPDATE SET minor_unit = EXCLUDED.minor_unit, name = EXCLUDED.name;

CREATE TABLE IF NOT EXISTS ledgers (
    id         text        PRIMARY KEY
               CONSTRAINT ledgers_id_format CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    -- The chain head: seq and block_hash of the last entry (0 and 32 zero bytes when empty).
    -- Every posting transaction locks this row first, so a ledger is one serial order.
    head_seq   bigint      NOT NULL DEFAULT 0 CONSTRAINT ledgers_head_seq_nonnegative CHECK (head_seq >= 0),
    head_hash  bytea       NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
               CONSTRAINT ledgers_head_hash_length CHECK (octet_length(head_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);

-- Member banks (SCBs) whose own ledgers we mirror through the outbox.
CREATE TABLE IF NOT EXISTS banks (
    id         text        PRIMARY KEY
               CONSTRAINT banks_id_format CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    name       text        NOT NULL CONSTRAINT banks_name_nonempty CHECK (name <> '' AND length(name) <= 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS bank_accounts (
    ledger_id         text          NOT NULL REFERENCES ledgers (id),
    id                text          NOT NULL
                      CONSTRAINT bank_accounts_id_format CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$'),
    -- The member bank that owns the account, if any: a registered bank, so that a typo cannot
    -- silently leave an account's postings unmirrored (every posting touching it gets an outbox
    -- row for that bank).
    bank_id           text          NULL REFERENCES banks (id)
                      CONSTRAINT bank_accounts_bank_id_format CHECK (bank_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    currency_code     text          NOT NULL REFERENCES currencies (code),
    asset_type        text          NOT NULL
                      CONSTRAINT bank_accounts_asset_type_valid CHECK (asset_type IN ('fiat', 'cbdc', 'commodity', 'security')),
    balance           numeric(38,18) NOT NULL DEFAULT 0,
    available_balance numeric(38,18) NOT NULL DEFAULT 0,
    reserved_balance  numeric(38,18) NOT NULL DEFAULT 0,
    -- 0: no overdraft. NULL: unlimited (issuance and system accounts).
    overdraft_limit   numeric(38,18) NULL DEFAULT 0
                      CONSTRAINT bank_accounts_overdraft_limit_nonnegative CHECK (overdraft_limit IS NULL OR overdraft_limit >= 0),
    status            text          NOT NULL DEFAULT 'active'
                      CONSTRAINT bank_accounts_status_valid CHECK (status IN ('active', 'frozen', 'closed')),
    metadata          jsonb         NOT NULL DEFAULT '{}'::jsonb
                      CONSTRAINT bank_accounts_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT bank_accounts_pkey PRIMARY KEY (ledger_id, id),
    -- Target of the entries' composite foreign keys: an entry's currency and asset type must be
    -- those of both of its accounts (DESIGN 2.2), enforced declaratively.
    CONSTRAINT bank_accounts_currency_key UNIQUE (ledger_id, id, currency_code, asset_type)
)
-- Room on each page for HOT updates: every posting rewrites balances, and a HOT update touches no index.
WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS bank_accounts_bank_id_idx ON bank_accounts (bank_id) WHERE bank_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS ledger_entries (
    id                   bigint GENERATED BY DEFAULT AS IDENTITY,
    -- No separate foreign key to ledgers: the account foreign keys below include ledger_id, and
    -- bank_accounts.ledger_id references ledgers (one check per row fewer on the hot path).
    ledger_id            text          NOT NULL,
    seq                  bigint        NOT NULL CONSTRAINT ledger_entries_seq_positive CHECK (seq > 0),
    debit_account_id     text          NOT NULL,
    credit_account_id    text          NOT NULL,
    amount               numeric(38,18) NOT NULL CONSTRAINT ledger_entries_amount_positive CHECK (amount > 0),
    currency_code        text          NOT NULL,
    asset_type           text          NOT NULL,
    transaction_type     text          NOT NULL
                         CONSTRAINT ledger_entries_transaction_type_valid
                         CHECK (transaction_type <> '' AND length(transaction_type) <= 64 AND transaction_type !~ '[[:cntrl:]]'),
    reference_id         text          NOT NULL
                         CONSTRAINT ledger_entries_reference_id_valid
                         CHECK (reference_id <> '' AND length(reference_id) <= 255 AND reference_id !~ '[[:cntrl:]]'),
    fx_rate              numeric(38,18) NULL CONSTRAINT ledger_entries_fx_rate_positive CHECK (fx_rate IS NULL OR fx_rate > 0),
    metadata             jsonb         NOT NULL DEFAULT '{}'::jsonb
                         CONSTRAINT ledger_entries_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    -- Business time (a backfill keeps the source's); recorded_at is the commit time.
    timestamp_utc        timestamptz   NOT NULL
                         CONSTRAINT ledger_entries_timestamp_range
                         CHECK (timestamp_utc >= '1900-01-01T00:00:00Z' AND timestamp_utc < '10000-01-01T00:00:00Z'),
    recorded_at          timestamptz   NOT NULL DEFAULT now(),
    previous_hash        bytea         NOT NULL CONSTRAINT ledger_entries_previous_hash_length CHECK (octet_length(previous_hash) = 32),
    block_hash           bytea         NOT NULL CONSTRAINT ledger_entries_block_hash_length CHECK (octet_length(block_hash) = 32),
    reverses_entry_id    bigint        NULL,
    -- Both accounts' balances right after this entry (what every posting result returns).
    debit_balance_after  numeric(38,18) NOT NULL,
    credit_balance_after numeric(38,18) NOT NULL,
    CONSTRAINT ledger_entries_pkey PRIMARY KEY (ledger_id, seq),
    CONSTRAINT ledger_entries_id_key UNIQUE (id),
    CONSTRAINT ledger_entries_distinct_accounts CHECK (debit_account_id <> credit_account_id)
    -- That both accounts exist in the entry's ledger with the entry's currency and asset type is
    -- checked by the statement trigger ledger_entries_chain_check below, set-based: two per-row
    -- foreign keys cost about 10 ms per 1000-entry batch. Accounts are never deleted and their
    -- ledger, id, currency and asset type are immutable, so the insert-time check is the whole of
    -- what the foreign keys would enforce.
);

-- Reversals of an entry (checked by the posting function: a reversal never exceeds its entry).
CREATE INDEX IF NOT EXISTS ledger_entries_reverses_idx
    ON ledger_entries (ledger_id, reverses_entry_id) WHERE reverses_entry_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Canonical encoding of an entry for the hash chain (docs/hash-chain.md has the specification and
-- test vectors; internal/ledger/hash.go implements the same in Go):
--
--   canonical  = utf8( "DLE1" US id US ledger_id US seq US debit_account_id US credit_account_id
--                      US amount US currency_code US asset_type US transaction_type US reference_id
--                      US fx_rate US metadata US timestamp_utc US reverses_entry_id )
--   block_hash = sha256(previous_hash || canonical)
--
-- US is the ASCII unit separator (0x1F). No field can contain it: ids are restricted by CHECK
-- constraints, reference_id and transaction_type may hold no control character, numbers and
-- timestamps are digits, and jsonb's text rendering escapes every control character. So the
-- encoding is unambiguous, and it is one concat + one conversion per entry (cheap in SQL).
--   numbers    decimal text; amount and fx_rate with exactly 18 decimals (as NUMERIC(38,18) prints)
--   NULL       the empty string (fx_rate, reverses_entry_id)
--   metadata   PostgreSQL's jsonb text rendering
--   timestamp  UTC, 'YYYY-MM-DDTHH:MM:SS.ffffffZ'
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION ledger_entry_canonical(
    p_id bigint, p_ledger_id text, p_seq bigint, p_debit_account_id text, p_credit_account_id text,
    p_amount numeric, p_currency_code text, p_asset_type text, p_transaction_type text, p_reference_id text,
    p_fx_rate numeric, p_metadata jsonb, p_timestamp_utc timestamptz, p_reverses_entry_id bigint
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
-- (Every argument is coalesced: concat_ws skips NULLs, which would shift the fields.)
RETURN convert_to(concat_ws(E'\x1f', 'DLE1', coalesce(p_id::text, ''), coalesce(p_ledger_id, ''),
                            coalesce(p_seq::text, ''), coalesce(p_debit_account_id, ''), coalesce(p_credit_account_id, ''),
                            coalesce(round(p_amount, 18)::text, ''), coalesce(p_currency_code, ''), coalesce(p_asset_type, ''),
                            coalesce(p_transaction_type, ''), coalesce(p_reference_id, ''),
                            coalesce(round(p_fx_rate, 18)::text, ''), coalesce(p_metadata::text, ''),
                            coalesce(to_char(p_timestamp_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
                            coalesce(p_reverses_entry_id::text, '')), 'UTF8');

CREATE OR REPLACE FUNCTION ledger_entry_block_hash(e ledger_entries) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN sha256(e.previous_hash || ledger_entry_canonical(
    e.id, e.ledger_id, e.seq, e.debit_account_id, e.credit_account_id, e.amount, e.currency_code,
    e.asset_type, e.transaction_type, e.reference_id, e.fx_rate, e.metadata, e.timestamp_utc,
    e.reverses_entry_id));

-- ---------------------------------------------------------------------------------------------
-- Guards. The real boundary for the application is privileges (the dualledger_app role may only
-- call the posting functions, see 005); these triggers also stop the table owner and superusers
-- from changing money by hand by accident. The posting functions set the transaction-local flag
-- dualledger.posting = 'on' while they write.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_in_posting_function() RETURNS boolean
LANGUAGE sql STABLE
RETURN coalesce(current_setting('dualledger.posting', true), '') = 'on';

CREATE OR REPLACE FUNCTION dl_refuse_modification() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'DL100', HINT = coalesce(TG_ARGV[0], '');
END $$;

CREATE OR REPLACE FUNCTION dl_require_posting_function() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT dl_in_posting_function() THEN
        RAISE EXCEPTION '% of % outside the posting functions is not allowed', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'DL101',
                  HINT = 'post entries with post_ledger_entry(...) or post_ledger_entries(...)';
    END IF;
    RETURN NULL;
END $$;

-- Entries: no UPDATE, DELETE or TRUNCATE, ever; INSERT only from the posting functions.
DROP TRIGGER IF EXISTS ledger_entries_no_update ON ledger_entries;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification('entries are never changed: correct one with a reversal entry (a new posting)');
DROP TRIGGER IF EXISTS ledger_entries_no_delete ON ledger_entries;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification('entries are never changed: correct one with a reversal entry (a new posting)');
DROP TRIGGER IF EXISTS ledger_entries_no_truncate ON ledger_entries;
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification('entries are never changed: correct one with a reversal entry (a new posting)');
DROP TRIGGER IF EXISTS ledger_entries_insert_guard ON ledger_entries;
CREATE TRIGGER ledger_entries_insert_guard BEFORE INSERT ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION dl_require_posting_function();

-- The chain check, once per INSERT statement (set-based, so a batch of 1000 costs a few queries):
-- every new entry's block_hash is sha256(previous_hash || canonical), its previous_hash is the
-- block_hash of seq-1 in the same ledger (32 zero bytes for seq 1), both accounts exist with the
-- entry's currency and asset type, and the ledger head points at the last entry. Together with the primary key (ledger_id, seq) this makes seq gapless and the
-- chain unbroken for any writer.
CREATE OR REPLACE FUNCTION dl_check_new_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad     record;
    trusted boolean := dl_in_posting_function();
BEGIN
    -- Links, always. Inside the batch the predecessor is the previous new row; only the first new
    -- row of each ledger looks its predecessor up (one index probe), so the cost does not depend
    -- on the size of the table or on its statistics. Rows not written by the posting functions
    -- also have every hash recomputed and their accounts checked. (The posting functions compute
    -- exactly these and check the accounts under the ledger head lock; repeating it for their
    -- inserts cost a sixth of the time the ledger is locked. verify-chain and audit recheck all
    -- of it at any time.)
    SELECT x.ledger_id, x.seq,
           CASE WHEN x.hash_bad
                THEN 'block_hash is not sha256(previous_hash || canonical(entry))'
                ELSE 'previous_hash does not match the block_hash of seq-1 (or seq-1 is missing)' END AS why
      INTO bad
      FROM (SELECT n.ledger_id, n.seq, n.block_hash, n.previous_hash,
                   CASE WHEN trusted THEN false ELSE n.block_hash <> ledger_entry_block_hash(n) END AS hash_bad,
                   lag(n.seq) OVER w AS prev_seq, lag(n.block_hash) OVER w AS prev_hash
              FROM new_entries n
            WINDOW w AS (PARTITION BY n.ledger_id ORDER BY n.seq)) x
     WHERE x.hash_bad
        OR CASE WHEN x.prev_seq IS NOT NULL THEN x.prev_seq <> x.seq - 1 OR x.prev_hash <> x.previous_hash
                WHEN x.seq = 1 THEN x.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE x.previous_hash IS DISTINCT FROM (SELECT p.block_hash FROM ledger_entries p
                                                        WHERE p.ledger_id = x.ledger_id AND p.seq = x.seq - 1)
           END
     ORDER BY x.ledger_id, x.seq
     LIMIT 1;
    IF NOT FOUND AND NOT trusted THEN
        -- Both accounts exist with the entry's currency and asset type: one probe per distinct account.
        SELECT d.ledger_id, NULL::bigint AS seq,
               format('account %s does not exist in ledger %s with currency %s and asset type %s',
                      d.account_id, d.ledger_id, d.currency_code, d.asset_type) AS why
          INTO bad
          FROM (SELECT DISTINCT n.ledger_id, a.account_id, n.currency_code, n.asset_type
                  FROM new_entries n
                 CROSS JOIN LATERAL (VALUES (n.debit_account_id), (n.credit_account_id)) AS a(account_id)) d
         WHERE NOT EXISTS (SELECT 1 FROM bank_accounts b
                            WHERE b.ledger_id = d.ledger_id AND b.id = d.account_id
                              AND b.currency_code = d.currency_code AND b.asset_type = d.asset_type
                            OFFSET 0)
         LIMIT 1;
    END IF;
    IF NOT FOUND THEN
        SELECT l.id AS ledger_id, l.head_seq AS seq, 'ledger head does not point at the last entry' AS why
          INTO bad
          FROM (SELECT n.ledger_id, max(n.seq) AS last_seq FROM new_entries n GROUP BY n.ledger_id) t
          JOIN ledgers l ON l.id = t.ledger_id
         WHERE l.head_seq <> t.last_seq
            OR l.head_hash IS DISTINCT FROM (SELECT e.block_hash FROM ledger_entries e
                                              WHERE e.ledger_id = l.id AND e.seq = l.head_seq)
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'hash chain violation in ledger % at seq %: %', bad.ledger_id, bad.seq, bad.why
            USING ERRCODE = 'DL102';
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS ledger_entries_chain_check ON ledger_entries;
CREATE TRIGGER ledger_entries_chain_check AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION dl_check_new_entries();

-- Ledgers: never deleted; created empty; the head moves only forward and only from the posting functions.
CREATE OR REPLACE FUNCTION dl_guard_ledgers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.head_seq <> 0 OR NEW.head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea THEN
            RAISE EXCEPTION 'a new ledger starts with an empty chain (head_seq 0)' USING ERRCODE = 'DL101';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'ledger id and created_at are immutable' USING ERRCODE = 'DL101';
    END IF;
    IF (NEW.head_seq, NEW.head_hash) IS DISTINCT FROM (OLD.head_seq, OLD.head_hash) THEN
        IF NOT dl_in_posting_function() THEN
            RAISE EXCEPTION 'the ledger head moves only when entries are posted' USING ERRCODE = 'DL101';
        END IF;
        IF NEW.head_seq < OLD.head_seq THEN
            RAISE EXCEPTION 'ledger head cannot move backwards (% -> %)', OLD.head_seq, NEW.head_seq USING ERRCODE = 'DL102';
        END IF;
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS ledgers_guard ON ledgers;
CREATE TRIGGER ledgers_guard BEFORE INSERT OR UPDATE ON ledgers
    FOR EACH ROW EXECUTE FUNCTION dl_guard_ledgers();
DROP TRIGGER IF EXISTS ledgers_no_delete ON ledgers;
CREATE TRIGGER ledgers_no_delete BEFORE DELETE OR TRUNCATE ON ledgers
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification();

-- Accounts: never deleted; created with zero balances; identity, currency and asset type immutable;
-- balances change only through the posting functions.
CREATE OR REPLACE FUNCTION dl_guard_new_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.balance <> 0 OR NEW.available_balance <> 0 OR NEW.reserved_balance <> 0 THEN
        RAISE EXCEPTION 'account %/% must be created with zero balances; fund it with a posting from an issuance or opening-balance account',
            NEW.ledger_id, NEW.id USING ERRCODE = 'DL101';
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION dl_refuse_account_identity_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_id, id, currency_code and asset_type of an account are immutable' USING ERRCODE = 'DL101';
END $$;

DROP TRIGGER IF EXISTS bank_accounts_new_guard ON bank_accounts;
CREATE TRIGGER bank_accounts_new_guard BEFORE INSERT ON bank_accounts
    FOR EACH ROW EXECUTE FUNCTION dl_guard_new_account();
DROP TRIGGER IF EXISTS bank_accounts_identity_guard ON bank_accounts;
CREATE TRIGGER bank_accounts_identity_guard BEFORE UPDATE OF ledger_id, id, currency_code, asset_type, created_at ON bank_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_account_identity_change();
DROP TRIGGER IF EXISTS bank_accounts_balance_guard ON bank_accounts;
CREATE TRIGGER bank_accounts_balance_guard BEFORE UPDATE OF balance, available_balance, reserved_balance ON bank_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION dl_require_posting_function();
DROP TRIGGER IF EXISTS bank_accounts_no_delete ON bank_accounts;
CREATE TRIGGER bank_accounts_no_delete BEFORE DELETE OR TRUNCATE ON bank_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification();
