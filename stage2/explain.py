"""The explanation of a rejection: MUIsC's NLG head, kept consistent with its class head.

Plain greedy decoding often drifts to another rule's wording, or answers "yes", when the
sentence is not what the class head decided. For a sequence explained as a rejection
(p_qualified below `explain_below`):

1. the greedy sentence is kept if it names the class head's most likely rule (r*);
2. otherwise the NLG head chooses among the catalogue's sentences for r* (agpis.rules): every
   template of r* with each image (or pair of images) is scored by the LM's mean token
   log-likelihood given the images and title; then the region phrase of the best one is chosen
   the same way. A template with a free {detail} is scored on the text before it and then
   completed greedily by the LM.

So the words, the image and the region are the NLG head's; the rule is the class head's.
[PAD], [SEP] and [UNK] are never generated. `agpis eval muisc` reports plain greedy and served
decoding side by side.
"""
from __future__ import annotations

import itertools

import torch

from agpis import rules
from stage2 import metrics


def region_phrases() -> list[str]:
    """Every phrase agpis.rules.region_name can say, in a fixed order."""
    out = set()
    for x0 in range(0, 100, 10):
        for y0 in range(0, 100, 10):
            for w in (5, 30, 70, 95):
                for h in (5, 30, 70, 95):
                    out.add(rules.region_name((x0, y0, min(100, x0 + w), min(100, y0 + h)), 100, 100))
    return sorted(out)


def rule_templates(rule_id: str) -> tuple[str, ...]:
    return rules.get(rule_id).feedback if rule_id in rules.BY_ID else (rules.feedback(rule_id),)


class Explainer:
    def __init__(self, model, tokenizer, explain_below: float | None = 0.5, max_new_tokens: int = 24):
        self.model, self.tok = model, tokenizer
        self.classes = tuple(model.config.classes)
        self.q = self.classes.index(rules.QUALIFIED)
        self.explain_below, self.max_new_tokens = explain_below, max_new_tokens
        self.regions = region_phrases()
        self.never = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        self.never[list(tokenizer.never_generated)] = True
        self.first = self.never.clone()
        self.first[tokenizer.eos_id] = True

    def plain(self, class_logits: torch.Tensor):
        """`constrain` for classify_and_generate: plain greedy decoding."""
        return None, self.never.expand(class_logits.shape[0], -1)

    def _ids(self, text: str) -> list[int]:
        return self.tok.encode("", text, 0, 64).ids[1:-1]  # without [SEP] and [EOS]

    @torch.no_grad()
    def _score(self, kv: list, prompt: list[int], texts: list[str], with_eos: list[bool]) -> torch.Tensor:
        """Mean log-likelihood of each text after `prompt`, for one sequence's encoder K/V."""
        seqs = [self._ids(t) + ([self.tok.eos_id] if e else []) for t, e in zip(texts, with_eos)]
        n, L, P = len(seqs), max(len(s) for s in seqs), len(prompt)
        idx = torch.full((n, P + L), self.tok.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            idx[i, :P] = torch.tensor(prompt)
            idx[i, P:P + len(s)] = torch.tensor(s)
        hid = self.model.decode(_expand(kv, n), idx)[:, P - 1:P + L - 1]  # positions predicting the texts' tokens
        logp = torch.log_softmax(self.model.lm_head(hid).float(), -1)
        target = idx[:, P:]
        tok_lp = logp.gather(-1, target[..., None])[..., 0]
        mask = torch.zeros_like(tok_lp, dtype=torch.bool)
        for i, s in enumerate(seqs):
            mask[i, :len(s)] = True
        return (tok_lp * mask).sum(1) / mask.sum(1)

    def _templated(self, kv: list, prompt: list[int], rule: str, n_images: int) -> list[int] | str:
        """The NLG head's choice among rule's catalogue sentences (see the module docstring)."""
        fills, texts, eos = [], [], []
        for t in rule_templates(rule):
            head = t.split("{detail}")[0]
            images = [{"image": rules.image_name(i)} for i in range(n_images)] if "{image}" in head else [{}]
            pairs = [{"images": rules.images_name(list(p))} for p in itertools.combinations(range(n_images), 2)] \
                if "{images}" in head else [{}]
            for a, b in itertools.product(images, pairs):
                text = head.replace("{region}", "").format(**a, **b) if "{detail}" in t else \
                    t.replace("{region}", "").replace("{detail}", "").format(**a, **b)
                fills.append((t, {**a, **b}))
                texts.append(" ".join(text.split()))
                eos.append("{detail}" not in t and "{region}" not in t)
        best = int(self._score(kv, prompt, texts, eos).argmax())
        template, slots = fills[best]
        if "{detail}" in template:  # the LM completes the free detail from the forced prefix
            return self._ids(texts[best])
        if "{region}" in template:
            options = [" ".join(template.replace("{region}", r).format(**slots).split()) for r in ["", *self.regions]]
            best_r = int(self._score(kv, prompt, options, [True] * len(options)).argmax())
            return options[best_r]
        return texts[best]

    @torch.no_grad()
    def explain(self, images: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """(class logits (B, C), one sentence per row). Rows judged qualified (p >= explain_below)
        get the plain greedy sentence ("yes", usually)."""
        logits, gen = self.model.classify_and_generate(images, prompt, self.tok.eos_id, self.max_new_tokens,
                                                       constrain=self.plain)
        p = torch.softmax(logits.float(), -1)
        out = [self.tok.decode(g.tolist()) for g in gen]
        below = p[:, self.q] < self.explain_below if self.explain_below is not None else torch.ones(len(p), dtype=torch.bool)
        if not bool(below.any()):
            return logits, out
        ranked = p.clone()
        ranked[:, self.q] = -1
        kv_all = self.model.decoder.encoder_kv(self.model.encode(images))
        for i in below.nonzero()[:, 0].tolist():
            rule = self.classes[int(ranked[i].argmax())]
            if not rules.is_known(rule) or metrics.rule_named(out[i]) == rule:
                continue  # the free sentence already explains the class head's rule
            kv = _row(kv_all, i)
            ids = prompt[i].tolist()
            choice = self._templated(kv, ids, rule, images.shape[1])
            if isinstance(choice, str):
                out[i] = choice
                continue
            # a {detail} template: force its prefix, let the LM write the rest
            forced = torch.tensor([ids + choice])
            _, rest = self.model.classify_and_generate(images[i:i + 1], forced, self.tok.eos_id,
                                                       max(1, self.max_new_tokens - len(choice)),
                                                       constrain=lambda c: (self.first[None], self.never[None]))
            out[i] = self.tok.decode(choice + rest[0].tolist())
        return logits, out


def _row(kv, i: int):
    """Row i of encoder keys/values: a list per block (native decoder) or encoder tokens (GPT-2)."""
    if isinstance(kv, torch.Tensor):
        return kv[i:i + 1]
    return [None if x is None else (x[0][i:i + 1], x[1][i:i + 1]) for x in kv]


def _expand(kv, n: int):
    if isinstance(kv, torch.Tensor):
        return kv.expand(n, -1, -1)
    return [None if x is None else (x[0].expand(n, -1, -1, -1), x[1].expand(n, -1, -1, -1)) for x in kv]
