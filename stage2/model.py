"""MUIsC: Multi-modality Unified Image-sequence Classifier (Fan et al., KDD'22, §3.4).

Reads bottom-up: attention -> MLP -> encoder / decoder blocks -> image tokens -> config -> model.

    images (B, K, ...) --ImageTokens--> (B, K*T, d)            per-image tokens
        + learned positions over all K*T tokens, N_s encoder blocks  -> F^e (B, N, d)
    text `title [SEP] feedback [EOS]` (B, L) --decoder (causal self-attn, cross-attn to F^e)--> H^d
    class head on H^d at [SEP] -> (B, n_classes);  LM head on H^d -> next feedback token
    loss = 1.0 * CE(class) + 0.1 * LM(feedback tokens)      (paper Eq. 4, §4.2)

Two image encoders: "features" projects the frozen shared backbone's feature maps (the default,
so stage 2 adds no image network at serving time) and "vit" runs a transformers ViTModel on
pixels (the paper configuration). Two decoders: "native" (this file, nanoGPT-sized) and "gpt2"
(transformers GPT2Model, stage2/paper.py). The ablation switches of the paper's Table 3 are
config fields: n_enc_layers=0 (no hierarchical encoder), use_decoder=False (single tower: class
head on the pooled encoder output), lm_weight=0 at training (no NLG task), use_title=False.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from agpis.rules import CLASSES


class Attention(nn.Module):
    """Multi-head attention. Self-attention reads `x`; cross-attention gets the encoder's
    keys/values precomputed (`kv`, see split_kv). `past` is a self-attention cache (a list that
    holds [k, v] of the tokens already seen) for generating one token at a time."""

    def __init__(self, d: int, n_head: int, causal: bool):
        super().__init__()
        assert d % n_head == 0, f"d_model {d} not divisible by n_head {n_head}"
        self.n_head, self.causal = n_head, causal
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def split_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, N, d = x.shape
        k, v = self.kv(x).split(d, dim=2)
        hs = d // self.n_head
        return (k.view(B, N, self.n_head, hs).transpose(1, 2),  # (B, nh, N, hs)
                v.view(B, N, self.n_head, hs).transpose(1, 2))

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                past: list | None = None) -> torch.Tensor:
        B, T, d = x.shape
        hs = d // self.n_head
        q = self.q(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        mask = None
        if kv is None:
            k, v = self.split_kv(x)
            if past is not None:
                if past:  # new tokens after a prefill: they see every cached position
                    k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
                    if T > 1:  # ... and the new tokens before them (is_causal would align top-left)
                        mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - T)
                past[:] = [k, v]
        else:
            k, v = kv
        # no dropout inside attention: on CPU it forces SDPA's slow path; residual dropout remains
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           is_causal=bool(self.causal and T > 1 and mask is None))
        y = y.transpose(1, 2).contiguous().view(B, T, d)  # (B, T, d)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.proj(F.gelu(self.fc(x))))


class EncoderBlock(nn.Module):
    """Pre-LN transformer encoder block (bidirectional), as in ViT."""

    def __init__(self, d: int, n_head: int, dropout: float):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, n_head, causal=False)
        self.mlp = MLP(d, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class DecoderBlock(nn.Module):
    """GPT-2 block: masked self-attention, optional cross-attention to the encoder, MLP."""

    def __init__(self, d: int, n_head: int, dropout: float, cross: bool):
        super().__init__()
        self.ln_1, self.ln_3 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, n_head, causal=True)
        self.cross = cross
        if cross:
            self.ln_2 = nn.LayerNorm(d)
            self.cross_attn = Attention(d, n_head, causal=False)
        self.mlp = MLP(d, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, enc_kv: tuple[torch.Tensor, torch.Tensor] | None, past: list | None = None):
        x = x + self.drop(self.attn(self.ln_1(x), past=past))
        if self.cross:
            x = x + self.drop(self.cross_attn(self.ln_2(x), kv=enc_kv))
        return x + self.mlp(self.ln_3(x))


class NativeDecoder(nn.Module):
    """GPT-2-style decoder with cross-attention in the blocks listed in `cross_layers`."""

    def __init__(self, vocab_size: int, max_len: int, d: int, n_head: int, n_layer: int,
                 cross_layers: tuple[int, ...], dropout: float):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d)
        self.wpe = nn.Embedding(max_len, d)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(DecoderBlock(d, n_head, dropout, i in cross_layers) for i in range(n_layer))
        self.ln_f = nn.LayerNorm(d)

    def encoder_kv(self, enc: torch.Tensor) -> list:
        """Cross-attention keys/values of the encoder tokens, computed once per sequence
        (generation reuses them at every step)."""
        return [b.cross_attn.split_kv(enc) if b.cross else None for b in self.h]

    def new_cache(self) -> list:
        return [[] for _ in self.h]

    def forward(self, idx: torch.Tensor, enc: torch.Tensor | list, cache: list | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, d). With `cache` (from new_cache), `idx` continues the tokens
        already decoded into it (positions follow on)."""
        B, T = idx.shape
        start = cache[0][0].shape[2] if cache and cache[0] else 0
        assert start + T <= self.wpe.num_embeddings, \
            f"text of {start + T} tokens > max_text_len {self.wpe.num_embeddings}"
        kvs = enc if isinstance(enc, list) else self.encoder_kv(enc)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(start, start + T, device=idx.device)))  # (B, T, d)
        for i, (block, kv) in enumerate(zip(self.h, kvs)):
            x = block(x, kv, cache[i] if cache is not None else None)
        return self.ln_f(x)


class FeatureTokens(nn.Module):
    """Image tokens from a frozen CNN's feature maps: each of the h*w cells is a token, plus one
    mean-pooled token per image (the role of ViT's CLS token), projected to d. Input is
    channels-last, (B, K, h*w, C), the layout of the training cache (no transpose per step)."""

    def __init__(self, feature_dim: int, grid: int, d: int, pooled_token: bool):
        super().__init__()
        self.grid, self.pooled_token = grid, pooled_token
        self.ln = nn.LayerNorm(feature_dim)  # backbone activations are ReLU6 outputs, not normalised
        self.proj = nn.Linear(feature_dim, d)

    @property
    def tokens_per_image(self) -> int:
        return self.grid * self.grid + int(self.pooled_token)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        B, K, hw, C = feats.shape  # (B, K, h*w, C) backbone maps, channels last
        assert hw == self.grid * self.grid, f"{hw} cells per image, model expects {self.grid}x{self.grid}"
        x = feats.float()
        if self.pooled_token:
            x = torch.cat([x.mean(2, keepdim=True), x], dim=2)  # (B, K, 1+h*w, C)
        return self.proj(self.ln(x)).flatten(1, 2)  # (B, K*T, d)


class ViTTokens(nn.Module):
    """The paper's per-image encoder: ViT on each image, all 197 output tokens kept."""

    def __init__(self, vit_config: dict, d: int):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        cfg = ViTConfig(**vit_config)
        self.vit = ViTModel(cfg, add_pooling_layer=False)
        self.n_tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
        # transformers' enc_to_dec_proj: bridges different encoder/decoder widths
        self.proj = nn.Identity() if cfg.hidden_size == d else nn.Linear(cfg.hidden_size, d)

    @property
    def tokens_per_image(self) -> int:
        return self.n_tokens

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        B, K = pixels.shape[:2]  # (B, K, 3, H, W)
        out = self.vit(pixel_values=pixels.flatten(0, 1)).last_hidden_state  # (B*K, T, dv)
        return self.proj(out).view(B, K * self.n_tokens, -1)  # (B, K*T, d)


@dataclass
class MUIsCConfig:
    classes: tuple[str, ...] = CLASSES  # class names, index 0 = qualified (stored by name)
    n_images: int = 3  # K^t
    image_encoder: str = "features"  # "features" (frozen backbone maps) | "vit" (pixels)
    feature_dim: int = 1280  # channels of the backbone map (MobileNetV2 final map)
    feature_grid: int = 7  # its height = width at 224 px input
    pooled_token: bool = True  # one mean-pooled token per image besides the h*w cell tokens
    vit: dict | None = None  # transformers ViTConfig as a dict, when image_encoder == "vit"
    d_model: int = 256
    n_head: int = 4
    n_enc_layers: int = 1  # N^s: extra encoder blocks over all images' tokens (0 = not hierarchical)
    factored_pos: bool = False  # add image-index + cell embeddings to the per-token positions
    # training only: drop this share of the image cell tokens (zeroed before the positions), so
    # the model cannot lean on one style-specific local pattern (held-out styles generalise)
    token_dropout: float = 0.0
    decoder: str = "native"  # "native" (this file) | "gpt2" (transformers, stage2/paper.py)
    gpt2: dict | None = None  # transformers GPT2Config as a dict, when decoder == "gpt2"
    n_dec_layers: int = 3  # N^d
    cross_layers: tuple[int, ...] = (0, 1, 2)  # decoder blocks with cross-attention
    vocab_size: int = 2048
    max_text_len: int = 64  # title + [SEP] + feedback + [EOS], in tokens
    dropout: float = 0.1
    use_decoder: bool = True  # False: single tower, class head on the mean encoder token
    use_title: bool = True  # False: the text starts at [SEP]

    def __post_init__(self):
        self.classes = tuple(self.classes)
        self.cross_layers = tuple(self.cross_layers)
        if self.image_encoder not in ("features", "vit"):
            raise ValueError(f"image_encoder must be 'features' or 'vit', got {self.image_encoder!r}")
        if self.decoder not in ("native", "gpt2"):
            raise ValueError(f"decoder must be 'native' or 'gpt2', got {self.decoder!r}")
        if self.image_encoder == "vit" and not self.vit:
            raise ValueError("image_encoder='vit' needs `vit` (a ViTConfig dict); see stage2.paper")
        if self.decoder == "gpt2" and not self.gpt2:
            raise ValueError("decoder='gpt2' needs `gpt2` (a GPT2Config dict); see stage2.paper")
        bad = [i for i in self.cross_layers if not 0 <= i < self.n_dec_layers]
        if bad:
            raise ValueError(f"cross_layers {bad} outside the {self.n_dec_layers} decoder blocks")
        if self.use_decoder and not self.cross_layers:
            raise ValueError("the decoder needs cross-attention in at least one block to see the images")
        if self.decoder == "gpt2" and self.gpt2.get("n_embd", self.d_model) != self.d_model:
            raise ValueError(f"d_model {self.d_model} must equal the GPT-2 width {self.gpt2['n_embd']}")
        if "qualified" not in self.classes:
            raise ValueError("the class list must contain 'qualified' (p_qualified is its probability)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MUIsCOutput:
    class_logits: torch.Tensor  # (B, n_classes)
    lm_logits: torch.Tensor | None = None  # (M, vocab) next-token logits at the masked positions
    extras: dict = field(default_factory=dict)


class MUIsC(nn.Module):
    def __init__(self, config: MUIsCConfig):
        super().__init__()
        self.config = c = config
        if c.image_encoder == "features":
            self.image_tokens = FeatureTokens(c.feature_dim, c.feature_grid, c.d_model, c.pooled_token)
        else:
            self.image_tokens = ViTTokens(c.vit, c.d_model)
        n_tokens = c.n_images * self.image_tokens.tokens_per_image
        # One learned position per token of the whole sequence: tells the image apart and the cell.
        self.enc_pos = nn.Parameter(torch.zeros(1, n_tokens, c.d_model))
        if c.factored_pos:
            # which image / which cell, shared across cells / images: the same positions as the
            # full table can express, but learned from K or T times more tokens each
            self.image_pos = nn.Parameter(torch.zeros(1, c.n_images, 1, c.d_model))
            self.cell_pos = nn.Parameter(torch.zeros(1, 1, self.image_tokens.tokens_per_image, c.d_model))
        self.enc_drop = nn.Dropout(c.dropout)
        self.enc_blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_head, c.dropout) for _ in range(c.n_enc_layers))
        self.enc_ln = nn.LayerNorm(c.d_model)
        if c.use_decoder:
            if c.decoder == "native":
                self.decoder = NativeDecoder(c.vocab_size, c.max_text_len, c.d_model, c.n_head, c.n_dec_layers,
                                             c.cross_layers, c.dropout)
            else:
                from stage2.paper import GPT2Decoder

                self.decoder = GPT2Decoder(c.gpt2, c.cross_layers, c.d_model)
            self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.class_head = nn.Linear(c.d_model, len(c.classes))
        for name, m in self.named_modules():
            # transformers submodules keep their own init (or their loaded weights: stage2.paper)
            if not name.startswith(("image_tokens.vit", "decoder.gpt2")):
                self._init_weights(m)
        nn.init.normal_(self.enc_pos, std=0.02)
        if c.factored_pos:
            nn.init.normal_(self.image_pos, std=0.02)
            nn.init.normal_(self.cell_pos, std=0.02)
        if c.use_decoder:
            self.lm_head.weight = self.decoder.wte.weight  # weight tying, as GPT-2

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):  # nanoGPT's init
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """F^e: (B, K, ...) images or feature maps -> (B, N, d) sequence features."""
        assert images.shape[1] == self.config.n_images, \
            f"expected {self.config.n_images} images per sequence, got {images.shape[1]}"
        tokens = self.image_tokens(images)  # (B, N, d)
        if self.training and self.config.token_dropout > 0:
            B, K, T = tokens.shape[0], self.config.n_images, self.image_tokens.tokens_per_image
            keep = torch.rand(B, K, T, device=tokens.device) >= self.config.token_dropout
            keep[:, :, 0] = True  # the pooled (or CLS) token of each image is always kept
            tokens = tokens * keep.view(B, K * T, 1)
        pos = self.enc_pos
        if self.config.factored_pos:
            pos = pos + (self.image_pos + self.cell_pos).flatten(1, 2)  # (1, K*T, d)
        x = self.enc_drop(tokens + pos)  # (B, N, d)
        for block in self.enc_blocks:
            x = block(x)
        return self.enc_ln(x)

    def decode(self, enc, idx: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """H^d: (B, L) token ids, cross-attending to `enc` (tokens or precomputed K/V) -> (B, L, d)."""
        return self.decoder(idx, enc, cache) if cache is not None else self.decoder(idx, enc)

    def forward(self, images: torch.Tensor, idx: torch.Tensor | None = None,
                sep_pos: torch.Tensor | None = None, lm_mask: torch.Tensor | None = None) -> MUIsCOutput:
        """Class logits at [SEP]; LM logits at the positions of `lm_mask` (B, L) only (training
        needs them at the feedback positions, not over the title), flattened to (M, vocab)."""
        enc = self.encode(images)  # (B, N, d)
        if not self.config.use_decoder:
            return MUIsCOutput(self.class_head(enc.mean(1)))
        if idx is None or sep_pos is None:
            raise ValueError("MUIsC with a decoder needs the text ids and the [SEP] positions")
        hid = self.decode(enc, idx)  # (B, L, d)
        at_sep = hid[torch.arange(hid.shape[0], device=hid.device), sep_pos]  # (B, d)
        lm = self.lm_head(hid[lm_mask]) if lm_mask is not None else None  # (M, vocab)
        return MUIsCOutput(self.class_head(at_sep), lm)

    @torch.no_grad()
    def classify_and_generate(self, images: torch.Tensor, prompt: torch.Tensor, eos_id: int,
                              max_new_tokens: int, constrain=None, enc: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits at [SEP] and greedy feedback tokens. `prompt` (B, P) is `title [SEP]`
        (all rows the same length: one title per request, or bucketed by length).
        `constrain(class_logits) -> (first, every)`: boolean (B, vocab) masks (or None) of the
        tokens banned at the first step / at every step, decided from the classification
        (stage2.explain). Returns (class_logits (B, C), generated ids (B, <= max_new_tokens),
        EOS-padded)."""
        enc = self.encode(images) if enc is None else enc
        kv = self.decoder.encoder_kv(enc)  # once, reused at every step
        cache = self.decoder.new_cache()  # self-attention keys/values: one new token per step
        length = prompt.shape[1]
        hid = self.decode(kv, prompt, cache)
        class_logits = self.class_head(hid[:, -1])
        first, every = constrain(class_logits) if constrain is not None else (None, None)
        out = []
        done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
        for step in range(max_new_tokens):
            logits = self.lm_head(hid[:, -1])  # (B, vocab)
            for mask in (every, first if step == 0 else None):
                if mask is not None:
                    logits = logits.masked_fill(mask, float("-inf"))
            nxt = torch.where(done, torch.full_like(done, eos_id, dtype=torch.long), logits.argmax(-1))
            out.append(nxt)
            done |= nxt == eos_id
            if bool(done.all()) or length + 1 >= self.config.max_text_len:
                break
            hid = self.decode(kv, nxt[:, None], cache)  # (B, 1, d)
            length += 1
        gen = torch.stack(out, 1) if out else prompt.new_zeros(prompt.shape[0], 0)
        return class_logits, gen

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def muisc_loss(out: MUIsCOutput, labels: torch.Tensor, lm_labels: torch.Tensor | None,
               cls_weight: float = 1.0, lm_weight: float = 0.1,
               class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Paper Eq. 4: lambda_mcc * CE(classes) + lambda_nlg * LM loss over the feedback tokens.
    `lm_labels` (M,): the next token at each position of the forward's `lm_mask`.
    `class_weights` (C,): optional per-class CE weights (rare rules weighed up)."""
    cls = F.cross_entropy(out.class_logits.float(), labels, weight=class_weights)
    loss = cls_weight * cls
    parts = {"cls": float(cls.detach())}
    if lm_weight > 0 and out.lm_logits is not None:
        if lm_labels is None or lm_labels.shape[0] != out.lm_logits.shape[0]:
            raise ValueError("lm_weight > 0 needs one label per LM logit row (the lm_mask positions)")
        lm = F.cross_entropy(out.lm_logits.float(), lm_labels)
        loss = loss + lm_weight * lm
        parts["lm"] = float(lm.detach())
    if not math.isfinite(parts["cls"]):
        raise FloatingPointError(f"non-finite class loss {parts['cls']}")
    return loss, parts
