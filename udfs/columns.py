"""Column names shared by jobs, UDFs and tests: one constant each, no scattered literals."""

# bronze (jobs/ingest.py)
DOC_ID = "doc_id"
TEXT = "text"
SOURCE = "source"
SOURCE_FILE = "source_file"
CONTENT_HASH = "content_hash"
EXTRA = "extra"  # the record's other fields, as a JSON object string
INGESTED_AT = "ingested_at"
RUN_ID = "run_id"

# quarantine (bad input kept aside with a reason)
REASON = "reason"
DETAIL = "detail"
RAW = "raw"  # the raw record, truncated to RAW_PREVIEW_CHARS
RAW_BYTES = "raw_bytes"
RAW_HASH = "raw_hash"
OCCURRENCE = "occurrence"  # n-th identical bad record in the same file (keeps counts exact)
JOB = "job"

# curation
DROP_REASON = "drop_reason"  # null = kept; else "<rule>_<why>"

# intermediate columns of parsing
GIVEN_ID = "given_id"

RAW_PREVIEW_CHARS = 4096
