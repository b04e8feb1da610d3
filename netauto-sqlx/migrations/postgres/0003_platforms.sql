-- Wave 2, real networks. The bulk allows typing the platform's answers to device questions.
ALTER TABLE bulks ADD COLUMN answer_prompts BOOLEAN NOT NULL DEFAULT FALSE;

-- The jump host(s) a device is reached through (a name from the jump-host file, or
-- user@host:port; several separated by commas, outermost first). NULL: the site's, or direct.
ALTER TABLE devices ADD COLUMN jump_host TEXT;
-- Per-device variables of command templates ({{ vars.uplink }}): a JSON object of strings.
ALTER TABLE devices ADD COLUMN vars JSONB NOT NULL DEFAULT '{}';

-- The credential reference the login used (a device may list several, tried in order).
ALTER TABLE runs ADD COLUMN credential_ref TEXT;
-- Secrets were replaced by <redacted> in the stored output (NETAUTO_REDACT_SECRETS).
ALTER TABLE runs ADD COLUMN redacted BOOLEAN NOT NULL DEFAULT FALSE;

-- Bulk history, newest first (keyset pagination), all or one requester's.
CREATE INDEX bulks_newest ON bulks (created_at DESC, ref DESC);
CREATE INDEX bulks_requester ON bulks (requested_by, created_at DESC, ref DESC);

-- "Run again": the bulk a bulk runs again, and the way back from it.
ALTER TABLE bulks ADD COLUMN parent_ref TEXT;
CREATE INDEX bulks_parent ON bulks (parent_ref) WHERE parent_ref IS NOT NULL;
