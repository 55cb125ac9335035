#!/usr/bin/env python3
"""PyTorch side of the hkd-arch throughput benchmark (crates/hkd-arch/benches/throughput.rs).

Builds the same CIFAR networks as hkd-arch (ResNet-N with basic blocks and conv1x1+BN
shortcuts, as in hysts' resnet.py; Shake-Shake as in hysts' shake_shake.py) and times the
same two things on the CPU:

- eval: a forward pass of a batch of --eval-batch images under torch.inference_mode();
- train step: a teacher forward (same architecture, eval mode, no grad), the student
  forward/backward in training mode with the KD loss
  (1 - lambda) * CE(student, labels) + lambda * T^2 * KL(softmax(t/T) || softmax(s/T)),
  and an SGD step (lr 0.01, momentum 0.9, weight decay 5e-4), batch --train-batch.

Prints one JSON object: model, threads, eval_img_per_s, train_img_per_s, peak_rss_mib
(VmHWM during the training steps). Standalone: `python3 bench/torch_reference.py
--model resnet8`. Needs only torch.

The KD benchmark's pairs (`--model resnet32x4:resnet8x4`, teacher:student, hkd-arch's
names) are built from RepDistiller's own definitions (its `models` package, imported from
`--repdistiller DIR` or `$HKD_REPDISTILLER_DIR`, a checkout of HobbitLong/RepDistiller),
with 100 classes: the teacher forward in eval mode, the student's train step as above.
"""

import argparse
import json
import re
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

TEMPERATURE = 4.0
LAMBDA = 0.5


# ---- ResNet (basic blocks) ---------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, inc, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inc, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if inc != out:
            self.shortcut.add_module("conv", nn.Conv2d(inc, out, 1, stride, 0, bias=False))
            self.shortcut.add_module("bn", nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class ResNet(nn.Module):
    def __init__(self, depth, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        stages, inc = [], 16
        for out, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(inc if i == 0 else out, out, stride if i == 0 else 1))
            stages.append(nn.Sequential(*blocks))
            inc = out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        x = self.stages(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---- Shake-Shake --------------------------------------------------------------------------
class ShakeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1, x2, alpha, beta):
        ctx.save_for_backward(beta)
        return x1 * alpha + x2 * (1 - alpha)

    @staticmethod
    def backward(ctx, grad):
        (beta,) = ctx.saved_tensors
        return grad * beta, grad * (1 - beta), None, None


class ResidualPath(nn.Module):
    def __init__(self, inc, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inc, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)

    def forward(self, x):
        x = F.relu(x, inplace=False)
        x = F.relu(self.bn1(self.conv1(x)), inplace=False)
        return self.bn2(self.conv2(x))


class DownsamplingShortcut(nn.Module):
    def __init__(self, inc):
        super().__init__()
        self.conv1 = nn.Conv2d(inc, inc, 1, 1, 0, bias=False)
        self.conv2 = nn.Conv2d(inc, inc, 1, 1, 0, bias=False)
        self.bn = nn.BatchNorm2d(2 * inc)

    def forward(self, x):
        x = F.relu(x, inplace=False)
        y1 = self.conv1(F.avg_pool2d(x, kernel_size=1, stride=2, padding=0))
        y2 = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y2 = self.conv2(F.avg_pool2d(y2, kernel_size=1, stride=2, padding=0))
        return self.bn(torch.cat([y1, y2], dim=1))


class ShakeBlock(nn.Module):
    def __init__(self, inc, out, stride):
        super().__init__()
        self.residual_path1 = ResidualPath(inc, out, stride)
        self.residual_path2 = ResidualPath(inc, out, stride)
        self.shortcut = nn.Sequential()
        if inc != out:
            self.shortcut.add_module("downsample", DownsamplingShortcut(inc))

    def forward(self, x):
        x1 = self.residual_path1(x)
        x2 = self.residual_path2(x)
        if self.training:
            shape = (x.size(0), 1, 1, 1)
            alpha = torch.rand(shape, dtype=x.dtype)
            beta = torch.rand(shape, dtype=x.dtype)
            y = ShakeFunction.apply(x1, x2, alpha, beta)
        else:
            y = 0.5 * (x1 + x2)
        return self.shortcut(x) + y


class ShakeShake(nn.Module):
    def __init__(self, depth, width, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        stages, inc = [], width
        for out, stride in [(width, 1), (2 * width, 2), (4 * width, 2)]:
            blocks = []
            for i in range(n):
                blocks.append(ShakeBlock(inc if i == 0 else out, out, stride if i == 0 else 1))
            stages.append(nn.Sequential(*blocks))
            inc = out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        x = self.stages(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# hkd-arch's names of RepDistiller's networks -> its model_dict keys
REPDISTILLER_NAMES = {
    "resnet8x4": "resnet8x4",
    "resnet32x4": "resnet32x4",
    "wrn_16_2": "wrn_16_2",
    "wrn_40_2": "wrn_40_2",
    "vgg8": "vgg8",
    "vgg13": "vgg13",
    "shufflev2": "ShuffleV2",
    "mobilenetv2": "MobileNetV2",
}


def build_repdistiller(name, classes, root):
    import os
    import sys

    root = root or os.environ.get("HKD_REPDISTILLER_DIR")
    if not root or not os.path.isfile(os.path.join(root, "models", "__init__.py")):
        raise SystemExit(
            "torch_reference.py: the pairs need RepDistiller's models package: pass "
            "--repdistiller DIR or set HKD_REPDISTILLER_DIR to a checkout of "
            "HobbitLong/RepDistiller"
        )
    if root not in sys.path:
        sys.path.insert(0, root)
    import contextlib

    from models import model_dict  # RepDistiller's own definitions

    if name not in REPDISTILLER_NAMES:
        raise SystemExit(f"torch_reference.py: {name!r} is not one of RepDistiller's networks")
    # its mobilenetv2 prints its settings when built: keep stdout for the JSON line
    with contextlib.redirect_stdout(sys.stderr):
        return model_dict[REPDISTILLER_NAMES[name]](num_classes=classes)


def build(name):
    m = re.fullmatch(r"resnet(\d+)", name)
    if m:
        return ResNet(int(m.group(1)))
    m = re.fullmatch(r"shake(\d+)-2x(\d+)d", name)
    if m:
        return ShakeShake(int(m.group(1)), int(m.group(2)))
    raise SystemExit(f"torch_reference.py: unsupported model {name!r}")


# ---- measurement --------------------------------------------------------------------------
def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def time_it(step, reps, min_time):
    step()
    times, start = [], time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def kd_loss(s, t, y):
    ce = F.cross_entropy(s, y)
    kl = F.kl_div(
        F.log_softmax(s / TEMPERATURE, dim=1),
        F.log_softmax(t / TEMPERATURE, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - LAMBDA) * ce + LAMBDA * TEMPERATURE**2 * kl


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3, help="timed steps at least")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per phase at least")
    ap.add_argument("--repdistiller", help="a checkout of RepDistiller (for the pairs)")
    ap.add_argument("--classes", type=int, default=10)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if ":" in a.model:
        t_name, s_name = a.model.split(":", 1)
        teacher = build_repdistiller(t_name, a.classes, a.repdistiller)
        student = build_repdistiller(s_name, a.classes, a.repdistiller)
    else:
        student, teacher = build(a.model), build(a.model)
    teacher.eval()

    xe = torch.rand(a.eval_batch, 3, 32, 32) * 2 - 1

    def eval_step():
        student.eval()
        with torch.inference_mode():
            student(xe).sum().item()

    eval_s = time_it(eval_step, a.reps, a.min_time)

    xt = torch.rand(a.train_batch, 3, 32, 32) * 2 - 1
    yt = torch.randint(0, a.classes, (a.train_batch,))
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step():
        student.train()
        with torch.no_grad():
            t = teacher(xt)
        loss = kd_loss(student(xt), t, yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    reset_peak_rss()
    train_s = time_it(train_step, a.reps, a.min_time)
    print(
        json.dumps(
            {
                "model": a.model,
                "threads": a.threads,
                "torch_version": torch.__version__,
                "eval_img_per_s": round(a.eval_batch / eval_s, 1),
                "train_img_per_s": round(a.train_batch / train_s, 1),
                "peak_rss_mib": round(peak_rss_mib(), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
