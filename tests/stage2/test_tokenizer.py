from __future__ import annotations

import random

import pytest

from agpis import rules
from stage2.tokenizer import TextTokenizer


@pytest.fixture(scope="module")
def tok():
    rng = random.Random(0)
    texts = [rules.feedback(r, image=rng.randrange(3), images=[0, 1], region="across the top", rng=rng)
             for r in rules.CLASSES for _ in range(10)]
    texts += ["Granny Smith Apple, Green, 1 kg", "Oat milk 1 L carton, blue"] * 5
    return TextTokenizer.train(texts, vocab_size=300)


def test_layout_title_sep_feedback_eos(tok):
    e = tok.encode("Green apple 1 kg", "image 2 is blurry", max_title=32, max_feedback=16)
    assert e.ids[e.sep_pos] == tok.sep_id and e.ids[-1] == tok.eos_id
    assert len(e.lm_targets) == len(e.ids)
    # position t predicts ids[t+1], only over the feedback and [EOS]
    assert all(t == -100 for t in e.lm_targets[:e.sep_pos])
    assert e.lm_targets[e.sep_pos:-1] == e.ids[e.sep_pos + 1:]
    assert tok.decode(e.ids[e.sep_pos + 1:]) == "image 2 is blurry"


def test_prompt_truncation_and_no_title(tok):
    p = tok.encode("word " * 100, None, max_title=8, max_feedback=4)
    assert len(p.ids) == 9 and p.sep_pos == 8 and p.ids[-1] == tok.sep_id
    n = tok.encode("Green apple", "yes", max_title=8, max_feedback=4, use_title=False)
    assert n.sep_pos == 0


def test_save_load_roundtrip(tok, tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "tokenizer.json")
    text = "images 1 and 3 show the same view"
    assert again.encode("t", text, 8, 16).ids == tok.encode("t", text, 8, 16).ids


def test_special_ids_are_checked(tmp_path):
    from tokenizers import Tokenizer, models

    bad = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "[SEP]": 2, "[EOS]": 3}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match="PAD"):
        TextTokenizer(bad)


def test_training_is_deterministic_and_never_unknown():
    texts = ["Red apple juice 1 L", "image 2 has a watermark", "yes", "Blue oat milk"] * 3
    a, b = TextTokenizer.train(texts, 100), TextTokenizer.train(list(reversed(texts)), 100)
    assert a.tok.to_str() == b.tok.to_str()
    ids = a.encode("Zebra-striped kiwi", None, 32, 0).ids
    assert a.unk_id not in ids and a.decode(ids) == "zebra - striped kiwi"
