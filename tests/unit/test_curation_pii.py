"""PII redaction: e-mails, public IPs (private and loopback stay), phone numbers, and per-document counts."""

from __future__ import annotations

import pandas as pd
import pytest

from udfs.curation.pii import PiiConfig, redact_pii, redact_pii_batch

PII_CASES = [
    pytest.param("Write to jane.doe@example.com today.", "Write to <EMAIL> today.", (1, 0, 0), id="email"),
    pytest.param("a+tag@mail.example.co.uk, b_c@x.org", "<EMAIL>, <EMAIL>", (2, 0, 0), id="two_emails"),
    pytest.param(
        "Not an e-mail: @handle or user@localhost",
        "Not an e-mail: @handle or user@localhost",
        (0, 0, 0),
        id="not_emails",
    ),
    pytest.param("DNS at 8.8.8.8 and 1.1.1.1.", "DNS at <IP> and <IP>.", (0, 2, 0), id="public_ipv4"),
    pytest.param(
        "Router 192.168.1.1, 10.0.0.7, 172.16.5.4, 127.0.0.1 and 169.254.1.1 stay.",
        "Router 192.168.1.1, 10.0.0.7, 172.16.5.4, 127.0.0.1 and 169.254.1.1 stay.",
        (0, 0, 0),
        id="private_ipv4_kept",
    ),
    pytest.param(
        "Bad 999.1.1.1 and 1.2.3.4.5 are not addresses.",
        "Bad 999.1.1.1 and 1.2.3.4.5 are not addresses.",
        (0, 0, 0),
        id="not_ipv4",
    ),
    pytest.param(
        "Use 2606:4700:4700::1111 or 2001:4860:4860:0:0:0:0:8888.", "Use <IP> or <IP>.", (0, 2, 0), id="public_ipv6"
    ),
    pytest.param(
        "Local ::1, fe80::1 and fd00::5 stay; so does 12:30:45.",
        "Local ::1, fe80::1 and fd00::5 stay; so does 12:30:45.",
        (0, 0, 0),
        id="private_ipv6_kept",
    ),
    pytest.param("Call +1 (555) 123-4567 or 555-123-4567.", "Call <PHONE> or <PHONE>.", (0, 0, 2), id="us_phones"),
    pytest.param(
        "Tel. (555) 123 4567, 555.123.4567, +44 20 7946 0958.",
        "Tel. <PHONE>, <PHONE>, <PHONE>.",
        (0, 0, 3),
        id="phone_formats",
    ),
    pytest.param(
        "In 2019-07-15 we sold 1,000,000 units (1990-2000), ISBN 9780306406157.",
        "In 2019-07-15 we sold 1,000,000 units (1990-2000), ISBN 9780306406157.",
        (0, 0, 0),
        id="numbers_that_are_not_phones",
    ),
    pytest.param(
        "Mail ops@example.com from 93.184.216.34 or ring 555-123-4567.",
        "Mail <EMAIL> from <IP> or ring <PHONE>.",
        (1, 1, 1),
        id="all_kinds",
    ),
    pytest.param("", "", (0, 0, 0), id="empty"),
]


@pytest.mark.parametrize("text, expected, counts", PII_CASES)
def test_redact_pii(text, expected, counts):
    out, *got = redact_pii(text)
    assert out == expected
    assert tuple(got) == counts


def test_pii_switches_and_tokens():
    text = "Mail ops@example.com from 10.1.2.3 or 8.8.4.4, ring 555-123-4567."
    assert redact_pii(text, PiiConfig(enabled=False)) == (text, 0, 0, 0)
    assert redact_pii(text, PiiConfig(only_public_ips=False))[2] == 2
    out, n_email, n_ip, n_phone = redact_pii(text, PiiConfig(emails=False, phones=False, ip_token="[ip]"))
    assert out == "Mail ops@example.com from 10.1.2.3 or [ip], ring 555-123-4567." and (n_email, n_ip, n_phone) == (
        0,
        1,
        0,
    )


def test_redact_pii_batch():
    texts = pd.Series(["a@example.com and b@example.com", None, "8.8.8.8"], index=[5, 6, 7])
    df = redact_pii_batch(texts)
    assert list(df.index) == [5, 6, 7]
    assert df["text"].tolist() == ["<EMAIL> and <EMAIL>", None, "<IP>"]
    assert df["pii_email"].tolist() == [2, 0, 0] and df["pii_ip"].tolist() == [0, 0, 1]
    assert str(df["pii_phone"].dtype) == "int32"
