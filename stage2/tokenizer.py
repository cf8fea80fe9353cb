"""The text side of MUIsC: a WordPiece tokenizer trained by the project on titles and feedback
(HF `tokenizers`), saved as tokenizer.json beside the weights, and the `title [SEP] feedback
[EOS]` layout of the decoder's input (paper §3.4.2; the authors used WordPiece too).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PAD, UNK, SEP, EOS = "[PAD]", "[UNK]", "[SEP]", "[EOS]"
SPECIALS = [PAD, UNK, SEP, EOS]  # ids 0..3, in this order


@dataclass
class Encoded:
    ids: list[int]  # title [SEP] feedback [EOS]  (or title [SEP] at inference)
    sep_pos: int  # index of [SEP]: the class head reads the hidden state there
    lm_targets: list[int]  # next-token target where it is a feedback token, -100 elsewhere


class TextTokenizer:
    def __init__(self, tokenizer):
        self.tok = tokenizer  # a tokenizers.Tokenizer
        for i, s in enumerate(SPECIALS):
            if tokenizer.token_to_id(s) != i:
                raise ValueError(f"tokenizer must have {s} at id {i}; got {tokenizer.token_to_id(s)}")
        self.pad_id, self.unk_id, self.sep_id, self.eos_id = range(4)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> "TextTokenizer":
        """A WordPiece vocabulary from the texts, deterministically: the special tokens, every
        character (alone and as a ##continuation, so a new word is spelled out), then the most
        frequent whole words (ties by spelling) up to `vocab_size`. (tokenizers' own trainer
        breaks ties in hash order, which changes from run to run.)"""
        from collections import Counter

        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

        norm = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
        pre = pre_tokenizers.BertPreTokenizer()
        counts: Counter = Counter()
        for text in texts:
            counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
        import string

        # the training texts' characters plus ASCII, so an unseen word is spelled, not [UNK]
        chars = sorted({c for w in counts for c in w} | set(string.ascii_lowercase + string.digits + string.punctuation))
        vocab = list(SPECIALS) + chars + ["##" + c for c in chars]
        frequent = sorted((w for w, n in counts.items() if n >= min_frequency and len(w) > 1),
                          key=lambda w: (-counts[w], w))
        vocab += frequent[:max(0, vocab_size - len(vocab))]
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=UNK))
        tok.normalizer, tok.pre_tokenizer, tok.decoder = norm, pre, decoders.WordPiece()
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    @property
    def never_generated(self) -> tuple[int, ...]:
        return (self.pad_id, self.unk_id, self.sep_id)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def _ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode(self, title: str, feedback: str | None, max_title: int, max_feedback: int,
               use_title: bool = True) -> Encoded:
        """`feedback=None` builds the inference prompt `title [SEP]`. Long titles keep their start
        (brand, product, colour come first); long feedback is cut before [EOS]."""
        head = (self._ids(title)[:max_title] if use_title else []) + [self.sep_id]
        sep = len(head) - 1
        if feedback is None:
            return Encoded(head, sep, [-100] * len(head))
        tail = self._ids(feedback)[:max_feedback] + [self.eos_id]
        ids = head + tail
        # position t predicts ids[t+1]; only the feedback tokens (and [EOS]) are NLG targets
        targets = [-100] * sep + tail + [-100]
        return Encoded(ids, sep, targets)

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.sep_id):
                out.append(i)
        return self.tok.decode(out).strip()
