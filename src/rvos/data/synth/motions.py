"""Motions of the synthetic benchmark: a trajectory per motion and the facts a sentence may state about it.

A trajectory is the object's centre over normalised time ``u`` in [0, 1], as an offset from its start position in
units of the frame's axis length along the motion. Facts are the atoms sentences are built from ("dir:left",
"stop", ...): an expression refers to exactly the objects whose facts contain its motion fact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SPEEDS = {"slow": 0.25, "fast": 0.5}  # distance travelled over the whole video, as a fraction of the axis length

# name -> relative weight when drawing a motion for an object
MOTION_WEIGHTS = {
    "static": 1.0,
    "move": 2.0,
    "speed_up": 1.0,
    "slow_stop": 1.0,
    "start_moving": 1.0,
    "turn_around": 1.0,
    "jump": 1.0,
    "circle": 1.0,
}


@dataclass(frozen=True)
class Motion:
    name: str
    direction: str | None = None
    speed: str | None = None
    phase: float = 0.0  # when a jump happens / where a circle starts / when a start or stop happens

    def facts(self) -> frozenset[str]:
        if self.name == "static":
            return frozenset({"static"})
        facts = {"moving"}
        if self.name in ("move", "speed_up", "slow_stop", "start_moving"):
            facts.add(f"dir:{self.direction}")
        if self.name == "move":
            facts |= {f"speed:{self.speed}", f"move:{self.direction}:{self.speed}"}
        elif self.name == "speed_up":
            facts.add("speedup")
        elif self.name == "slow_stop":
            facts.add("stop")
        elif self.name == "start_moving":
            facts.add("start")
        elif self.name == "turn_around":
            facts |= {"turn", f"turn:{self.direction}"}
        elif self.name in ("jump", "circle"):
            facts.add(self.name)
        return frozenset(facts)

    def offsets(self, num_frames: int, height: int, width: int) -> np.ndarray:
        """Centre offsets (T, 2) in pixels (x, y) from the start position."""
        u = np.linspace(0.0, 1.0, num_frames)
        if self.name == "static":
            return np.zeros((num_frames, 2))
        if self.name == "jump":
            start, dur = self.phase, 0.45
            v = np.clip((u - start) / dur, 0.0, 1.0)
            y = -0.4 * height * 4 * v * (1 - v)
            return np.stack([np.zeros_like(u), y], axis=1)
        if self.name == "circle":
            radius = 0.2 * min(height, width)
            angle = 2 * np.pi * (u + self.phase)
            return np.stack(
                [radius * (np.cos(angle) - np.cos(2 * np.pi * self.phase)),
                 radius * (np.sin(angle) - np.sin(2 * np.pi * self.phase))], axis=1
            )
        dx, dy = DIRECTIONS[self.direction]
        length = width if dx else height
        if self.name == "move":
            s = SPEEDS[self.speed] * u
        elif self.name == "speed_up":
            s = 0.5 * (0.1 * u + 0.9 * u**2)
        elif self.name == "slow_stop":
            stop = self.phase  # the object stands still from u = stop on
            v = np.clip(u / stop, 0.0, 1.0)
            s = 0.4 * (1 - (1 - v) ** 2)
        elif self.name == "start_moving":
            s = 0.45 * np.clip((u - self.phase) / (1 - self.phase), 0.0, 1.0)
        elif self.name == "turn_around":
            s = 0.45 * (1 - np.abs(1 - 2 * u))
        else:
            raise ValueError(f"unknown motion {self.name!r}")
        return np.stack([s * dx * length, s * dy * length], axis=1)


def draw_motion(rng: np.random.Generator, exclude: set[frozenset[str]] = frozenset()) -> Motion:
    """A random motion whose facts differ from every fact set in ``exclude`` (so look-alikes stay distinguishable)."""
    names = list(MOTION_WEIGHTS)
    weights = np.array([MOTION_WEIGHTS[n] for n in names])
    for _ in range(100):
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        direction = str(rng.choice(list(DIRECTIONS)))
        if name == "turn_around":
            direction = str(rng.choice(["left", "right"]))
        motion = Motion(
            name=name,
            direction=None if name in ("static", "jump", "circle") else direction,
            speed=str(rng.choice(list(SPEEDS))) if name == "move" else None,
            phase={"jump": rng.uniform(0.1, 0.45), "circle": rng.uniform(0, 1), "slow_stop": rng.uniform(0.45, 0.65),
                   "start_moving": rng.uniform(0.3, 0.5)}.get(name, 0.0),
        )
        if motion.facts() not in exclude and not any(_indistinct(motion.facts(), e) for e in exclude):
            return motion
    raise RuntimeError("could not draw a distinguishable motion")


def _indistinct(a: frozenset[str], b: frozenset[str]) -> bool:
    """True when neither fact set has a fact the other lacks (no sentence could tell the two apart)."""
    return not (a - b) or not (b - a)
