-- Wave 2, platforms: the bulk allows typing the platform's answers to device questions.
ALTER TABLE bulks ADD COLUMN answer_prompts INTEGER NOT NULL DEFAULT 0;
