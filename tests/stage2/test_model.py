"""MUIsC's default model (stage2/model.py) with tiny configs: shapes, causality, the [SEP] head,
cached generation, ablation switches, and that it can learn."""
from __future__ import annotations

import pytest
import torch

from agpis import rules
from stage2.model import MUIsC, MUIsCConfig, muisc_loss


def tiny(**kw) -> MUIsCConfig:
    return MUIsCConfig(**{"vocab_size": 40, "d_model": 32, "n_head": 2, "feature_dim": 24, "feature_grid": 3,
                          "max_text_len": 24, "dropout": 0.0, **kw})


def feats(b=2, cfg=None):
    cfg = cfg or tiny()
    return torch.rand(b, cfg.n_images, cfg.feature_grid ** 2, cfg.feature_dim) * 6


def test_shapes_and_loss():
    torch.manual_seed(0)
    m = MUIsC(tiny())
    idx = torch.randint(4, 40, (2, 10))
    sep = torch.tensor([4, 6])
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 4:9], mask[1, 6:9] = True, True
    out = m(feats(), idx, sep, mask)
    assert out.class_logits.shape == (2, len(rules.CLASSES))
    assert out.lm_logits.shape == (int(mask.sum()), 40)
    loss, parts = muisc_loss(out, torch.tensor([0, 3]), torch.randint(0, 40, (int(mask.sum()),)))
    assert loss.item() == pytest.approx(parts["cls"] + 0.1 * parts["lm"], rel=1e-5)
    loss.backward()
    assert m.image_tokens.proj.weight.grad is not None and m.decoder.wte.weight.grad is not None


def test_decoder_is_causal_and_class_head_reads_sep():
    """The class logits at [SEP] must not depend on the feedback after it (inference has none)."""
    torch.manual_seed(0)
    m = MUIsC(tiny()).eval()
    x = feats(1)
    a = torch.tensor([[5, 6, 7, 2, 9, 10, 11]])
    b = a.clone()
    b[0, 4:] = torch.tensor([20, 21, 22])
    sep = torch.tensor([3])
    with torch.no_grad():
        assert torch.allclose(m(x, a, sep).class_logits, m(x, b, sep).class_logits, atol=1e-6)
        ha, hb = m.decode(m.encode(x), a), m.decode(m.encode(x), b)
    assert torch.allclose(ha[:, :4], hb[:, :4], atol=1e-6)
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])


def test_images_matter_and_positions_tell_images_apart():
    torch.manual_seed(0)
    m = MUIsC(tiny()).eval()
    x = feats(1)
    idx, sep = torch.tensor([[5, 6, 2]]), torch.tensor([2])
    with torch.no_grad():
        base = m(x, idx, sep).class_logits
        swapped = m(x[:, [1, 0, 2]], idx, sep).class_logits  # same images, another order
    assert not torch.allclose(base, swapped), "order of the images must change the score (improper_order)"


def test_cached_generation_matches_recomputation():
    torch.manual_seed(1)
    m = MUIsC(tiny()).eval()
    x, prompt = feats(2), torch.randint(4, 40, (2, 5))
    logits, gen = m.classify_and_generate(x, prompt, eos_id=3, max_new_tokens=8)
    idx = prompt
    with torch.no_grad():
        enc = m.encode(x)
        for step in range(gen.shape[1]):
            nxt = m.lm_head(m.decode(enc, idx)[:, -1]).argmax(-1)
            nxt = torch.where((gen[:, :step] == 3).any(1), torch.full_like(nxt, 3), nxt) if step else nxt
            assert torch.equal(nxt, gen[:, step])
            idx = torch.cat([idx, nxt[:, None]], 1)
        assert torch.allclose(logits, m(x, prompt, torch.tensor([4, 4])).class_logits, atol=1e-5)


def test_constraints_ban_tokens_at_the_first_and_every_step():
    torch.manual_seed(2)
    m = MUIsC(tiny()).eval()
    x, prompt = feats(2), torch.randint(4, 40, (2, 5))
    _, free = m.classify_and_generate(x, prompt, eos_id=3, max_new_tokens=3)
    first = torch.zeros(2, 40, dtype=torch.bool)
    first[:, int(free[0, 0])] = True
    _, forced = m.classify_and_generate(x, prompt, eos_id=3, max_new_tokens=3, constrain=lambda c: (first, None))
    assert int(forced[0, 0]) != int(free[0, 0])
    every = torch.zeros(2, 40, dtype=torch.bool)
    every[:, 10:] = True
    _, low = m.classify_and_generate(x, prompt, eos_id=3, max_new_tokens=5, constrain=lambda c: (None, every))
    assert int(low.max()) < 10


@pytest.mark.parametrize("kw", [dict(use_decoder=False), dict(n_enc_layers=0), dict(use_title=False),
                                dict(cross_layers=(2,)), dict(pooled_token=False)])
def test_ablation_switches_build_and_run(kw):
    m = MUIsC(tiny(**kw))
    out = m(feats(), torch.randint(4, 40, (2, 6)), torch.tensor([2, 3]))
    assert out.class_logits.shape == (2, len(rules.CLASSES))
    if kw.get("cross_layers"):
        assert [b.cross for b in m.decoder.h] == [False, False, True]
    if kw.get("use_decoder") is False:
        assert not hasattr(m, "decoder") and out.lm_logits is None


@pytest.mark.parametrize("kw, msg", [(dict(image_encoder="resnet"), "image_encoder"),
                                     (dict(decoder="lstm"), "decoder"),
                                     (dict(cross_layers=(5,)), "outside"),
                                     (dict(cross_layers=()), "at least one"),
                                     (dict(image_encoder="vit"), "ViTConfig"),
                                     (dict(classes=("a", "b")), "qualified")])
def test_bad_config_is_a_clear_error(kw, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(**kw)


def test_wrong_inputs_fail_loudly():
    m = MUIsC(tiny())
    with pytest.raises(AssertionError, match="images per sequence"):
        m(torch.rand(1, 2, 9, 24), torch.tensor([[5, 2]]), torch.tensor([1]))
    with pytest.raises(AssertionError, match="cells per image"):
        m(torch.rand(1, 3, 4, 24), torch.tensor([[5, 2]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="text ids"):
        m(feats())


def test_it_learns_which_image_is_bad():
    """A label that depends on one image's tokens and the title: a few hundred steps fit it."""
    torch.manual_seed(0)
    cfg = tiny(dropout=0.0)
    m = MUIsC(cfg)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    x = feats(64, cfg)
    labels = torch.randint(0, 3, (64,))
    for i in range(64):  # class 1: a bright cell in image 2; class 2: title token 9
        if labels[i] == 1:
            x[i, 1, 4] += 20.0
    idx = torch.randint(10, 40, (64, 4))
    idx[labels == 2, 1] = 9
    idx[:, 3] = 2
    sep = torch.full((64,), 3)
    for _ in range(150):
        loss, _ = muisc_loss(m(x, idx, sep), labels, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (m.eval()(x, idx, sep).class_logits.argmax(-1) == labels).float().mean()
    assert acc > 0.95, acc


def test_token_dropout_only_in_training():
    """With every cell token dropped, two images whose cells are permuted (same mean-pooled
    token) encode the same in training; at inference nothing is dropped."""
    torch.manual_seed(0)
    m = MUIsC(tiny(token_dropout=1.0))
    x = feats(1)
    permuted = x[:, :, torch.randperm(x.shape[2])]
    m.train()
    assert torch.allclose(m.encode(x), m.encode(permuted), atol=1e-6)
    m.eval()
    with torch.no_grad():
        assert not torch.allclose(m.encode(x), m.encode(permuted), atol=1e-4)
