"""Calibration of p_qualified on real listings, so that the review threshold means what it says.

MUIsC's softmax is fitted to the training mix; on real listings its p_qualified is over- or
under-confident. Platt scaling of the qualified log-odds, p' = sigmoid(a * logit(p) + b), fitted
on the real catalogue's validation records (held-out styles), maps it to the share of sequences
that are qualified at that score. Two numbers travel with the weights (config.json
`calibration`); the scorer applies them to every score. The other classes keep their relative
odds and share the rest (1 - p').

    agpis calibrate muisc                     # fit on var/datasets/real val (catalogue records),
                                              # report test ECE, write docs/evaluation.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply(p: np.ndarray | float, cal: dict | None) -> np.ndarray:
    """Calibrated p_qualified (identity without a calibration)."""
    if not cal:
        return np.asarray(p, np.float64)
    return 1.0 / (1.0 + np.exp(-(cal["a"] * logit(p) + cal["b"])))


def apply_to_probs(probs: np.ndarray, q: int, cal: dict | None) -> np.ndarray:
    """(N, C) class probabilities with column q calibrated and the others rescaled to the rest."""
    if not cal:
        return probs
    out = np.asarray(probs, np.float64).copy()
    new = apply(out[:, q], cal)
    rest = np.clip(1.0 - out[:, q], EPS, None)
    out *= ((1.0 - new) / rest)[:, None]
    out[:, q] = new
    return out.astype(np.float32)


def fit_platt(p: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 100) -> dict:
    """a, b minimising the log loss of sigmoid(a * logit(p) + b) against y: Newton's method from
    the constant model (a = 0), halving a step that does not lower the loss; a tiny ridge keeps
    it finite when the classes separate."""
    z, y = logit(p), np.asarray(y, np.float64)
    x = np.stack([z, np.ones_like(z)], 1)

    def loss(w):
        t = x @ w
        return float(np.sum(np.logaddexp(0, t) - y * t) + 0.5 * l2 * w @ w)

    w = np.array([0.0, float(logit(np.clip(y.mean(), 0.01, 0.99)))])
    for _ in range(iters):
        s = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (s - y) + l2 * w
        hess = (x * (s * (1 - s))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        t, before = 1.0, loss(w)
        while loss(w - t * step) > before and t > 1e-4:
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() < 1e-8:
            break
    return {"a": float(w[0]), "b": float(w[1])}


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error (equal-width bins, weighted by count) and the bin table."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    rows, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if not m.any():
            continue
        conf, acc = float(p[m].mean()), float(y[m].mean())
        ece += m.sum() / len(p) * abs(conf - acc)
        rows.append({"lo": float(lo), "hi": float(hi), "n": int(m.sum()), "mean_p": conf, "qualified": acc})
    return float(ece), rows


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 10) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for name, (p, y) in curves.items():
        ece, rows = reliability(p, y, bins)
        ax.plot([r["mean_p"] for r in rows], [r["qualified"] for r in rows], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.axvline(0.3, color="red", lw=0.8, ls=":")
    ax.set_xlabel("p_qualified")
    ax.set_ylabel("share qualified")
    ax.set_title("Reliability, real catalogue test records")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def real_records(records, source: str = "magento") -> list[int]:
    """Indices of the records made from a real catalogue listing."""
    return [i for i, r in enumerate(records) if (r.group or "").startswith(source + "-")]


def run(args) -> int:
    from agpis import rules
    from agpis.docsections import write_section
    from stage2 import checkpoint
    from stage2.data import examples_from_records
    from stage2.evaluate import predict
    from stage2.report import source_for

    from agpis.data.format import load_dataset

    directory = Path(args.model)
    model, tok, meta = checkpoint.load(directory)
    data = Path(args.data)
    scored = {}
    for split in ("val", "test"):
        records = load_dataset(data, split)
        idx = real_records(records)
        if not idx:
            raise SystemExit(f"{data}/{split}.jsonl has no real catalogue records (group magento-*): "
                             "build it with `agpis data build` with ../shared beside the checkout")
        ex = examples_from_records([records[i] for i in idx])
        source = source_for(meta, ex, args.cache_dir)
        pred = predict(model, ex, source, tok, int(meta["text"]["max_title"]))
        scored[split] = (pred["p_qualified"], np.array([e.label == rules.QUALIFIED for e in ex], np.float64))
    # Generated and real apart (the gate): AUC on the test split's generated held-out-style
    # records (the number the project reported before real listings) and on its real ones.
    from stage2.metrics import roc_auc

    records = load_dataset(data, "test")
    real = set(real_records(records))
    gen = [r for i, r in enumerate(records) if i not in real and r.style_split == "heldout"]
    ex = examples_from_records(gen)
    p_gen = predict(model, ex, source_for(meta, ex, args.cache_dir), tok, int(meta["text"]["max_title"]))["p_qualified"]
    y_gen = np.array([e.label == rules.QUALIFIED for e in ex], np.float64)
    aucs = {"generated_heldout": (roc_auc(y_gen, p_gen), len(y_gen)),
            "real_catalogue": (roc_auc(scored["test"][1], scored["test"][0]), len(scored["test"][1]))}
    print(f"test AUC: generated held-out-style records {aucs['generated_heldout'][0]:.3f} "
          f"({aucs['generated_heldout'][1]}), real catalogue records {aucs['real_catalogue'][0]:.3f} "
          f"({aucs['real_catalogue'][1]})")
    if args.novelty:
        _fit_novelty(args, directory, meta)
    cal = fit_platt(*scored["val"])
    p_test, y_test = scored["test"]
    before, _ = reliability(p_test, y_test)
    after, rows = reliability(apply(p_test, cal), y_test)
    val_before, _ = reliability(*scored["val"])
    val_after, _ = reliability(apply(scored["val"][0], cal), scored["val"][1])
    cal.update({"fitted_on": f"{data.name} val, real catalogue records ({len(scored['val'][0])})",
                "ece_test_before": round(before, 4), "ece_test_after": round(after, 4)})
    print(f"Platt a={cal['a']:.3f} b={cal['b']:.3f}; ECE val {val_before:.3f} -> {val_after:.3f}, "
          f"test {before:.3f} -> {after:.3f} ({len(p_test)} test records, {int(y_test.sum())} qualified)")
    if args.install:
        cfg_path = directory / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["calibration"] = cal
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        from stage2.card import GOLDEN, golden_scores, write_card

        # the shipped scores change with the calibration: the golden file and the card follow
        (directory / GOLDEN).write_text(json.dumps(golden_scores(directory), indent=2) + "\n")
        write_card(directory)
        print(f"wrote the calibration into {cfg_path}; golden scores and model card rewritten")
    if args.docs:
        png = plot({"raw": (p_test, y_test), "calibrated": (apply(p_test, cal), y_test)},
                   Path(args.plots) / "reliability.png")
        thr = 0.3
        p_cal = apply(p_test, cal)
        sent = p_cal > thr
        md = [f"Command: `agpis calibrate muisc --data {args.data}` (model {meta['version']}). Real photos: the "
              f"held-out Magento styles' records (val: {len(scored['val'][0])} sequences to fit, test: "
              f"{len(p_test)} to measure, {int(y_test.sum())} of them qualified). Platt scaling of the "
              f"qualified log-odds: a = {cal['a']:.3f}, b = {cal['b']:.3f}.", "",
              "| | ECE val | ECE test |", "|---|---|---|",
              f"| raw softmax | {val_before:.3f} | {before:.3f} |",
              f"| calibrated | {val_after:.3f} | {after:.3f} |", "",
              f"At the review threshold {thr}: {int(sent.sum())} of {len(p_test)} test sequences sent, "
              f"{int(y_test[sent].sum())} of them qualified "
              f"({(y_test[sent].mean() if sent.any() else 0):.0%}).", "",
              f"Test ROC AUC (ranking, unchanged by calibration): generated held-out-style records "
              f"{aucs['generated_heldout'][0]:.3f} ({aucs['generated_heldout'][1]} sequences; the generator's "
              f"data), real catalogue records {aucs['real_catalogue'][0]:.3f} ({aucs['real_catalogue'][1]}).", "",
              "| p_qualified (calibrated) | sequences | mean p | share qualified |", "|---|---|---|---|"]
        md += [f"| {r['lo']:.1f}-{r['hi']:.1f} | {r['n']} | {r['mean_p']:.2f} | {r['qualified']:.2f} |" for r in rows]
        md += ["", f"![reliability]({Path(png).relative_to(Path(args.out).parent) if Path(args.out).parent in Path(png).parents else png})"]
        write_section(args.out, "stage2-calibration", "## Stage 2: calibration on real listings\n\n" + "\n".join(md))
    return 0


def _fit_novelty(args, directory: Path, meta: dict) -> None:
    """The uncertain band's index (stage2.novelty) from the training split's images, its threshold
    from the validation split's sequences (every source: what the model was trained on)."""
    from stage2.data import load_examples
    from stage2.novelty import NoveltyIndex, pooled
    from stage2.report import source_for

    _, train = load_examples(args.data, "train")
    _, val = load_examples(args.data, "val")
    source = source_for(meta, train + val, args.cache_dir)
    keys = sorted({k for e in train for k in e.images})
    train_x = np.concatenate([pooled(source(keys[i:i + 512])) for i in range(0, len(keys), 512)])
    val_seqs = [pooled(source(e.images)) for e in val]
    index = NoveltyIndex.fit(train_x, val_seqs, percentile=args.novelty_percentile)
    if args.install:
        from stage2 import checkpoint

        index.save(directory)
        checkpoint.add_file(directory, "novelty.npz")  # listed with its sha256, verified on load
    print(f"novelty index: {len(index.refs)} of {len(train_x)} training images, threshold {index.threshold:.4f} "
          f"(the {args.novelty_percentile}th percentile of {len(val_seqs)} val sequences)")


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="calibrate a model on real validation listings")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    m = what.add_parser("muisc", help="Platt-scale MUIsC's p_qualified on the real catalogue's val records")
    m.add_argument("--model", default="weights/default/stage2", help="stage 2 directory (default weights/default/stage2)")
    m.add_argument("--data", default="var/datasets/real", help="AGPIS-data with real catalogue records")
    m.add_argument("--cache-dir", default="var/cache/stage2")
    m.add_argument("--plots", default="docs/stage2")
    m.add_argument("--out", default="docs/evaluation.md")
    m.add_argument("--install", action=argparse.BooleanOptionalAction, default=True,
                   help="write the calibration into the model's config.json (default yes)")
    m.add_argument("--docs", action=argparse.BooleanOptionalAction, default=True)
    m.add_argument("--novelty", action=argparse.BooleanOptionalAction, default=True,
                   help="also fit the uncertain band's novelty index (stage2.novelty; default yes)")
    m.add_argument("--novelty-percentile", type=float, default=97.5,
                   help="val sequences above this percentile of novelty count as uncertain (default 97.5)")
    m.set_defaults(func=run)
