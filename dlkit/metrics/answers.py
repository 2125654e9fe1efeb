"""Final answers of maths word problems: pull the number out of a free-text (chain-of-thought) completion,
compare it with the gold answer, and vote over several sampled completions (self-consistency).

Numbers are read in Western, Persian (۰-۹) and Arabic-Indic (٠-٩) digits, with thousands separators
(`1,250`, `۱٬۲۵۰`) and the Arabic decimal separator (`۲٫۵`). When the text carries a final-answer
marker (`answer:`, `the answer is`, `####`, `پاسخ:`, `جواب:`), the first number after the LAST marker is
the answer, even if the reasoning goes on with more numbers after it; without a marker, the last number.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_DIGITS = str.maketrans(
    {
        **{chr(0x06F0 + d): str(d) for d in range(10)},
        **{chr(0x0660 + d): str(d) for d in range(10)},
        "\u066b": ".",  # Arabic decimal separator
        "\u066c": ",",  # Arabic thousands separator
        "\u060c": ",",  # Arabic comma (used as a thousands separator too)
        "\u2212": "-",
    }
)  # minus sign
# 1,250 / 1 250 (thin space) / 1250 / 2.5 / -3 ; a thousands group is exactly three digits.
NUMBER = re.compile(r"(?<![\d.])-?\d{1,3}(?:[,\u2009\u202f]\d{3})+(?:\.\d+)?(?!\d)|(?<![\d.])-?\d+(?:\.\d+)?")
MARKER = re.compile(
    r"####|\banswer\s*(?:is|:)|پاسخ(?:\s*نهایی)?\s*(?::|برابر|است)|"
    r"جواب(?:\s*نهایی)?\s*(?::|برابر|است)",
    re.IGNORECASE,
)


def normalize_digits(text: str) -> str:
    """Persian and Arabic-Indic digits and separators as ASCII."""
    return text.translate(_DIGITS)


def normalize_number(token: str) -> str | None:
    """'1,250' -> '1250', '2.50' -> '2.5', '7.0' -> '7'; None when it is not a number."""
    token = normalize_digits(token).strip().replace(",", "").replace("\u2009", "").replace("\u202f", "")
    token = token.rstrip(".")
    try:
        value = float(token)
    except ValueError:
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def extract_answer(text: str) -> str | None:
    """The final numeric answer of a completion (normalised by `normalize_number`), or None when it has none."""
    text = normalize_digits(text)
    markers = list(MARKER.finditer(text))
    if markers:
        match = NUMBER.search(text, markers[-1].end())
        if match:
            return normalize_number(match.group())
    numbers = NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def gold_answer(answer: str) -> str | None:
    """The gold number of a dataset answer: GSM8K's text after '####', or the answer itself."""
    if "####" in answer:
        match = NUMBER.search(normalize_digits(answer.rsplit("####", 1)[1]))
        return normalize_number(match.group()) if match else None
    return extract_answer(answer)


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent extracted answer (None ignored); a tie goes to the answer seen first."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)
