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
# bronze columns of web-archive input (jobs/ingest.py --format warc|arc; null for other formats)
URL = "url"
DOMAIN = "domain"  # host of the URL, lower case, no port
WARC_RECORD_ID = "warc_record_id"
WARC_DATE = "warc_date"  # capture time (UTC)
HTTP_STATUS = "http_status"
CONTENT_TYPE = "content_type"  # payload MIME type, no parameters
SKIP = "skip"  # intermediate: why an archive record is not a document (request, metadata, ...)

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
QUALITY_SCORE = "quality_score"  # quality classifier: probability of the positive class (jobs/transforms/quality.py)
PERPLEXITY_BUCKET = "perplexity_bucket"  # "head", "middle" or "tail" of its language (CCNet)

# curation signals (udfs/curation: curate_batch, minhash_batch)
LANG = "lang"  # ISO 639-1 code from langid.py; None when no language was identified
LANG_SCORE = "lang_score"  # top-language probability in [0, 1]
PII_EMAIL = "pii_email"  # e-mail addresses redacted
PII_IP = "pii_ip"  # public IP addresses redacted
PII_PHONE = "pii_phone"  # phone numbers redacted
HTML_EXTRACTED = "html_extracted"  # the input looked like HTML and was converted to text
N_CHARS = "n_chars"  # characters of the output text

CONTAMINATED_TASK = "contaminated_task"  # decontamination: evaluation task sharing an n-gram; None = clean
CONTAMINATED_NGRAM = "contaminated_ngram"  # decontamination: that n-gram, normalised words joined by spaces

MINHASH_SIGNATURE = "minhash_signature"
MINHASH_BANDS = "minhash_bands"
MINHASH_N_SHINGLES = "minhash_n_shingles"
MINHASH_FLAG = "minhash_flag"  # None, "short" (fewer words than n_grams) or "empty" (no words)

# intermediate columns of parsing
GIVEN_ID = "given_id"

RAW_PREVIEW_CHARS = 4096

# batch inference (udfs/tasks.py, udfs/inference.py, jobs/score.py, jobs/nightly_score.py)
ERROR = "error"  # null = the row was processed; else why it was not ("null_text", "empty_text", ...)
SUM_LOGPROB = "sum_logprob"  # nats, sum over the document's tokens
N_TOKENS = "n_tokens"
MEAN_NLL = "mean_nll"  # nats per token
PERPLEXITY = "perplexity"
BITS_PER_BYTE = "bits_per_byte"
N_WINDOWS = "n_windows"  # model windows a long document was scored in (sliding window)
EMBEDDING = "embedding"
TRUNCATED = "truncated"  # the input was cut to the model's context
GENERATED = "generated"
N_NEW_TOKENS = "n_new_tokens"
FINISH_REASON = "finish_reason"  # "eos" or "length"
TASK = "task"
MODEL_NAME = "model_name"
MODEL_HASH = "model_hash"
INPUT_TABLE = "input_table"
INPUT_VERSION = "input_version"
SCORED_AT = "scored_at"
