"""The dataset card written beside every built dataset (CARD.md): where the data came from,
under which licences, how it was made, and what is in it."""
from __future__ import annotations

SOURCE_TEXT = {
    "grocery": "GroceryStoreDataset (Klasson et al., WACV 2019), MIT licence: 81 products, catalogue "
               "shots on white (cut out and recomposed) and in-store smartphone photos (used as lifestyle views).",
    "abo": "Amazon Berkeley Objects samples, CC BY 4.0 — credit Amazon.com (images) and M. Guillaumin, "
           "T. Dideriksen, K. Deng, H. Arora, A. Dhua, X. Zhang, T. Yago-Vicente (Amazon.com), J. Collins, "
           "S. Goel, J. Malik (UC Berkeley) (dataset).",
    "jd": "JD.com candidate images from the AGPIS authors' repository (efan3000/muisc), MIT licence.",
    "procedural": "Products drawn by agpis.data.synth (no external images).",
    "magento": "Magento Luma sample catalogue (magento/magento2-sample-data), Open Software License 3.0: "
               "real studio photos of apparel on models and gear, with main, back and close-up views and the "
               "store's colour variants, names and categories (agpis/data/catalogue.py). Records are real "
               "listings (one colour of one style); violations use the catalogue's own photos (other "
               "colours, back views, close-ups) or are rendered on them.",
}


def _table(counts: dict[str, dict[str, int]]) -> str:
    labels = sorted({k for c in counts.values() for k in c}, key=lambda x: (x != "qualified", x))
    splits = [s for s in ("train", "val", "test") if s in counts]
    rows = ["| label | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for lab in labels:
        rows.append(f"| {lab} | " + " | ".join(str(counts[s].get(lab, 0)) for s in splits) + " |")
    rows.append("| **total** | " + " | ".join(str(sum(counts[s].values())) for s in splits) + " |")
    return "\n".join(rows)


def dataset_card(summary: dict, sources) -> str:
    cfg = summary["config"]
    used = [s.name for s in sources]
    lines = [
        f"# Dataset card: {cfg['out']}",
        "",
        f"Format: AGPIS-data ({summary['version']}), JSONL, one record per target sequence; see docs/data.md.",
        "Source: **synthetic** — rule violations applied programmatically to product photos; every "
        "record's label, feedback and per-candidate truth come from the builder, not from human reviewers.",
        "",
        "## Where the pixels came from",
        *[f"- {SOURCE_TEXT.get(n, n)}" for n in used],
        "",
        "Images derived from ../shared must not be committed to the project or redistributed without "
        "the licences above.",
        "",
        "## How it was made",
        f"- `agpis data {'synth' if used == ['procedural'] else 'build'}`, seed {cfg['seed']}, "
        f"{summary['listings']} listings x up to {cfg['records_per_product']} sequences, candidates "
        f"{cfg['size']} px JPEG q{cfg['quality']}.",
        f"- Label mix (by rule category): {', '.join(f'{k} {v:.3f}' for k, v in cfg['mix'].items())}.",
        f"- Splits by product group (the real product a listing was made from), 80/10/10 stratified by "
        f"category; groups per split: {summary['groups_by_split']}.",
        f"- Styles: training products use training fonts/palettes/marks/positions/backdrops; "
        f"{cfg['heldout_fraction']:.0%} of val/test products use the held-out pool (`style_split`).",
        f"- Built in {summary['seconds']} s: {summary['images']} images ({summary['images_per_s']}/s), "
        f"{summary['megabytes']} MB.",
        "",
        "## Records by split and label",
        _table(summary["labels_by_split"]),
        "",
        "## Known limits",
        "- Violations are rendered, not photographed: a model may learn the renderer's habits. The held-out "
        "styles measure some of that; real reviewed data (`source: review`) is the remedy.",
        "- Few real source products (81 grocery products, 3 ABO listings, 1 JD product): many listings share "
        "a product's photos, so group-level splits matter more than record counts.",
        "- Grocery catalogue shots are 198 px and upscaled; close-ups from them are soft.",
        "- The Magento catalogue has 99 usable styles (59 colours with three or more real views); its splits "
        "are by style, 60/20/20 (catalogue.split_styles). 20 colours whose extra photos show another colour "
        "are kept to their main photo (catalogue.MAGENTO_MIXED_COLOURS).",
        "",
    ]
    return "\n".join(lines)
