"""Final-answer extraction from chain-of-thought text and the self-consistency vote."""

from __future__ import annotations

import pytest

from dlkit.metrics.answers import extract_answer, gold_answer, majority_vote, normalize_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 boxes of 4 is 12. 12 - 5 = 7.\nAnswer: 7", "7"),
        # a number in the reasoning after the answer line does not win
        ("Answer: 42\nCheck: 40 + 2 = 42, and 3 are left over", "42"),
        ("The answer is 1,250 dollars, for 5 books.", "1250"),
        ("۸ * ۳ = ۲۴ سیب. ۲۴ - ۵ = ۱۹.\nپاسخ: ۱۹", "19"),  # Persian digits
        ("جواب: ٣٤ تفاحة", "34"),  # Arabic-Indic digits
        ("پاسخ نهایی: ۲٬۴۳۲ تومان", "2432"),  # Arabic thousands separator
        ("قیمت ۲٫۵ است", "2.5"),  # Arabic decimal separator
        ("2,384 + 48 = 2,432", "2432"),  # no marker: the last number
        ("the list 1,2,3", "3"),  # commas between single digits are not thousands separators
        ("#### 72", "72"),
        ("answer: 7.0", "7"),
        ("I do not know.", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_gold_answer_reads_gsm8k_and_plain_numbers():
    assert gold_answer("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72") == "72"
    assert gold_answer("#### ۱۹") == "19"
    assert gold_answer("1,000") == "1000"
    assert gold_answer("no number") is None
    assert normalize_number("abc") is None


def test_majority_vote():
    assert majority_vote(["3", None, "4", "4", "3", "4"]) == "4"
    assert majority_vote(["5", "6", "6", "5"]) == "5"  # a tie goes to the first seen
    assert majority_vote([None, None]) is None
