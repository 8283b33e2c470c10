#!/usr/bin/env python
"""Pretrain the bundled backbone ``petl_vit_tiny`` and write its weights, source metrics and log.

Source task (default ``--source mnist+glyphs``): a multi-task run on

* ``mnist5k``: the train part of ``SplitSpec(val_fraction=0.1, test_fraction=0.2, split_seed=0)`` (3,500 images).
  Its 10-class head is the one saved with the weights, so ``create_model("petl_vit_tiny")`` is an MNIST classifier.
  The 1,000-image test part is the held-out source set of the model card and of ``tests/test_bundled.py``; it is
  never used for any choice (the run has a fixed schedule and saves the last epoch); the val part is only logged.
* ``glyphs``: 62 classes (0-9A-Za-z) in 22 fonts, freshly rendered every epoch (``render_glyphs(seed=1000 + epoch)``),
  through an auxiliary 62-class head that is dropped at the end. Held-out glyphs: ``render_glyphs(seed=999_999)``.

Each step feeds one batch of each source through the shared backbone; the loss is the sum of both cross-entropies
(label smoothing). Augmentation, all torch ops on ``[0, 1]`` images, then the model's own resize/normalisation:
a random affine warp (rotation, shear, zoom mostly *up* so that digits fill the frame as in sklearn's 8x8 digits,
translation), random stroke thickness (3x3 max/min pooling), contrast, and with probability ``p_lowres`` a 16->8->16
round trip that mimics the blocky 8x8 sklearn digits. Optimiser: AdamW, linear warm-up, cosine decay, stochastic
depth (training only; it adds no parameters).

Outputs (atomic writes), by default:

* ``petl_analysis/models/_weights/petl_vit_tiny.safetensors``
* ``petl_analysis/models/_weights/source_metrics.json`` (held-out set definition, accuracies, recipe, wall time)
* ``petl_analysis/models/_weights/pretrain_log.txt`` (one line per epoch, also printed)

Deterministic for a given ``--threads`` (all randomness comes from seeded generators); float reductions may differ
between thread counts. Usage::

    python scripts/pretrain_tiny_vit.py                      # the committed run (see MODEL_CARD.md)
    python scripts/pretrain_tiny_vit.py --epochs 40 --out /tmp/pilot.safetensors   # a pilot
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from petl_analysis.data import SplitSpec, load_dataset, make_splits, render_glyphs, to_model_input
from petl_analysis.engine import evaluate, seed_everything
from petl_analysis.io import atomic_write_json, atomic_write_text
from petl_analysis.models import BUNDLED_ARCH, BUNDLED_MODEL, ModelSpec, create_model, save_weights

WEIGHTS_DIR = REPO / "petl_analysis" / "models" / "_weights"
#: The source split; its ``test`` part is the held-out set the model card reports and the tests re-check.
SOURCE_SPLIT = SplitSpec(val_fraction=0.1, test_fraction=0.2, split_seed=0)
GLYPH_HELDOUT_SEED = 999_999
GLYPH_HELDOUT_N = 3100  # 50 per class
BLOB_HELDOUT_SEED = 999_998
BLOB_HELDOUT_N = 3200  # 50 per class
MEAN, STD = 0.5, 0.5


@dataclasses.dataclass
class PretrainRecipe:
    """Everything that defines a pretraining run (written to the metrics JSON)."""

    source: str = "mnist+glyphs+blobs"  # "mnist", optionally "+glyphs", "+blobs"
    epochs: int = 300
    batch_size: int = 128  # per source
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 10
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    drop_path_rate: float = 0.1
    glyph_weight: float = 1.0
    blob_weight: float = 1.0
    blob_classes: int = 64
    blob_pool: int = 16384
    rotation_deg: float = 15.0
    shear: float = 0.15
    zoom: tuple[float, float] = (0.9, 1.45)
    translate: float = 0.12
    p_stroke: float = 0.3
    p_lowres: float = 0.3
    seed: int = 0
    arch: dict = dataclasses.field(default_factory=dict)  # overrides of BUNDLED_ARCH (pilots only)


def random_affine(x: torch.Tensor, g: torch.Generator, r: PretrainRecipe) -> torch.Tensor:
    """Warp ``x`` ``(B, 1, H, W)`` in [0, 1] by a random rotation, shear, zoom and translation (black padding)."""
    b = x.shape[0]
    u = lambda lo, hi: torch.rand(b, generator=g) * (hi - lo) + lo  # noqa: E731
    angle = u(-r.rotation_deg, r.rotation_deg) * (math.pi / 180)
    shear = u(-r.shear, r.shear)
    zoom = torch.exp(u(math.log(r.zoom[0]), math.log(r.zoom[1])))
    shift = torch.stack([u(-r.translate, r.translate), u(-r.translate, r.translate)], -1) * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot_inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    shear_inv = torch.eye(2).repeat(b, 1, 1)
    shear_inv[:, 0, 1] = -shear
    lin = shear_inv @ rot_inv / zoom.view(b, 1, 1)
    theta = torch.cat([lin, -(lin @ shift.unsqueeze(-1))], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _pool3(x: torch.Tensor, sign: float) -> torch.Tensor:
    return sign * F.max_pool2d(sign * x, 3, stride=1, padding=1)


def augment(x: torch.Tensor, g: torch.Generator, r: PretrainRecipe, img_size: int, warp: bool) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1] -> normalised model input ``(B, 1, img_size, img_size)``."""
    b = x.shape[0]
    if warp:
        x = random_affine(x, g, r)
    stroke = torch.rand(b, generator=g)
    thick, thin = stroke < r.p_stroke / 2, (stroke >= r.p_stroke / 2) & (stroke < r.p_stroke)
    x = torch.where(thick.view(b, 1, 1, 1), _pool3(x, 1.0), x)
    x = torch.where(thin.view(b, 1, 1, 1), 0.5 * (x + _pool3(x, -1.0)), x)
    if x.shape[-1] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
    lowres = (torch.rand(b, generator=g) < r.p_lowres).view(b, 1, 1, 1)
    coarse = F.interpolate(F.avg_pool2d(x, 2), size=(img_size, img_size), mode="bilinear", align_corners=False)
    x = torch.where(lowres, coarse, x)
    x = x * (torch.rand(b, 1, 1, 1, generator=g) * 0.35 + 0.65)
    return (x.clamp(0, 1) - MEAN) / STD


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


BLOB_PARTS = 8


def blob_prototypes(k: int, seed: int) -> dict[str, torch.Tensor]:
    """``k`` random part-based shapes ("creatures"): a body ellipse plus 1-7 limbs or knobs on its boundary.

    Each prototype is a class of the ``blobs`` source; a quarter of them carry a stripe texture. Returns parameter
    tensors: ``centers (k, P, 2)`` and ``axes (k, P, 2)`` in [-1, 1] image units, ``angle (k, P)``, ``present (k, P)``,
    ``stripes (k,)``, ``stripe_freq (k,)``, ``stripe_angle (k,)``.
    """
    g = torch.Generator().manual_seed(seed)
    u = lambda *shape, lo=0.0, hi=1.0: torch.rand(*shape, generator=g) * (hi - lo) + lo  # noqa: E731
    p = BLOB_PARTS
    centers, axes, angle = torch.zeros(k, p, 2), torch.zeros(k, p, 2), torch.zeros(k, p)
    axes[:, 0, 0] = u(k, lo=0.35, hi=0.65)
    axes[:, 0, 1] = axes[:, 0, 0] * u(k, lo=0.35, hi=0.9)
    angle[:, 0] = u(k, lo=-0.6, hi=0.6)
    centers[:, 0] = u(k, 2, lo=-0.1, hi=0.1)
    t = u(k, p, lo=0, hi=2 * math.pi)  # where each part sits on the body's boundary
    ca, sa = torch.cos(angle[:, :1]), torch.sin(angle[:, :1])
    bx, by = axes[:, :1, 0] * torch.cos(t), axes[:, :1, 1] * torch.sin(t)
    px, py = bx * ca - by * sa + centers[:, :1, 0], bx * sa + by * ca + centers[:, :1, 1]
    direction = torch.atan2(py - centers[:, :1, 1], px - centers[:, :1, 0]) + u(k, p, lo=-0.5, hi=0.5)
    knob = u(k, p) < 0.3
    major = torch.where(knob, u(k, p, lo=0.12, hi=0.25), u(k, p, lo=0.18, hi=0.45))
    minor = torch.where(knob, major * u(k, p, lo=0.6, hi=1.0), u(k, p, lo=0.05, hi=0.12))
    centers[:, 1:, 0] = (px + torch.cos(direction) * major * 0.8)[:, 1:]
    centers[:, 1:, 1] = (py + torch.sin(direction) * major * 0.8)[:, 1:]
    axes[:, 1:, 0], axes[:, 1:, 1], angle[:, 1:] = major[:, 1:], minor[:, 1:], direction[:, 1:]
    n_parts = torch.randint(2, p + 1, (k,), generator=g)
    present = torch.arange(p).view(1, p) < n_parts.view(k, 1)
    return dict(
        centers=centers,
        axes=axes,
        angle=angle,
        present=present,
        stripes=u(k) < 0.25,
        stripe_freq=u(k, lo=3, hi=7),
        stripe_angle=u(k, lo=0, hi=math.pi),
    )


def render_blobs(
    protos: dict[str, torch.Tensor], labels: torch.Tensor, seed: int, size: int = 28, chunk: int = 2048
) -> torch.Tensor:
    """Draw one jittered instance of prototype ``labels[i]`` per row: ``(B, 1, size, size)`` in [0, 1].

    Per part: centre, axes and angle jitter; soft (antialiased) ellipse edges; stripes as a periodic mask with a
    random phase; a random horizontal flip.
    """
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(len(labels), 1, size, size)
    lin = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    for s in range(0, len(labels), chunk):
        lab = labels[s : s + chunk]
        b, p = len(lab), BLOB_PARTS
        c = protos["centers"][lab] + torch.randn(b, p, 2, generator=g) * 0.04
        ax = protos["axes"][lab] * torch.exp(torch.randn(b, p, 2, generator=g) * 0.12)
        an = protos["angle"][lab] + torch.randn(b, p, generator=g) * 0.15
        dx, dy = xx - c[..., 0, None, None], yy - c[..., 1, None, None]
        ca, sa = torch.cos(an)[..., None, None], torch.sin(an)[..., None, None]
        a, bb = ax[..., 0, None, None], ax[..., 1, None, None]
        r = (((dx * ca + dy * sa) / a) ** 2 + ((-dx * sa + dy * ca) / bb) ** 2).sqrt()
        inside = torch.sigmoid((1 - r) * bb * size * 2) * protos["present"][lab][..., None, None]
        x = inside.amax(1)
        sfa = protos["stripe_angle"][lab].view(b, 1, 1)
        phase = torch.rand(b, 1, 1, generator=g) * 2 * math.pi
        wave = torch.cos(
            math.pi * protos["stripe_freq"][lab].view(b, 1, 1) * (xx * torch.cos(sfa) + yy * torch.sin(sfa)) + phase
        )
        x = torch.where(protos["stripes"][lab].view(b, 1, 1), x * (0.5 + 0.5 * torch.tanh(3 * wave)), x)
        flip = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1)
        out[s : s + chunk, 0] = torch.where(flip, x.flip(-1), x)
    return out


def heldout_source_set(img_size: int = 16) -> torch.utils.data.TensorDataset:
    """The held-out source set: mnist5k, test part of :data:`SOURCE_SPLIT`, as model input."""
    test = make_splits(load_dataset("mnist5k"), SOURCE_SPLIT).test
    return to_model_input(test, img_size, 1, (MEAN,), (STD,))


class MultiHead(nn.Module):
    """The backbone with its own head (the ``mnist`` source, saved) and one auxiliary head per other source."""

    def __init__(self, model: nn.Module, aux_classes: dict[str, int]) -> None:
        super().__init__()
        self.model = model
        self.aux = nn.ModuleDict({name: nn.Linear(model.num_features, k) for name, k in aux_classes.items()})
        for head in self.aux.values():
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def logits(self, feats: torch.Tensor, source: str) -> torch.Tensor:
        return self.model.head(feats) if source == "mnist" else self.aux[source](feats)


def _decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        (decay if p.ndim >= 2 and "pos_embed" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def _accuracy(net: MultiHead, x: torch.Tensor, y: torch.Tensor, source: str) -> float:
    was_training = net.training
    net.eval()
    logits = torch.cat([net.logits(net.features(x[i : i + 1024]), source) for i in range(0, len(y), 1024)])
    net.train(was_training)
    return float((logits.argmax(-1) == y).float().mean())


def _normalise(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - MEAN) / STD


def pretrain(r: PretrainRecipe, out: Path, metrics_path: Path, log_path: Path, threads: int) -> dict:
    """Run the recipe; write weights, metrics JSON and log. Returns the metrics."""
    torch.set_num_threads(threads)
    seed_everything(r.seed)
    sources = r.source.split("+")
    unknown = set(sources) - {"mnist", "glyphs", "blobs"}
    if unknown or "mnist" not in sources:
        raise SystemExit(f"--source must be mnist[+glyphs][+blobs]; got {r.source!r}")
    model = create_model(
        ModelSpec(BUNDLED_MODEL, weights="random", kwargs={"drop_path_rate": r.drop_path_rate, **r.arch})
    )
    img = int(model.patch_embed.img_size[0])
    aux = {"glyphs": 62, "blobs": r.blob_classes}
    net = MultiHead(model, {k: v for k, v in aux.items() if k in sources}).train()

    splits = make_splits(load_dataset("mnist5k"), SOURCE_SPLIT)
    mnist_x, mnist_y = splits.train.images.float() / 255.0, splits.train.labels
    val = to_model_input(splits.val, img, 1, (MEAN,), (STD,))
    test = to_model_input(splits.test, img, 1, (MEAN,), (STD,))
    heldout = {"mnist": val.tensors}
    if "glyphs" in sources:
        gx, gy = render_glyphs(n=GLYPH_HELDOUT_N, seed=GLYPH_HELDOUT_SEED, size=img)
        heldout["glyphs"] = (_normalise(gx.float() / 255.0), gy)
    if "blobs" in sources:
        protos = blob_prototypes(r.blob_classes, seed=r.seed)
        pool_y = torch.arange(r.blob_pool) % r.blob_classes
        pool_x = render_blobs(protos, pool_y, seed=r.seed + 1)  # augmented afresh at every use
        by = torch.arange(BLOB_HELDOUT_N) % r.blob_classes
        bx = render_blobs(protos, by, seed=BLOB_HELDOUT_SEED)
        heldout["blobs"] = (_normalise(F.interpolate(bx, size=(img, img), mode="bilinear", antialias=True)), by)

    steps_per_epoch = math.ceil(len(mnist_y) / r.batch_size)
    total, warmup = steps_per_epoch * r.epochs, steps_per_epoch * r.warmup_epochs
    opt = torch.optim.AdamW(_decay_groups(net, r.weight_decay), lr=r.lr)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=r.label_smoothing)
    weights = {"mnist": 1.0, "glyphs": r.glyph_weight, "blobs": r.blob_weight}
    g = torch.Generator().manual_seed(r.seed)

    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)
        atomic_write_text(log_path, "\n".join(lines) + "\n")

    log(f"# pretrain {BUNDLED_MODEL} {json.dumps({**BUNDLED_ARCH, **r.arch})}")
    log(f"# recipe {json.dumps(dataclasses.asdict(r))}")
    log(
        f"# torch {torch.__version__}, {threads} thread(s), {platform.machine()}; mnist5k train {len(mnist_y)}, "
        f"val {len(val)}, test {len(test)} (SplitSpec {json.dumps(SOURCE_SPLIT.to_dict())}); "
        f"{steps_per_epoch} steps/epoch of {r.batch_size} images per source ({', '.join(sources)})"
    )
    start, step = time.perf_counter(), 0
    for epoch in range(r.epochs):
        order = torch.randperm(len(mnist_y), generator=g)
        if "glyphs" in sources:
            glyph_x, glyph_y = render_glyphs(n=steps_per_epoch * r.batch_size, seed=1000 + epoch, size=28)
            glyph_x = glyph_x.float() / 255.0
        sums = dict.fromkeys(sources, 0.0)
        for i in range(steps_per_epoch):
            for grp in opt.param_groups:
                grp["lr"] = r.lr * lr_factor(step, total, warmup)
            batches = []
            idx = order[i * r.batch_size : (i + 1) * r.batch_size]
            batches.append(("mnist", augment(mnist_x[idx], g, r, img, warp=True), mnist_y[idx]))
            if "glyphs" in sources:
                sl = slice(i * r.batch_size, (i + 1) * r.batch_size)
                # render_glyphs has already warped them; a second warp would compound rotation and shear
                batches.append(("glyphs", augment(glyph_x[sl], g, r, img, warp=False), glyph_y[sl]))
            if "blobs" in sources:
                bidx = torch.randint(r.blob_pool, (r.batch_size,), generator=g)
                batches.append(("blobs", augment(pool_x[bidx], g, r, img, warp=True), pool_y[bidx]))
            feats = net.features(torch.cat([b[1] for b in batches]))
            loss, offset = 0.0, 0
            for name, _, y in batches:
                part = loss_fn(net.logits(feats[offset : offset + len(y)], name), y)
                loss = loss + weights[name] * part
                sums[name] += part.item() / steps_per_epoch
                offset += len(y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), r.grad_clip)
            opt.step()
            step += 1
        if epoch < 5 or epoch % 5 == 4 or epoch + 1 == r.epochs:
            accs = {name: _accuracy(net, *heldout[name], source=name) for name in sources}
            log(
                f"epoch {epoch + 1:4d}/{r.epochs} | train loss "
                + " ".join(f"{k} {v:.3f}" for k, v in sums.items())
                + " | held-out acc "
                + " ".join(f"{k} {100 * v:5.1f}%" for k, v in accs.items())
                + f" | lr {opt.param_groups[0]['lr']:.2e} | {time.perf_counter() - start:7.1f} s"
            )
    wall = time.perf_counter() - start

    model.eval()
    save_weights(model, out)
    # Score through the public loader path: exactly what a user (and tests/test_bundled.py) gets.
    reloaded = create_model(ModelSpec(BUNDLED_MODEL, weights=str(out), kwargs=dict(r.arch)))
    test_acc = evaluate(reloaded, test)[0]
    final = {name: _accuracy(net, *heldout[name], source=name) for name in sources}
    metrics = {
        "model": BUNDLED_MODEL,
        "weights_file": out.name,
        "source_accuracy": {
            "dataset": "mnist5k",
            "split": SOURCE_SPLIT.to_dict(),
            "part": "test",
            "n": len(test),
            "accuracy": round(test_acc, 4),
        },
        "mnist5k_val_accuracy": round(final["mnist"], 4),
        "auxiliary_heldout_accuracy": {
            **(
                {
                    "glyphs": {
                        "render_glyphs": {"n": GLYPH_HELDOUT_N, "seed": GLYPH_HELDOUT_SEED, "size": img},
                        "accuracy": round(final["glyphs"], 4),
                    }
                }
                if "glyphs" in final
                else {}
            ),
            **(
                {
                    "blobs": {
                        "prototypes_seed": r.seed,
                        "render_seed": BLOB_HELDOUT_SEED,
                        "n": BLOB_HELDOUT_N,
                        "accuracy": round(final["blobs"], 4),
                    }
                }
                if "blobs" in final
                else {}
            ),
            "note": "through the auxiliary heads, which are not shipped",
        },
        "recipe": dataclasses.asdict(r),
        "arch": {**BUNDLED_ARCH, **r.arch},
        "wall_time_s": round(wall, 1),
        "threads": threads,
        "torch": torch.__version__,
    }
    atomic_write_json(metrics_path, metrics)
    log(
        f"# done in {wall:.1f} s: held-out mnist5k test acc {100 * test_acc:.2f}% (n={len(test)}); "
        + " ".join(f"{k} {100 * v:.2f}%" for k, v in final.items() if k != "mnist")
        + f"; wrote {out}"
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    defaults = PretrainRecipe()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=defaults.source, help="mnist, mnist+glyphs, mnist+blobs or mnist+glyphs+blobs")
    ap.add_argument("--epochs", type=int, default=defaults.epochs)
    ap.add_argument("--lr", type=float, default=defaults.lr)
    ap.add_argument("--warmup-epochs", type=int, default=defaults.warmup_epochs)
    ap.add_argument("--drop-path-rate", type=float, default=defaults.drop_path_rate)
    ap.add_argument("--glyph-weight", type=float, default=defaults.glyph_weight)
    ap.add_argument("--blob-weight", type=float, default=defaults.blob_weight)
    ap.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    ap.add_argument("--p-lowres", type=float, default=defaults.p_lowres)
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument(
        "--arch", type=json.loads, default={}, help="architecture overrides (pilots), e.g. '{\"embed_dim\": 96}'"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR / "petl_vit_tiny.safetensors")
    ap.add_argument("--metrics", type=Path, default=None, help="default: source_metrics.json beside --out")
    ap.add_argument("--log", type=Path, default=None, help="default: pretrain_log.txt beside --out")
    a = ap.parse_args(argv)
    r = dataclasses.replace(
        defaults,
        source=a.source,
        epochs=a.epochs,
        lr=a.lr,
        warmup_epochs=a.warmup_epochs,
        drop_path_rate=a.drop_path_rate,
        glyph_weight=a.glyph_weight,
        blob_weight=a.blob_weight,
        label_smoothing=a.label_smoothing,
        p_lowres=a.p_lowres,
        seed=a.seed,
        arch=a.arch,
    )
    out = a.out.resolve()
    pretrain(
        r,
        out,
        a.metrics or out.with_name("source_metrics.json"),
        a.log or out.with_name("pretrain_log.txt"),
        a.threads,
    )


if __name__ == "__main__":
    main()
