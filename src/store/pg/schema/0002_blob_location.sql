-- mailroom schema 2: a body's bytes may live in an object store (MAILROOM_BLOB_STORE=s3://…)
-- instead of blob_chunks. Every body stored before keeps location 0 and keeps reading from
-- its chunks after an object store is turned on.
-- 0: the bytes are blob_chunks rows; 1: the bytes are the object <prefix>/blobs/<hh>/<hex>.
ALTER TABLE blobs ADD COLUMN location smallint NOT NULL DEFAULT 0;
