ALTER FUNCTION {prefix}claim_jobs(text, integer, text) RESET enable_seqscan;
