-- Wave 2, real networks. The bulk allows typing the platform's answers to device questions.
ALTER TABLE bulks ADD COLUMN answer_prompts INTEGER NOT NULL DEFAULT 0;

-- The jump host(s) a device is reached through (a name from the jump-host file, or
-- user@host:port; several separated by commas, outermost first). NULL: the site's, or direct.
ALTER TABLE devices ADD COLUMN jump_host TEXT;
