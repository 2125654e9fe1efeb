"""A trained QA model travels: copied elsewhere, plain transformers loads it, finds the window settings in
config.json, and the best span over those windows is the answer `dlkit qa predict` gives."""

from __future__ import annotations

import json
import shutil

from dlkit.builtin.qa import load_data


def plain_answer(model, tokenizer, question: str, context: str, settings: dict) -> str:
    """The highest start+end logit over every window and every valid span, as a plain transformers user would."""
    import torch

    enc = tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=settings["max_length"],
        stride=settings["doc_stride"],
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
        return_tensors="pt",
    )
    offsets = enc.pop("offset_mapping")
    enc.pop("overflow_to_sample_mapping")
    with torch.no_grad():
        out = model(**enc)
    best, text = -float("inf"), ""
    for w in range(len(offsets)):
        in_context = [i for i, s in enumerate(enc.sequence_ids(w)) if s == 1]
        for i in in_context:
            for j in in_context:
                if i <= j < i + settings["max_answer_length"]:
                    score = float(out.start_logits[w, i] + out.end_logits[w, j])
                    if score > best:
                        best, text = score, context[int(offsets[w, i, 0]) : int(offsets[w, j, 1])]
    return text


def test_run_copied_elsewhere_answers_with_plain_transformers(cli, tmp_path, trained_run):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    moved = tmp_path / "elsewhere"
    shutil.copytree(trained_run, moved)
    folder = moved / "checkpoints" / "final"
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    settings = model.config.task_specific_params["question-answering"]
    assert settings["max_length"] == 32 and settings["doc_stride"] == 8

    articles = json.loads((load_data() / "test.json").read_text(encoding="utf-8"))["data"]
    paragraphs = [p for article in articles for p in article["paragraphs"]]
    questions = [(p["context"], qa["question"]) for p in paragraphs for qa in p["qas"] if qa["answers"]][:10]
    agree = 0
    for context, question in questions:
        result = cli("qa", "predict", "--run", moved, "--context", context, "--question", question, "--json")
        assert result.exit_code == 0, result.stderr
        ours = json.loads(result.stdout)
        agree += plain_answer(model, tokenizer, question, context, settings).strip() == ours["answer"].strip()
    # the spans are decoded by hand here (dlkit ranks them by probability over windows), so near ties may differ;
    # the model itself must be the same exactly
    assert len(questions) >= 5 and agree >= len(questions) // 2, (agree, len(questions))
    from dlkit.qa.models import load_trained

    ours_model, _, _ = load_trained(folder)
    context, question = questions[0]
    enc = tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=settings["max_length"],
        stride=settings["doc_stride"],
        return_overflowing_tokens=True,
        padding="max_length",
        return_tensors="pt",
    )
    enc.pop("overflow_to_sample_mapping")
    with torch.no_grad():
        plain = model(**enc)
        start, end = ours_model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    torch.testing.assert_close(plain.start_logits, start, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain.end_logits, end, rtol=1e-5, atol=1e-5)
