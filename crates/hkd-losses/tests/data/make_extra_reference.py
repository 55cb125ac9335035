"""PyTorch reference values for the two settings the shared cases do not cover:
label smoothing of the hard-label term and the `pilot` human target.

Reads the shared inputs (logits.npy, teacher_logits.npy, human.npy, hard.npy) from
$HKD_REFERENCE_DIR/torch/losses (default: ../shared/reference beside the workspace) and
writes extra_cases.json and extra_grad_*.npy next to this script. Everything is float64.
Before writing, it recomputes the 36 shared cases with the same formulas and stops unless
they match cases.json, so both sets are computed alike.

    python crates/hkd-losses/tests/data/make_extra_reference.py
"""

import json
import os
import pathlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F

HERE = pathlib.Path(__file__).resolve().parent
WORKSPACE = HERE.parents[3]
REFERENCE = pathlib.Path(os.environ.get("HKD_REFERENCE_DIR", WORKSPACE.parent / "shared" / "reference"))
INPUTS = REFERENCE / "torch" / "losses"

torch.set_default_dtype(torch.float64)
# 'mean' is the original project's reduction on purpose (the crate's elementwise_mean).
warnings.filterwarnings("ignore", message="reduction: 'mean' divides the total loss")


def load(name):
    return torch.from_numpy(np.load(INPUTS / name))


LOGITS = load("logits.npy")
TEACHER = load("teacher_logits.npy")
HUMAN = load("human.npy")
HARD = load("hard.npy")
CLASSES = LOGITS.shape[1]

DEFAULTS = {
    "lambda": 0.5,
    "gamma": 0.0,
    "temperature_teacher": 1.0,
    "temperature_human": 1.0,
    "distil_fn": "KL",
    "kl_reduction": "elementwise_mean",
    "human_smoothing": 0.02,
    "human_target": "log",
    "label_smoothing": 0.0,
}


def soft_term(student, target, temperature, cfg):
    """T²·D(log_softmax(s/T), target) for a target distribution `target`."""
    log_q = F.log_softmax(student / temperature, dim=1)
    if cfg["distil_fn"] == "KL":
        reduction = {"batchmean": "batchmean", "elementwise_mean": "mean"}[cfg["kl_reduction"]]
        value = F.kl_div(log_q, target, reduction=reduction)
    else:
        value = -(target * log_q).sum(1).mean()
    return temperature**2 * value


def human_target(cfg):
    t = cfg["temperature_human"]
    if cfg["human_target"] == "pilot":
        return F.softmax(HUMAN / t, dim=1)
    eps = cfg["human_smoothing"]
    smoothed = (HUMAN + eps) / (1 + CLASSES * eps)
    return F.softmax(torch.log(smoothed) / t, dim=1)


def parts(mode, cfg, logits):
    hard = F.cross_entropy(logits, HARD, label_smoothing=cfg["label_smoothing"])
    kd = teacher_term = human_term = None
    if mode == "human":
        kd = soft_term(logits, human_target(cfg), cfg["temperature_human"], cfg)
    elif mode == "student":
        gamma = cfg["gamma"]
        t = cfg["temperature_teacher"]
        teacher_term = (1 - gamma) * soft_term(logits, F.softmax(TEACHER / t, dim=1), t, cfg)
        human_term = gamma * soft_term(logits, human_target(cfg), cfg["temperature_human"], cfg)
        kd = teacher_term + human_term
    total = hard if kd is None else (1 - cfg["lambda"]) * hard + cfg["lambda"] * kd
    return {"hard": hard, "kd": kd, "teacher_term": teacher_term, "human_term": human_term, "total": total}


def check_against_shared_cases():
    shared = json.loads((INPUTS / "cases.json").read_text())["cases"]
    for index, case in enumerate(shared):
        cfg = dict(DEFAULTS)
        cfg.update(
            {key: case[key] for key in ("lambda", "gamma", "distil_fn", "kl_reduction", "human_smoothing")},
            temperature_teacher=case["temperature_t"],
            temperature_human=case["temperature_h"],
        )
        found = parts(case["mode"], cfg, LOGITS)
        for name, expected in case["expected"].items():
            value = found[name]
            if value is None:  # the shared data logs kd = hard CE in baseline mode
                assert case["mode"] == "baseline" and name == "kd", (index, name)
                value = found["hard"]
            assert abs(value.item() - expected) <= 1e-12 * abs(expected), (index, name, value.item(), expected)
    return len(shared)


def main():
    checked = check_against_shared_cases()
    cases = []

    def add(name, mode, grad=False, **settings):
        cfg = dict(DEFAULTS)
        cfg.update(settings)
        logits = LOGITS.clone().requires_grad_(True)
        found = parts(mode, cfg, logits)
        case = {
            "name": name,
            "mode": mode,
            "config": cfg,
            "expected": {key: None if value is None else value.item() for key, value in found.items()},
        }
        if grad:
            (gradient,) = torch.autograd.grad(found["total"], logits)
            case["grad_file"] = f"extra_grad_{name}.npy"
            np.save(HERE / case["grad_file"], gradient.numpy())
        cases.append(case)

    # (i) label smoothing α of the hard-label term.
    for alpha in (0.1, 0.3):
        add(f"ls{alpha}_baseline", "baseline", grad=alpha == 0.3, label_smoothing=alpha)
        add(
            f"ls{alpha}_human",
            "human",
            grad=alpha == 0.3,
            label_smoothing=alpha,
            **{"lambda": 0.6},
            distil_fn="KL",
            kl_reduction="elementwise_mean",
            temperature_human=2.0,
        )
    add(
        "ls0.1_student",
        "student",
        label_smoothing=0.1,
        **{"lambda": 0.6},
        gamma=0.5,
        temperature_teacher=4.0,
        temperature_human=2.0,
        kl_reduction="batchmean",
    )

    # (ii) the pilot human target softmax(h / T_h) of the raw rows.
    variants = [("KL", "batchmean"), ("KL", "elementwise_mean"), ("CE", "batchmean")]
    for mode in ("human", "student"):
        for temperature in (0.5, 1.0, 5.0):
            for distil_fn, reduction in variants:
                tag = distil_fn if distil_fn == "CE" else f"{distil_fn}_{reduction}"
                add(
                    f"pilot_{mode}_T{temperature}_{tag}",
                    mode,
                    grad=temperature == 5.0 and tag == "KL_batchmean",
                    human_target="pilot",
                    **{"lambda": 0.6},
                    gamma=0.5,
                    temperature_teacher=4.0,
                    temperature_human=temperature,
                    distil_fn=distil_fn,
                    kl_reduction=reduction,
                )
    # Both settings at once.
    add(
        "pilot_ls0.3_student",
        "student",
        grad=True,
        human_target="pilot",
        label_smoothing=0.3,
        **{"lambda": 0.6},
        gamma=0.5,
        temperature_teacher=4.0,
        temperature_human=2.0,
        distil_fn="CE",
    )

    out = {
        "made_with": f"PyTorch {torch.__version__} (float64), {pathlib.Path(__file__).name}",
        "inputs": "logits.npy, teacher_logits.npy, human.npy, hard.npy of $HKD_REFERENCE_DIR/torch/losses",
        "definitions": "hard = F.cross_entropy(s, y, label_smoothing=label_smoothing); "
        "D = T^2 * F.kl_div(log_softmax(s/T), target, reduction) (KL; elementwise_mean = 'mean') "
        "or T^2 * -(target * log_softmax(s/T)).sum(1).mean() (CE); human target softmax(h/T_h) "
        "(pilot) or softmax(log((h+eps)/(1+C*eps))/T_h) (log); teacher target softmax(t/T_t); "
        "teacher_term and human_term weighted by 1-gamma and gamma; "
        "total = (1-lambda)*hard + lambda*kd (hard in baseline mode); grad_file: d total / d s",
        "cases": cases,
    }
    (HERE / "extra_cases.json").write_text(json.dumps(out, indent=1) + "\n")
    grads = sum("grad_file" in case for case in cases)
    print(f"checked {checked} shared cases; wrote {len(cases)} cases and {grads} gradients with torch {torch.__version__}")


if __name__ == "__main__":
    main()
