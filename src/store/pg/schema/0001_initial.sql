-- mailroom schema 1: accounts, folders, messages, content-addressed bodies.
-- Applied once, in one transaction, by the migrator (src/store/pg/migrate.rs).

CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    domain text NOT NULL,
    local text NOT NULL,
    -- The next UIDVALIDITY a new folder of this account gets (never reused, fits u32).
    uidvalidity_next bigint NOT NULL,
    UNIQUE (domain, local)
);

CREATE TABLE mailboxes (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    -- The API name: "INBOX", "Archive/2024" (UTF-8, '/' between levels).
    name text NOT NULL,
    special_use text,
    uid_validity bigint NOT NULL,
    uid_next bigint NOT NULL DEFAULT 1,
    highest_modseq bigint NOT NULL DEFAULT 1,
    -- UIDs below this were claimed as \Recent by some session.
    recent_floor bigint NOT NULL DEFAULT 1,
    -- Tombstones with a modseq at or below this were purged: older QRESYNC states resync.
    vanished_floor bigint NOT NULL DEFAULT 0,
    -- Wire bytes of the live messages (quota), kept under the row lock.
    total_bytes bigint NOT NULL DEFAULT 0,
    -- Every keyword a message here carried (the per-mailbox keyword limit).
    keywords text[] NOT NULL DEFAULT '{}',
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    name text NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- A message body, stored once however many messages refer to it.
CREATE TABLE blobs (
    hash bytea PRIMARY KEY,            -- SHA-256 of the bytes
    size bigint NOT NULL,
    refcount bigint NOT NULL,          -- message rows (live and tombstones) referring to it
    zero_since timestamptz,            -- when refcount dropped to 0
    header bytea                       -- its header block, NULL when longer than 64 KiB
);

-- The bytes of a body in 1 MiB pieces, so a large body streams.
CREATE TABLE blob_chunks (
    hash bytea NOT NULL REFERENCES blobs ON DELETE CASCADE,
    seq int NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (hash, seq)
);

CREATE TABLE messages (
    mailbox_id bigint NOT NULL REFERENCES mailboxes ON DELETE CASCADE,
    uid bigint NOT NULL,
    modseq bigint NOT NULL,
    -- Set when expunged: the row stays readable (RFC 2180) and answers VANISHED until purged.
    expunged_modseq bigint,
    expunged_at timestamptz,
    flags smallint NOT NULL DEFAULT 0, -- \Seen 1, \Answered 2, \Flagged 4, \Deleted 8, \Draft 16
    keywords text[] NOT NULL DEFAULT '{}',
    internal_date timestamptz NOT NULL,
    size bigint NOT NULL,              -- octet_length(prefix) + blob size
    prefix bytea NOT NULL,             -- per-recipient trace lines written before the body
    body_hash bytea NOT NULL REFERENCES blobs,
    uidl text NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_by_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_by_body ON messages (body_hash);

-- Exclusive holds shared by every replica (a POP3 maildrop), renewed by their holder.
CREATE TABLE leases (
    name text PRIMARY KEY,
    holder text NOT NULL,              -- the holder's random token
    until timestamptz NOT NULL
);
