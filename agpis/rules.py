"""The rule catalogue: the one source of truth for reason codes.

The proto's reason codes, the models' class lists, the feedback sentences, the review UI and
docs/rules.md all read this module. A rule id, once shipped, never changes meaning: model
checkpoints store their class list by name and are mapped onto CLASSES when loaded.

Categories follow the paper (§1): single-image rules, primary-image rules, image-pair rules and
multi-image (sequence) rules. Marketplace sources are in ../shared/docs/RULES.md.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

CATEGORIES = ("single", "primary", "pair", "multi")


@dataclass(frozen=True)
class Rule:
    id: str
    category: str  # one of CATEGORIES, or "none" for qualified / other
    title: str
    description: str
    reflects: tuple[str, ...]  # the marketplace rules it reflects (RULES.md)
    # Feedback templates. Placeholders: {image} ("image 2"), {images} ("images 2 and 3"),
    # {region} ("across the top"), {detail} (free text, e.g. a colour word).
    feedback: tuple[str, ...]
    # Templates for a known kind of the violation (a price tag rather than a banner), used when
    # the caller says which kind it saw; `feedback` otherwise.
    kinds: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The templates given as `feedback`, before __post_init__ appends the kinds' templates.
    generic: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self):
        # `feedback` ends up listing every template (generic first), so whoever matches
        # sentences against the catalogue (stage2.metrics) knows the kind-specific ones too.
        extra = tuple(t for _, ts in self.kinds for t in ts if t not in self.feedback)
        object.__setattr__(self, "generic", self.feedback)
        object.__setattr__(self, "feedback", self.feedback + extra)

    def templates(self, kind: str | None = None) -> tuple[str, ...]:
        """The templates for a known kind of violation, else the generic ones."""
        return dict(self.kinds).get(kind, self.generic) if kind else self.generic


RULES: tuple[Rule, ...] = (
    # --- single-image rules -------------------------------------------------------------
    Rule("text_overlay", "single", "Added text",
         "Promotional text added over the photo: banners, price tags, stickers, slogans.",
         ("Amazon: no text", "eBay: no added text or marketing", "JD: no price or unrelated text",
          "Pinduoduo: no added text", "Newegg: no extra text"),
         ("{image} shows added text {region}",
          "{image} has promotional text {region}"),
         kinds=(("banner", ("{image} has a promotional text banner {region}",
                            "{image} carries a sales banner {region}")),
                ("sticker", ("{image} has a promotional sticker {region}",
                             "{image} has a discount badge {region}")),
                ("price_tag", ("{image} shows a price tag {region}",
                               "{image} has a price added {region}")),
                ("caption", ("{image} has a slogan written over the photo {region}",
                             "{image} has added text {region}")))),
    Rule("watermark", "single", "Watermark",
         "A semi-transparent mark, text or logo, laid over the photo.",
         ("Amazon: no watermarks", "eBay: no watermarks", "Newegg: no watermarks"),
         ("{image} has a watermark {region}",
          "{image} is covered by a semi-transparent watermark {region}"),
         kinds=(("watermark_tiled", ("{image} is covered by a tiled watermark",
                                     "{image} has a repeated watermark over the whole photo")),
                ("watermark_centre", ("{image} has a large watermark {region}",
                                      "{image} has a semi-transparent mark {region}")),
                ("watermark_corner", ("{image} has a watermark {region}",
                                      "{image} carries a shop's watermark {region}")))),
    Rule("logo", "single", "Inset logo",
         "A brand or shop logo added to the image (not printed on the product itself).",
         ("Amazon: no logos", "JD: no other sites' logos", "Newegg: no logos"),
         ("{image} has a logo added {region}",
          "{image} shows a shop logo {region}")),
    Rule("border", "single", "Border or frame",
         "A coloured border or decorative frame around the photo.",
         ("eBay: no added borders", "Amazon: no borders (3rd-party)", "Newegg: no borders"),
         ("{image} has a coloured border",
          "{image} is framed by an added border")),
    Rule("collage_or_inset", "single", "Collage or inset",
         "Several photos combined into one image, or a small inset picture.",
         ("Amazon: no inset images", "Newegg: no collages"),
         ("{image} is a collage of several photos",
          "{image} has an inset picture {region}"),
         kinds=(("collage", ("{image} is a collage of several photos",
                             "{image} combines several photos in one image")),
                ("inset", ("{image} has an inset picture {region}",
                           "{image} has a small extra photo {region}")))),
    Rule("low_resolution", "single", "Low resolution",
         "The image is too small, or was upscaled from a small image.",
         ("Amazon: >= 500 px longest side", "eBay: >= 500 px", "JD: >= 800x800",
          "Pinduoduo: >= 480 px"),
         ("{image} is too low in resolution",
          "{image} looks upscaled from a small picture"),
         kinds=(("small", ("{image} is too small: {detail}",
                           "{image} is too low in resolution")),
                ("upscaled", ("{image} looks upscaled from a small picture",
                              "{image} is pixelated")))),
    Rule("blurry", "single", "Blurry",
         "Motion blur or defocus makes the product unsharp.",
         ("eBay: JPEG quality and sharpness", "CleanVision: blurry"),
         ("{image} is blurry",
          "{image} is out of focus"),
         kinds=(("defocus", ("{image} is out of focus", "{image} is blurry")),
                ("motion", ("{image} has motion blur", "{image} is blurred by camera shake")))),
    Rule("bad_exposure", "single", "Bad exposure",
         "The photo is far too dark or too bright.",
         ("CleanVision: dark / light", "JD: no large shadows or reflections"),
         ("{image} is badly exposed",),
         kinds=(("dark", ("{image} is too dark", "{image} is underexposed")),
                ("bright", ("{image} is overexposed", "{image} is washed out and too bright")))),
    # --- primary-image rules ------------------------------------------------------------
    Rule("primary_background_not_white", "primary", "Primary background not white",
         "The first image must show the product on a pure white background.",
         ("Amazon: pure white RGB 255", "Walmart: seamless white", "JD: first image white (3rd-party)",
          "Pinduoduo: white except apparel (3rd-party)"),
         ("the primary image has a {detail} background instead of white",
          "the primary image is not on a white background ({detail})"),
         kinds=(("photo", ("the primary image is a lifestyle photo, not the product on white",
                           "the primary image shows the product {detail}, not on white")),)),
    Rule("primary_product_too_small", "primary", "Product too small in the primary",
         "The product must fill most of the primary image's frame (about 85%).",
         ("Amazon: >= 85% of frame", "JD: fill canvas", "AJIO: 80-85% fill"),
         ("the product is too small in the primary image",
          "the primary image leaves too much empty space around the product")),
    Rule("primary_not_whole_product", "primary", "Primary does not show the whole product",
         "The primary image must show the whole product, not a cut-off part or a close-up.",
         ("AGPIS paper: the primary image shows the whole product", "JD: a front view"),
         ("the primary image cuts off the product {region}",
          "the primary image does not show the whole product"),
         kinds=(("cut_off", ("the primary image cuts off the product {region}",
                             "the product is cut off {region} in the primary image")),
                ("close_up", ("the primary image is a close-up detail, not the whole product",
                              "the primary image shows only part of the product")),
                ("back", ("the primary image shows the back of the product, not its front",
                          "the primary image is a back view; the front should come first")))),
    # --- image-pair rules ---------------------------------------------------------------
    Rule("duplicated_view", "pair", "Duplicated view",
         "Two images show the same view or duplicated content.",
         ("AGPIS paper: no two images from similar viewing angles", "AJIO: no duplicate images"),
         ("{images} show the same view",
          "{images} are near-duplicates")),
    Rule("inconsistent_product", "pair", "Inconsistent product",
         "The images show different products, colours or variants.",
         ("AGPIS paper: the same product (colour, variant) in every image",),
         ("{images} show different variants of the product",
          "{images} do not show the same product"),
         kinds=(("variant", ("{images} show the product in different colours ({detail})",
                             "{images} show different variants of the product")),
                ("other_product", ("{images} do not show the same product",
                                   "{image} shows a different product")))),
    # --- multi-image (sequence) rules ---------------------------------------------------
    Rule("title_mismatch", "multi", "Title mismatch",
         "The images do not show what the title says (colour, category).",
         ("AGPIS paper: consistency with the title",),
         ("the title says {detail}, but the images show something else",
          "the title names {detail}, which the images do not show")),
    Rule("improper_order", "multi", "Improper order",
         "The display order is wrong: the main view is there but not first.",
         ("AGPIS paper: a proper display order",),
         ("the images are in the wrong order: {image} should come later",
          "the sequence should start with the main view, not {image}")),
    Rule("insufficient_views", "multi", "Too few distinct views",
         "The sequence repeats one aspect of the product (e.g. two close-ups, two shop photos) "
         "instead of showing different views.",
         ("Walmart: at least 4 images", "JD: 5 images including a front view"),
         ("the sequence shows too few distinct views of the product",
          "{images} show the same aspect of the product ({detail})")),
)

# The colour words a title may name (title_mismatch): the data generator swaps them to make
# mismatched titles and stage 2's training does the same to make extra mismatched-title examples.
# Plain shopper words ("teal pear" would read as a test pattern).
COLOUR_WORDS = ("red", "green", "yellow", "orange", "blue", "purple", "black", "white", "pink", "brown", "grey")

QUALIFIED = "qualified"
OTHER = "other"

# Class list of every sequence/image classifier: index 0 is always `qualified` (the paper's
# g_1, whose probability is p_qualified), the rules in catalogue order, then `other`.
CLASSES: tuple[str, ...] = (QUALIFIED, *(r.id for r in RULES), OTHER)

# Why stage 1 can stop before a sequence exists (paper §3.3).
TERMINATION_REASONS = {
    "no_primary": "no candidate is good enough to be the primary image",
    "too_few_images": "fewer compliant, distinct images remain than the sequence needs",
}

BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


def get(rule_id: str) -> Rule:
    """The rule with this id; an unknown id fails with the list of valid ones."""
    try:
        return BY_ID[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule {rule_id!r}; known rules: {', '.join(BY_ID)}") from None


def is_known(code: str) -> bool:
    """True for a rule id, `qualified` or `other` (every valid class label)."""
    return code in CLASSES


def rules_in(category: str) -> tuple[Rule, ...]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    return tuple(r for r in RULES if r.category == category)


def category_of(code: str) -> str:
    """Category of a class label: a rule's category, or 'none' for qualified/other."""
    return BY_ID[code].category if code in BY_ID else "none"


def image_name(index: int) -> str:
    """1-based, as a reviewer counts: image_name(0) == 'image 1'."""
    return f"image {index + 1}"


def images_name(indices: list[int]) -> str:
    names = [str(i + 1) for i in sorted(indices)]
    return "images " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0])


def region_name(box: tuple[float, float, float, float], width: int, height: int) -> str:
    """Where a box (x0, y0, x1, y1) lies in the image, in a reviewer's words."""
    x0, y0, x1, y1 = box
    w, h = (x1 - x0) / width, (y1 - y0) / height
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    if w > 0.6 and h < 0.45:  # a wide strip: banner-like
        return "across the top" if cy < 0.4 else "across the bottom" if cy > 0.6 else "across the middle"
    if h > 0.6 and w < 0.45:
        return "down the left side" if cx < 0.4 else "down the right side" if cx > 0.6 else "down the middle"
    if w > 0.6 and h > 0.6:
        return "over the whole image"
    vert = "top" if cy < 0.35 else "bottom" if cy > 0.65 else ""
    horiz = "left" if cx < 0.35 else "right" if cx > 0.65 else ""
    if vert and horiz:
        return f"in the {vert}-{horiz} corner"
    if vert or horiz:
        return f"at the {vert or horiz}"
    return "in the centre"


def feedback(rule_id: str, *, image: int | None = None, images: list[int] | None = None,
             region: str = "", detail: str = "", variant: int | None = None,
             rng: random.Random | None = None, kind: str | None = None) -> str:
    """A reviewer-style sentence for a rule, naming the image(s) and region when known.

    `kind` narrows the templates to that kind of violation (Rule.kinds), when the caller knows
    it; `variant` picks a template deterministically; otherwise `rng` (or the first template).
    """
    if rule_id == QUALIFIED:
        return "yes"  # the paper's constant feedback for qualified sequences (§3.4.3)
    if rule_id == OTHER:
        return "the sequence breaks a rule not in the catalogue"
    templates = get(rule_id).templates(kind)
    if variant is not None:
        template = templates[variant % len(templates)]
    elif rng is not None:
        template = rng.choice(templates)
    else:
        template = templates[0]
    text = template.format(
        image=image_name(image) if image is not None else "an image",
        images=images_name(images) if images else "two images",
        region=region or "",
        detail=detail or "what the title describes",
    )
    return " ".join(text.split())  # templates with an empty region leave double spaces
