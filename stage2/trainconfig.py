"""What `agpis train muisc` can train and with which settings (no torch import: the CLI
builds its flags from this module on every `agpis` call)."""
from __future__ import annotations

from dataclasses import dataclass

# Table 2 baselines and Table 3 rows (paper): what each variant turns on.
VARIANTS = {
    "late_fusion": dict(arch="single_tower", fusion="late"),
    "early_fusion": dict(arch="single_tower", fusion="early"),
    "hier": dict(arch="muisc", use_decoder=False),  # single tower + hierarchical encoder
    "encdec": dict(arch="muisc", use_title=False, lm_weight=0.0),  # + decoder, McC only
    "encdec_nlg": dict(arch="muisc", use_title=False),  # + NLG task
    "muisc": dict(arch="muisc"),  # + title as input: the full model
}


@dataclass
class TrainConfig:
    data: str = "var/datasets/real"
    out: str = "var/runs/muisc"
    variant: str = "muisc"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 150
    cls_weight: float = 1.0  # lambda_mcc (paper: 1.0)
    lm_weight: float = 0.1  # lambda_nlg (paper: 0.1); variants without NLG set 0
    # Class-balanced CE: class c weighs (share of c in the training data) ** -class_balance,
    # normalised to mean 1 over the training examples; 0 = plain CE (the paper).
    class_balance: float = 0.0
    # Each epoch this share of the training sequences (drawn among the qualified ones whose title
    # names a colour) gets the colour word swapped, labelled title_mismatch (with_title_negatives).
    # Only for models that read the title. 0 = the data as it is (the paper), the default: 0.05
    # did not raise validation AUC (docs/evaluation.md, "Reading the stage 2 numbers").
    title_negatives: float = 0.0
    seed: int = 0
    # exponential moving average of the weights (0: off); at each epoch's end the averaged and the
    # raw weights are both validated and the better one is the epoch's candidate for best/
    ema: float = 0.0
    # model (features configuration)
    d_model: int = 256
    n_head: int = 4
    n_enc_layers: int = 1
    factored_pos: bool = True  # image-index + cell embeddings on top of the per-token positions
    n_dec_layers: int = 3
    cross_layers: tuple[int, ...] = (0, 1, 2)
    dropout: float = 0.1
    token_dropout: float = 0.0  # training only: share of image tokens dropped
    vocab_size: int = 2048
    max_title: int = 32
    max_feedback: int = 24
    # paper configuration: transformers ViT + GPT-2 from local directories / hub ids
    paper: bool = False
    vit: str = ""
    gpt2: str = ""
    # data and run
    backbone: str = ""  # stage1 backbone directory; "" = the shipped default
    cache_dir: str = "var/cache/stage2"
    limit: int = 0  # use only the first N training examples (tests, quick runs)
    val_limit: int = 0
    max_steps: int = 0  # train for at most this many optimiser steps in all (shortens the schedule)
    stop_at: int = 0  # stop after this step as if interrupted (last.pt kept; --resume continues)
    checkpoint_every: int = 200
    resume: bool = False
    amp: str = "auto"  # auto: bf16/fp16 on GPU, off on CPU | off | bf16 | fp16
    workers: int = 0
    threads: int = 0  # torch threads per process; 0 = leave as is
    progress: bool = True
    version: str = ""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        self.cross_layers = tuple(int(i) for i in self.cross_layers)
        if self.paper and self.variant != "muisc":
            raise ValueError("--paper trains the full MUIsC only (variant muisc)")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ValueError(f"amp must be auto, off, bf16 or fp16, got {self.amp!r}")

    @property
    def spec(self) -> dict:
        return VARIANTS[self.variant]

    @property
    def effective_lm_weight(self) -> float:
        return self.spec.get("lm_weight", self.lm_weight)
