#!/usr/bin/env python3
"""Tables of docs/results.md for the third study (configs/study3.toml and
configs/study3-objectives.toml), and the check that ties every number its prose cites to
one table cell.

Usage: scripts/study3-report.py              write the tables (and docs/results/study3/runs.csv)
       scripts/study3-report.py --check      only check docs/results.md (exit 1 on a mismatch)
       scripts/study3-report.py --self-test  the check passes on docs/results.md and fails on
                                             a planted wrong sign and a planted wrong cell
       (or `just study3-report`)

Reads runs/study3/analysis/runs.csv (what `just study3` leaves: the pipeline's analyze
stage over every run of runs/study3/students), or with --runs another runs.csv such as
the committed docs/results/study3/runs.csv. Writes the tables between the
`<!-- study3:begin -->` / `<!-- study3:end -->` lines of docs/results.md.

Statistics, per comparison A − B and endpoint, over the repeats (iter i of A against iter
i of B): the paired mean difference with Student's t interval (n − 1 dof), Welch's
interval (Welch–Satterthwaite dof) from the same runs unpaired, and the correlation r of
A and B across iters. Pairing only narrows the interval where r > 0, so the test of record
is the paired one where r > 0 and Welch's otherwise (column `test`). p is that test's
two-sided p; Holm's step-down adjustment runs over the declared primary family (every
comparison of table 2 on its three endpoints), nothing else. Standard library only.

Citations: the prose cites a number as `NUMBER (table N: ROW / COLUMN)`, where NUMBER is
the cell's text exactly (sign included) and ROW the row's label (its first cells joined
by ", "). The check fails when a cited number differs from its cell, when the cell does
not exist, and when the study's prose holds a signed number with three decimals that
cites no cell.
"""

import csv
import math
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reportlib import die, num  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS_CSV = ROOT / "runs/study3/analysis/runs.csv"
LONG_RUNS_CSV = ROOT / "runs/study3-long/analysis/runs.csv"
OUT = ROOT / "docs/results/study3"
# copied from the analysis's fig/ to docs/results/study3/fig with its runs.csv
FIGURES = ["acc_human_ce_plane.png", "acc_ce_plane.png", "reliability_temperature_scaled.png"]
REPORT = ROOT / "docs/results.md"
BEGIN, END = "<!-- study3:begin -->", "<!-- study3:end -->"
PROSE_HEADING = "# Third study"
MINUS = "\u2212"

# The arms: name -> predicate over a runs.csv row.
def arm_of(r):
    teacher = r.get("teacher", "")
    objective = r.get("objective") or "hkd"
    shuffled = (r.get("train_split") or "").endswith("shuffled")
    ls = float(r.get("label_smoothing") or 0.0)
    if teacher == "baseline" and objective == "hkd":
        return "hard" if ls == 0.0 else "label smoothing"
    if teacher != "human":
        return None
    suffix = " (shuffled)" if shuffled else ""
    if objective == "hkd":
        return ("shuffled" if shuffled else "human")
    if objective == "dkd":
        alpha = float(r.get("alpha_tckd") or 1.0)
        return ("DKD non-target" if alpha == 0.0 else "DKD") + suffix
    if objective == "dist":
        return "DIST" + suffix
    return None


ARMS = [
    ("hard", "hard labels (the baseline)"),
    ("human", "soft CE to the human distributions, ε = 0.001"),
    ("shuffled", "as human, rows permuted within each class (no per-image information)"),
    ("label smoothing", "hard labels smoothed with α = 0.0623 (mean p(true) of human matched)"),
    ("DKD non-target", "DKD from the human distributions, non-target term only (α = 0, β = 8)"),
    ("DKD non-target (shuffled)", "the same from the shuffled rows"),
    ("DKD", "DKD from the human distributions, both terms (α = 1, β = 8)"),
    ("DKD (shuffled)", "the same from the shuffled rows"),
    ("DIST", "DIST from the human distributions (β = γ = 1, τ = 1)"),
    ("DIST (shuffled)", "the same from the shuffled rows"),
]

# Endpoints: label -> (column, scale, digits); lower is better except accuracies.
PRIMARY_ENDPOINTS = [
    ("held-out human CE", "eval_test2k_human_ce", 1.0, 3),
    ("held-out human CE, TS", "eval_test2k_ts_human_ce", 1.0, 3),
    ("cinic CE", "eval_cinic_ce", 1.0, 3),
]
SECONDARY_ENDPOINTS = [
    ("val acc", "val_acc", 1.0, 3),
    ("cinic acc", "eval_cinic_acc", 1.0, 3),
    ("cinic CE, TS", "eval_cinic_ts_ce", 1.0, 3),
    ("held-out ECE", "eval_test2k_ece", 1.0, 3),
]
# The longer regime (configs/study3-long.toml): its arms, its family (both comparisons on
# the primary endpoints, Holm over the 6), and its robustness endpoints (val, 8/255 and
# 2/255, FGSM and 5-step PGD on 500 images), exploratory.
LONG_ARMS = ["hard", "human", "shuffled"]
LONG_COMPARISONS = [("human", "hard"), ("human", "shuffled")]
ROBUSTNESS_ENDPOINTS = [
    ("val acc", "val_acc", 1.0, 3),
    ("train8k acc", "eval_train8k_acc", 1.0, 3),
    ("val acc, FGSM 2/255", "eval_val_fgsm_eps2_255_acc", 1.0, 3),
    ("val acc, FGSM 8/255", "eval_val_fgsm_eps8_255_acc", 1.0, 3),
    ("val acc, PGD 2/255", "eval_val_pgd_eps2_255_acc", 1.0, 3),
    ("val acc, PGD 8/255", "eval_val_pgd_eps8_255_acc", 1.0, 3),
]
# A comparison joins the primary family (and Holm's adjustment) from this many pairs on;
# with fewer, its primary endpoints are listed in table 8 as exploratory (with 2 pairs r is
# ±1 whatever the data, and a paired interval has 1 degree of freedom).
MIN_PAIRS = 4
COMPARISONS = [
    ("human", "hard"),
    ("human", "shuffled"),
    ("human", "label smoothing"),
    ("DKD non-target", "DKD non-target (shuffled)"),
    ("DKD", "DKD (shuffled)"),
    ("DIST", "DIST (shuffled)"),
]


# ---- statistics ----------------------------------------------------------------------

def betacf(a, b, x):
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betai(a, b, x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log(1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * betacf(a, b, x) / a
    return 1.0 - front * betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t, df):
    return betai(df / 2.0, 0.5, df / (df + t * t))


def t975(df):
    """The 97.5 % quantile of Student's t with `df` (real) degrees of freedom."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_two_sided_p(mid, df) > 0.05:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def mean(v):
    return sum(v) / len(v)


def var(v):
    m = mean(v)
    return sum((x - m) ** 2 for x in v) / (len(v) - 1)


def compare(a_by_iter, b_by_iter):
    """Paired and Welch statistics of A − B, or None with fewer than 2 pairs."""
    iters = sorted(set(a_by_iter) & set(b_by_iter))
    if len(iters) < 2:
        return None
    a = [a_by_iter[i] for i in iters]
    b = [b_by_iter[i] for i in iters]
    n = len(iters)
    d = [x - y for x, y in zip(a, b)]
    dm = mean(d)
    sd = math.sqrt(var(d))
    se_p = sd / math.sqrt(n)
    t_p = t975(n - 1)
    va, vb = var(a), var(b)
    se_w = math.sqrt(va / n + vb / n)
    df_w = (va / n + vb / n) ** 2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
    t_w = t975(df_w)
    r = (sum((x - mean(a)) * (y - mean(b)) for x, y in zip(a, b)) / (n - 1)
         / math.sqrt(va * vb)) if va > 0 and vb > 0 else 0.0
    paired = r > 0
    if paired:
        p = t_two_sided_p(dm / se_p, n - 1) if se_p > 0 else 0.0
    else:
        p = t_two_sided_p(dm / se_w, df_w) if se_w > 0 else 0.0
    return {
        "n": n, "delta": dm,
        "paired": (dm - t_p * se_p, dm + t_p * se_p),
        "welch": (dm - t_w * se_w, dm + t_w * se_w),
        "r": r, "test": "paired" if paired else "Welch", "p": p,
    }


def holm(ps):
    """Holm-adjusted p values, in the order given."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out = [0.0] * len(ps)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


# ---- formatting ----------------------------------------------------------------------

def signed(x, digits=3):
    text = f"{x:+.{digits}f}"
    return text.replace("-", MINUS)


def interval(m, ci, digits=3):
    return f"{signed(m, digits)} [{signed(ci[0], digits)}, {signed(ci[1], digits)}]"


def fmt_p(p):
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def mean_sd(v, digits=3):
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{mean(v):.{digits}f} ± {math.sqrt(var(v)):.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---- the tables ----------------------------------------------------------------------

# the columns every table reads; a runs.csv without one is not hkd-analyze's
REQUIRED_COLUMNS = ["teacher", "iter", "train_split", "objective", "label_smoothing",
                    "val_acc", "final_train_acc", "eval_test2k_human_ce",
                    "eval_test2k_ts_human_ce", "eval_cinic_ce"]


def read_runs(path):
    if not path.is_file():
        die(f"{path} not found; run `just study3` first (it restores the archived runs, "
            "trains what is missing and analyses), or pass --runs docs/results/study3/runs.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    # refuse what is not hkd-analyze's runs.csv before anything is written
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        die(f"{path}: no column {', '.join(f'`{c}`' for c in missing)}; expected the "
            "runs.csv that hkd-analyze writes (truncated or another file?)")
    if not rows:
        die(f"{path}: no runs")
    for n, r in enumerate(rows, start=2):
        if not (r.get("iter") or "").isdigit():
            die(f"{path}, line {n}: iter `{r.get('iter')}` is not a whole number")
    arms = {}
    for r in rows:
        a = arm_of(r)
        if a is not None:
            arms.setdefault(a, []).append(r)
    return rows, arms


def values(arm_rows, column):
    out = {}
    for r in arm_rows:
        v = num(r, column)
        if v is not None:
            out[int(r["iter"])] = v
    return out


def family(arms, comparisons, endpoints):
    """(comparison, endpoint, statistics, digits) of each comparison with 2 or more pairs."""
    out = []
    for a, b in comparisons:
        if a not in arms or b not in arms:
            continue
        for label, column, _, digits in endpoints:
            c = compare(values(arms[a], column), values(arms[b], column))
            if c is not None:
                out.append((f"{a} {MINUS} {b}", label, c, digits))
    return out


def primary_table(title, primary):
    """A family's table with Holm's adjustment over its rows."""
    adjusted = holm([c["p"] for _, _, c, _ in primary])
    return (
        title,
        ["comparison", "endpoint", "pairs", "Δ [95 % CI, paired]", "Δ [95 % CI, Welch]", "r",
         "test", "p", "Holm p"],
        [[cmp, ep, str(c["n"]), interval(c["delta"], c["paired"], d),
          interval(c["delta"], c["welch"], d), f"{c['r']:+.2f}".replace("-", MINUS),
          c["test"], fmt_p(c["p"]), fmt_p(h)]
         for (cmp, ep, c, d), h in zip(primary, adjusted)],
        2)


def exploratory_table(title, rows):
    """Comparisons without adjustment, each with its test of record's interval."""
    return (
        title,
        ["comparison", "endpoint", "pairs", "Δ [95 % CI, test of record]", "test", "p"],
        [[cmp, ep, str(c["n"]),
          interval(c["delta"], c["paired"] if c["test"] == "paired" else c["welch"], d),
          c["test"], fmt_p(c["p"])]
         for cmp, ep, c, d in rows],
        2)


def build_long_tables(arms):
    """Tables 9-11: the longer regime (configs/study3-long.toml), its own family."""
    tables = {}
    rows = []
    for name, what in ARMS:
        rs = arms.get(name, [])
        if not rs or name not in LONG_ARMS:
            continue
        col = lambda c: [v for v in values(rs, c).values()]  # noqa: E731
        rows.append([name, str(len(rs)), mean_sd(col("val_acc")),
                     mean_sd(col("eval_test2k_human_ce")), mean_sd(col("eval_test2k_ts_human_ce")),
                     mean_sd(col("eval_cinic_ce")), mean_sd(col("final_train_acc")),
                     mean_sd(col("eval_train8k_acc")),
                     mean_sd(col("eval_val_fgsm_eps8_255_acc")),
                     mean_sd(col("eval_val_pgd_eps8_255_acc"))])
    tables[9] = ("The longer regime (150 epochs), every arm (mean ± sample sd over repeats)",
                 ["arm", "runs", "val acc", "held-out human CE", "held-out human CE, TS",
                  "cinic CE", "train acc (augmented, last epoch)", "train8k acc (evaluated)",
                  "val acc, FGSM 8/255", "val acc, PGD 8/255"],
                 rows, 1)
    primary = family(arms, LONG_COMPARISONS, PRIMARY_ENDPOINTS)
    tables[10] = primary_table(
        "The longer regime's primary family (declared with configs/study3-long.toml, before "
        "its runs): Δ = A − B, Holm over these rows", primary)
    tables[11] = exploratory_table(
        "The longer regime's robustness and accuracy (exploratory)",
        family(arms, LONG_COMPARISONS, ROBUSTNESS_ENDPOINTS))
    return tables


def build_tables(arms):
    """{table number: (title, header, rows)}; the first `key` columns of each row label it."""
    tables = {}
    rows = []
    for name, what in ARMS:
        rs = arms.get(name, [])
        if not rs:
            continue
        col = lambda c: [v for v in values(rs, c).values()]  # noqa: E731
        rows.append([name, what, str(len(rs)), mean_sd(col("val_acc")),
                     mean_sd(col("eval_test2k_human_ce")), mean_sd(col("eval_test2k_ts_human_ce")),
                     mean_sd(col("eval_cinic_ce")), mean_sd(col("final_train_acc"))])
    tables[6] = ("Every arm (mean ± sample sd over repeats)",
                 ["arm", "target", "runs", "val acc", "held-out human CE",
                  "held-out human CE, TS", "cinic CE", "train acc (augmented, last epoch)"],
                 rows, 1)

    primary = [x for x in family(arms, COMPARISONS, PRIMARY_ENDPOINTS) if x[2]["n"] >= MIN_PAIRS]
    preliminary = [x for x in family(arms, COMPARISONS, PRIMARY_ENDPOINTS)
                   if x[2]["n"] < MIN_PAIRS]
    tables[7] = primary_table(
        "The primary family: Δ = A − B, paired and Welch 95 % intervals, the test of record, "
        "p and Holm-adjusted p over the family", primary)
    tables[8] = exploratory_table(
        f"Secondary endpoints, and the primary endpoints of comparisons with fewer than "
        f"{MIN_PAIRS} pairs (exploratory: no adjustment, not part of any claim's test)",
        preliminary + family(arms, COMPARISONS, SECONDARY_ENDPOINTS))
    return tables


def render(tables):
    parts = []
    for n, (title, header, rows, _) in sorted(tables.items()):
        parts.append(f"#### Table {n}. {title}\n\n{table(header, rows)}")
    return "\n\n".join(parts)


def parse_tables(block):
    """{table number: (header, {row label: row})} from a generated block (markdown)."""
    out = {}
    for m in re.finditer(r"#### Table (\d+)\. [^\n]*\n\n((?:\|[^\n]*\n?)+)", block):
        lines = [l for l in m.group(2).strip().split("\n")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in lines[2:]]
        key = 2 if header[:2] == ["comparison", "endpoint"] else 1
        out[int(m.group(1))] = (header, {", ".join(r[:key]): r for r in rows})
    return out


NUMBER = rf"[+{MINUS}]?\d+\.\d+"
# A citation may wrap across lines: any run of whitespace stands for one space.
CITATION = re.compile(
    rf"(?P<text>(?:{NUMBER}(?:\s+\[{NUMBER},\s+{NUMBER}\])?|<\s+0\.001))"
    r"\s+\(table\s+(?P<table>\d+):\s+(?P<row>[^/]+?)\s+/\s+(?P<col>[^()]+?)\)")


def squash(s):
    """`s` with each run of whitespace one space (a citation wrapped across lines)."""
    return " ".join(s.split())
UNCITED = re.compile(rf"[+{MINUS}]\d+\.\d{{3}}")


def check(text):
    """Problems of docs/results.md's third study: [] when every citation matches."""
    if BEGIN not in text or END not in text:
        return [f"docs/results.md has no {BEGIN} … {END} block"]
    block = text[text.index(BEGIN):text.index(END)]
    tables = parse_tables(block)
    start = text.find(PROSE_HEADING)
    if start < 0:
        return [f"docs/results.md has no `{PROSE_HEADING}` section"]
    nxt = text.find("\n# ", start + 1)
    prose = text[start:nxt if nxt > 0 else len(text)]
    prose = prose.replace(block, "")
    problems = []
    cited = 0
    for m in CITATION.finditer(prose):
        cited += 1
        t, row, col = int(m.group("table")), squash(m.group("row")), squash(m.group("col"))
        where = f"`{squash(m.group(0))}`"
        if t not in tables:
            problems.append(f"{where}: there is no table {t} in the generated block")
            continue
        header, rows = tables[t]
        if row not in rows:
            problems.append(f"{where}: table {t} has no row `{row}`")
            continue
        if col not in header:
            problems.append(f"{where}: table {t} has no column `{col}`")
            continue
        cell = rows[row][header.index(col)]
        if cell != squash(m.group("text")):
            problems.append(f"{where}: the cell holds `{cell}`")
    rest = CITATION.sub("", prose)
    for m in UNCITED.finditer(rest):
        line = rest[:m.start()].count("\n") + 1
        problems.append(f"`{m.group(0)}` (line {line} of the section) cites no table cell: "
                        "write it as `NUMBER (table N: ROW / COLUMN)`")
    if cited == 0:
        problems.append("the third study's prose cites no table cell")
    return problems


def self_test(text):
    """The check passes on `text`, and fails on a flipped sign and on a moved cell."""
    problems = check(text)
    if problems:
        die("the check fails on docs/results.md itself:\n  " + "\n  ".join(problems))
    m = next((m for m in CITATION.finditer(text) if m.group("text")[0] in "+" + MINUS), None)
    if m is None:
        die("no signed citation to plant a wrong sign in")
    flipped = {"+": MINUS, MINUS: "+"}[m.group("text")[0]] + m.group("text")[1:]
    planted = text[:m.start("text")] + flipped + text[m.end("text"):]
    if not check(planted):
        die(f"the check passed a planted wrong sign ({m.group('text')} -> {flipped})")
    block = text[text.index(BEGIN):text.index(END)]
    header, rows = parse_tables(block)[int(m.group("table"))]
    other = next((r for r in rows if r != squash(m.group("row"))
                  and rows[r][header.index(squash(m.group("col")))] != squash(m.group("text"))),
                 None)
    if other is None:
        die("no other row to plant a wrong cell with")
    planted = text[:m.start("row")] + other + text[m.end("row"):]
    if not check(planted):
        die(f"the check passed a planted wrong cell (row `{m.group('row')}` -> `{other}`)")
    # the longer regime's tables, from the short regime's hard/human/shuffled rows standing
    # in for its runs (the same columns): one row per arm, 6 tests in its family
    _, arms = read_runs(RUNS_CSV if RUNS_CSV.is_file() else OUT / "runs.csv")
    long_tables = build_long_tables({a: arms[a] for a in LONG_ARMS if a in arms})
    if [r[0] for r in long_tables[9][2]] != LONG_ARMS or len(long_tables[10][2]) != 6:
        die(f"the longer regime's tables came out wrong: {long_tables}")
    print(f"{sys.argv[0]}: self-test: the check passes on docs/results.md and fails on a "
          f"planted wrong sign ({m.group('text')} -> {flipped}) and a planted wrong cell "
          f"(row `{other}`)")


def main(argv):
    text = REPORT.read_text()
    if "--self-test" in argv:
        self_test(text)
        return 0
    if "--check" in argv:
        problems = check(text)
        for p in problems:
            print(f"{sys.argv[0]}: {p}", file=sys.stderr)
        if not problems:
            print(f"{sys.argv[0]}: every cited number of the third study matches its cell")
        return 1 if problems else 0
    runs = RUNS_CSV
    if "--runs" in argv:
        runs = Path(argv[argv.index("--runs") + 1])
    _, arms = read_runs(runs)
    tables = build_tables(arms)
    # the longer regime, once its analysis (or the committed copy of its runs) exists
    long_runs = Path(argv[argv.index("--long") + 1]) if "--long" in argv else next(
        (p for p in (LONG_RUNS_CSV, OUT / "long-runs.csv") if p.is_file()), None)
    if long_runs is not None:
        _, long_arms = read_runs(long_runs)
        tables.update(build_long_tables(long_arms))
    if BEGIN not in text or END not in text:
        die(f"docs/results.md has no {BEGIN} … {END} lines to write the tables between")
    new = text[:text.index(BEGIN) + len(BEGIN)] + "\n" + render(tables) + "\n" + text[text.index(END):]
    tmp = REPORT.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(REPORT)
    OUT.mkdir(parents=True, exist_ok=True)
    if runs.resolve() != (OUT / "runs.csv").resolve():
        shutil.copyfile(runs, OUT / "runs.csv.tmp")
        (OUT / "runs.csv.tmp").replace(OUT / "runs.csv")
        # the figures docs/results.md shows, drawn by the same analysis
        for name in FIGURES:
            src = runs.parent / "fig" / name
            if src.is_file():
                (OUT / "fig").mkdir(exist_ok=True)
                shutil.copyfile(src, OUT / "fig" / (name + ".tmp"))
                (OUT / "fig" / (name + ".tmp")).replace(OUT / "fig" / name)
    if long_runs is not None and long_runs.resolve() != (OUT / "long-runs.csv").resolve():
        shutil.copyfile(long_runs, OUT / "long-runs.csv.tmp")
        (OUT / "long-runs.csv.tmp").replace(OUT / "long-runs.csv")
    print(f"{sys.argv[0]}: wrote tables {min(tables)}–{max(tables)} of docs/results.md from "
          f"{runs} ({sum(len(v) for v in arms.values())} runs in {len(arms)} arms)"
          + (f" and {long_runs}" if long_runs is not None else ""))
    problems = check(new)
    for p in problems:
        print(f"{sys.argv[0]}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
