import json

import pytest
import torch

from dlkit.metrics import squad_scores
from dlkit.qa.config import WindowConfig
from dlkit.qa.data import QAExample, load_splits, read_file
from dlkit.qa.models import SpanQA, check_and_load, load_qa_model
from dlkit.qa.task import score
from dlkit.qa.windows import best_spans, make_windows


@pytest.fixture(scope="module")
def tokenizer():
    return check_and_load("builtin:tiny-bert")[1]


def one_hot_logits(windows, positions):
    """Logits that peak at (start, end) in the windows given, and at [CLS] elsewhere."""
    starts, ends = [], []
    for index, window in enumerate(windows):
        start, end = positions.get(index, (window.cls_index, window.cls_index))
        s, e = [0.0] * len(window.input_ids), [0.0] * len(window.input_ids)
        s[start], e[end] = 10.0, 10.0
        starts.append(s)
        ends.append(e)
    return starts, ends


def test_every_label_maps_back_to_its_answer_text(tokenizer):
    examples = load_splits("builtin:qa-synthetic")["validation"]
    cfg = WindowConfig(max_length=28, doc_stride=6)
    windows = make_windows(tokenizer, examples, cfg)
    assert len(windows) > 1.8 * len(examples)
    labelled = set()
    for w in windows:
        example = examples[w.example_index]
        if w.start_position != w.cls_index:
            text = example.context[w.offsets[w.start_position][0] : w.offsets[w.end_position][1]]
            assert text == example.answers[0]
            labelled.add(w.example_index)
    answerable = {i for i, e in enumerate(examples) if e.answerable}
    assert labelled == answerable  # every answer is whole in at least one window


def test_answer_beyond_the_first_window_is_found_by_striding(tokenizer):
    filler = " ".join(f"Sentence number {i} says nothing useful." for i in range(12))
    context = f"{filler} The capital of Valoria is Lima."
    example = QAExample("q", context, "What is the capital of Valoria?", ["Lima"], [context.index("Lima")])
    cfg = WindowConfig(max_length=32, doc_stride=8)
    windows = make_windows(tokenizer, [example], cfg)
    holding = [i for i, w in enumerate(windows) if w.start_position != w.cls_index]
    assert len(windows) > 3 and holding and holding[0] > 0  # the answer is only in a later window
    label = windows[holding[-1]]
    starts, ends = one_hot_logits(windows, {holding[-1]: (label.start_position, label.end_position)})
    spans = best_spans([example], windows, starts, ends, cfg, allow_null=False)
    assert spans["q"][0].text == "Lima" and context[spans["q"][0].start_char : spans["q"][0].end_char] == "Lima"
    # truncating to the first window (no striding) cannot find it
    first_only = best_spans([example], windows[:1], starts[:1], ends[:1], cfg, allow_null=False)
    assert first_only["q"][0].text != "Lima"


def test_post_processing_rules(tokenizer):
    context = "The capital of Valoria is Lima. People in Valoria speak Greek."
    example = QAExample("q", context, "What is the capital of Valoria?", ["Lima"], [context.index("Lima")])
    cfg = WindowConfig(max_length=64, doc_stride=16, max_answer_length=3)
    (window,) = make_windows(tokenizer, [example], cfg)
    s, e = window.start_position, window.end_position
    starts, ends = one_hot_logits([window], {0: (s, e)})
    starts[0][s + 2], ends[0][s - 1] = 9.0, 9.5  # a reversed pair scores higher than the gold one: dropped
    assert best_spans([example], [window], starts, ends, cfg, False)["q"][0].text == "Lima"
    starts, ends = one_hot_logits([window], {0: (s, s + 6)})  # longer than --max-answer-length: dropped
    assert len(best_spans([example], [window], starts, ends, cfg, False)["q"][0].text.split()) <= 3
    starts, ends = one_hot_logits([window], {0: (0, 0)})  # question tokens are never an answer
    starts[0][0], ends[0][0] = 30.0, 30.0
    assert best_spans([example], [window], starts, ends, cfg, allow_null=True)["q"][0].text == ""
    assert best_spans([example], [window], starts, ends, cfg, allow_null=False)["q"][0].text != ""


def test_scores_match_the_official_squad_v2_definition():
    examples = [
        QAExample("a", "x", "q", ["Lima"], [0]),
        QAExample("b", "x", "q", ["the red door"], [0]),
        QAExample("c", "x", "q", [], []),
        QAExample("d", "x", "q", [], []),
    ]
    from dlkit.qa.windows import Span

    spans = {
        "a": [Span("Lima.", 1, 0, 0)],
        "b": [Span("red house", 1, 0, 0)],
        "c": [Span("", 1, 0, 0)],
        "d": [Span("Lima", 1, 0, 0)],
    }
    result = score(examples, spans)
    # official v2 script: EM a=1 b=0 c=1 d=0; F1 b: tokens {red, house} vs {red, door} -> 0.5
    assert result["exact_match"] == pytest.approx(50.0) and result["f1"] == pytest.approx(62.5)
    assert result["has_ans_exact"] == 50.0 and result["no_ans_exact"] == 50.0
    assert result.pop("no_answer_pct") == 25.0  # one prediction of four is the empty answer
    assert result == squad_scores({k: v[0].text for k, v in spans.items()}, {e.id: e.answers for e in examples})


def test_persian_variants_match_in_eval(tokenizer, tmp_path):
    context = "نویسنده کتاب را می\u200cخواند. پایتخت والوریا تهران است."
    gold = "مي خواند"  # Arabic yeh and a space where the context has Persian yeh and a ZWNJ
    start = context.index("می\u200cخواند")
    path = tmp_path / "fa.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "title": "fa",
                        "paragraphs": [
                            {
                                "context": context,
                                "qas": [
                                    {
                                        "id": "fa",
                                        "question": "نویسنده کتاب را چه می‌کند؟",
                                        "answers": [{"text": gold, "answer_start": start}],
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (example,) = read_file(path)
    assert example.answers == [gold] and example.answer_starts == [start]
    cfg = WindowConfig(max_length=64, doc_stride=16)
    windows = make_windows(tokenizer, [example], cfg)
    label = windows[0]
    assert label.start_position != label.cls_index
    starts, ends = one_hot_logits(windows, {0: (label.start_position, label.end_position)})
    spans = best_spans([example], windows, starts, ends, cfg, allow_null=False)
    assert spans["fa"][0].text == "می\u200cخواند"  # the context's own spelling
    assert score([example], spans)["exact_match"] == 100.0
    assert squad_scores({"fa": "میخواند"}, {"fa": [gold]})["exact_match"] == 0.0  # a real difference still counts


def test_dropout_linear_head_equals_linear_head_in_eval_mode():
    from dlkit.builtin import BUILTINS

    qa_model = load_qa_model(str(BUILTINS["tiny-bert"].load()), "builtin:tiny-bert")
    linear, dropout = SpanQA(qa_model), SpanQA(qa_model, head_dropout=0.2)
    ids = torch.randint(5, 100, (2, 12))
    mask = torch.ones_like(ids)
    dropout.train()
    first, second = dropout(ids, mask)[0], dropout(ids, mask)[0]
    assert not torch.equal(first, second)
    dropout.eval(), linear.eval()
    torch.testing.assert_close(dropout(ids, mask), linear(ids, mask), rtol=0, atol=0)
