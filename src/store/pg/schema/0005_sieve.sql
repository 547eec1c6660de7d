-- Sieve scripts (ManageSieve, RFC 5804), one row per script of an account. At most one
-- script per account is active: the partial unique index makes a second one a
-- constraint violation rather than something every writer must remember.
CREATE TABLE sieve_scripts (
    account bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name text NOT NULL,
    content bytea NOT NULL,
    active boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, name)
);
CREATE UNIQUE INDEX sieve_scripts_one_active ON sieve_scripts (account) WHERE active;

-- What Sieve vacation and duplicate remember (RFC 5230, RFC 7352): a key (the SHA-256
-- of what the script names, hex) until it expires. Expired rows are deleted by the next
-- check of the same account, and an account keeps at most 10,000 rows.
CREATE TABLE sieve_remembered (
    account bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE INDEX sieve_remembered_expiry ON sieve_remembered (account, expires_at);
