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
    # A pair of images whose patch-match score reaches this is a duplicate (paper §3.3.2). The
    # score is the lower of feature and colour agreement under the best zoom/crop/mirror
    # transform (stage1/duplicates.py). Chosen on the Magento train+val styles only
    # (`python -m stage1.dupeval --real --splits train,val`). Train (1540 copies, 497 pairs of
    # different photos): 0.75 finds 99.7% of copies and flags 32 different pairs (22 front/back),
    # 0.85 99.5% and 18 (13), 0.9 98.8% and 10 (6 front/back); val at 0.9: 99.1% (525 of 530),
    # 3 of 182 flagged. Front and back of a garment must not be merged, so 0.9. (The previous
    # matcher at 0.75 found 39 of 106 val zoom crops and flagged 48 of 63 val pairs of two
    # colours' main photos.) Since the structure check (duplicates.structure_difference), train at
    # 0.9: 98.3% (1514 of 1540), 2 different pairs flagged (0 of 54 front/back; their highest
    # score 0.67), so the threshold could come down; it has not been re-chosen. With the float32
    # trunk (2026.12-1): train 98.6% (1518 of 1540), 2 flagged (0 of 54 front/back, highest
    # 0.67); val 525 of 530, 2 of 182 flagged.
    duplicate_threshold: float = 0.9
    # How many candidate sequences stage 1 proposes for stage 2 to rank.
    max_sequences: int = 4
    # Runner-up primaries (above primary_threshold, not removed) that also lead proposed
    # sequences (max_sequences // 2 each), for stage 2 to rank: meant for two look-alike main
    # photos (another colour's photo among the candidates). Off by default: on the real val
    # listings (`agpis eval listings`) stage 2 then often preferred a back view first
    # (primary = main view fell from 11/11 to 10/11 on val, 7/12 on test, with no fewer other
    # colours reaching the queue).
    alternative_primaries: int = 0
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
    # A picture pasted inside the photo (stage1.checks.find_inset): a rectangle of straight,
    # axis-aligned edges, 20-55% of the side, off the centre and near the border, with no
    # lines inside and sides that stop at its corners, counts when
    # its four sides are this much there on average (0.75: three whole sides, a frame with a
    # drop shadow). `python -m stage1.inset_eval`, images decoded as the pipeline does: at
    # 0.75-0.9, 0 of 3,256 real clean photos fire (Magento, grocery pack shots and shelves, ABO,
    # JD; 1 shelf photo at 0.7); at 0.75, 95 of 150 generated insets on train+val photos (87 at
    # 0.9), 95 of 150 on test photos.
    inset_min_closed: float = 0.75
    # --- colour (stage1/colour.py): the product's colour named against the title's colour word -
    # An image whose product shows the title's colour less than this (share of that colour plus
    # its neighbours' graded credit, over the main colour's share; ColourConfig) does not show
    # what the title says. Chosen on the Magento train+val styles' main photos (`python -m
    # stage1.colour_eval`): at 0.25, 13 of 278 own-colour main photos fall below (mostly photos
    # whose shop colour name is not what they show) and 442 of 512 titles naming another colour
    # of the style do; at 0.2, 13 and 427; at 0.3, 13 and 456, but 10 of 101 clean views below
    # against 8. (With the flat quarter for neighbours before 2026-11-30: 13 and 413 at 0.25.)
    title_colour_min: float = 0.25
    # Without a colour word in the title: an image sharing less than this of the primary's
    # colours (histogram intersection of the named colours) shows another variant. Train+val: 0
    # of 101 judged same-colour views fall below, 348 of 512 pairs with another colour's main
    # photo do (0.4: 3 and 414).
    colour_overlap_min: float = 0.3

    # Checks whose own verdict (score >= 0.5) removes an image (single-image checks) or keeps
    # it from being the primary (primary checks), beside the learned models. The others only
    # explain. Names: resolution, exposure, blur, background_marks (text found by the PP-OCR
    # detector on a mark standing apart from the product), inset (a framed picture pasted into
    # the photo: collage_or_inset), white_background, product_fill,
    # aspect_ratio, title_colour (no image shows the title's colour: the listing is rejected as
    # title_mismatch, whatever stage 2 says) and product_colour (an image in another colour than
    # the title's, or than the primary's, is removed as inconsistent_product).
    decisive_checks: list[str] = field(default_factory=lambda: [
        "resolution", "background_marks", "inset", "white_background", "aspect_ratio", "title_colour",
        "product_colour"])

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
    # A second thread per request for EdgeBoxes, the checks, the colours and the pair matching
    # (the service: one request's latency on 2 cores). Off where other processes already fill
    # the cores (`agpis batch`'s actors with batch.threads_per_actor 1): there it only added
    # switching, 9.6/9.0 -> 10.1/9.3 products/s without it (docs/benchmarks.md).
    side_thread: bool = True
    # Images per ONNX Runtime call of the backbone. On CPU the cost per image grows with the call's
    # size (`agpis bench stage1 --backbone-batch`, CPU ms per image, 1 thread: 5.4 at 1 image, 5.3
    # at 2, 7.2 at 7, 7.5 at 56; 2 threads: 6.6 at 2, 7.1 at 7, 8.2 at 56): a batch block's 56
    # images in one call cost ~15 ms more a product than 2 at a time. The maps do not depend on
    # the call's size (tests/stage1/test_backbone.py). 0: all of a call's images at once (a GPU).
    backbone_batch: int = 2
