-- The SVID a one-time token was redeemed for (DER, public). While the token is unexpired, a
-- presentation with a CSR for the same key gets this same SVID again: an answer lost to a CA crash
-- or a dropped connection is delivered again instead of stranding the node with a spent token. The
-- token is still redeemed once: nothing new is signed, and nobody without that key can ask.
ALTER TABLE one_time_tokens ADD COLUMN issued_svid bytea;
