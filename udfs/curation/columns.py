"""Output column names of the curation core (``curate_batch``, ``minhash_batch``).

TODO(lead): move these next to the other constants in ``udfs/columns.py``; ``TEXT`` and ``DROP_REASON`` are
already there and are re-used from it.
"""

from udfs.columns import DROP_REASON, TEXT

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

__all__ = [
    "CONTAMINATED_NGRAM",
    "CONTAMINATED_TASK",
    "DROP_REASON",
    "HTML_EXTRACTED",
    "LANG",
    "LANG_SCORE",
    "MINHASH_BANDS",
    "MINHASH_FLAG",
    "MINHASH_N_SHINGLES",
    "MINHASH_SIGNATURE",
    "N_CHARS",
    "PII_EMAIL",
    "PII_IP",
    "PII_PHONE",
    "TEXT",
]
