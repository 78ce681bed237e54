"""Grounding probes: which side of the referring score lacks what it needs, the object or the sentence?

    python benchmarks/grounding_probe.py symbolic [--data DIR]
    python benchmarks/grounding_probe.py descriptors [--data DIR] [--train 2500] [--test 340]
    python benchmarks/grounding_probe.py features RUN_DIR [--train 2500] [--test 340]
    python benchmarks/grounding_probe.py track-head [--data DIR] [--steps 1000] [--test 340] [--seeds 3]
    python benchmarks/grounding_probe.py head-clips [--data DIR] [--steps 800] [--per-step 2 6] [--seeds 2]

``symbolic`` gives a fresh score head perfect inputs: each object of the synthetic benchmark as the one-hot of its
generator facts (size, colour, shape, motion facts) and each sentence as its bag of words. Trained on the
``train`` expressions in the regime of a 10-minute run (one pass, 2 clips a step, 1000 steps) and in a many-pass
regime, it is scored on ``valid_u`` (top-1 accuracy: the best-scored object is referred). It measures how much
language must be learnt, and from how many sentences, once the objects are perceived.

``descriptors`` gives a fresh head perfect segmentation and perfect language but no facts: each annotated object of
a training clip as what its masks say frame by frame (the mean colour of the frame under the mask, the mask's
centroid, spread, area and how much of its box it fills, the centroid's step from the previous frame), each sentence
as its bag of words; trained with the clip's own sentence (one pass), with every sentence of the clip's video for
the same clips (one pass, 7 labels a clip), and with many passes; top-1 accuracy on ``valid_u`` clips. It measures
whether the pixels under good masks are enough to ground the sentences, and how many labels a clip that takes.

``track-head`` isolates ``vlm``'s track grounding head (:mod:`rvos.models.modules.track_grounding`) from the masks:
a fresh head reads the annotated objects' exact tracks through the model's own descriptors (at the stride-4 mask
grid, as the track loss computes them), trained as the model trains it (every sentence of the clip's video, 2 clips a
step, a replay of the last 512 clips with 128 drawn a step, ``--steps`` steps); top-1 accuracy on ``valid_u`` clips,
with every descriptor, with the shape terms (kurtosis, skewness) held at zero, and with the centroid read relative to
its mean with and without dropout (``model.track.relative_centre``, ``model.track.dropout``), and at the frames'
resolution (``model.track.full_resolution``), over ``--seeds`` seeds; and the same on the first training clips (what
the head learnt by heart).

``head-clips`` trains the same head as the tiny configs have it (centroid relative to its mean, dropout 0.3, a replay
of 512 clips with 256 drawn a step) on exact tracks of 4-frame training clips, as the models train, for ``--steps``
steps of each of ``--per-step`` new clips: whether the head gains from seeing more distinct clips in a run's steps.

``features`` freezes a trained run, extracts for training clips and for ``valid_u`` clips the inputs a score head
could read, and trains fresh heads on them (listwise cross-entropy towards the query that best overlaps the
referred objects). Each row is the mean IoU (over the 8 sampled frames, at the mask grid) of the query the head
picks, by expression kind:

* the model's own score, and fresh heads on its video queries with its sentence feature or with the sentence's bag
  of words (perfect language);
* fresh heads on frame-query slot tracks (slots re-ordered over frames as the model does): per frame, the image
  backbone's features pooled under the slot's mask and the mask's geometry (centroid, spread, area), through a
  small temporal network;
* the oracle (the best query) and a random query, as bounds.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rvos.data.clips import ClipDataset, collate
from rvos.data.schema import normalize_text
from rvos.data.splits import open_split
from rvos.data.synth.generate import make_video, read_spec
from rvos.data.transforms import ClipTransform
from rvos.engine.checkpoint import find_model, load_model
from rvos.engine.diagnose import mean_iou
from rvos.engine.machine import describe_machine
from rvos.models.meta.base import ClipBatch
from rvos.models.modules.query_init import match_adjacent, reorder
from rvos.models.modules.track_grounding import FRAME_DIM, TrackGrounding, frame_descriptors, on_mask_grid, tracks

RESULTS = Path(__file__).parent / "results" / "grounding_probe.json"


def bag_of_words(texts: list[str], vocab: list[str]) -> torch.Tensor:
    index = {w: i for i, w in enumerate(vocab)}
    out = torch.zeros(len(texts), len(vocab))
    for row, text in enumerate(texts):
        for word in text.split():
            out[row, index[word]] = 1.0
    return out


class BilinearHead(nn.Module):
    """score(object, sentence) = <f(object), g(sentence)>: f an MLP over the object input, g linear."""

    def __init__(self, object_dim: int, text_dim: int, hidden: int = 64, frames: int = 0):
        super().__init__()
        if frames:  # per-frame inputs (.., T, D): a per-frame MLP, then an MLP over the frames in order
            self.frame = nn.Sequential(nn.Linear(object_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.object = nn.Sequential(nn.Flatten(-2), nn.Linear(frames * hidden, 2 * hidden), nn.ReLU(),
                                        nn.Linear(2 * hidden, hidden))
        else:
            self.frame = nn.Identity()
            self.object = nn.Sequential(nn.Linear(object_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.text = nn.Linear(text_dim, hidden)

    def forward(self, objects: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """objects (B, Q, [T,] D), text (B, E) -> (B, Q) logits."""
        return (self.object(self.frame(objects)) * self.text(text)[:, None]).sum(-1)


def fit(head: nn.Module, objects, text, loss_fn, steps: int, batch: int, seed: int = 0,
        ordered: bool = False) -> nn.Module:
    """Adam at 1e-3; ``batch`` samples a step drawn in a seeded order (one pass when steps * batch <= N), or in
    their own order (``ordered``: consecutive rows that belong together stay in one step)."""
    gen = torch.Generator().manual_seed(seed)
    if ordered:
        order = torch.arange(len(objects)).repeat(steps * batch // len(objects) + 1)
    else:
        order = torch.cat([torch.randperm(len(objects), generator=gen)
                           for _ in range(steps * batch // len(objects) + 1)])
    opt = torch.optim.Adam(head.parameters(), 1e-3)
    for step in range(steps):
        idx = order[step * batch:(step + 1) * batch]
        loss = loss_fn(head(objects[idx], text[idx]), idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def by_kind(values: list[float], kinds: list[str]) -> dict:
    groups = defaultdict(list)
    for v, k in zip(values, kinds):
        groups[k].append(v)
    return {"all": round(float(np.mean(values)), 3)} | {k: round(float(np.mean(v)), 3) for k, v in sorted(groups.items())}


# ------------------------------------------------------------------------------------------------------ symbolic

def symbolic_rows(data: Path, split: str) -> list[tuple[str, str, list[frozenset], list[bool]]]:
    spec = read_spec(data)
    if spec is None:
        raise SystemExit(f"{data} holds no synthetic benchmark (no synth.json): run benchmarks/synth_learning.py first")
    rows = []
    for index in range(getattr(spec, split)):
        _, objects, _, expressions = make_video(spec, split, index)
        for e in expressions:
            rows.append((e.text, e.kind, [o.facts() for o in objects], [o.obj_id in e.obj_ids for o in objects]))
    return rows


def symbolic(data: Path) -> dict:
    train, test = symbolic_rows(data, "train"), symbolic_rows(data, "valid_u")
    vocab = sorted({w for text, *_ in train + test for w in text.split()})
    facts = sorted({f for _, _, objs, _ in train + test for o in objs for f in o})

    def encode(rows):
        n = max(len(objs) for _, _, objs, _ in rows)
        objects, present, labels = torch.zeros(len(rows), n, len(facts)), torch.zeros(len(rows), n, dtype=torch.bool), torch.zeros(len(rows), n)
        for i, (_, _, objs, referred) in enumerate(rows):
            for j, (o, r) in enumerate(zip(objs, referred)):
                objects[i, j, [facts.index(f) for f in o]] = 1.0
                present[i, j], labels[i, j] = True, float(r)
        return objects, bag_of_words([t for t, *_ in rows], vocab), present, labels

    (o_tr, t_tr, p_tr, l_tr), (o_te, t_te, p_te, l_te) = encode(train), encode(test)

    def loss_fn(logits, idx):  # independent BCE per present object, as the models' score loss
        return F.binary_cross_entropy_with_logits(logits, l_tr[idx], reduction="none")[p_tr[idx]].mean()

    out = {"train_expressions": len(train), "test_expressions": len(test)}
    for name, steps, batch in (("one pass: 1000 steps of 2", 1000, 2), ("many passes: 4000 steps of 64", 4000, 64)):
        torch.manual_seed(0)
        head = fit(BilinearHead(len(facts), len(vocab)), o_tr, t_tr, loss_fn, steps, batch)
        with torch.no_grad():
            pick = head(o_te, t_te).masked_fill(~p_te, float("-inf")).argmax(1)
        correct = l_te.gather(1, pick[:, None])[:, 0].tolist()
        out[name] = by_kind(correct, [k for _, k, *_ in test])
        print(f"symbolic, {name}: top-1 accuracy {json.dumps(out[name])}")
    return out


# --------------------------------------------------------------------------------------------------- descriptors

def _descriptor(frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Frames (T, 3, H, W) uint8, an object's masks (T, H, W) bool -> (T, 12): visible, its mean colour under the mask,
    the mask's geometry (centroid, spread, area), how much of its box it fills (the shape's cue) and the centroid's
    step from the previous frame."""
    m = masks.float()
    area = m.flatten(1).sum(-1)
    colour = torch.einsum("thw,tchw->tc", m, frames.float() / 255) / area[:, None].clamp(min=1)
    geometry = _geometry(m[None])[0]
    fill = torch.zeros(len(m))
    for t in range(len(m)):
        if area[t] > 0:
            ys, xs = masks[t].nonzero(as_tuple=True)
            fill[t] = area[t] / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    velocity = torch.zeros(len(m), 2)  # the centroid's step from the previous frame (0 where either is absent)
    seen = area > 0
    step = geometry[1:, :2] - geometry[:-1, :2]
    velocity[1:] = torch.where((seen[1:] & seen[:-1])[:, None], step * 10, torch.zeros_like(step))
    return torch.cat([seen.float()[:, None], colour, geometry, fill[:, None], velocity], -1)


def descriptor_rows(split_dir: Path, n: int, flip: float, group: int = 1) -> list[dict]:
    """``group`` > 1: each clip's sampling serves that many expressions of its video (the same frames, transform and
    objects), as more referring labels per clip would."""
    split = open_split(split_dir)
    dataset = ClipDataset(split, 8, "global", 8, ClipTransform(96, 160, flip), seed=1, expressions_per_clip=group)
    rows = []
    for position in range(min(n, len(dataset))):
        item = dataset[position]
        rows.append({"kind": split.video(item["video"]).expressions[item["expression"]].kind, "text": item["text"],
                     "objects": torch.stack([_descriptor(item["frames"], o) for o in item["instances"]]),
                     "referred": item["referred"].float()})
    return rows


def descriptors(data: Path, n_train: int, n_test: int) -> dict:
    """Perfect segmentation (the clip's annotated objects) and perfect language (bag of words): can a fresh head
    learn the benchmark from what the pixels under each mask and the masks' geometry say, frame by frame?"""
    train = descriptor_rows(data / "train", n_train, 0.5)
    grouped = descriptor_rows(data / "train", n_train * 7, 0.5, group=7)  # the same clips' count, 7 sentences each
    test = descriptor_rows(data / "valid_u", n_test, 0.0)
    vocab = sorted({w for r in train + grouped + test for w in r["text"].split()})
    n = max(len(r["objects"]) for r in train + grouped + test)

    def encode(rows):
        objects = torch.zeros(len(rows), n, *rows[0]["objects"].shape[1:])
        present, labels = torch.zeros(len(rows), n, dtype=torch.bool), torch.zeros(len(rows), n)
        for i, r in enumerate(rows):
            k = len(r["objects"])
            objects[i, :k], present[i, :k], labels[i, :k] = r["objects"], True, r["referred"]
        return objects, bag_of_words([r["text"] for r in rows], vocab), present, labels

    (o_tr, t_tr, p_tr, l_tr), (o_te, t_te, p_te, l_te) = encode(train), encode(test)
    o_gr, t_gr, p_gr, l_gr = encode(grouped)
    mean, std = o_tr[p_tr].flatten(0, 1).mean(0), o_tr[p_tr].flatten(0, 1).std(0) + 1e-4
    o_tr, o_te, o_gr = (o_tr - mean) / std, (o_te - mean) / std, (o_gr - mean) / std

    out = {"train_clips": len(train), "test_clips": len(test)}
    kinds = [r["kind"] for r in test]
    regimes = (("one pass: 1000 steps of 2", 1000, 2, False),
               ("one pass, every sentence of the clip's video: 1000 steps of 2 clips x 7", 1000, 14, True),
               ("many passes: 4000 steps of 64", 4000, 64, False))
    for name, steps, batch, every in regimes:
        objects, text, present, labels = (o_gr, t_gr, p_gr, l_gr) if every else (o_tr, t_tr, p_tr, l_tr)

        def loss_fn(logits, idx):  # independent BCE per present object, as the models' score loss
            return F.binary_cross_entropy_with_logits(logits, labels[idx], reduction="none")[present[idx]].mean()

        torch.manual_seed(0)
        head = fit(BilinearHead(objects.shape[-1], len(vocab), frames=objects.shape[2]), objects, text, loss_fn, steps,
                   batch, ordered=every)
        with torch.no_grad():
            pick = head(o_te, t_te).masked_fill(~p_te, float("-inf")).argmax(1)
        out[name] = by_kind(l_te.gather(1, pick[:, None])[:, 0].tolist(), kinds)
        print(f"descriptors, {name}: top-1 accuracy {json.dumps(out[name])}")
    return out


# ---------------------------------------------------------------------------------------------------- track head

def exact_track_rows(split_dir: Path, n: int, seed: int, stride: int = 4, frames: int = 8) -> list[dict]:
    """The first ``n`` clips of ``frames`` frames of a split (global sampling, no flip): the annotated objects' exact
    tracks through the model's descriptors at ``stride`` (4: the mask grid, as the track loss reads them; 1: the
    frames' resolution, as it reads them with ``model.track.full_resolution``), every sentence of the video with its
    labels, and the clip's own sentence."""
    split = open_split(split_dir)
    dataset = ClipDataset(split, frames, "global", frames, ClipTransform(96, 160, 0.0), seed=seed)
    rows = []
    for position in range(min(n, len(dataset))):
        item = dataset[position]
        video = split.video(item["video"])
        images = item["frames"].float() / 255
        h, w = images.shape[-2] // stride, images.shape[-1] // stride
        images = F.interpolate(images, size=(h, w), mode="area")
        masks = on_mask_grid(item["instances"], (h, w)).transpose(0, 1).float()
        expressions = [(normalize_text(e.text), set(e.anno_ids)) for e in video.expressions.values()]
        own = video.expressions[item["expression"]]
        rows.append({"tracks": tracks(frame_descriptors(images, masks)[None], 8)[0],
                     "sentences": [t for t, _ in expressions],
                     "labels": torch.tensor([[float(i in ids) for i in item["instance_ids"]]
                                             for _, ids in expressions]),
                     "text": normalize_text(own.text), "referred": item["referred"].float(), "kind": own.kind})
    return rows


def fit_track_head(head: TrackGrounding, train: list[dict], vocab: list[str], steps: int, per_step: int, draw: int,
                   rng: np.random.Generator, inputs=lambda t: t) -> None:
    """Trains the head as the models train theirs: each step ``per_step`` new clips of ``train`` (in order, around
    again when they run out) and ``draw`` drawn from a replay of the last 512, every sentence of a clip's video scored
    against its exact tracks (BCE), AdamW 1e-3; ``inputs`` maps the tracks before the head reads them."""
    optimizer = torch.optim.AdamW(head.parameters(), 1e-3, weight_decay=0.05)
    replay: list[dict] = []
    for step in range(steps):
        clips = [train[(per_step * step + i) % len(train)] for i in range(per_step)]
        drawn = [replay[i] for i in rng.choice(len(replay), min(draw, len(replay)), replace=False)] if replay else []
        replay = (replay + clips)[-512:]
        batch = clips + drawn
        sizes = [len(r["tracks"]) for r in batch]
        embeds = head.embed(inputs(torch.cat([r["tracks"] for r in batch]))).split(sizes)
        loss = torch.stack([F.binary_cross_entropy_with_logits(head.score(e, bag_of_words(r["sentences"], vocab)),
                                                               r["labels"]) for r, e in zip(batch, embeds)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()


@torch.no_grad()
def track_head_hits(head: TrackGrounding, rows: list[dict], vocab: list[str], inputs=lambda t: t) -> list[float]:
    """Per clip, 1.0 when the head's best-scored object for the clip's own sentence is referred."""
    hits = []
    for r in rows:
        logits = head.score(head.embed(inputs(r["tracks"])), bag_of_words([r["text"]], vocab))[0]
        hits.append(float(r["referred"][logits.argmax()]))
    return hits


def track_head(data: Path, steps: int, n_test: int, seeds: int) -> dict:
    rows = {stride: (exact_track_rows(data / "train", 2 * steps, seed=1, stride=stride),
                     exact_track_rows(data / "valid_u", n_test, seed=0, stride=stride)) for stride in (4, 1)}
    train, test = rows[4]
    vocab = sorted({w for r in train + test for t in r["sentences"] + [r["text"]] for w in t.split()})
    test_size = len(test)
    shape = slice(FRAME_DIM - 3, FRAME_DIM)  # the shape terms, the last three descriptors

    def run(seed: int, with_shape: bool, relative_centre: bool, dropout: float, stride: int) -> dict:
        train, test = rows[stride]
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        head = TrackGrounding(len(vocab), 64, 8, relative_centre, dropout)

        def inputs(t: torch.Tensor) -> torch.Tensor:
            if with_shape:
                return t
            t = t.clone()
            t[..., shape] = 0.0  # constant: the head's normalisation leaves it nothing to read
            return t

        fit_track_head(head, train, vocab, steps, 2, 128, rng, inputs)
        hits, seen = track_head_hits(head, test, vocab, inputs), track_head_hits(head, train[:test_size], vocab, inputs)
        return by_kind(hits, [r["kind"] for r in test]) | {"train clips": float(np.mean(seen))}

    out = {"train_clips": len(train), "test_clips": len(test), "steps": steps}
    for name, with_shape, relative_centre, dropout, stride in (
            ("every descriptor", True, False, 0.0, 4), ("without the shape terms", False, False, 0.0, 4),
            ("every descriptor, centroid relative to its mean", True, True, 0.0, 4),
            ("every descriptor, centroid relative to its mean, dropout 0.3", True, True, 0.3, 4),
            ("every descriptor, centroid relative to its mean, dropout 0.5", True, True, 0.5, 4),
            ("at the frames' resolution, centroid relative to its mean, dropout 0.3", True, True, 0.3, 1)):
        runs = [run(seed, with_shape, relative_centre, dropout, stride) for seed in range(seeds)]
        train_hits = [r.pop("train clips") for r in runs]
        out[name] = {k: round(float(np.mean([r[k] for r in runs])), 3) for k in runs[0]}
        out[name + " (per seed, all)"] = [r["all"] for r in runs]
        out[name + " (training clips, all)"] = round(float(np.mean(train_hits)), 3)
        print(f"track head, {name}: top-1 accuracy {json.dumps(out[name])} (seeds: {out[name + ' (per seed, all)']}; "
              f"training clips: {out[name + ' (training clips, all)']})")
    return out


def head_clips(data: Path, steps: int, per_step: list[int], n_test: int, seeds: int) -> dict:
    """The track head as the tiny configs have it (centroid relative to its mean, dropout 0.3, 256 clips drawn from
    the replay a step) on exact tracks of 4-frame training clips, as the models train, ``steps`` steps of each of
    ``per_step`` new clips: does it gain from seeing more clips in the same steps? Top-1 on ``valid_u``'s 8-frame
    clips, mean over ``seeds``."""
    train = exact_track_rows(data / "train", steps * max(per_step), seed=1, frames=4)
    test = exact_track_rows(data / "valid_u", n_test, seed=0)
    vocab = sorted({w for r in train + test for t in r["sentences"] + [r["text"]] for w in t.split()})
    out = {"train_clips": len(train), "test_clips": len(test), "steps": steps}
    for n in per_step:
        runs = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            head = TrackGrounding(len(vocab), 64, 8, relative_centre=True, dropout=0.3)
            fit_track_head(head, train[:steps * n], vocab, steps, n, 256, np.random.default_rng(seed))
            runs.append(by_kind(track_head_hits(head, test, vocab), [r["kind"] for r in test]))
        name = f"{n} new clips a step ({steps * n} distinct)"
        out[name] = {k: round(float(np.mean([r[k] for r in runs])), 3) for k in runs[0]}
        print(f"track head, {name}: top-1 accuracy {json.dumps(out[name])}")
    return out


# ------------------------------------------------------------------------------------------------------ features

def _geometry(m: torch.Tensor) -> torch.Tensor:
    """Soft masks (Q, T, h, w) -> (Q, T, 5): centroid x, y, spread x, y, area (fractions of the grid)."""
    h, w = m.shape[-2:]
    ys = torch.linspace(0, 1, h)[:, None].expand(h, w)
    xs = torch.linspace(0, 1, w)[None].expand(h, w)
    area = m.flatten(2).sum(-1).clamp(min=1e-3)
    cx, cy = (m * xs).flatten(2).sum(-1) / area, (m * ys).flatten(2).sum(-1) / area
    sx = ((m * (xs - cx[..., None, None]) ** 2).flatten(2).sum(-1) / area).sqrt()
    sy = ((m * (ys - cy[..., None, None]) ** 2).flatten(2).sum(-1) / area).sqrt()
    return torch.stack([cx, cy, sx, sy, area / (h * w) * 10], -1)


@torch.no_grad()
def extract(model, split_dir: Path, n: int, flip: float) -> list[dict]:
    split = open_split(split_dir)
    dataset = ClipDataset(split, 8, "global", 8, ClipTransform(96, 160, flip), seed=1)
    captured = {}
    hooks = [model.frame_decoder.register_forward_hook(lambda m, a, o: captured.update(frame_masks=o[1][-1], frame_queries=o[2])),
             model.video_decoder.register_forward_hook(lambda m, a, o: captured.update(video_queries=o[2], sentence=a[4]))]
    rows = []
    for position in range(min(n, len(dataset))):
        c = collate([dataset[position]])
        frames = c["frames"].float() / 255
        batch = ClipBatch(frames, model.prepare_text(c["texts"]), c["texts"], c["instances"], c["referred"],
                          c["videos"], c["expressions"])
        out = model(batch)
        video_masks = out["video_masks"][-1][0] > 0  # (Q, T, h, w)
        h, w = video_masks.shape[-2:]
        target = batch.instances[0][batch.referred[0]].any(0)
        target = F.interpolate(model.pad(target[:, None].float()), size=(h, w), mode="area")[:, 0] > 0.5
        perms = match_adjacent(captured["frame_queries"][None])
        soft = reorder(captured["frame_masks"][None], perms)[0].sigmoid().transpose(0, 1)  # (Q, T, h, w)
        pooled = []
        for f in model.image_features(model.pad(frames[0])):
            m = F.interpolate(soft, size=f.shape[-2:], mode="bilinear", align_corners=False)
            pooled.append(torch.einsum("qthw,tchw->qtc", m, f) / m.flatten(2).sum(-1)[..., None].clamp(min=1e-3))
        rows.append({
            "kind": split.video(c["videos"][0]).expressions[c["expressions"][0]].kind,
            "text": c["texts"][0],
            "own": out["video_scores"][-1][0],
            "query": captured["video_queries"][0],
            "sentence": captured["sentence"][0],
            "query_iou": mean_iou(video_masks, target),
            "slot": torch.cat(pooled + [_geometry(soft)], -1),  # (Q, T, D)
            "slot_iou": mean_iou(soft > 0.5, target),
        })
    for hook in hooks:
        hook.remove()
    return rows


def features(run: Path, n_train: int, n_test: int) -> dict:
    model, cfg = load_model(find_model(run))
    model.eval()
    data = Path(cfg.data.root)
    train, test = extract(model, data / "train", n_train, 0.5), extract(model, data / "valid_u", n_test, 0.0)
    vocab = sorted({w for r in train + test for w in r["text"].split()})
    for rows in (train, test):
        for r, bow in zip(rows, bag_of_words([r["text"] for r in rows], vocab)):
            r["bow"] = bow
    stack = lambda rows, key: torch.stack([r[key] for r in rows])  # noqa: E731
    kinds = [r["kind"] for r in test]

    def picked(scores: torch.Tensor, iou_key: str) -> dict:
        iou = stack(test, iou_key)
        return by_kind(iou.gather(1, scores.argmax(1, keepdim=True))[:, 0].tolist(), kinds)

    out = {"train_clips": len(train), "test_clips": len(test), "rows": {}}
    rows = out["rows"]
    rows["oracle query"] = picked(stack(test, "query_iou"), "query_iou")
    rows["random query"] = picked(torch.rand(len(test), stack(test, "own").shape[1], generator=torch.Generator().manual_seed(0)), "query_iou")
    rows["the model's own score"] = picked(stack(test, "own"), "query_iou")
    rows["oracle slot"] = picked(stack(test, "slot_iou"), "slot_iou")
    slot = stack(train, "slot")
    mean, std = slot.flatten(0, 2).mean(0), slot.flatten(0, 2).std(0) + 1e-4
    for obj_key, iou_key in (("query", "query_iou"), ("slot", "slot_iou")):
        for text_key in ("sentence", "bow"):
            objects, text = stack(train, obj_key), stack(train, text_key)
            if obj_key == "slot":
                objects = (objects - mean) / std
            target = stack(train, iou_key).argmax(1)
            for regime, steps, batch in (("one pass", 1000, 2), ("many passes", 4000, 64)):
                torch.manual_seed(0)
                frames = objects.shape[2] if obj_key == "slot" else 0
                head = BilinearHead(objects.shape[-1], text.shape[-1], frames=frames)
                fit(head, objects, text, lambda logits, idx: F.cross_entropy(logits, target[idx]), steps, batch)
                test_objects = stack(test, obj_key)
                test_objects = (test_objects - mean) / std if obj_key == "slot" else test_objects
                with torch.no_grad():
                    scores = head(test_objects, stack(test, text_key))
                name = f"fresh head: {obj_key} x {'model sentence' if text_key == 'sentence' else 'bag of words'}, {regime}"
                rows[name] = picked(scores, iou_key)
    for name, r in rows.items():
        print(f"{name}: {json.dumps(r)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    s = sub.add_parser("symbolic")
    s.add_argument("--data", type=Path, default=Path("runs/synth_learning/data"))
    d = sub.add_parser("descriptors")
    d.add_argument("--data", type=Path, default=Path("runs/synth_learning/data"))
    d.add_argument("--train", type=int, default=2500)
    d.add_argument("--test", type=int, default=340)
    h = sub.add_parser("track-head")
    h.add_argument("--data", type=Path, default=Path("runs/synth_learning/data"))
    h.add_argument("--steps", type=int, default=1000)
    h.add_argument("--test", type=int, default=340)
    h.add_argument("--seeds", type=int, default=3)
    c = sub.add_parser("head-clips")
    c.add_argument("--data", type=Path, default=Path("runs/synth_learning/data"))
    c.add_argument("--steps", type=int, default=800)
    c.add_argument("--per-step", type=int, nargs="+", default=[2, 6])
    c.add_argument("--test", type=int, default=340)
    c.add_argument("--seeds", type=int, default=2)
    f = sub.add_parser("features")
    f.add_argument("run", type=Path)
    f.add_argument("--train", type=int, default=2500)
    f.add_argument("--test", type=int, default=340)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    record["machine"] = describe_machine()
    if args.probe == "symbolic":
        record["symbolic"] = symbolic(args.data)
    elif args.probe == "descriptors":
        record["descriptors"] = descriptors(args.data, args.train, args.test)
    elif args.probe == "track-head":
        record["track_head"] = track_head(args.data, args.steps, args.test, args.seeds)
    elif args.probe == "head-clips":
        record["head_clips"] = head_clips(args.data, args.steps, args.per_step, args.test, args.seeds)
    else:
        config = json.loads((args.run / "config.json").read_text())["config"]
        record["features"] = features(args.run, args.train, args.test) | {"run_model_config": config["model"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
