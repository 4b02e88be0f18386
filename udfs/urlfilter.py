"""Pandas UDF adapter for the URL filter stage (its pure core: udfs/curation/urlfilter.py, same name)."""

from __future__ import annotations

import pandas as pd


def make_url_filter_udf(cfg):
    """Scalar pandas UDF: URL string -> drop reason string (null = kept), per ``UrlFilterConfig`` ``cfg``.

    Per Arrow batch it calls ``udfs.curation.urlfilter.url_drop_reasons``; rows map 1:1 in order. The closure
    captures only ``cfg`` (a frozen dataclass of lists); its compiled regexes are cached once per Python worker.

    Example:
        >>> cfg = UrlFilterConfig(enabled=True, blocked_domains=("spam.example",))  # doctest: +SKIP
        >>> df.select(make_url_filter_udf(cfg)("url").alias("drop_reason"))  # doctest: +SKIP
    """
    from pyspark.sql.functions import pandas_udf

    from udfs.curation.urlfilter import url_drop_reasons

    @pandas_udf("string")
    def url_filter(urls: pd.Series) -> pd.Series:
        return url_drop_reasons(urls.reset_index(drop=True), cfg)

    return url_filter
