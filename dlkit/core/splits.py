"""Which examples a run trained on and which it held out: recorded once by `train`, checked by every `eval`.

`train` calls `record_splits(run, DataSplits(...))` before `fit`: splits.json in the run folder lists each
split's example ids, and config.json's provenance block gets the rule that cut the split, a fingerprint of
the data and each split's size. Every `eval` picks what it scores with `scored` (the split: held-out by
default, `train` only when asked; its examples: those the run did not train on) and names it with
`Scored.fields`. Example ids are content ids (`example_id`), so a duplicate of a training example is caught
even when it sits in another file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlkit.core.errors import ConfigError, RunError
from dlkit.core.progress import warn

if TYPE_CHECKING:
    from dlkit.core.run import Run

TRAIN, VALIDATION, TEST = "train", "validation", "test"
ALL = "all"  # a source that is not one split of a dataset, scored or checked whole
SPLIT_ORDER = (TRAIN, VALIDATION, TEST)
ALIASES = {"val": VALIDATION, "valid": VALIDATION, "dev": VALIDATION, "eval": VALIDATION}
NAME_WORDS = {"train": TRAIN, "training": TRAIN, "test": TEST, "testing": TEST, **ALIASES, VALIDATION: VALIDATION}
SPLITS_FILE = "splits.json"
META = "splits"  # key in config.json's provenance block


def example_id(*parts: object) -> str:
    """A short content id: equal examples get equal ids, whatever file or position they come from."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def fingerprint(ids: Sequence[str]) -> str:
    """Order-independent digest of a set of example ids (of content ids: of the data itself)."""
    digest = hashlib.sha1()
    for item in sorted(ids):
        digest.update(item.encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def canonical(name: str) -> str:
    """val/valid/dev -> validation; other names as given, lowercased."""
    lowered = name.strip().lower()
    return ALIASES.get(lowered, lowered)


def split_in_name(name: str) -> str:
    """The split a file or folder is by its name (pqa_test.json -> test, dev-v2.0.json -> validation, ~/dogs/test
    -> test), or `all` when the name names none."""
    import re
    from pathlib import PurePath

    words = re.split(r"[^a-z]+", PurePath(name.rstrip("/")).stem.lower())
    found = {NAME_WORDS[w] for w in words if w in NAME_WORDS}
    return found.pop() if len(found) == 1 else ALL


@dataclass
class DataSplits:
    """Example ids per split (train, validation, test) and how they were cut."""

    ids: dict[str, list[str]]
    rule: str  # in words, e.g. "seeded: 10% of the contexts held out for validation (seed 0)"

    def size(self, name: str) -> int:
        return len(self.ids.get(name, []))

    def summary(self) -> dict[str, object]:
        """What config.json records: the rule, the data fingerprint and each split's size and digest."""
        every = [i for ids in self.ids.values() for i in ids]
        return {
            "rule": self.rule,
            "fingerprint": fingerprint(every),
            "file": SPLITS_FILE,
            "sizes": {name: len(ids) for name, ids in self.ids.items()},
            "digests": {name: fingerprint(ids) for name, ids in self.ids.items()},
        }


def record_splits(run: Run, splits: DataSplits, resume: bool = False) -> None:
    """At train time: write splits.json and put the summary into config.json's provenance block. A resumed
    run must cut the same splits, or it would go on training on examples it used to hold out."""
    run.provenance[META] = splits.summary()
    recorded = read_splits(run) if resume else None
    if recorded is not None:
        changed = [
            name
            for name in SPLIT_ORDER
            if fingerprint(recorded.ids.get(name, [])) != fingerprint(splits.ids.get(name, []))
        ]
        if changed:
            raise RunError(
                f"--resume: the data now splits differently ({', '.join(changed)} changed since "
                f"{run.dir} started); resume with the run's own --data, or start a new run"
            )
        return
    trained = set(splits.ids.get(TRAIN, []))
    for name in (VALIDATION, TEST):
        shared = sum(i in trained for i in splits.ids.get(name, []))
        if shared:
            warn(f"{shared} {name} examples are duplicates of training examples; every eval leaves them out")
    if run.writer:
        from dlkit.core.run import atomic_write_json

        atomic_write_json(run.dir / SPLITS_FILE, {"rule": splits.rule, **splits.ids})


def read_splits(run: Run) -> DataSplits | None:
    """The run's recorded splits; None for a run made before dlkit recorded them."""
    path = run.dir / SPLITS_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is corrupt ({exc.msg} at line {exc.lineno})") from None
    rule = str(saved.pop("rule", ""))
    return DataSplits({k: list(v) for k, v in saved.items()}, rule)


def eval_split(requested: str | None, available: Sequence[str]) -> str:
    """The split an eval scores: --split if given, else test, else validation. `available` lists the
    non-empty splits this run can score; train is scored only when asked for by name."""
    if requested is not None:
        name = canonical(requested)
        if name not in available:
            raise ConfigError(f"--split {requested}: this run has no {name} split (it has: {', '.join(available)})")
        return name
    for name in (TEST, VALIDATION):
        if name in available:
            return name
    raise ConfigError(
        f"this run has no held-out split (it has: {', '.join(available) or 'none'}); "
        "pass --split train to score the training examples on purpose"
    )


def held_out(run: Run, split: str, ids: Sequence[str]) -> list[int]:
    """Indices of `ids` an eval of `split` may score: all of them for `train`; otherwise those the run did
    not train on (a duplicate of a training example is left out, with a warning, never scored as held-out)."""
    if canonical(split) == TRAIN:
        return list(range(len(ids)))
    recorded = read_splits(run)
    if recorded is None:
        from dlkit.core.progress import warn

        warn(
            f"{run.dir} has no {SPLITS_FILE} (made by an older dlkit): cannot check that the {split} examples "
            "were not trained on"
        )
        return list(range(len(ids)))
    trained = set(recorded.ids.get(TRAIN, []))
    keep = [i for i, example in enumerate(ids) if example not in trained]
    if len(keep) < len(ids):
        from dlkit.core.progress import warn

        warn(
            f"{len(ids) - len(keep)} of the {len(ids)} {split} examples were trained on by {run.dir}; "
            "they are left out of this eval"
        )
    if not keep:
        raise ConfigError(
            f"every {split} example was trained on by {run.dir}; pass --split train to score "
            "training examples on purpose"
        )
    return keep


@dataclass
class Scored:
    """What an eval scores: a split, and the indices of its examples the run did not train on."""

    name: str  # the split: test, validation, train (asked for by name), or a whole file's name
    keep: list[int]  # indices into that split's examples
    size: int  # that split's examples before the trained ones were left out

    @property
    def left_out(self) -> int:
        return self.size - len(self.keep)

    def fields(self) -> dict[str, object]:
        """The keys every eval.json/metrics.json carries (split_fields) for what was scored."""
        return split_fields(self.name, len(self.keep), self.left_out)


def scored(run: Run | None, requested: str | None, ids_by_split: dict[str, list[str]]) -> Scored:
    """The one rule of every eval: `eval_split` picks the split among the non-empty ones (--split, else test,
    else validation), `held_out` leaves out the examples the run trained on. A source scored whole (a file
    given with --data) is one entry, named by the caller and requested by that name; a model no run trained
    (`run` None: pretrained weights) is scored on the whole split."""
    ids_by_split = {canonical(name): ids for name, ids in ids_by_split.items()}
    name = eval_split(requested, [n for n, ids in ids_by_split.items() if ids])
    ids = ids_by_split[name]
    return Scored(name, list(range(len(ids))) if run is None else held_out(run, name, ids), len(ids))


def split_fields(split: str, size: int, trained_left_out: int = 0) -> dict[str, object]:
    """The keys every eval.json/metrics.json carries: which split was scored and how many examples."""
    fields: dict[str, object] = {"split": split, "split_size": size}
    if trained_left_out:
        fields["trained_examples_left_out"] = trained_left_out
    return fields
