"""The paper configuration (ViT + GPT-2 via transformers), with tiny configs saved to a local
directory and loaded from it, as a user with the real weights would (never downloads)."""
from __future__ import annotations

import pytest
import torch

from stage2.model import MUIsC
from stage2.paper import build_paper_model, paper_config

TINY_VIT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                patch_size=8)


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory):
    from transformers import GPT2Config, GPT2Model, ViTConfig, ViTModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    ViTModel(ViTConfig(**TINY_VIT), add_pooling_layer=False).save_pretrained(root / "vit")
    GPT2Model(GPT2Config(n_embd=32, n_layer=4, n_head=2, vocab_size=77, n_positions=64)).save_pretrained(root / "gpt2")
    return root / "vit", root / "gpt2"


def test_builds_from_local_directories_with_their_weights(pretrained_dirs):
    from transformers import GPT2Model, ViTModel

    vit_dir, gpt2_dir = pretrained_dirs
    m = build_paper_model(50, vit=str(vit_dir), gpt2=str(gpt2_dir), n_dec_layers=3, max_text_len=32)
    vit = ViTModel.from_pretrained(vit_dir, add_pooling_layer=False)
    gpt2 = GPT2Model.from_pretrained(gpt2_dir)
    assert torch.equal(m.image_tokens.vit.embeddings.patch_embeddings.projection.weight,
                       vit.embeddings.patch_embeddings.projection.weight)
    # the first 3 of the 4 GPT-2 blocks are kept; the vocabulary is resized to the project's
    assert len(m.decoder.gpt2.h) == 3
    assert torch.equal(m.decoder.gpt2.h[2].attn.c_attn.weight, gpt2.h[2].attn.c_attn.weight)
    assert m.decoder.gpt2.wte.weight.shape == (50, 32)
    # the authors' code: cross-attention in the last block only
    assert [hasattr(b, "crossattention") for b in m.decoder.gpt2.h] == [False, False, True]
    assert m.lm_head.weight is m.decoder.gpt2.wte.weight


def test_forward_generate_and_causality():
    torch.manual_seed(0)
    m = MUIsC(paper_config(60, vit=TINY_VIT, gpt2=dict(n_head=2), cross_layers=(0, 2), dropout=0.0)).eval()
    px = torch.rand(2, 3, 3, 32, 32)
    assert m.image_tokens.tokens_per_image == 17  # 16 patches + CLS, as ViT's 197 at 224 px
    a = torch.randint(4, 60, (2, 8))
    b = a.clone()
    b[:, 5:] = 7
    sep = torch.tensor([4, 4])
    with torch.no_grad():
        oa, ob = m(px, a, sep), m(px, b, sep)
        assert torch.allclose(oa.class_logits, ob.class_logits, atol=1e-5)  # nothing after [SEP] leaks back
        _, gen = m.classify_and_generate(px, a[:, :5], eos_id=3, max_new_tokens=4)
    assert gen.shape[0] == 2 and 1 <= gen.shape[1] <= 4


def test_training_step_updates_vit_and_gpt2():
    torch.manual_seed(0)
    m = MUIsC(paper_config(60, vit=TINY_VIT, gpt2=dict(n_head=2)))
    out = m(torch.rand(2, 3, 3, 32, 32), torch.randint(4, 60, (2, 6)), torch.tensor([2, 3]),
            torch.ones(2, 6, dtype=torch.bool))
    (out.class_logits.sum() + out.lm_logits.sum()).backward()
    assert m.image_tokens.vit.embeddings.patch_embeddings.projection.weight.grad is not None
    assert m.decoder.gpt2.h[2].crossattention.c_attn.weight.grad is not None


def test_default_paper_config_is_the_papers():
    c = paper_config(21128)
    assert (c.d_model, c.n_head, c.n_dec_layers, c.n_enc_layers, c.cross_layers) == (768, 12, 3, 1, (2,))
    assert c.vit["hidden_size"] == 768 and c.vit["patch_size"] == 16 and c.vit["image_size"] == 224
