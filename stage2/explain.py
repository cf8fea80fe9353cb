"""The explanation of a rejection: MUIsC's NLG head, kept consistent with its class head.

Plain greedy decoding often drifts to another rule's wording, or answers "yes", when the
sentence is not what the class head decided. For a sequence explained as a rejection
(p_qualified below `explain_below`):

the NLG head chooses among the catalogue's sentences for the class head's most likely rule r*
(agpis.rules): every template of r* with each image (or pair of images) is scored by the LM's
mean token log-likelihood given the images and title, in one batched pass; then the region
phrase of the best one is chosen the same way. A template with a free {detail} is scored on the
text before it and then completed greedily by the LM. Sequences at or above `explain_below` get
the plain greedy sentence. (Greedy decoding first and steering only when it drifted gave the
same rule for every rejection and cost a greedy pass more: ~25 ms a request, `agpis bench stage2`.)

So the words, the image and the region are the NLG head's; the rule is the class head's.
[PAD], [SEP] and [UNK] are never generated. `agpis eval muisc` reports plain greedy and served
decoding side by side.
"""
from __future__ import annotations

import itertools

import torch

from agpis import rules
from stage2.model import NativeDecoder


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
    def _score(self, kv, rows: list[int], prompt: torch.Tensor, texts: list[str], with_eos: list[bool]) -> torch.Tensor:
        """Mean log-likelihood of each text after its sequence's prompt: candidate c belongs to
        batch row rows[c] (encoder keys/values `kv`, prompt row `prompt[rows[c]]`). The prompt is
        decoded once per row and its self-attention keys/values shared by the row's candidates,
        which then decode only their own tokens (a third of the work of decoding prompt + text)."""
        seqs = [self._ids(t) + ([self.tok.eos_id] if e else []) for t, e in zip(texts, with_eos)]
        if not isinstance(self.model.decoder, NativeDecoder):  # transformers' GPT-2: no shared cache
            return self._score_full(kv, rows, prompt, seqs)
        distinct = sorted(set(rows))
        at = torch.tensor([distinct.index(r) for r in rows])
        cache = self.model.decoder.new_cache()
        prompt_hid = self.model.decode(_select(kv, torch.tensor(distinct)), prompt[distinct], cache)
        idx, mask = self._padded(seqs)
        shared = [[k[at], v[at]] for k, v in cache]  # each candidate continues its row's prompt
        hid = self.model.decode(_select(kv, torch.tensor(rows)), idx, shared)  # (n, L, d)
        hid = torch.cat([prompt_hid[at, -1:], hid[:, :-1]], 1)  # the state before each text token
        return self._mean_logp(hid, idx, mask)

    def _score_full(self, kv, rows: list[int], prompt: torch.Tensor, seqs: list[list[int]]) -> torch.Tensor:
        """The same mean log-likelihoods, decoding each candidate's prompt and text together."""
        text, mask = self._padded(seqs)
        P, L = prompt.shape[1], text.shape[1]
        idx = torch.cat([prompt[rows], text], 1)
        hid = self.model.decode(_select(kv, torch.tensor(rows)), idx)[:, P - 1:P + L - 1]  # predicts the texts
        return self._mean_logp(hid, text, mask)

    def _padded(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token lists -> (ids (n, L) padded with [PAD], mask of the real tokens)."""
        idx = torch.full((len(seqs), max(len(s) for s in seqs)), self.tok.pad_id, dtype=torch.long)
        mask = torch.zeros(idx.shape, dtype=torch.bool)
        for i, s in enumerate(seqs):
            idx[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = True
        return idx, mask

    def _mean_logp(self, hid: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean log-probability of each row's real tokens `idx`, from the states before them."""
        logp = torch.log_softmax(self.model.lm_head(hid).float(), -1).gather(-1, idx[..., None])[..., 0]
        return (logp * mask).sum(1) / mask.sum(1)

    def _candidates(self, rule: str, n_images: int):
        """(template, slots, text scored, ends with [EOS]) for every template x image(s) of rule."""
        out = []
        for t in rule_templates(rule):
            head = t.split("{detail}")[0]
            images = [{"image": rules.image_name(i)} for i in range(n_images)] if "{image}" in head else [{}]
            pairs = [{"images": rules.images_name(list(p))} for p in itertools.combinations(range(n_images), 2)] \
                if "{images}" in head else [{}]
            for a, b in itertools.product(images, pairs):
                text = (head if "{detail}" in t else t.replace("{detail}", "")).replace("{region}", "").format(**a, **b)
                out.append((t, {**a, **b}, " ".join(text.split()), "{detail}" not in t and "{region}" not in t))
        return out

    def _best(self, kv, prompt, options: dict[int, list], with_eos) -> dict[int, int]:
        """For each row, the index of its best-scoring option (one batched decoder pass)."""
        rows = [r for r, opts in options.items() for _ in opts]
        texts = [o if isinstance(o, str) else o[2] for opts in options.values() for o in opts]
        eos = [with_eos(o) for opts in options.values() for o in opts]
        scores = self._score(kv, rows, prompt, texts, eos)
        best, k = {}, 0
        for r, opts in options.items():
            best[r] = int(scores[k:k + len(opts)].argmax())
            k += len(opts)
        return best

    @torch.no_grad()
    def explain(self, images: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """(class logits (B, C), one sentence per row). Rows judged qualified (p >= explain_below)
        get the plain greedy sentence ("yes", usually)."""
        enc = self.model.encode(images)
        # the class head first (the prompt pass alone), then words for each row
        logits, _ = self.model.classify_and_generate(images, prompt, self.tok.eos_id, 0, enc=enc)
        p = torch.softmax(logits.float(), -1)
        below = p[:, self.q] < self.explain_below if self.explain_below is not None else torch.ones(len(p), dtype=torch.bool)
        ranked = p.clone()
        ranked[:, self.q] = -1
        todo = {}
        for i in below.nonzero()[:, 0].tolist():
            rule = self.classes[int(ranked[i].argmax())]
            if rules.is_known(rule):
                todo[i] = self._candidates(rule, images.shape[1])
        out = [""] * len(p)
        greedy = [i for i in range(len(p)) if i not in todo]
        if greedy:
            rows = torch.tensor(greedy)
            _, gen = self.model.classify_and_generate(images[rows], prompt[rows], self.tok.eos_id,
                                                      self.max_new_tokens, constrain=self.plain, enc=enc[rows])
            for i, g in zip(greedy, gen):
                out[i] = self.tok.decode(g.tolist())
        if not todo:
            return logits, out
        kv = self.model.decoder.encoder_kv(enc)
        chosen = {i: todo[i][b] for i, b in self._best(kv, prompt, todo, lambda o: o[3]).items()}
        regions = {i: [" ".join(t.replace("{region}", r).format(**slots).split()) for r in ["", *self.regions]]
                   for i, (t, slots, _, _) in chosen.items() if "{region}" in t and "{detail}" not in t}
        for i, b in (self._best(kv, prompt, regions, lambda o: True).items() if regions else ()):
            out[i] = regions[i][b]
        for i, (t, _, text, _) in chosen.items():
            if "{detail}" in t:  # force the text before {detail}, let the LM write the rest
                head = self._ids(text)
                _, rest = self.model.classify_and_generate(
                    images[i:i + 1], torch.cat([prompt[i:i + 1], torch.tensor([head])], 1), self.tok.eos_id,
                    max(1, self.max_new_tokens - len(head)), constrain=lambda c: (self.first[None], self.never[None]),
                    enc=enc[i:i + 1])
                out[i] = self.tok.decode(head + rest[0].tolist())
            elif i not in regions:
                out[i] = text
        return logits, out


def _select(kv, rows: torch.Tensor):
    """Encoder keys/values of the given batch rows: a list per block (native decoder) or the
    encoder tokens themselves (GPT-2 decoder)."""
    if isinstance(kv, torch.Tensor):
        return kv[rows]
    return [None if x is None else (x[0][rows], x[1][rows]) for x in kv]
