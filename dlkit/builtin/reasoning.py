"""builtin:reasoning and builtin:reasoning-fa: multi-step arithmetic word problems with known answers.

Each row is GSM8K-shaped: `question`, and `answer` = a worked solution, one step per line, ending in
`#### N`. Every problem takes two operations (multiply or divide evenly, then add or subtract), so a
model that answers in one jump has to get the intermediate numbers right, and chain-of-thought has
something to write down. Some totals pass 1,000, so the solutions use thousands separators.
The Persian version writes every number in Persian digits.
"""

from __future__ import annotations

import random

PERSIAN_DIGITS = str.maketrans("0123456789,", "۰۱۲۳۴۵۶۷۸۹٬")
NAMES = ["Sara", "Ali", "Maryam", "Reza", "Nika", "Omid"]
NAMES_FA = ["سارا", "علی", "مریم", "رضا", "نیکا", "امید"]


def _n(value: int) -> str:
    return f"{value:,}"


def _problem(kind: int, rng: random.Random, lang: str) -> tuple[str, list[str], int]:
    name = rng.choice(NAMES if lang == "en" else NAMES_FA)
    if kind == 0:  # boxes of items, some given away
        boxes, per, given = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 9)
        total = boxes * per
        answer = total - given
        if lang == "en":
            return (
                f"{name} has {boxes} boxes with {per} apples in each box. {name} gives away {given} apples. "
                "How many apples are left?",
                [
                    f"{boxes} boxes of {per} apples is {boxes} * {per} = {total} apples.",
                    f"After giving away {given}: {total} - {given} = {answer}.",
                ],
                answer,
            )
        return (
            f"{name} {boxes} جعبه دارد و در هر جعبه {per} سیب است. {name} {given} سیب را می‌بخشد. چند سیب باقی می‌ماند؟",
            [
                f"{boxes} جعبه‌ی {per} تایی یعنی {boxes} * {per} = {total} سیب.",
                f"پس از بخشیدن {given} سیب: {total} - {given} = {answer}.",
            ],
            answer,
        )
    if kind == 1:  # price times quantity plus a fee (totals can pass 1,000)
        price, count, fee = rng.randint(50, 400), rng.randint(2, 9), rng.randint(10, 90)
        cost = price * count
        answer = cost + fee
        if lang == "en":
            return (
                f"A book costs {price} dollars. {name} buys {count} books and pays {fee} dollars for delivery. "
                f"How many dollars does {name} pay in total?",
                [
                    f"{count} books cost {count} * {price} = {_n(cost)} dollars.",
                    f"With delivery: {_n(cost)} + {fee} = {_n(answer)} dollars.",
                ],
                answer,
            )
        return (
            f"هر کتاب {price} تومان است. {name} {count} کتاب می‌خرد و {fee} تومان هزینه‌ی ارسال می‌دهد. "
            f"{name} روی هم چند تومان می‌پردازد؟",
            [
                f"{count} کتاب {count} * {price} = {_n(cost)} تومان است.",
                f"با هزینه‌ی ارسال: {_n(cost)} + {fee} = {_n(answer)} تومان.",
            ],
            answer,
        )
    # kind 2: shared evenly, then some added
    people, each, extra = rng.randint(2, 6), rng.randint(2, 9), rng.randint(1, 9)
    total = people * each
    answer = each + extra
    if lang == "en":
        return (
            f"{name} shares {total} sweets equally among {people} friends. Then each friend gets {extra} more "
            "sweets. How many sweets does each friend have?",
            [f"Each friend first gets {total} / {people} = {each} sweets.", f"Then {each} + {extra} = {answer}."],
            answer,
        )
    return (
        f"{name} {total} شیرینی را به طور مساوی بین {people} دوست تقسیم می‌کند. سپس هر دوست {extra} "
        "شیرینی دیگر می‌گیرد. هر دوست چند شیرینی دارد؟",
        [f"هر دوست اول {total} / {people} = {each} شیرینی می‌گیرد.", f"سپس {each} + {extra} = {answer}."],
        answer,
    )


def problems(num: int = 300, seed: int = 0, lang: str = "en") -> list[dict[str, str]]:
    """`num` rows {"question", "answer"} where answer = solution steps + '#### N' (GSM8K layout)."""
    rng = random.Random(seed)
    rows = []
    for i in range(num):
        question, steps, answer = _problem(i % 3, rng, lang)
        solution = "\n".join(steps) + f"\n#### {answer}"
        if lang == "fa":
            question, solution = question.translate(PERSIAN_DIGITS), solution.translate(PERSIAN_DIGITS)
        rows.append({"question": question, "answer": solution})
    return rows


def load_reasoning(num: int = 300, seed: int = 0) -> list[dict[str, str]]:
    return problems(num, seed, "en")


def load_reasoning_fa(num: int = 300, seed: int = 0) -> list[dict[str, str]]:
    return problems(num, seed, "fa")
