"""The clip group's engine tasks: CoOp (class embeddings or learnable prompt context), linear probes on
cached image features, and CLIP trained from scratch on image-caption pairs.

CoOp and the probe train on cached image features, so the image tower never runs (and never changes)
while they train; only their small heads are trainable.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dlkit.clip.config import ClipTrainConfig, CoopConfig, ProbeConfig
from dlkit.clip.data import hold_out_per_class, image_caption_pairs, load_train_test
from dlkit.clip.evaluate import (
    caption_retrieval,
    class_embeddings,
    logits,
    retrieval_metrics,
    score,
    summary,
    write_report,
)
from dlkit.clip.features import ImageFeatures, image_features
from dlkit.clip.models import (
    ClassEmbeddings,
    ClipBundle,
    LinearProbe,
    PromptLearner,
    build_clip,
    build_from_config,
    clip_config,
    save_clip,
    scratch_card,
)
from dlkit.clip.retrieve import draw_grid
from dlkit.clip.templates import resolve_templates
from dlkit.core import plots
from dlkit.core.config import checked
from dlkit.core.engine import gather
from dlkit.core.errors import ConfigError
from dlkit.core.modelcard import CardInfo
from dlkit.core.run import Run
from dlkit.core.splits import DataSplits, record_splits
from dlkit.core.task import Task
from dlkit.data.captions import data_splits, load_caption_records, readable_records, split_records, splits_given

# -- tasks on cached features ------------------------------------------------------------------------


@dataclass
class FeatureTask(Task):
    """Classification on cached image features: the head is the whole model."""

    make_head: Any  # () -> nn.Module
    train_feats: ImageFeatures
    val_feats: ImageFeatures  # a slice of the train split: model selection never sees the test images
    summary_info: dict[str, Any]
    scorer: Any  # (the trained head, the run) -> metrics of the test split, scored once at the end
    head: nn.Module | None = None
    skipped_items: int = 0

    def build_model(self) -> nn.Module:
        self.head = self.make_head()
        return self.head

    def datasets(self) -> tuple[Dataset, Dataset]:
        return (
            TensorDataset(self.train_feats.features, self.train_feats.labels),
            TensorDataset(self.val_feats.features, self.val_feats.labels),
        )

    def training_step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        features, labels = batch
        out = model(features)
        return F.cross_entropy(out, labels), {"accuracy": (out.argmax(-1) == labels).float().mean()}

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        pairs: list[tuple[Any, Any]] = []
        for features, labels in loader:
            pairs.extend(zip(model(features).float().cpu(), labels.cpu().tolist(), strict=True))
        pairs = gather(accel, pairs)
        scores = torch.stack([p[0] for p in pairs])
        labels = torch.tensor([p[1] for p in pairs])
        return {
            "val_loss": F.cross_entropy(scores, labels).item(),
            "val_accuracy": (scores.argmax(-1) == labels).float().mean().item(),
        }

    def save_model(self, model: nn.Module, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        trainable = {k: v.detach().contiguous() for k, v in model.named_parameters() if v.requires_grad}
        buffers = {k: v.detach().contiguous() for k, v in model.named_buffers() if k in ("mean", "std")}
        save_file({**trainable, **buffers}, str(path / "head.safetensors"))

    def test(self, model: nn.Module, run: Run) -> dict[str, Any]:
        return self.scorer(model, run)

    def card_info(self) -> CardInfo:
        method, model = self.summary_info["method"], str(self.summary_info["model"])
        return CardInfo(
            what=f"{method} head on a frozen CLIP model",
            pipeline_tag="image-classification",
            tags=["clip", method],
            base=f"{model} (weights: {self.summary_info['pretrained']})",
            hub_base=False,
            usage="from safetensors.torch import load_file\n\n"
            "head = load_file('head.safetensors')  # the trained parameters; the image tower is "
            "the frozen base model's",
        )

    def summary(self) -> dict[str, Any]:
        return dict(self.summary_info)


@dataclass
class _Features:
    """Cached image features of the three splits, and how the images were split."""

    bundle: ClipBundle
    classes: list[str]
    train: ImageFeatures
    val: ImageFeatures
    test: ImageFeatures
    rule: str

    def summary(self) -> dict[str, Any]:
        return {
            "num_classes": len(self.classes),
            "train_images": len(self.train.labels),
            "val_images": len(self.val.labels),
            "test_images": len(self.test.labels),
            "image_features_cached": self.train.cached and self.test.cached,
            "skipped_items": len(self.train.skipped) + len(self.test.skipped),
        }

    def record(self, run: Run, resume: bool) -> None:
        ids = {"train": self.train.paths, "validation": self.val.paths, "test": self.test.paths}
        record_splits(run, DataSplits(ids, self.rule), resume=resume)


def _features(cfg: CoopConfig | ProbeConfig) -> _Features:
    """Train, validation (`--val-fraction` of each class of the train split, seeded) and test features.
    The train pool is encoded as one set, so changing --val-fraction reuses the cached features."""
    import random

    pool, test_images, rule = load_train_test(
        cfg.data, cfg.train_split, cfg.split, cfg.classnames, cfg.holdout, cfg.seed
    )
    _, val_images = hold_out_per_class(pool, cfg.val_fraction, random.Random(f"validation-{cfg.seed}"))
    bundle = build_clip(cfg.model, cfg.pretrained, cfg.seed)
    pool_feats = image_features(bundle, pool, cfg.batch_size, cfg.num_workers, cfg.strict)
    test_feats = image_features(bundle, test_images, cfg.batch_size, cfg.num_workers, cfg.strict)
    held = set(val_images.paths)
    train_feats = _subset(pool_feats, [p not in held for p in pool_feats.paths])
    val_feats = _subset(pool_feats, [p in held for p in pool_feats.paths])
    rule += f"; seeded: {cfg.val_fraction:.0%} of each class of the train split held out for validation"
    return _Features(bundle, pool.classes, train_feats, val_feats, test_feats, rule)


def _subset(feats: ImageFeatures, keep: list[bool]) -> ImageFeatures:
    mask = torch.tensor(keep, dtype=torch.bool)
    return ImageFeatures(
        feats.features[mask],
        feats.labels[mask],
        [p for p, k in zip(feats.paths, keep, strict=True) if k],
        feats.skipped,
        feats.cached,
    )


def _logit_scale(bundle: ClipBundle) -> float:
    return float(bundle.model.logit_scale.detach().exp().clamp(max=100.0))


def coop(cfg: CoopConfig) -> dict[str, Any]:
    """Train class embeddings or prompt context on the train split (selected on a validation slice of it);
    the test split is scored once, at the end, next to zero-shot's accuracy on it."""
    from dlkit.core.engine import fit

    checked(cfg)
    templates = resolve_templates(cfg.templates)
    feats = _features(cfg)
    bundle, classes, test_feats = feats.bundle, feats.classes, feats.test
    zeroshot_emb = class_embeddings(bundle, classes, templates)
    scale = _logit_scale(bundle)
    if cfg.mode == "embedding":

        def make_head() -> nn.Module:
            return ClassEmbeddings(zeroshot_emb, scale)
    else:

        def make_head() -> nn.Module:
            return PromptLearner(bundle.model, bundle.tokenizer, classes, cfg.n_ctx, scale)

    summary_info = {"method": f"coop-{cfg.mode}", "model": cfg.model, "pretrained": bundle.weights, **feats.summary()}

    def test(head: nn.Module, run: Run) -> dict[str, Any]:
        learned = head(test_feats.features)
        zeroshot_scores = logits(test_feats.features, zeroshot_emb)
        learned_result = score(learned, test_feats.labels, classes)
        zeroshot_result = score(zeroshot_scores, test_feats.labels, classes)
        write_report(run, learned_result, learned, test_feats, classes)
        write_report(run, zeroshot_result, zeroshot_scores, test_feats, classes, prefix="zeroshot_")
        if cfg.mode == "prompt":
            _write_prompts(run, head, classes)
        return {
            "test_accuracy": learned_result["top1"],
            "test_top5": learned_result["top5"],
            "test_macro_f1": learned_result["macro_f1"],
            "zeroshot_accuracy": zeroshot_result["top1"],
            "gain_over_zeroshot": learned_result["top1"] - zeroshot_result["top1"],
            "worst_classes": summary(learned_result)["worst_classes"],
            "output_dir": str(run.dir),
        }

    task = FeatureTask(
        make_head, feats.train, feats.val, summary_info, test, skipped_items=summary_info.pop("skipped_items")
    )
    run = Run.create("clip", cfg, f"coop-{cfg.mode}", command="coop")
    feats.record(run, cfg.resume)
    return fit(task, cfg, run)


def _write_prompts(run: Run, head: PromptLearner, classes: list[str]) -> None:
    """The nearest vocabulary token to each learned context vector: a rough reading of what CoOp learned."""
    from open_clip.tokenizer import SimpleTokenizer

    decoder = SimpleTokenizer().decoder
    with torch.no_grad():
        vocab = F.normalize(head.token_embedding.weight, dim=-1)
        nearest = (F.normalize(head.ctx, dim=-1) @ vocab.T).argmax(dim=-1)  # (C, n_ctx)
    lines = [
        f"{name}: " + " ".join(decoder.get(int(t), "?").replace("</w>", "") for t in row) + f" {name}."
        for name, row in zip(classes, nearest.tolist(), strict=True)
    ]
    run.write_text("samples/learned_prompts.txt", "\n".join(lines) + "\n")


def probe(cfg: ProbeConfig) -> dict[str, Any]:
    """A linear layer on the frozen image tower's cached features (CLIP_benchmark's linear probe), selected
    on a validation slice of the train split; the test split is scored once, at the end."""
    from dlkit.core.engine import fit

    checked(cfg)
    feats = _features(cfg)
    classes, test_feats = feats.classes, feats.test
    mean = feats.train.features.mean(dim=0)
    std = feats.train.features.std(dim=0).clamp_min(1e-6)

    def make_head() -> nn.Module:
        return LinearProbe(mean, std, len(classes))

    summary_info = {"method": "linear-probe", "model": cfg.model, "pretrained": feats.bundle.weights, **feats.summary()}

    def test(head: nn.Module, run: Run) -> dict[str, Any]:
        scores = head(test_feats.features)
        result = score(scores, test_feats.labels, classes)
        write_report(run, result, scores, test_feats, classes)
        return {
            "test_accuracy": result["top1"],
            "test_top5": result["top5"],
            "test_macro_f1": result["macro_f1"],
            "worst_classes": summary(result)["worst_classes"],
            "output_dir": str(run.dir),
        }

    task = FeatureTask(
        make_head, feats.train, feats.val, summary_info, test, skipped_items=summary_info.pop("skipped_items")
    )
    run = Run.create("clip", cfg, "probe", command="probe")
    feats.record(run, cfg.resume)
    return fit(task, cfg, run)


# -- CLIP from scratch ---------------------------------------------------------------------------------


@dataclass
class ClipTask(Task):
    """Contrastive image-text training: symmetric cross-entropy over the step's similarity matrix. With
    several processes each one's features are gathered from all of them, so the negatives are the whole
    global batch, as on one process."""

    cfg: ClipTrainConfig
    config: dict[str, Any] = field(init=False)
    skipped_items: int = 0

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.config = clip_config(
            cfg.image_encoder,
            cfg.embed_dim,
            cfg.image_size,
            cfg.text_width,
            cfg.text_layers,
            cfg.text_heads,
            cfg.context_length,
        )
        records, stats = load_caption_records(cfg.data, strict=cfg.strict)
        records, undecodable = readable_records(records, strict=cfg.strict)
        self.skipped_items = stats.get("skipped_missing_images", 0) + undecodable
        self.given_splits = splits_given(records)
        self.splits = split_records(records, seed=cfg.seed)
        self.train_records, self.val_records = self.splits["train"], self.splits["val"]
        if not self.val_records:
            raise ConfigError(f"--data {cfg.data}: too few images ({len(records)}) for a validation split")

    def build_model(self) -> nn.Module:
        bundle = build_from_config("clip", self.config, self.cfg.seed)
        self.bundle = bundle
        return bundle.model.train()

    def datasets(self) -> tuple[Dataset, Dataset]:
        bundle = self.bundle
        return (
            image_caption_pairs(self.train_records, bundle.tokenizer, bundle.preprocess_train),
            image_caption_pairs(self.val_records, bundle.tokenizer, bundle.preprocess_eval),
        )

    def batch_plan(self, dataset: Dataset, batch_size: int, gen: torch.Generator) -> list[list[int]]:
        """Shuffled full steps only (open_clip drops the last batch too): `batch_size` is one optimizer
        step's examples (batch x accum x processes), which the engine splits into equal micro-batches, so
        every process contributes the same number of features to each gathered similarity matrix."""
        order = torch.randperm(len(dataset), generator=gen).tolist()
        if len(order) < batch_size:  # less than one step: a short batch on one process; several processes
            return [order] if world_size() == 1 else []  # would gather unequal features (the engine then says so)
        return [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]

    def training_step(self, model: nn.Module, batch: Any):
        images, tokens, _ = batch
        image_emb, text_emb, scale = model(images, tokens)[:3]  # (B, D) normalised each; through forward for DDP
        scale = scale.clamp(max=100.0)
        return contrastive_loss(image_emb, text_emb, scale), {"logit_scale": scale.detach()}

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        rows: list[Any] = []
        for images, tokens, owners in loader:
            image_emb, text_emb, _ = model(images, tokens)[:3]  # the wrapper's forward: DDP syncs BatchNorm stats
            rows.extend(zip(image_emb.float().cpu(), text_emb.float().cpu(), owners.cpu().tolist(), strict=True))
        rows = gather(accel, rows)
        self.val_images = {owner: image_emb for image_emb, _, owner in reversed(rows)}  # for on_eval's samples
        scale = float(accel.unwrap_model(model).logit_scale.exp().clamp(max=100.0))
        return retrieval_metrics(rows, scale)

    def on_eval(self, model: nn.Module, run: Run, step: int) -> None:
        self.plot_recall(run)
        self.write_retrievals(model, run, step)

    def write_retrievals(self, model: nn.Module, run: Run, step: int, queries: int = 3, k: int = 6) -> None:
        """The top-k validation images for the first captions of a few validation images (JSON), and a grid
        for the first query (plots/retrieval.png): what recall@k means, one query at a time."""
        owners = sorted(self.val_images)
        image_matrix = torch.stack([self.val_images[o] for o in owners])  # (I, D)
        device = next(model.parameters()).device
        samples = []
        for owner in owners[:queries]:
            caption = self.val_records[owner].captions[0]
            with torch.no_grad():
                query = model.encode_text(self.bundle.tokenizer([caption]).to(device), normalize=True)[0].float().cpu()
            top = (image_matrix @ query).topk(min(k, len(owners)))
            results = [
                {
                    "rank": i + 1,
                    "image": self.val_records[owners[j]].image,
                    "score": float(v),
                    "correct": owners[j] == owner,
                }
                for i, (v, j) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True))
            ]
            samples.append({"query": caption, "image": self.val_records[owner].image, "results": results})
        run.write_json(f"samples/retrieval_step_{step:07d}.json", samples)
        draw_grid(samples[0]["results"], samples[0]["query"], run.plots_dir / "retrieval.png")

    def plot_recall(self, run: Run) -> None:
        evals = run.history("eval")
        if not evals:
            return
        fig, ax = plots.new_figure(7, 4)
        for key in ("val_t2i_r1", "val_t2i_r5", "val_i2t_r1", "val_i2t_r5"):
            points = [(r["step"], r[key]) for r in evals if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=key.removeprefix("val_"))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("recall")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        plots.save_figure(fig, run.plots_dir / "recall.png")

    def save_model(self, model: nn.Module, path: Path) -> None:
        save_clip(model, self.config, path)

    def test(self, model: nn.Module, run: Run) -> dict[str, Any]:
        """Recall@1/5/10 both ways on the test images, scored once with the final weights."""
        if not self.splits["test"]:
            return {}
        bundle = dataclasses.replace(self.bundle, model=model)
        result = caption_retrieval(bundle, self.splits["test"], "test", self.cfg.batch_size, cache=False)
        return {k: v for k, v in result.items() if k.startswith("test_")}

    def card_info(self) -> CardInfo:
        return scratch_card(self.cfg.image_encoder)

    def summary(self) -> dict[str, Any]:
        return {
            "method": "clip-scratch",
            "image_encoder": self.cfg.image_encoder,
            "train_images": len(self.train_records),
            "val_images": len(self.val_records),
        }


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of normalised (B, D) features, by open_clip's ClipLoss. With N processes
    (torch.distributed initialised), this process's images are scored against all N*B captions and its
    captions against all N*B images, the other processes' features gathered with their gradients
    (gather_with_grad + local_loss): the mean of the N losses is the loss of the whole global batch on
    one process, and the gradient DDP averages is that loss's gradient."""
    import torch.distributed as dist

    world = world_size()
    loss = _clip_loss(dist.get_rank() if world > 1 else 0, world)
    with warnings.catch_warnings():  # torch deprecates the autograd all_gather open_clip uses; it still works
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return loss(image_emb, text_emb, scale)


def world_size() -> int:
    """Processes sharing the training (torch.distributed initialised), else 1."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@functools.cache
def _clip_loss(rank: int, world: int) -> nn.Module:
    from open_clip.loss import ClipLoss

    return ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world)


def train(cfg: ClipTrainConfig) -> dict[str, Any]:
    """CLIP from scratch on image-caption pairs: the function behind `dlkit clip train`."""
    from dlkit.core.engine import fit

    checked(cfg)
    task = ClipTask(cfg)
    run = Run.create("clip", cfg, f"scratch-{cfg.image_encoder}")
    record_splits(run, data_splits(task.splits, task.given_splits, cfg.seed), resume=cfg.resume)
    metrics = fit(task, cfg, run)
    metrics["output_dir"] = str(run.dir)
    run.write_metrics(metrics)
    return metrics
