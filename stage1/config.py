"""Stage 1 settings: thresholds of the models and the explainable checks.

Every field is overridable through agpis' one configuration (file, AGPIS_STAGE1__<FIELD>, or
`--set stage1.<field>=...`).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stage1Config:
    # The argmax of p_primary must exceed this, or stage 1 stops with `no_primary` (paper §3.3.1).
    # The learned heads are calibrated so that 0.5 is the operating point chosen on validation.
    primary_threshold: float = 0.5
    # Images with p_noncompliant above this are removed (paper §3.3.1).
    noncompliant_threshold: float = 0.5
    # A pair of images whose patch-match score reaches this is a duplicate (paper §3.3.2). Chosen
    # on the val listings (F1-best for pairs within a listing). Re-checked on all 513 val listings
    # with the current matcher: precision 0.80, recall 0.60, F1 0.686; 0.74 gives 0.690 (P 0.77,
    # R 0.62), a flat optimum, so 0.75 stays. The pair set's precision-0.95 threshold (~0.6, `agpis eval stage1 --duplicates`) gave only 0.40
    # precision inside listings, which hold far more non-duplicate pairs (two shop photos of one
    # shelf above all). Stage 2 sees duplicated views too, so stage 1 errs towards keeping.
    duplicate_threshold: float = 0.75
    # How many candidate sequences stage 1 proposes for stage 2 to rank.
    max_sequences: int = 4
    # Runner-up primaries (above primary_threshold, not removed) that also lead proposed
    # sequences (max_sequences // 2 each): two main photos in one listing (another colour's
    # photo among the candidates) look alike to a per-image model; stage 2 reads the title
    # and the other images and ranks them.
    alternative_primaries: int = 1
    # The seller's first image is the main view they chose: it stays the primary (when it
    # passes primary_threshold) unless another image's p_primary is higher by more than this.
    # On real catalogue listings the per-image model often scores a back view within a few
    # hundredths of the front (a model seen from behind looks alike at 224 px); the generated
    # data shuffles candidates, so the models never learned the upload order themselves.
    first_image_margin: float = 0.15

    # --- explainable checks (stage1/checks.py); a check's score is 0.5 at its threshold -------
    min_long_side: int = 500  # px, longest side of the uploaded image (Amazon/eBay minimum)
    max_aspect: float = 2.0  # long/short side; the primary only
    min_white_border: float = 0.85  # white share of the background on the frame's two freest sides (or the whole band); the primary only
    min_fill: float = 0.45  # longest side of the product / frame side; the primary only
    min_highlight: float = 0.6  # 99th luminance percentile below this: too dark
    max_shadow: float = 0.58  # 2nd luminance percentile above this: washed out
    min_log_sharpness: float = 1.15  # log10 Laplacian variance over the product: blurry below
    # Checks whose own verdict (score >= 0.5) removes an image (single-image checks) or keeps
    # it from being the primary (primary checks), beside the learned models. The others only
    # explain. Names: resolution, exposure, blur, background_marks (text found by the PP-OCR
    # detector on a mark standing apart from the product), white_background, product_fill,
    # aspect_ratio.
    decisive_checks: list[str] = field(default_factory=lambda: [
        "resolution", "background_marks", "white_background", "aspect_ratio"])

    # --- text regions (PP-OCR detector): costly, so only where the model suspects text -------
    text_check_min_p: float = 0.2  # max(p text_overlay, watermark, logo) needed to run it
    text_check_max_images: int = 2  # per request, the most suspected first
    text_det_side: int = 320  # px, longest side the detector sees

    # --- duplicates ---------------------------------------------------------------------------
    proposal_side: int = 128  # px, longest side EdgeBoxes runs on
    max_proposals: int = 24  # EdgeBoxes boxes per image (plus the whole image and fixed windows)

    # ONNX Runtime threads of the backbone in one request; EdgeBoxes and the checks run beside
    # it on a second thread, so 1 keeps a request on the 2 cores without oversubscribing them.
    threads: int = 1
