#!/usr/bin/env python3
"""Tables of docs/results.md for the second study (configs/study2.toml), and the check that
every number the prose of docs/results.md cites is one of its generated tables'.

Usage: scripts/study2-report.py            write the tables and copy the CSVs and figures
       scripts/study2-report.py --check    only check docs/results.md (exit 1 on a mismatch)
       (or `just study2-report`)

Reads what `hkd-grid pipeline configs/study2.toml` wrote:
  runs/study2/analysis/{runs,average_results,paired_deltas}.csv   (paired against hard labels)
  runs/study2/analysis-vs-label-smoothing/paired_deltas.csv      (paired against α = 0.21)
  runs/study2/analysis-vs-shuffled/paired_deltas.csv             (paired against shuffled)
and the first study's docs/results/runs.csv (for the corrected teacher rows), and the
pilot's numbers as quoted in docs/results/study2/pilot-quoted.csv (not recomputed here:
the pilot's CSVs are not in this repository). Writes the tables between the
`<!-- study2:begin -->` / `<!-- study2:end -->` and `<!-- teacher-rows:begin -->` /
`<!-- teacher-rows:end -->` lines of docs/results.md and copies the CSVs and the figures
to docs/results/study2/.

Paired intervals are hkd-analyze's (Student's t over the iters, n - 1 degrees of
freedom); the corrected teacher rows of the first study are computed here the same way
(t quantiles below). Standard library only.
"""

import csv
import math
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reportlib import die, mean_std, num  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs/study2"
ANALYSIS = RUNS / "analysis"
VS_LS = RUNS / "analysis-vs-label-smoothing"
VS_SHUFFLED = RUNS / "analysis-vs-shuffled"
FIRST_RUNS = ROOT / "docs/results/runs.csv"
OUT = ROOT / "docs/results/study2"
PILOT = OUT / "pilot-quoted.csv"
REPORT = ROOT / "docs/results.md"
DATA = ROOT / "data/cifar10h-real"

# Student's t 97.5 % quantiles by degrees of freedom (as scipy.stats.t.ppf(0.975, df)).
T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 6: 2.446912,
        7: 2.364624, 8: 2.306004, 9: 2.262157, 10: 2.228139}

# The arms in table order: name, description of the target.
ARMS = [
    ("hard", "hard labels (the baseline)"),
    ("human ε=0.02", "soft CE to (h + 0.02)/1.2, λ = 1 (the original's target since June 2020)"),
    ("human ε=0.001", "soft CE to (h + 0.001)/1.01, λ = 1 (close to the raw votes)"),
    ("label smoothing α=0.21", "hard labels smoothed with α = 0.21 (mean p(true) matched to ε = 0.02)"),
    ("shuffled ε=0.02", "as human ε = 0.02, human rows permuted within each class"),
    ("pilot target", "KL to softmax(h / T_h) of the raw probabilities, λ = 0.6, T_h = 1 (the 2020 pilot's)"),
]




def read_csv(path):
    if not path.is_file():
        die(f"{path} not found; run `just study2` first (it resumes)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))




def arm_of(row):
    """The arm of a runs/average/paired row; keys that do not vary are absent: defaults."""
    teacher = row.get("teacher", "")
    ls = float(row.get("label_smoothing") or 0.0)
    split = row.get("train_split") or "train8k"
    target = row.get("human_target") or "log"
    eps = float(row.get("human_smoothing") or 0.02)
    if teacher == "baseline":
        return "hard" if ls == 0.0 else f"label smoothing α={ls:g}"
    if teacher == "human":
        if target == "pilot":
            return "pilot target"
        if split.endswith("shuffled"):
            return f"shuffled ε={eps:g}"
        return f"human ε={eps:g}"
    return None


def by_arm(rows):
    out = {}
    for r in rows:
        a = arm_of(r)
        if a is not None:
            out.setdefault(a, []).append(r)
    return out




def signed(x, digits):
    return f"{x:+.{digits}f}"


def fmt_delta(d, scale=1.0, digits=3):
    """`Δ [lo, hi]` of a paired_deltas row (scaled), or – without pairs."""
    if d is None:
        return "–"
    m, lo, hi = num(d, "delta_mean"), num(d, "ci95_low"), num(d, "ci95_high")
    if m is None:
        return "–"
    text = signed(m * scale, digits)
    if lo is not None and hi is not None:
        text += f" [{signed(lo * scale, digits)}, {signed(hi * scale, digits)}]"
    return text


def paired_index(rows):
    """(arm, metric) -> paired_deltas row."""
    out = {}
    for r in rows:
        a = arm_of(r)
        if a is not None:
            out[(a, r["metric"])] = r
    return out


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def paired_t(deltas):
    """Mean, and the 95 % Student-t interval of paired deltas (None with one pair)."""
    n = len(deltas)
    m = sum(deltas) / n
    if n < 2:
        return m, None
    sd = math.sqrt(sum((d - m) ** 2 for d in deltas) / (n - 1))
    h = T975[n - 1] * sd / math.sqrt(n)
    return m, (m - h, m + h)


# ---------------------------------------------------------------------------- targets


def read_npy(path):
    """A little-endian f8 or u1 .npy as (shape, flat list) — the two dtypes of the splits."""
    import ast
    import struct
    raw = path.read_bytes()
    if raw[:6] != b"\x93NUMPY":
        die(f"{path} is not a .npy file")
    major = raw[6]
    hlen_size = 2 if major == 1 else 4
    hlen = int.from_bytes(raw[8:8 + hlen_size], "little")
    header = ast.literal_eval(raw[8 + hlen_size:8 + hlen_size + hlen].decode("latin1"))
    body = raw[8 + hlen_size + hlen:]
    shape = header["shape"]
    count = math.prod(shape)
    if header["descr"] == "<f8":
        return shape, list(struct.unpack(f"<{count}d", body[:8 * count]))
    if header["descr"] == "|u1":
        return shape, list(body[:count])
    die(f"{path}: dtype {header['descr']} (expected <f8 or |u1)")


def target_stats():
    """Mean p(true class) and mean entropy (nats) of each arm's training target on train8k,
    computed from the data as the loss builds it (hkd-losses: smoothing (h + ε)/(1 + 10ε);
    label smoothing (1 - α)·onehot + α/10; the pilot's softmax(h / T_h))."""
    (n, c), human = read_npy(DATA / "train8k/human.npy")
    _, labels = read_npy(DATA / "train8k/labels.npy")
    _, shuffled = read_npy(DATA / "train8k-shuffled/human.npy")
    _, labels_sh = read_npy(DATA / "train8k-shuffled/labels.npy")
    rows = lambda flat: [flat[i * c:(i + 1) * c] for i in range(n)]

    def stats(targets, ys):
        pt = sum(t[y] for t, y in zip(targets, ys)) / n
        ent = sum(-sum(p * math.log(p) for p in t if p > 0) for t in targets) / n
        return pt, ent

    def smooth(h, eps):
        return [(p + eps) / (1 + c * eps) for p in h]

    def softmax(h, temp):
        m = max(h)
        e = [math.exp((p - m) / temp) for p in h]
        z = sum(e)
        return [x / z for x in e]

    h, hs = rows(human), rows(shuffled)
    onehot = lambda y, a: [(1 - a) * (k == y) + a / c for k in range(c)]
    out = {
        "hard": stats([onehot(y, 0.0) for y in labels], labels),
        "human ε=0.02": stats([smooth(r, 0.02) for r in h], labels),
        "human ε=0.001": stats([smooth(r, 0.001) for r in h], labels),
        "label smoothing α=0.21": stats([onehot(y, 0.21) for y in labels], labels),
        "shuffled ε=0.02": stats([smooth(r, 0.02) for r in hs], labels_sh),
        "pilot target": stats([softmax(r, 1.0) for r in h], labels),
    }
    raw = stats(h, labels)
    return out, raw


# ---------------------------------------------------------------------------- tables


def study2_tables():
    avg = by_arm(read_csv(ANALYSIS / "average_results.csv"))
    runs = by_arm(read_csv(ANALYSIS / "runs.csv"))
    vs_hard = paired_index(read_csv(ANALYSIS / "paired_deltas.csv"))
    vs_ls = paired_index(read_csv(VS_LS / "paired_deltas.csv"))
    vs_sh = paired_index(read_csv(VS_SHUFFLED / "paired_deltas.csv"))
    arms = [a for a, _ in ARMS if a in avg]
    missing = [a for a, _ in ARMS if a not in avg]
    if missing:
        die(f"no runs of the arm(s) {', '.join(missing)} in {ANALYSIS}; is the study finished?")
    for a in arms:
        if len(avg[a]) != 1:
            die(f"arm `{a}` matches {len(avg[a])} configurations in average_results.csv")
    out = []
    iters = {a: sorted(int(r["iter"]) for r in runs[a]) for a in arms}
    out.append(
        "Mean ± sample standard deviation over the repeats (ddof = 1); accuracies in %, CE in "
        "nats per image. *Held out*: the 2,000 CIFAR-10H images not trained on (`test2k`); "
        "*in-sample*: the 8,000 trained on (`train8k`). TS: after temperature scaling with "
        "one temperature per run fitted on val.\n"
    )
    out.append("#### Table 0. The arms and their training targets on the 8,000 training images\n")
    stats, raw = target_stats()
    rows = [[a, desc, f"{stats[a][0]:.4f}", f"{stats[a][1]:.4f}"] for a, desc in ARMS]
    rows.append(["(the raw CIFAR-10H rows)", "for comparison", f"{raw[0]:.4f}", f"{raw[1]:.4f}"])
    out.append(table(["arm", "target", "mean p(true class)", "mean entropy (nats)"], rows))
    out.append("")
    out.append("#### Table 1. Every arm\n")
    rows = []
    for a in arms:
        r = avg[a][0]
        rows.append([
            a, " ".join(map(str, iters[a])),
            mean_std(r, "val_acc", 100, 1), mean_std(r, "eval_cinic_acc", 100, 1),
            mean_std(r, "eval_cinic_ce"), mean_std(r, "eval_cinic_ece"), mean_std(r, "eval_cinic_ts_ce"),
            mean_std(r, "eval_test2k_human_ce"), mean_std(r, "eval_test2k_ts_human_ce"),
            mean_std(r, "eval_train8k_human_ce"), mean_std(r, "eval_val_ece"),
            mean_std(r, "eval_temperature", 1, 2),
        ])
    out.append(table(
        ["arm", "iters", "val acc %", "cinic acc %", "**cinic CE**", "cinic ECE", "cinic CE, TS",
         "**human CE, held out**", "human CE, held out, TS", "human CE, in-sample", "val ECE",
         "temperature"], rows))
    out.append("")

    out.append("#### Table 2. Paired differences against hard labels (Δ [95 % CI], repeat i against repeat i)\n")
    metrics = [("eval_cinic_ce", 1, 3), ("eval_test2k_human_ce", 1, 3), ("eval_cinic_ts_ce", 1, 3),
               ("eval_test2k_ts_human_ce", 1, 3), ("eval_cinic_ece", 1, 3), ("val_acc", 100, 2),
               ("eval_train8k_human_ce", 1, 3)]
    rows = []
    hard_by_iter = {int(r["iter"]): r for r in runs["hard"]}
    for a in arms[1:]:
        # the free control: this arm as trained against the hard-label run of the same
        # repeat after temperature scaling (fitted on val)
        by_iter = {int(r["iter"]): r for r in runs[a]}
        its = sorted(set(by_iter) & set(hard_by_iter))
        m, ci = paired_t([num(by_iter[i], "eval_cinic_ce") - num(hard_by_iter[i], "eval_cinic_ts_ce")
                          for i in its])
        control = signed(m, 3) + (f" [{signed(ci[0], 3)}, {signed(ci[1], 3)}]" if ci else "")
        rows.append([a, str(len(its))]
                    + [fmt_delta(vs_hard.get((a, m)), s, d) for m, s, d in metrics] + [control])
    out.append(table(["arm", "pairs", "**cinic CE**", "**human CE, held out**", "cinic CE, TS",
                      "human CE, held out, TS", "cinic ECE", "val acc (points)",
                      "human CE, in-sample", "cinic CE against hard labels + TS"], rows))
    out.append("")
    out.append("The last column is the free post-hoc control: the arm's cinic CE as trained, "
               "against the hard-label run of the same repeat after temperature scaling "
               "(computed here from runs.csv, the same paired t-interval).\n")

    out.append("#### Table 3. The question: human labels against the two controls (Δ [95 % CI], paired)\n")
    rows = []
    for a, ref_name, idx in [
        ("human ε=0.02", "label smoothing α=0.21", vs_ls),
        ("human ε=0.02", "shuffled ε=0.02", vs_sh),
        ("human ε=0.001", "label smoothing α=0.21", vs_ls),
        ("human ε=0.001", "shuffled ε=0.02", vs_sh),
        ("shuffled ε=0.02", "label smoothing α=0.21", vs_ls),
    ]:
        rows.append([f"{a} − {ref_name}"] + [fmt_delta(idx.get((a, m)), s, d)
                                             for m, s, d in metrics])
    out.append(table(["comparison", "**cinic CE**", "**human CE, held out**", "cinic CE, TS",
                      "human CE, held out, TS", "cinic ECE", "val acc (points)",
                      "human CE, in-sample"], rows))
    out.append("")

    out.append("#### Table 4. The regime: end of training (30 epochs, cosine to 0)\n")
    rows = []
    for a in arms:
        rs = runs[a]
        mean = lambda col, scale=1.0: sum(num(r, col) * scale for r in rs) / len(rs)
        rows.append([a, f"{mean('final_train_acc', 100):.1f}", f"{mean('final_val_acc', 100):.1f}",
                     f"{mean('best_epoch'):.1f}", f"{mean('train_seconds') / 60:.1f}"])
    out.append(table(["arm", "train acc % (last epoch, augmented)", "val acc % (last epoch)",
                      "best epoch (mean)", "wall minutes per run (one core of a shared 2-core machine)"], rows))
    out.append("")

    out.append("#### Figures\n")
    out.append("Drawn by `hkd-analyze` (copied to `docs/results/study2/fig/`; the full identity of "
               "each short legend name is in `fig/legend.csv`).\n")
    for name, caption in [
        ("reliability", "Reliability per evaluation set, pooled over the 4 repeats: below the diagonal is over-confident."),
        ("reliability_temperature_scaled", "The same after temperature scaling (one temperature per run, fitted on val)."),
        ("confidence_gap", "Mean confidence − accuracy per set and arm (the signed gap), with the repeats' spread."),
        ("acc_ce_plane", "Accuracy against CE per set (mean ± sd over repeats)."),
        ("acc_human_ce_plane", "Accuracy against CE to the human distributions (held-out test2k and in-sample train8k)."),
    ]:
        if (ANALYSIS / "fig" / f"{name}.png").is_file():
            out.append(f"![{caption}](results/study2/fig/{name}.png)\n\n{caption}\n")
    for a in ("hard", "human ε=0.02", "label smoothing α=0.21"):
        curve = curve_of(a)
        if curve:
            out.append(f"![training curves, {a}](results/study2/fig/curves/{curve})\n\n"
                       f"Training curves of the best repeat, {a}.\n")

    out.append("#### Table 5. The pilot's target: the 2020 pilot's numbers beside this study's\n")
    pilot = read_csv(PILOT)
    rows = [[p["quantity"], p["pilot"], p["protocol"]] for p in pilot]
    d_ce = vs_hard.get(("pilot target", "eval_val_ce"))
    d_acc = vs_hard.get(("pilot target", "val_acc"))
    rel = (f"{100 * num(d_ce, 'delta_mean') / num(d_ce, 'reference_mean'):+.1f} %"
           if d_ce else "–")
    rows.append(["this study: pilot target, KL, λ = 0.6, T_h = 1 — val CE against hard labels",
                 rel + f" (Δ {fmt_delta(d_ce)} nats)",
                 "resnet8, 30 epochs cosine, 8,000 CIFAR-10H images, val = 2,194 CIFAR-10 train images, 4 paired repeats"])
    rows.append(["this study: same arm — val accuracy against hard labels (points)",
                 fmt_delta(d_acc, 100, 2), "as above"])
    out.append(table(["quantity", "value", "protocol"], rows))
    out.append("")
    return "\n".join(out), arms


def curve_of(arm):
    """The per-configuration curve figure of an arm (file names spell the varying keys)."""
    for p in sorted((ANALYSIS / "fig/curves").glob("*.png")):
        name = p.stem
        row = {"teacher": name.split("_", 1)[0]}
        for key in ("human_smoothing", "label_smoothing", "human_target", "train_split"):
            m = re.search(key + r"([A-Za-z0-9.\-]+?)(?:_(?=[a-z])|$)", name)
            if m:
                row[key] = m.group(1)
        if arm_of(row) == arm:
            return p.name
    return None


def teacher_rows():
    """The first study's students of the human-label teacher against the baseline, paired
    by iter (both have iters 0 and 1), and the identity of the γ = 1 rows with human KL
    λ = 0.6 (the teacher term has weight 0 there)."""
    rows = read_csv(FIRST_RUNS)
    base = {int(r["iter"]): r for r in rows if r["teacher"] == "baseline" and r["student"] == "resnet8"}
    kl06 = {int(r["iter"]): r for r in rows if r["teacher"] == "human" and r["student"] == "resnet8"
            and r["distil_fn"] == "KL" and float(r["lambda"]) == 0.6}
    metrics = [("val_acc", 100, 2, "val acc (points)"), ("eval_cinic_ce", 1, 3, "cinic CE"),
               ("eval_cinic_ece", 1, 3, "cinic ECE"), ("eval_val_ce", 1, 3, "val CE")]
    out_rows = []
    identical = []
    for gamma in ("0.0", "0.5", "1.0"):
        st = {int(r["iter"]): r for r in rows if r["teacher"].startswith("human-resnet20")
              and float(r["gamma"]) == float(gamma)}
        its = sorted(set(st) & set(base))
        cells = [f"from the teacher, D=KL, λ=0.6, γ={gamma}", " ".join(map(str, its))]
        for col, scale, digits, _ in metrics:
            m, ci = paired_t([(num(st[i], col) - num(base[i], col)) * scale for i in its])
            cells.append(signed(m, digits) + (f" [{signed(ci[0], digits)}, {signed(ci[1], digits)}]" if ci else ""))
        out_rows.append(cells)
        if gamma == "1.0":
            identical = [i for i in its if i in kl06 and all(
                st[i][c] == kl06[i][c] for c in ("val_acc", "val_loss", "eval_cinic_ce", "eval_val_ce"))]
    its = sorted(set(kl06) & set(base))
    cells = ["human, D=KL, λ=0.6 (no teacher)", " ".join(map(str, its))]
    for col, scale, digits, _ in metrics:
        m, ci = paired_t([(num(kl06[i], col) - num(base[i], col)) * scale for i in its])
        cells.append(signed(m, digits) + (f" [{signed(ci[0], digits)}, {signed(ci[1], digits)}]" if ci else ""))
    out_rows.append(cells)
    text = table(["configuration (first study, 5 epochs)", "paired iters"] + [m[3] for m in metrics], out_rows)
    note = (f"\nThe γ = 1.0 students are bit-identical to human KL λ = 0.6 in iters "
            f"{' and '.join(map(str, identical)) or '(none)'} (same val accuracy, val loss, cinic CE and val CE "
            f"in runs.csv): with γ = 1 the teacher term has weight 0.\n")
    return text + "\n" + note


# ---------------------------------------------------------------------------- writing


def replace_block(text, name, body):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        die(f"{REPORT} lacks the lines {begin} and {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    stamp = f"<!-- written by scripts/study2-report.py; do not edit by hand -->"
    return f"{head}{begin}\n{stamp}\n\n{body.strip()}\n{end}{tail}"


def copy_outputs():
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("runs.csv", "average_results.csv", "paired_deltas.csv", "summary.md"):
        shutil.copy(ANALYSIS / name, OUT / name)
    shutil.copy(VS_LS / "paired_deltas.csv", OUT / "paired_deltas_vs_label_smoothing.csv")
    shutil.copy(VS_SHUFFLED / "paired_deltas.csv", OUT / "paired_deltas_vs_shuffled.csv")
    fig = OUT / "fig"
    if fig.exists():
        shutil.rmtree(fig)
    (fig / "curves").mkdir(parents=True)
    for p in (ANALYSIS / "fig").glob("*.png"):
        shutil.copy(p, fig / p.name)
    shutil.copy(ANALYSIS / "fig/legend.csv", fig / "legend.csv")
    for p in (ANALYSIS / "fig/curves").glob("*.png"):
        shutil.copy(p, fig / "curves" / p.name)


# ---------------------------------------------------------------------------- checking

NUMBER = re.compile(r"(?<![\w.])[−+-]?\d+\.\d+")


def norm(token):
    return token.replace("−", "").replace("+", "").replace("-", "")


SETTING_COLUMNS = ("lr", "momentum", "weight_decay", "lambda", "gamma", "temperature_teacher",
                   "temperature_human", "human_smoothing", "label_smoothing", "cosine_min_lr")


def setting_values():
    """The values of the runs' settings (runs.csv), which the prose may name too."""
    path = ANALYSIS / "runs.csv"
    if not path.is_file():
        return set()
    out = set()
    for row in read_csv(path):
        for col in SETTING_COLUMNS:
            if row.get(col):
                out.update(norm(t) for t in NUMBER.findall(row[col]))
    return out


def check(text):
    """Every decimal number outside the generated blocks and code must appear in one of
    the generated blocks, or be a setting value of the study's runs (sign ignored: prose
    says "lower by 0.22" for a Δ of −0.220)."""
    generated = setting_values()
    prose = []
    inside = False
    fence = False
    for line in text.splitlines():
        if re.match(r"<!-- [\w-]+:begin -->", line):
            inside = True
            continue
        if re.match(r"<!-- [\w-]+:end -->", line):
            inside = False
            continue
        if line.startswith("```"):
            fence = not fence
            continue
        if inside:
            generated.update(norm(t) for t in NUMBER.findall(line))
        elif not fence:
            prose.append(line)
    bad = []
    for n, line in enumerate(prose):
        for t in NUMBER.findall(line):
            if norm(t) not in generated:
                bad.append((t, line.strip()[:100]))
    return bad


def main():
    args = sys.argv[1:]
    if args not in ([], ["--check"]):
        die(__doc__.split("\n\n")[1])
    text = REPORT.read_text()
    if not args:
        body, _ = study2_tables()
        text = replace_block(text, "study2", body)
        text = replace_block(text, "teacher-rows", teacher_rows())
        copy_outputs()
        tmp = REPORT.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(REPORT)
        print(f"study2-report: wrote the tables of {REPORT.relative_to(ROOT)} and {OUT.relative_to(ROOT)}/")
    bad = check(text)
    if bad:
        for t, line in bad:
            print(f"study2-report: `{t}` is cited but in no generated table: {line}", file=sys.stderr)
        sys.exit(1)
    print("study2-report: every number cited in the prose is in a generated table")


if __name__ == "__main__":
    main()
