-- SPIFFE federation for agentless devices and sidecars: the foreign trust domains a workload
-- credential federates with (cairn token create --federates-with), carried over to the device's node
-- record when it is redeemed, so that every renewal answers with those foreign bundles as they are now.
-- cairn:expand-only
ALTER TABLE one_time_tokens ADD COLUMN federates_with text[] NOT NULL DEFAULT '{}';
ALTER TABLE attested_nodes ADD COLUMN federates_with text[] NOT NULL DEFAULT '{}';
