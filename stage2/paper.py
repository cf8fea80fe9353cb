"""MUIsC's paper configuration (§4.2), built with transformers: a ViT-B/16 image encoder
(`google/vit-base-patch16-224-in21k`), N_s=1 extra encoder block, and a 3-block GPT-2 decoder at
d=768 with cross-attention (the authors' code puts it in the last block only).

No weights are shipped or downloaded by the project: `build_paper_model` loads them from a local
directory or a hub id given by a user who has them (transformers' `from_pretrained`), and
`paper_config` builds the same architecture with random weights (latency benchmarks, tests).
The text vocabulary is always the project's tokenizer (stage2.tokenizer): GPT-2's word
embeddings are resized to it, so pretrained word embeddings are not reused (the paper's
decoder used its own Chinese WordPiece vocabulary too).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from stage2.model import MUIsC, MUIsCConfig

PAPER_VIT = "google/vit-base-patch16-224-in21k"
PAPER_GPT2 = "uer/gpt2-chinese-cluecorpussmall"  # the paper's CLUECorpus GPT-2; "gpt2" works too
# ViT in21k preprocessing: 224 px, scaled to [-1, 1].
VIT_PREPROCESSING = {"image_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


class GPT2Decoder(nn.Module):
    """transformers' GPT2Model as MUIsC's decoder, with cross-attention only in `cross_layers`
    (transformers adds it to every block; the others lose theirs, so no weight goes unused)."""

    def __init__(self, gpt2_config: dict, cross_layers: tuple[int, ...], d_model: int):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        cfg = GPT2Config.from_dict({**gpt2_config, "add_cross_attention": True})
        # Causality comes from SDPA's is_causal when no mask is passed; "eager" would silently
        # attend to future tokens, so it is pinned here.
        cfg._attn_implementation = "sdpa"
        if cfg.n_embd != d_model:
            raise ValueError(f"GPT-2 width {cfg.n_embd} != d_model {d_model}")
        self.gpt2 = GPT2Model(cfg)
        self.cross_layers = frozenset(cross_layers)
        for i, block in enumerate(self.gpt2.h):
            if i not in self.cross_layers:
                del block.crossattention, block.ln_cross_attn

    @property
    def wte(self) -> nn.Embedding:
        return self.gpt2.wte

    def encoder_kv(self, enc: torch.Tensor) -> torch.Tensor:
        return enc  # transformers recomputes cross K/V per call; fine for a benchmark/paper model

    def new_cache(self) -> list:
        return []  # holds the ids decoded so far: generation re-runs the prefix (no K/V cache)

    def forward(self, idx: torch.Tensor, enc: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        new = idx.shape[1]
        if cache is not None:
            idx = torch.cat([cache[0], idx], 1) if cache else idx
            cache[:] = [idx]
        T = idx.shape[1]  # right-padded text: causal attention needs no padding mask
        x = self.gpt2.drop(self.gpt2.wte(idx) + self.gpt2.wpe(torch.arange(T, device=idx.device)))
        for i, block in enumerate(self.gpt2.h):
            x = block(x, encoder_hidden_states=enc if i in self.cross_layers else None)
        return self.gpt2.ln_f(x)[:, T - new:]  # (B, new, d)


def paper_config(vocab_size: int, vit: dict | None = None, gpt2: dict | None = None,
                 n_dec_layers: int = 3, cross_layers: tuple[int, ...] | None = None,
                 n_enc_layers: int = 1, max_text_len: int = 128, **overrides) -> MUIsCConfig:
    """The paper's architecture. `vit`/`gpt2` override the transformers configs (tests pass tiny
    ones); the defaults are ViT-B/16 at 224 px and GPT-2 at d=768, 12 heads."""
    from transformers import GPT2Config, ViTConfig

    vit_cfg = ViTConfig(**(vit or {}))  # ViTConfig's defaults are ViT-B/16, 224 px
    gpt2_cfg = GPT2Config(**{"n_embd": vit_cfg.hidden_size, "n_head": vit_cfg.num_attention_heads,
                             "n_positions": max(max_text_len, 128), **(gpt2 or {}),
                             "n_layer": n_dec_layers, "vocab_size": vocab_size, "add_cross_attention": True,
                             "bos_token_id": None, "eos_token_id": None})
    return MUIsCConfig(image_encoder="vit", vit=vit_cfg.to_dict(), decoder="gpt2", gpt2=gpt2_cfg.to_dict(),
                       d_model=gpt2_cfg.n_embd, n_head=gpt2_cfg.n_head, n_enc_layers=n_enc_layers,
                       n_dec_layers=n_dec_layers,
                       cross_layers=(n_dec_layers - 1,) if cross_layers is None else cross_layers,
                       vocab_size=vocab_size, max_text_len=max_text_len, **overrides)


def build_paper_model(vocab_size: int, vit: str = PAPER_VIT, gpt2: str = PAPER_GPT2, n_dec_layers: int = 3,
                      cross_layers: tuple[int, ...] | None = None, n_enc_layers: int = 1,
                      max_text_len: int = 128, **overrides) -> MUIsC:
    """MUIsC initialised from pretrained ViT and GPT-2 (paper §4.2): `vit` and `gpt2` are local
    directories or hub ids (a hub id needs network access; this project never downloads).
    The first `n_dec_layers` GPT-2 blocks are kept; cross-attention starts from random weights."""
    from transformers import GPT2Model, ViTModel

    vit_model = ViTModel.from_pretrained(vit, add_pooling_layer=False)
    gpt2_model = GPT2Model.from_pretrained(gpt2, n_layer=n_dec_layers, add_cross_attention=True,
                                           attn_implementation="sdpa")
    gpt2_model.resize_token_embeddings(vocab_size)
    gpt2_cfg = gpt2_model.config.to_dict()
    cfg = paper_config(vocab_size, vit=vit_model.config.to_dict(), gpt2=gpt2_cfg, n_dec_layers=n_dec_layers,
                       cross_layers=cross_layers, n_enc_layers=n_enc_layers, max_text_len=max_text_len,
                       **overrides)
    if max_text_len > gpt2_model.config.n_positions:
        raise ValueError(f"max_text_len {max_text_len} > GPT-2 positions {gpt2_model.config.n_positions}")
    model = MUIsC(cfg)
    model.image_tokens.vit.load_state_dict(vit_model.state_dict(), strict=True)
    target = model.decoder.gpt2.state_dict()
    source = gpt2_model.state_dict()
    # Blocks without cross-attention dropped those weights; nothing else may go missing.
    dropped = {k for k in source if k not in target}
    assert all(".crossattention." in k or ".ln_cross_attn." in k for k in dropped), sorted(dropped)[:5]
    missing = [k for k in target if k not in source]
    assert not missing, f"GPT-2 checkpoint lacks {missing[:5]}"
    model.decoder.gpt2.load_state_dict({k: v for k, v in source.items() if k in target}, strict=True)
    return model
