"""Referring expressions for synthetic scenes, from varied templates and synonyms.

An expression is a predicate (appearance attributes and at most one motion fact) realised as a sentence; it refers
to exactly the objects that satisfy it. Kinds:

* ``appearance``: appearance alone identifies the target ("the small red circle");
* ``motion``: motion alone, no appearance word ("the object that stops");
* ``both``: appearance and motion together ("the square moving to the left");
* ``multi``: several targets ("the two circles moving right");
* ``motion-decided``: the target has a look-alike (same shape, colour and size) that moves differently, so only
  the motion identifies it ("the blue square that jumps", beside a blue square standing still).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rvos.data.synth.scene import SceneObject

KINDS = ("appearance", "motion", "both", "multi", "motion-decided")

NOUNS = {
    "circle": (("circle", "circles"), ("ball", "balls"), ("disc", "discs")),
    "square": (("square", "squares"), ("box", "boxes"), ("block", "blocks")),
    "triangle": (("triangle", "triangles"),),
    "diamond": (("diamond", "diamonds"), ("rhombus", "rhombuses")),
    None: (("object", "objects"), ("shape", "shapes"), ("thing", "things")),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large")}
COLOR_WORDS = {
    "red": ("red",), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
    "purple": ("purple", "violet"), "white": ("white",),
}

_DIR = {
    "left": ("left", "to the left", "leftward"),
    "right": ("right", "to the right", "rightward"),
    "up": ("up", "upward", "towards the top"),
    "down": ("down", "downward", "towards the bottom"),
}
_SPEED_ADV = {"fast": ("quickly", "fast", "rapidly"), "slow": ("slowly", "gently")}


def _verb(participle: str, singular: str, plural: str) -> tuple[str, str, str]:
    return participle, singular, plural


def motion_phrases(fact: str) -> list[tuple[str, str, str]]:
    """(participle, singular clause, plural clause) realisations of a motion fact."""
    if fact == "static":
        return [_verb("standing still", "stands still", "stand still"),
                _verb("not moving", "does not move", "do not move"),
                _verb("staying in place", "stays in place", "stay in place"),
                _verb("remaining static", "remains static", "remain static")]
    if fact == "moving":
        return [_verb("moving", "moves", "move"), _verb("in motion", "is in motion", "are in motion")]
    kind, _, rest = fact.partition(":")
    if kind == "dir":
        return [_verb(f"{v} {d}", f"{s} {d}", f"{p} {d}") for d in _DIR[rest]
                for v, s, p in (("moving", "moves", "move"), ("going", "goes", "go"), ("heading", "heads", "head"))]
    if kind == "speed":
        return [_verb(f"moving {a}", f"moves {a}", f"move {a}") for a in _SPEED_ADV[rest]]
    if kind == "move":
        direction, speed = rest.split(":")
        return [_verb(f"moving {a} {d}", f"moves {a} {d}", f"move {a} {d}")
                for a in _SPEED_ADV[speed] for d in _DIR[direction]]
    if kind == "turn":
        if rest:
            return [_verb(f"moving {d} and then turning back", f"moves {d} and then turns back",
                          f"move {d} and then turn back") for d in _DIR[rest]]
        return [_verb("turning around", "turns around", "turn around"),
                _verb("reversing direction", "reverses direction", "reverse direction"),
                _verb("going away and coming back", "goes away and comes back", "go away and come back")]
    table = {
        "speedup": [("speeding up", "speeds up", "speed up"), ("accelerating", "accelerates", "accelerate"),
                    ("moving faster and faster", "moves faster and faster", "move faster and faster")],
        "stop": [("slowing down and stopping", "slows down and stops", "slow down and stop"),
                 ("coming to a stop", "comes to a stop", "come to a stop"), ("stopping", "stops", "stop")],
        "start": [("starting to move after standing still", "starts to move after standing still",
                   "start to move after standing still"),
                  ("beginning to move", "begins to move", "begin to move"),
                  ("starting to move", "starts moving", "start moving")],
        "jump": [("jumping", "jumps", "jump"), ("hopping", "hops", "hop"),
                 ("jumping up and landing", "jumps up and lands", "jump up and land")],
        "circle": [("moving in a circle", "moves in a circle", "move in a circle"),
                   ("circling around", "circles around", "circle around"),
                   ("going round in a circle", "goes round in a circle", "go round in a circle")],
    }
    return [_verb(*t) for t in table[fact]]


@dataclass(frozen=True)
class Predicate:
    appearance: tuple[tuple[str, str], ...]  # (attribute, value) pairs, e.g. (("color", "red"), ("shape", "circle"))
    motion: str | None  # a motion fact, e.g. "dir:left"

    def matches(self, obj: SceneObject) -> bool:
        facts = obj.facts()
        return all(f"{a}:{v}" in facts for a, v in self.appearance) and (self.motion is None or self.motion in facts)


@dataclass(frozen=True)
class SynthExpression:
    text: str
    kind: str
    obj_ids: tuple[int, ...]


_APPEARANCE_SUBSETS = (("color",), ("shape",), ("color", "shape"), ("size", "shape"), ("size", "color"),
                       ("size", "color", "shape"))


def _noun_phrase(pred: Predicate, plural: bool, rng: np.random.Generator) -> str:
    attrs = dict(pred.appearance)
    words = []
    if "size" in attrs:
        words.append(str(rng.choice(SIZE_WORDS[attrs["size"]])))
    if "color" in attrs:
        words.append(str(rng.choice(COLOR_WORDS[attrs["color"]])))
    nouns = NOUNS[attrs.get("shape")]
    words.append(nouns[rng.integers(len(nouns))][1 if plural else 0])
    return " ".join(words)


def realise(pred: Predicate, count: int, rng: np.random.Generator) -> str:
    """A sentence for a predicate referring to ``count`` objects."""
    plural = count > 1
    noun = _noun_phrase(pred, plural, rng)
    if plural:
        det = str(rng.choice({2: ["the two", "both", "the"], 3: ["the three", "all the", "the"]}.get(count, ["all the", "the"])))
    else:
        det = str(rng.choice(["the", "the", "a"]))
    if pred.motion is None:
        return f"{det} {noun}"
    phrases = motion_phrases(pred.motion)
    participle, singular, plural_clause = phrases[rng.integers(len(phrases))]
    clause = plural_clause if plural else singular
    template = rng.integers(3)
    if template == 0:
        return f"{det} {noun} {participle}"
    if template == 1:
        return f"{det} {noun} that {clause}"
    return f"{det} {noun} which {clause}"


def _predicates(objects: list[SceneObject]) -> list[Predicate]:
    motion_facts = sorted({f for o in objects for f in o.motion.facts()})
    preds = []
    for o in objects:
        for subset in _APPEARANCE_SUBSETS:
            app = tuple((a, dict(zip(("size", "color", "shape"), o.appearance))[a]) for a in subset)
            preds.append(Predicate(app, None))
            preds += [Predicate(app, f) for f in motion_facts]
    preds += [Predicate((), f) for f in motion_facts]
    return list(dict.fromkeys(preds))


def _kind(pred: Predicate, targets: list[SceneObject], objects: list[SceneObject]) -> str:
    if len(targets) > 1:
        return "multi"
    target = targets[0]
    if pred.motion is None:
        return "appearance"
    if any(o is not target and o.appearance == target.appearance for o in objects):
        return "motion-decided"
    return "motion" if not pred.appearance else "both"


def _is_minimal(pred: Predicate, targets: list[SceneObject], objects: list[SceneObject]) -> bool:
    """No attribute of the predicate can be dropped with the same referents (keeps sentences natural)."""
    for i in range(len(pred.appearance)):
        smaller = Predicate(pred.appearance[:i] + pred.appearance[i + 1:], pred.motion)
        if (smaller.appearance or smaller.motion) and [o for o in objects if smaller.matches(o)] == targets:
            return False
    return True


def make_expressions(objects: list[SceneObject], visible: dict[int, bool], rng: np.random.Generator,
                     per_kind: int = 2, max_total: int = 8) -> list[SynthExpression]:
    """Up to ``per_kind`` expressions of each kind the scene allows, each naming a set of objects that is visible
    in some frame; ``visible`` maps obj_id to whether the object is visible at all."""
    by_kind: dict[str, list[tuple[Predicate, list[SceneObject]]]] = {k: [] for k in KINDS}
    seen_targets: dict[str, set] = {k: set() for k in KINDS}
    for pred in _predicates(objects):
        targets = [o for o in objects if pred.matches(o)]
        if not targets or not all(visible[o.obj_id] for o in targets):
            continue
        if len(targets) > 3 or not _is_minimal(pred, targets, objects):
            continue
        kind = _kind(pred, targets, objects)
        by_kind[kind].append((pred, targets))
    chosen: list[SynthExpression] = []
    for kind in KINDS:
        options = by_kind[kind]
        order = rng.permutation(len(options))
        for i in order:
            pred, targets = options[i]
            key = tuple(o.obj_id for o in targets)
            if key in seen_targets[kind]:  # vary the targets within a kind
                continue
            seen_targets[kind].add(key)
            chosen.append(SynthExpression(realise(pred, len(targets), rng), kind, key))
            if sum(1 for c in chosen if c.kind == kind) >= per_kind:
                break
    order = rng.permutation(len(chosen))[:max_total]
    return [chosen[i] for i in sorted(order)]
