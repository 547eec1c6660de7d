-- Per-account credentials a user changes himself (a password override, app passwords,
-- "require app passwords"): one JSON record per account, owned by `credentials/`.
-- `version` grows by one on every write; writers name the version they read, so two
-- replicas or two browser tabs changing one account at once cannot lose a change.
CREATE TABLE account_credentials (
    account bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    record text NOT NULL,
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
