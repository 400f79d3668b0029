ALTER TABLE {prefix}metrics DROP COLUMN IF EXISTS maximum;
ALTER TABLE {prefix}metrics DROP COLUMN IF EXISTS minimum;
ALTER TABLE {prefix}metrics DROP COLUMN IF EXISTS unit;
