-- A renewal's SVID is the node's only once the node presents it (promotion). Until then the node's
-- expiry stays the one of the SVID it is using; the renewed one's waits here.
ALTER TABLE attested_nodes ADD COLUMN new_expires_at timestamptz;
