-- 0006: the credential rotation in force for each tenant (docs/spec/relay-api.md,
-- "Credential rotation"): the roster version and sequence it was made under,
-- and the hash of that roster. A rotation replaces the credential only if it
-- comes after the one in force; NULL: the tenant's credential was never rotated.
ALTER TABLE tenants ADD COLUMN rotation_version bigint;
ALTER TABLE tenants ADD COLUMN rotation_seq bigint;
ALTER TABLE tenants ADD COLUMN rotation_roster bytea;
