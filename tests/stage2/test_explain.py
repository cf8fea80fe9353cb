"""The explanation of a rejection (stage2.explain): consistent with the class head's rule."""
from __future__ import annotations

import torch

from stage2 import metrics
from stage2.explain import Explainer, region_phrases


def test_region_phrases_cover_region_name():
    phrases = region_phrases()
    assert "across the top" in phrases and "in the top-left corner" in phrases and "in the centre" in phrases


def test_explanations_name_the_class_heads_rule(tiny_run):
    """Whatever the (tiny, barely trained) NLG head prefers, a rejection's sentence names the
    rule the class head ranks first among the rules."""
    from stage2 import checkpoint

    model, tok, _ = checkpoint.load(tiny_run)
    torch.manual_seed(0)
    ex = Explainer(model, tok, explain_below=1.01, max_new_tokens=16)  # explain every row
    images = torch.rand(6, 3, 49, 1280) * 6
    prompt = torch.tensor([tok.encode("Red apple 1 kg", None, 16, 0).ids] * 6)
    for k in range(6):  # push each row's class head towards a different rule
        with torch.no_grad():
            images[k, k % 3] *= 1 + k
    logits, sentences = ex.explain(images, prompt)
    p = torch.softmax(logits, -1)
    p[:, model.config.classes.index("qualified")] = -1
    for row, text in zip(p, sentences):
        rule = model.config.classes[int(row.argmax())]
        assert metrics.rule_named(text) == rule, (rule, text)


def test_candidates_scored_on_a_shared_prompt_cache_equal_the_full_decode(tiny_run):
    """_score decodes the prompt once and the candidates' own tokens against its cached keys
    and values: the log-likelihoods equal decoding prompt + text together."""
    from stage2 import checkpoint

    model, tok, _ = checkpoint.load(tiny_run)
    ex = Explainer(model, tok, explain_below=0.5, max_new_tokens=8)
    torch.manual_seed(1)
    images = torch.rand(2, 3, 49, 1280) * 6
    prompt = torch.tensor([tok.encode("Blue mug", None, 6, 0).ids] * 2)
    cands = [c for c in ex._candidates("duplicated_view", 3) + ex._candidates("border", 3)
             if len(ex._ids(c[2])) + prompt.shape[1] < model.config.max_text_len - 1]
    texts, eos = [c[2] for c in cands] * 2, [c[3] for c in cands] * 2
    rows = [0] * len(cands) + [1] * len(cands)
    with torch.no_grad():
        kv = model.decoder.encoder_kv(model.encode(images))
        got = ex._score(kv, rows, prompt, texts, eos)
        seqs = [ex._ids(t) + ([tok.eos_id] if e else []) for t, e in zip(texts, eos)]
        want = ex._score_full(kv, rows, prompt, seqs)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert len(set(got.tolist())) > 1  # the candidates are told apart
