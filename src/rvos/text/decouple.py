"""Expression decoupling (DsHmp, CVPR 2024): which tokens of a sentence are motion cues and which are static cues.

A sub-word token of the text encoder's tokenizer (matched to a word of the tagger by character offsets, special
tokens skipped) is a **motion** token when the tagger calls its word a VERB or an ADV, and a **static** token
otherwise (punctuation included). A token is given the part of speech of the first tagged word whose span contains
it; a token inside no tagged word is neither. Only the first ``max_tokens`` positions have a place in the maps (the
text encoder reads at most that many tokens). This is the official DsHmp rule; its model then appends the sentence
feature to both cue sets, so a sentence with no verb or adverb has the sentence feature alone as its motion cues.

Two taggers:

* ``spacy`` (the official one): spaCy's ``en_core_web_sm`` part-of-speech tags. spaCy is an optional extra
  (``pip install "rvos[spacy]"`` then ``python -m spacy download en_core_web_sm``);
* ``lexicon``: a documented stand-in for machines without spaCy's model: a list of motion verbs (every inflection)
  and adverbs that covers the synthetic benchmark's vocabulary and common motion words of MeViS. Words that are
  also nouns (``circle``, ``head``, ``land``...) count as verbs only when a motion adverb or particle follows them
  ("circles around", "heads up"), as a tagger would read them. Used only when a config asks for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rvos.errors import RvosError

# A tagger: sentence -> (start, end, part of speech) of its words, in order (universal POS tags: VERB, ADV, ...).
Tagger = Callable[[str], list[tuple[int, int, str]]]

MOTION_POS = ("VERB", "ADV")


def _inflect(stems: str) -> set[str]:
    """'move moves moving moved, go goes ...' -> the set of words."""
    return set(stems.replace(",", " ").split())


MOTION_VERBS = _inflect("""
    move moves moving moved, go goes going went gone, turn turns turning turned, reverse reverses reversing reversed,
    come comes coming came, speed speeds speeding sped, accelerate accelerates accelerating accelerated,
    decelerate decelerates decelerating decelerated, slow slows slowing slowed, stop stops stopping stopped,
    start starts starting started, begin begins beginning began, jump jumps jumping jumped,
    hop hops hopping hopped, stand stands standing stood, stay stays staying stayed, remain remains remaining
    remained, walk walks walking walked, run runs running ran, fly flies flying flew, swim swims swimming swam,
    rotate rotates rotating rotated, spin spins spinning spun, roll rolls rolling rolled, fall falls falling fell,
    rise rises rising rose, climb climbs climbing climbed, approach approaches approaching approached,
    leave leaves leaving, enter enters entering entered, follow follows following followed,
    chase chases chasing chased, pass passes passing passed, cross crosses crossing crossed, sit sits sitting sat,
    lie lies lying lay, bounce bounces bouncing bounced, shake shakes shaking shook, eat eats eating ate,
    drive drives driving drove, ride rides riding rode, crawl crawls crawling crawled, wander wanders wandering
    wandered, pause pauses pausing paused, push pushes pushing pushed, pull pulls pulling pulled,
    carry carries carrying carried, hold holds holding held, look looks looking looked, fight fights fighting fought,
    play plays playing played, kick kicks kicking kicked, throw throws throwing threw, catch catches catching caught,
    graze grazes grazing grazed, drift drifts drifting drifted, glide glides gliding glided, dive dives diving dove
""")
MOTION_ADVERBS = _inflect("""
    quickly fast rapidly slowly gently swiftly steadily suddenly gradually, faster slower, still,
    leftward leftwards rightward rightwards upward upwards downward downwards forward forwards backward backwards,
    back around away then again, up down
""")
# verbs that are also nouns: motion words only when a motion adverb or particle follows ("circles around")
NOUN_VERBS = _inflect("circle circles circling circled, head heads heading headed, land lands landing landed")
# directions that are adverbs right after a motion verb ("moves left"), nouns or adjectives elsewhere
DIRECTIONS = {"left", "right"}
_VERB_FOLLOWERS = MOTION_ADVERBS | DIRECTIONS | {"to", "towards", "toward", "round", "into", "off", "out", "over", "across"}
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|[0-9]+|[^\sA-Za-z0-9]")


def lexicon_tagger(text: str) -> list[tuple[int, int, str]]:
    """Words of ``text`` with VERB / ADV for the lexicon's motion words and X for every other word."""
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    tags: list[str] = []
    for i, (_, _, word) in enumerate(words):
        following = words[i + 1][2] if i + 1 < len(words) else ""
        if word in MOTION_VERBS or (word in NOUN_VERBS and following in _VERB_FOLLOWERS):
            tags.append("VERB")
        elif word in MOTION_ADVERBS or (word in DIRECTIONS and tags and tags[-1] == "VERB"):
            tags.append("ADV")
        else:
            tags.append("X")
    return [(start, end, tag) for (start, end, _), tag in zip(words, tags)]


def spacy_tagger(model: str = "en_core_web_sm") -> Tagger:
    """spaCy's part-of-speech tagger (the official decoupler's), with a clear error when it is not installed."""
    try:
        import spacy
    except ImportError:
        raise RvosError(f"expression decoupling with spaCy needs spaCy and its {model} model: "
                        f'pip install "rvos[spacy]" && python -m spacy download {model} '
                        "(or use the lexicon decoupler, a documented list of motion words)") from None
    try:
        nlp = spacy.load(model)
    except OSError:
        raise RvosError(f"spaCy's model {model} is not installed: python -m spacy download {model} "
                        "(or use the lexicon decoupler, a documented list of motion words)") from None
    return lambda text: [(t.idx, t.idx + len(t.text), t.pos_) for t in nlp(text)]


def make_tagger(name: str, spacy_model: str = "en_core_web_sm") -> Tagger:
    if name == "spacy":
        return spacy_tagger(spacy_model)
    if name == "lexicon":
        return lexicon_tagger
    raise ValueError(f"unknown expression decoupler {name!r} (known: spacy, lexicon)")


@dataclass
class CueMaps:
    motion: torch.Tensor  # (B, max_tokens) bool: the token at this position is a motion cue
    static: torch.Tensor  # (B, max_tokens) bool: a static cue


def cue_maps(offsets: Sequence[tuple[int, int]], special: Sequence[bool], tags: list[tuple[int, int, str]],
             max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One sentence: its tokens' character ``offsets`` and ``special`` flags (as the tokenizer gives them, the whole
    sentence), its words' ``tags`` -> (motion, static) bool maps of ``max_tokens`` positions."""
    motion = torch.zeros(max_tokens, dtype=torch.bool)
    static = torch.zeros(max_tokens, dtype=torch.bool)
    for index, ((start, end), is_special) in enumerate(zip(offsets, special)):
        if is_special or index >= max_tokens:
            continue
        for w_start, w_end, pos in tags:
            if w_start <= start and w_end >= end:
                (motion if pos in MOTION_POS else static)[index] = True
                break
    return motion, static


class ExpressionDecoupler:
    """Static and motion cue maps of sentences for a Hugging Face fast tokenizer (offsets needed)."""

    def __init__(self, tokenizer, tagger: Tagger, max_tokens: int = 40):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("expression decoupling needs a fast tokenizer (character offsets)")
        self.tokenizer, self.tagger, self.max_tokens = tokenizer, tagger, max_tokens

    def __call__(self, sentences: list[str]) -> CueMaps:
        motion, static = [], []
        for text in sentences:
            enc = self.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True,
                                 return_special_tokens_mask=True)
            m, s = cue_maps(enc["offset_mapping"], enc["special_tokens_mask"], self.tagger(text), self.max_tokens)
            motion.append(m)
            static.append(s)
        return CueMaps(torch.stack(motion), torch.stack(static))
