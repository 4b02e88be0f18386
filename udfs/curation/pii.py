"""PII redaction: e-mail addresses, public IPv4/IPv6 addresses and phone numbers, with per-document counts.

Like datatrove's ``PIIFormatter``, IP addresses are replaced only when they are public (``ipaddress``'s
``is_global``): private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local, multicast, reserved and
documentation ranges stay. Unlike datatrove, which substitutes fake but plausible addresses, we write
placeholder tokens (``<EMAIL>``, ``<IP>``, ``<PHONE>``) so that redactions are visible and countable.

Order: e-mails, then IPs, then phones, so an address inside an e-mail is not counted twice and dotted IPs are
never taken for phone numbers. The phone pattern is deliberately conservative: it needs separators or a "+"
country code (e.g. "+1 (555) 123-4567", "555-123-4567", "+44 20 7946 0958"); bare digit runs, dates and
number ranges are left alone.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from udfs import columns as C

__all__ = ["PII_COLUMNS", "PiiConfig", "redact_pii", "redact_pii_batch"]

PII_COLUMNS = (C.PII_EMAIL, C.PII_IP, C.PII_PHONE)


@dataclass(frozen=True)
class PiiConfig:
    """What ``redact_pii`` replaces.

    Attributes:
        enabled: False leaves texts unchanged with zero counts.
        emails: redact e-mail addresses.
        ips: redact IPv4 and IPv6 addresses.
        only_public_ips: redact only globally routable addresses (datatrove's default).
        phones: redact phone numbers.
        email_token / ip_token / phone_token: the replacement strings.
    """

    enabled: bool = True
    emails: bool = True
    ips: bool = True
    only_public_ips: bool = True
    phones: bool = True
    email_token: str = "<EMAIL>"
    ip_token: str = "<IP>"
    phone_token: str = "<PHONE>"


_EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)
_IPV4_RE = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d|\w)"
)
_IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)?(?![\w:])")
_PHONE_RE = re.compile(
    r"(?<![\w+.-])"
    r"(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?(?:\d{1,4}[ .-]){1,4}\d{2,6}"  # +44 20 7946 0958, +1 (555) 123-4567
    r"|(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4})"  # (555) 123-4567, 555-123-4567, 555.123.4567
    r"(?![\w.-]?\d)"
)


def _is_redactable_ip(candidate: str, only_public: bool) -> bool:
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:  # times like 12:30:45 match the IPv6 shape but are not addresses
        return False
    return ip.is_global if only_public else True


def redact_pii(text: str, cfg: PiiConfig = PiiConfig()) -> tuple[str, int, int, int]:
    """Replaces e-mails, IP addresses and phone numbers in one text.

    Args:
        text: the document.
        cfg: which kinds to redact and the replacement tokens.

    Returns:
        (redacted text, number of e-mails, number of IPs, number of phone numbers replaced).

    Example:
        >>> redact_pii("Mail a.b@example.com from 8.8.8.8 (not 192.168.0.1) or call +1 (555) 123-4567.")
        ('Mail <EMAIL> from <IP> (not 192.168.0.1) or call <PHONE>.', 1, 1, 1)
    """
    if not text or not cfg.enabled:
        return text, 0, 0, 0
    n_email = n_ip = n_phone = 0
    if cfg.emails and "@" in text:
        text, n_email = _EMAIL_RE.subn(cfg.email_token, text)
    if cfg.ips:
        counter = [0]

        def _replace_ip(m: re.Match) -> str:
            if _is_redactable_ip(m.group(0), cfg.only_public_ips):
                counter[0] += 1
                return cfg.ip_token
            return m.group(0)

        if "." in text:
            text = _IPV4_RE.sub(_replace_ip, text)
        if "::" in text or text.count(":") >= 7:
            text = _IPV6_RE.sub(_replace_ip, text)
        n_ip = counter[0]
    if cfg.phones:
        text, n_phone = _PHONE_RE.subn(cfg.phone_token, text)
    return text, n_email, n_ip, n_phone


def redact_pii_batch(texts: pd.Series, cfg: PiiConfig = PiiConfig()) -> pd.DataFrame:
    """Redacts PII in a batch of texts (what a pandas UDF calls).

    Args:
        texts: (n,) strings; None stays None with zero counts.
        cfg: the PII config.

    Returns:
        DataFrame (n rows, same index) with ``text`` (object) and ``pii_email``, ``pii_ip``, ``pii_phone``
        (int32 counts).
    """
    out_text = []
    counts = np.zeros((len(texts), 3), dtype=np.int32)
    for i, t in enumerate(texts.tolist()):
        if t is None or (isinstance(t, float) and np.isnan(t)):
            out_text.append(None)
            continue
        red, *c = redact_pii(t, cfg)
        out_text.append(red)
        counts[i] = c
    df = pd.DataFrame({C.TEXT: out_text}, index=texts.index)
    for j, name in enumerate(PII_COLUMNS):
        df[name] = counts[:, j]
    return df
