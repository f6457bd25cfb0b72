-- Durable, bounded streams (the hub's built-in telemetry endpoint).
--
-- stream_heads holds one row per stream: the last assigned seq, the offset
-- after the last entry (total bytes ever appended), and the seq and offset
-- of the oldest kept entry. Appends assign seqs by updating this row inside
-- their transaction, so seqs are consecutive and in commit order even when
-- several processes share the database (the row lock serialises appenders
-- of one stream until they commit). A sequence or identity column would
-- not be: on PostgreSQL a BIGSERIAL value is taken before commit, so a
-- reader could see seq 11 commit before seq 10 and skip 10 for good.
--
-- stream_entries keeps each entry's start offset (off), so size retention
-- needs no sum over the table: the kept bytes are end_off - first_off.
--
-- PostgreSQL: the same DML runs unchanged; this DDL becomes BIGINT for
-- INTEGER, BYTEA for BLOB, and drops STRICT.

-- +goose Up
CREATE TABLE stream_heads (
    stream    TEXT    NOT NULL PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    end_off   INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    first_off INTEGER NOT NULL
) STRICT;

CREATE TABLE stream_entries (
    stream TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    key    TEXT    NOT NULL,
    sub    TEXT    NOT NULL DEFAULT '',
    ts     TEXT    NOT NULL,
    off    INTEGER NOT NULL,
    doc    TEXT    NOT NULL,
    body   BLOB    NOT NULL,
    PRIMARY KEY (stream, seq)
) STRICT;

CREATE INDEX stream_entries_key ON stream_entries (stream, key, seq);

-- +goose Down
DROP TABLE stream_entries;
DROP TABLE stream_heads;
