-- 0008: the intake's cap counts only what the mission has not fetched
-- (docs/intake.md). fetched_seq is the highest request number the mission has
-- fetched past: the highest ``after`` any of its devices fetched with, never
-- above the last number given. queued now counts the tenant's stored requests
-- numbered above it. An existing row starts at 0: every request it holds is
-- still unfetched, so its queued count stays right as it is.
ALTER TABLE intake_tenants ADD COLUMN fetched_seq INTEGER NOT NULL DEFAULT 0;
