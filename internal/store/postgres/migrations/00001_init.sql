-- Schema of the PostgreSQL store: versioned JSON documents, the bounded
-- registration attempt log and durable streams. Plain SQL, kept runnable on
-- PostgreSQL-compatible engines; the PostgreSQL-specific parts are noted.
--
-- Text keys use COLLATE "C": List and stream reads order by bytes, as the
-- store contract (and the SQLite backend) do, whatever the database's
-- default collation is.
--
-- docs.doc keeps the document byte for byte (any valid JSON). docs.jdoc is a
-- jsonb copy, written only for the kinds that hub twin queries read (twin
-- and device) and only when jsonb can hold the document (it cannot hold
-- \u0000, lone surrogate escapes or numbers outside numeric's range); twin
-- queries run over it. created and updated are assigned by the store; an
-- update never moves updated backwards, even between instances whose clocks
-- differ.

-- +goose Up
CREATE TABLE docs (
    kind    TEXT COLLATE "C" NOT NULL,
    id      TEXT COLLATE "C" NOT NULL,
    grp     TEXT COLLATE "C" NOT NULL DEFAULT '',
    etag    TEXT NOT NULL,
    doc     TEXT NOT NULL,
    jdoc    JSONB,
    created TIMESTAMPTZ NOT NULL,
    updated TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE INDEX docs_kind_grp_id ON docs (kind, grp, id);

-- Attempt times are caller-supplied: fixed-width RFC 3339 UTC text with
-- nanoseconds, so text order is time order (as in the SQLite backend).
CREATE TABLE attempts (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    ts              TEXT COLLATE "C" NOT NULL,
    registration_id TEXT COLLATE "C" NOT NULL,
    doc             TEXT NOT NULL
);

CREATE INDEX attempts_registration_ts ON attempts (registration_id, ts, id);
CREATE INDEX attempts_ts ON attempts (ts, id);

-- attempt_count holds the number of rows in attempts, in one row that every
-- transaction appending attempts updates last, just before it commits. Its
-- row lock serialises only those final steps (the count, the trim of the
-- oldest attempts and the commit), so the bound is exact with any number of
-- writers and instances.
CREATE TABLE attempt_count (
    one BOOLEAN NOT NULL PRIMARY KEY DEFAULT TRUE CHECK (one),
    n   BIGINT  NOT NULL
);

INSERT INTO attempt_count (one, n) VALUES (TRUE, 0);

-- Streams: one head row per stream, through which appends assign seqs and
-- offsets in commit order (its row lock serialises the appenders of one
-- stream until they commit, on any instance), and the entries. A sequence
-- or identity column would not do: its values are taken before commit, so a
-- reader could see seq 11 commit before seq 10 and skip 10 for good.
-- Entry times are caller-supplied and kept to the nanosecond (text, as for
-- attempts); off is the entry's start offset, so size retention needs no
-- sum over the table.
CREATE TABLE stream_heads (
    stream    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    last_seq  BIGINT NOT NULL,
    end_off   BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    first_off BIGINT NOT NULL
);

CREATE TABLE stream_entries (
    stream TEXT COLLATE "C" NOT NULL,
    seq    BIGINT NOT NULL,
    key    TEXT COLLATE "C" NOT NULL,
    sub    TEXT COLLATE "C" NOT NULL DEFAULT '',
    ts     TEXT COLLATE "C" NOT NULL,
    off    BIGINT NOT NULL,
    doc    TEXT NOT NULL,
    body   BYTEA NOT NULL,
    PRIMARY KEY (stream, seq)
);

CREATE INDEX stream_entries_key ON stream_entries (stream, key, seq);

-- +goose Down
DROP TABLE stream_entries;
DROP TABLE stream_heads;
DROP TABLE attempt_count;
DROP TABLE attempts;
DROP TABLE docs;
