-- Tombstones by parent: sync asks when a node alias (an entry under the trust domain's server ID) was
-- last removed, and which entries left an agent's parents since its revision. Without it both scan
-- tombstones by revision and filter by parent.
-- cairn:expand-only
CREATE INDEX entry_tombstones_by_parent ON entry_tombstones (parent_id, revision);
