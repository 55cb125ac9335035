#!/usr/bin/env python3
"""Tables of docs/results.md from hkd-analyze's output of the study (configs/study.toml).

Usage: scripts/study-report.py ANALYSIS_DIR OUT_DIR REPORT_MD [--long LONG_ANALYSIS_DIR]
       (or `just study-report`)

Reads ANALYSIS_DIR/average_results.csv (mean and sample std over repeats, written by
`hkd-analyze`), writes the tables between the `<!-- tables:begin -->` and
`<!-- tables:end -->` lines of REPORT_MD (docs/results.md), and copies
average_results.csv, runs.csv and the summary figures (not the per-run training curves)
to OUT_DIR. With --long, the analysis of configs/study-long.toml goes between the
`<!-- long:begin -->` and `<!-- long:end -->` lines and its CSVs to OUT_DIR/long/. Every number in the tables is read or
computed from those CSVs here; nothing is typed in. Standard library only.
"""

import csv
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reportlib import die, mean_std, num  # noqa: E402

SETS = [("val", "val (CIFAR-10 train images)"), ("cinic", "cinic (ImageNet-derived CINIC-10)")]
ATTACKS = [("fgsm", 2), ("fgsm", 8), ("pgd", 2), ("pgd", 8)]








def label(row):
    t = row["teacher"]
    if t == "baseline":
        return f"baseline (hard labels), {row['student']}"
    if t == "human":
        if row["student"] != "resnet8":
            return f"teacher {row['student']} on human labels, λ={row['lambda']}"
        return f"human, D={row['distil_fn']}, λ={row['lambda']}"
    return f"from the teacher, D={row['distil_fn']}, λ={row['lambda']}, γ={row['gamma']}"


def table(rows, columns):
    out = ["| configuration | runs | " + " | ".join(h for h, _ in columns) + " |"]
    out.append("|---|---|" + "---|" * len(columns))
    for r in rows:
        out.append(f"| {label(r)} | {r['runs']} | " + " | ".join(f(r) for _, f in columns) + " |")
    return "\n".join(out)


def rel(new, old):
    if new is None or old is None or old == 0:
        return "–"
    return f"{(new - old) / old * 100:+.1f} %"


def read_rows(analysis):
    avg_path = analysis / "average_results.csv"
    if not avg_path.is_file():
        die(f"{avg_path} does not exist: run the study's analyze stage (just study) first")
    with avg_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for col in ("teacher", "student", "distil_fn", "lambda", "gamma", "runs"):
        if rows and col not in rows[0]:
            die(f"{avg_path} has no column `{col}`: not an hkd-analyze average_results.csv")
    return rows


def replace_between(text, report, name, body):
    """`text` with the lines between `<!-- name:begin -->` and `<!-- name:end -->` replaced."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        die(f"{report} must hold one `{begin}` line and, after it, one `{end}` line")
    return (text[: text.index(begin)] + begin + "\n" + body + "\n" + end
            + text[text.index(end) + len(end):])


PCT = dict(scale=100.0, digits=1)
QUALITY = [
    ("val acc %", lambda r: mean_std(r, "eval_val_acc", **PCT)),
    ("val CE", lambda r: mean_std(r, "eval_val_ce")),
    ("val CE, Σ batch means", lambda r: mean_std(r, "eval_val_ce_sum_batch_means", digits=2)),
    ("val ECE", lambda r: mean_std(r, "eval_val_ece")),
    ("cinic acc %", lambda r: mean_std(r, "eval_cinic_acc", **PCT)),
    ("cinic CE", lambda r: mean_std(r, "eval_cinic_ce")),
    ("cinic ECE", lambda r: mean_std(r, "eval_cinic_ece")),
    ("human CE (train)", lambda r: mean_std(r, "eval_train_human_ce")),
]


def long_tables(rows, report):
    base = [r for r in rows if r["teacher"] == "baseline"]
    human = [r for r in rows if r["teacher"] == "human"]
    if len(base) != 1 or len(human) != 1:
        die(f"{report}: the long study needs one baseline and one human configuration")
    b, h = base[0], human[0]
    cols = ["val acc (points)", "cinic acc (points)", "val CE", "cinic CE", "val ECE",
            "cinic ECE", "human CE (train)", "train acc (points)"]
    cells = []
    for col in ("eval_val_acc", "eval_cinic_acc"):
        n, o = num(h, col + "_mean"), num(b, col + "_mean")
        cells.append("–" if n is None or o is None else f"{(n - o) * 100:+.1f}")
    for col in ("eval_val_ce", "eval_cinic_ce", "eval_val_ece", "eval_cinic_ece",
                "eval_train_human_ce"):
        cells.append(rel(num(h, col + "_mean"), num(b, col + "_mean")))
    n, o = num(h, "eval_train_acc_mean"), num(b, "eval_train_acc_mean")
    cells.append("–" if n is None or o is None else f"{(n - o) * 100:+.1f}")
    quality = QUALITY + [("train acc %", lambda r: mean_std(r, "eval_train_acc", **PCT))]
    return "\n".join([
        "<!-- written by scripts/study-report.py --long; do not edit by hand -->",
        "",
        table(base + human, quality),
        "",
        "| human against baseline | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
        f"| {label(h)} | " + " | ".join(cells) + " |",
    ])


def main():
    args = sys.argv[1:]
    long_dir = None
    if "--long" in args:
        i = args.index("--long")
        if i + 1 >= len(args):
            die("--long needs the analysis directory of configs/study-long.toml")
        long_dir = Path(args[i + 1])
        del args[i:i + 2]
    if len(args) != 3:
        die("usage: scripts/study-report.py ANALYSIS_DIR OUT_DIR REPORT_MD [--long DIR]")
    analysis, out, report = Path(args[0]), Path(args[1]), Path(args[2])
    if not report.is_file():
        die(f"{report} does not exist (it holds the text around the tables)")
    text = report.read_text()
    rows = read_rows(analysis)
    avg_path = analysis / "average_results.csv"

    def key(r):
        return (r["distil_fn"] != "KL", r["distil_fn"], float(r["lambda"]), float(r["gamma"]))

    baseline = [r for r in rows if r["teacher"] == "baseline" and r["student"] == "resnet8"]
    human = sorted(
        (r for r in rows if r["teacher"] == "human" and r["student"] == "resnet8"), key=key
    )
    teachers = [r for r in rows if r["teacher"] == "human" and r["student"] != "resnet8"]
    distilled = sorted(
        (r for r in rows if r["teacher"] not in ("baseline", "human")), key=key
    )
    if len(baseline) != 1 or not human:
        die(f"{avg_path}: expected one baseline resnet8 configuration and human ones")
    base = baseline[0]

    robust = []
    for s, _ in SETS:
        for a, k in ATTACKS:
            robust.append(
                (f"{s} {a.upper()} {k}/255 acc %",
                 lambda r, s=s, a=a, k=k: mean_std(r, f"eval_{s}_{a}_eps{k}_255_acc", **PCT))
            )

    def change(r):
        cells = []
        for col in ("eval_val_acc", "eval_cinic_acc"):
            n, o = num(r, col + "_mean"), num(base, col + "_mean")
            cells.append("–" if n is None or o is None else f"{(n - o) * 100:+.1f}")
        for col in ("eval_val_ce", "eval_val_ce_sum_batch_means", "eval_cinic_ce",
                    "eval_val_ece", "eval_cinic_ece", "eval_train_human_ce"):
            cells.append(rel(num(r, col + "_mean"), num(base, col + "_mean")))
        for s in ("val", "cinic"):
            col = f"eval_{s}_pgd_eps2_255_acc"
            n, o = num(r, col + "_mean"), num(base, col + "_mean")
            cells.append("–" if n is None or o is None else f"{(n - o) * 100:+.1f}")
        return cells

    change_head = ["val acc (points)", "cinic acc (points)", "val CE", "val CE, Σ batch means",
                   "cinic CE", "val ECE", "cinic ECE", "human CE (train)",
                   "val PGD 2/255 acc (points)", "cinic PGD 2/255 acc (points)"]

    def change_table(rs):
        lines = ["| configuration | runs | " + " | ".join(change_head) + " |",
                 "|---|---|" + "---|" * len(change_head)]
        for r in rs:
            lines.append(f"| {label(r)} | {r['runs']} | " + " | ".join(change(r)) + " |")
        return "\n".join(lines)

    md = [
        "<!-- written by scripts/study-report.py from the analysis' average_results.csv;"
        " do not edit by hand -->",
        "",
        "Mean ± sample standard deviation over repeats (ddof = 1); accuracies in %, CE in nats"
        " per image unless noted (\"Σ batch means\" is the original's sum over batches of 128"
        " of the batch-mean CE).",
        "",
        "### 1. Hard labels vs human labels (resnet8 students)",
        "",
        table(baseline + human, QUALITY),
        "",
        "### 2. Change against the baseline (relative for CE/ECE; points for accuracy)",
        "",
        change_table(human + distilled),
        "",
        "### 3. Robustness (accuracy under attack, stratified 300 images per set)",
        "",
        table(baseline + human, robust),
        "",
        "### 4. A teacher trained on human labels, and its students",
        "",
        table(teachers + distilled + baseline, QUALITY),
        "",
        table(teachers + distilled + baseline, robust),
    ]
    new_text = replace_between(text, report, "tables", "\n".join(md))
    if long_dir is not None:
        new_text = replace_between(new_text, report, "long", long_tables(read_rows(long_dir), report))
    tmp = report.with_name(report.name + ".tmp")
    tmp.write_text(new_text)
    tmp.replace(report)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("average_results.csv", "runs.csv"):
        shutil.copyfile(analysis / name, out / name)
    if long_dir is not None:
        (out / "long").mkdir(exist_ok=True)
        for name in ("average_results.csv", "runs.csv"):
            shutil.copyfile(long_dir / name, out / "long" / name)
    fig_out = out / "fig"
    fig_out.mkdir(exist_ok=True)
    for png in sorted((analysis / "fig").glob("*.png")):
        shutil.copyfile(png, fig_out / png.name)
    print(f"study-report: {len(rows)} configurations -> tables in {report}, files in {out}")


if __name__ == "__main__":
    main()
