-- 018_api_key_expiry.sql
--
-- API keys may expire. expires_at (NULL: the key does not expire) is set when the key is created
-- (dualledger keys create --expires-in 90d, POST /v1/keys {"expires_at": ...}) and never changes,
-- like the rest of a key (dl_guard_api_keys, db/functions/guards.sql): a key that must live longer
-- is replaced by a new one. From expires_at on, the server answers the key's token 401 (the
-- keyring checks the time on every request) and the database refuses it as an actor
-- (dl_begin_act, db/functions/operator_acts.sql), as it refuses a revoked key.
--
-- Why: keys without an end live as long as nobody remembers to revoke them; an operator who
-- gives a contractor or a test a key should be able to give it a lifetime.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz NULL;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'api_keys'::regclass AND conname = 'api_keys_expires_after_creation') THEN
        ALTER TABLE api_keys ADD CONSTRAINT api_keys_expires_after_creation
            CHECK (expires_at IS NULL OR expires_at > created_at);
    END IF;
END $$;
