"""Pure curation core (no Spark): normalisation, quality filters, language ID, decontamination, PII redaction
and MinHash.

The Spark layer wraps ``curate_batch`` and ``minhash_batch`` in pandas UDFs; everything here works on
``str``, ``pd.Series`` and ``np.ndarray`` only. Heavy state (the langid model, spaCy in parity mode) loads
lazily, once per process.
"""

from udfs.curation.curate import (
    CurationConfig,
    CurationResult,
    curate_batch,
    curate_text,
    output_schema,
    signal_columns,
)
from udfs.curation.decontam import DecontaminationConfig, NGramIndex, find_contamination, index_from_jsonl
from udfs.curation.filters import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
)
from udfs.curation.langid import LangIdConfig, identify_languages, lang_drop_reason
from udfs.curation.minhash import (
    MinHashConfig,
    band_hashes,
    estimate_jaccard,
    jaccard,
    minhash_batch,
    minhash_signatures,
    optimal_bands_rows,
    shingle_hashes,
    simplify_text,
)
from udfs.curation.normalize import NormalizeConfig, normalize_text
from udfs.curation.pii import PiiConfig, redact_pii, redact_pii_batch

__all__ = [
    "C4Config",
    "CurationConfig",
    "CurationResult",
    "DecontaminationConfig",
    "FineWebConfig",
    "GopherQualityConfig",
    "GopherRepetitionConfig",
    "LangIdConfig",
    "MinHashConfig",
    "NGramIndex",
    "NormalizeConfig",
    "PiiConfig",
    "band_hashes",
    "curate_batch",
    "curate_text",
    "estimate_jaccard",
    "find_contamination",
    "identify_languages",
    "index_from_jsonl",
    "jaccard",
    "lang_drop_reason",
    "minhash_batch",
    "minhash_signatures",
    "normalize_text",
    "optimal_bands_rows",
    "output_schema",
    "redact_pii",
    "redact_pii_batch",
    "shingle_hashes",
    "signal_columns",
    "simplify_text",
]
