-- The audit log (ca/audit/). Entries are written in the transaction of the change they record,
-- unnumbered (idx NULL): appending takes no lock beyond the row's own insert. One integrator at a time
-- (the audit_log row, locked FOR UPDATE) numbers committed rows in seq order, gap-free from 0, and
-- stores every complete subtree hash they finish, so roots and proofs read O(log n) hashes.
CREATE TABLE audit_entries (
  seq        bigserial PRIMARY KEY,
  idx        bigint,
  data       bytea NOT NULL,
  time       timestamptz NOT NULL,
  event      text NOT NULL,
  actor      text NOT NULL,
  spiffe_id  text,
  serial     text
);
-- Every index but the pending one is partial on numbered rows: an append (on the issuance path)
-- touches only the primary key and the pending index; the integrator pays for the rest.
CREATE INDEX audit_entries_pending ON audit_entries (seq) WHERE idx IS NULL;
CREATE UNIQUE INDEX audit_entries_idx ON audit_entries (idx) WHERE idx IS NOT NULL;
CREATE INDEX audit_entries_event ON audit_entries (event, idx) WHERE idx IS NOT NULL;
CREATE INDEX audit_entries_actor ON audit_entries (actor, idx) WHERE idx IS NOT NULL;
CREATE INDEX audit_entries_spiffe_id ON audit_entries (spiffe_id, idx) WHERE idx IS NOT NULL AND spiffe_id IS NOT NULL;
CREATE INDEX audit_entries_serial ON audit_entries (serial) WHERE idx IS NOT NULL AND serial IS NOT NULL;
CREATE INDEX audit_entries_time ON audit_entries (time) WHERE idx IS NOT NULL;

-- complete subtrees: 2^level leaves from leaf index * 2^level; level 0 holds the leaf hashes
CREATE TABLE audit_tree_nodes (
  level  smallint NOT NULL,
  index  bigint NOT NULL,
  hash   bytea NOT NULL,
  PRIMARY KEY (level, index)
);

-- one row: the integrated tree, and the log's identity (origin and Ed25519 key, sealed under the KEK)
CREATE TABLE audit_log (
  id                 text PRIMARY KEY CHECK (id = 'default'),
  origin             text NOT NULL,
  public_key         bytea NOT NULL,
  private_key_sealed bytea NOT NULL,
  size               bigint NOT NULL DEFAULT 0,
  root               bytea NOT NULL,
  created_at         timestamptz NOT NULL
);

CREATE TABLE audit_checkpoints (
  size        bigint PRIMARY KEY,
  root        bytea NOT NULL,
  note        text NOT NULL,
  created_at  timestamptz NOT NULL
);
