import sys

import pytest

from rvos.data.synth.generate import SynthSpec, make_video
from rvos.data.synth.language import COLOR_WORDS, NOUNS, SIZE_WORDS
from rvos.errors import RvosError
from rvos.text.decouple import ExpressionDecoupler, cue_maps, lexicon_tagger, make_tagger, spacy_tagger
from tests.tiny_text import write_tiny_roberta

# what spaCy's en_core_web_sm tags for this sentence (universal POS)
GIRAFFE = "the giraffe that turns around and walks away"
GIRAFFE_TAGS = ["DET", "NOUN", "PRON", "VERB", "ADV", "CCONJ", "VERB", "ADV"]


def given_tagger(tags_per_word):
    """A tagger the test provides: whitespace words with the given tags (a stand-in for spaCy's)."""
    def tag(text):
        out, pos = [], 0
        for word, t in zip(text.split(), tags_per_word):
            start = text.index(word, pos)
            out.append((start, start + len(word), t))
            pos = start + len(word)
        return out
    return tag


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(write_tiny_roberta(tmp_path_factory.mktemp("roberta")))


def words_of(tokenizer, text, mask):
    enc = tokenizer(text, return_offsets_mapping=True)
    return {text[s:e] for i, (s, e) in enumerate(enc["offset_mapping"]) if i < len(mask) and mask[i]}


def test_subword_tokens_take_their_word_tag_and_specials_are_neither(tokenizer):
    maps = ExpressionDecoupler(tokenizer, given_tagger(GIRAFFE_TAGS))([GIRAFFE])
    enc = tokenizer(GIRAFFE, return_offsets_mapping=True)
    n = len(enc["input_ids"])
    motion, static = maps.motion[0], maps.static[0]
    assert not motion[0] and not static[0] and not motion[n - 1] and not static[n - 1]  # <s>, </s>
    assert not (motion & static).any() and int((motion | static).sum()) == n - 2  # every other token is one of them
    assert not (motion[n:] | static[n:]).any()
    # the sub-words of a word are all of its kind, whatever the BPE cut
    motion_text = "".join(GIRAFFE[s:e] for i, (s, e) in enumerate(enc["offset_mapping"]) if motion[i])
    assert motion_text == "turnsaroundwalksaway"


def test_only_the_first_max_tokens_positions_are_mapped(tokenizer):
    long = " ".join(["the giraffe that turns around and walks away"] * 6)
    maps = ExpressionDecoupler(tokenizer, given_tagger(GIRAFFE_TAGS * 6), max_tokens=40)([long])
    assert maps.motion.shape == (1, 40)
    assert int((maps.motion | maps.static).sum()) == 39  # position 0 is <s>; the rest of the sentence is cut


def test_a_token_inside_no_tagged_word_is_neither():
    motion, static = cue_maps([(0, 0), (0, 2), (3, 5), (0, 0)], [True, False, False, True],
                              [(0, 2, "VERB")], 8)
    assert motion.tolist()[:4] == [False, True, False, False] and not static.any()


def test_punctuation_is_static(tokenizer):
    maps = ExpressionDecoupler(tokenizer, lexicon_tagger)(["the red square moving fast."])
    assert words_of(tokenizer, "the red square moving fast.", maps.motion[0]) == {"moving", "fast"}
    assert "." in words_of(tokenizer, "the red square moving fast.", maps.static[0])


def test_lexicon_covers_the_synthetic_vocabulary():
    """Appearance words are never motion cues; every expression about motion has one (except "in motion", where
    spaCy finds no verb or adverb either: "is" is AUX, "motion" a NOUN); appearance-only ones none."""
    appearance = {w for forms in NOUNS.values() for pair in forms for w in pair}
    appearance |= {w for ws in SIZE_WORDS.values() for w in ws} | {w for ws in COLOR_WORDS.values() for w in ws}
    spec = SynthSpec(train=60, valid_u=0, valid=0, seed=0)
    seen_kinds = set()
    for index in range(60):
        for e in make_video(spec, "train", index)[3]:
            tags = lexicon_tagger(e.text)
            motion = {e.text[s:t] for s, t, pos in tags if pos in ("VERB", "ADV")}
            assert not motion & appearance, (e.text, motion)
            seen_kinds.add(e.kind)
            if e.kind == "appearance":
                assert not motion, e.text
            elif e.kind in ("motion", "both", "motion-decided") and "in motion" not in e.text:
                assert motion, e.text
    assert {"appearance", "motion", "both", "motion-decided"} <= seen_kinds


@pytest.mark.parametrize("text, motion", [
    ("the circles that move", {"move"}),
    ("the shape circling around", {"circling", "around"}),
    ("a ball which circles around", {"circles", "around"}),
    ("the thing that moves left", {"moves", "left"}),
    ("the left circle", set()),
    ("the object heading up", {"heading", "up"}),
])
def test_lexicon_reads_noun_verb_homographs_from_what_follows(text, motion):
    assert {text[s:e] for s, e, pos in lexicon_tagger(text) if pos in ("VERB", "ADV")} == motion


def test_missing_spacy_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy raises ImportError
    with pytest.raises(RvosError, match=r"rvos\[spacy\].*en_core_web_sm.*lexicon decoupler"):
        spacy_tagger()


def test_missing_spacy_model_says_how_to_download_it(monkeypatch):
    class FakeSpacy:
        @staticmethod
        def load(name):
            raise OSError(f"[E050] Can't find model '{name}'")
    monkeypatch.setitem(sys.modules, "spacy", FakeSpacy)
    with pytest.raises(RvosError, match="python -m spacy download en_core_web_sm"):
        make_tagger("spacy")


def test_unknown_decoupler_is_refused():
    with pytest.raises(ValueError, match="spacy, lexicon"):
        make_tagger("nltk")


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False
    with pytest.raises(ValueError, match="fast tokenizer"):
        ExpressionDecoupler(Slow(), lexicon_tagger)


@pytest.mark.skipif(not __import__("importlib").util.find_spec("spacy"), reason="spaCy is not installed")
def test_spacy_tags_the_giraffe_sentence_as_the_official_decoupler_reads_it(tokenizer):
    try:
        tagger = spacy_tagger()
    except RvosError:
        pytest.skip("spaCy's en_core_web_sm is not installed")
    assert [pos for *_, pos in tagger(GIRAFFE)] == GIRAFFE_TAGS
