#!/usr/bin/env python3
"""PyTorch references for the network families taken from the KD benchmarks
(RepDistiller / mdistiller CIFAR models), without committing weight files.

Each model is rebuilt here in PyTorch from its public definition, its whole state
(weights, biases, BatchNorm affine parameters and running statistics) is filled by a
formula that the Rust test (`tests/families.rs`) reproduces bit for bit, and its eval-mode
logits on formula-made inputs are written with the state_dict names and shapes and the
parameter counts, as one small JSON file per model in this directory; the parameter
counts of some more names go to `param_counts.json`.

Run it with a PyTorch installed outside the repository (the references were made with
PyTorch 2.15, CPU):

    python crates/hkd-arch/tests/data/make_family_reference.py

The fill formula (see `fill_values`): element k of the tensor called `name` gets
u = (fmix32(fnv1a32(name) + k * 0x9E3779B9) mod 2001) / 1000 - 1, a number in [-1, 1]
with three decimals, computed in float64, and then, by the kind of tensor:

    conv weight [O, I, kh, kw]   u * sqrt(3 * gain / (I * kh * kw))
    linear weight [O, I]         u * sqrt(3 / I)
    BatchNorm weight             1 + 0.25 * u
    any bias, BN running_mean    0.1 * u
    BN running_var               1 + 0.5 * u
    num_batches_tracked          7

each value rounded once to float32. `gain` (in the JSON) keeps the activations of deep
residual networks at a moderate size. The input batch is the tensor `input` of shape
[4, 3, 32, 32] filled with 2 * u.
"""

import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = 100  # RepDistiller's checkpoints are CIFAR-100 models
INPUT_SHAPE = (4, 3, 32, 32)


# ---- the fill formula ---------------------------------------------------------------

M32 = 0xFFFFFFFF


def fnv1a32(name):
    h = 0x811C9DC5
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & M32
    return h


def unit_values(name, n):
    """u_k in [-1, 1] for k = 0..n-1, float64."""
    k = np.arange(n, dtype=np.uint64)
    x = (np.uint64(fnv1a32(name)) + k * np.uint64(0x9E3779B9)) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & np.uint64(M32)
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    return (x % np.uint64(2001)).astype(np.float64) / 1000.0 - 1.0


def fill_values(name, shape, gain):
    n = int(np.prod(shape)) if len(shape) else 1
    u = unit_values(name, n)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "weight" and len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        v = u * math.sqrt(3.0 * gain / fan_in)
    elif leaf == "weight" and len(shape) == 2:
        v = u * math.sqrt(3.0 / shape[1])
    elif leaf == "weight":
        v = 1.0 + 0.25 * u
    elif leaf in ("bias", "running_mean"):
        v = 0.1 * u
    elif leaf == "running_var":
        v = 1.0 + 0.5 * u
    else:
        raise ValueError(f"no fill rule for {name}")
    return v.astype(np.float32).reshape(shape)


def fill_model(model, gain):
    sd = model.state_dict()
    new = {}
    for name, t in sd.items():
        if name.endswith("num_batches_tracked"):
            new[name] = torch.tensor(7, dtype=torch.int64)
        else:
            new[name] = torch.from_numpy(fill_values(name, tuple(t.shape), gain))
    model.load_state_dict(new)


# ---- RepDistiller's CIFAR ResNet (resnet8x4, resnet32x4) ------------------------------


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class ResNetX4(nn.Module):
    """ResNet(depth, [32, 64, 128, 256], 'basicblock')."""

    def __init__(self, depth, num_classes):
        super().__init__()
        n = (depth - 2) // 6
        widths = [32, 64, 128, 256]
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        inplanes = widths[0]
        for i, (planes, stride) in enumerate(zip(widths[1:], [1, 2, 2])):
            blocks = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if s != 1 or inplanes != planes:
                    down = nn.Sequential(
                        nn.Conv2d(inplanes, planes, 1, stride=s, bias=False),
                        nn.BatchNorm2d(planes),
                    )
                blocks.append(BasicBlock(inplanes, planes, s, down))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.avg_pool2d(x, 8)
        return self.fc(x.view(x.size(0), -1))


# ---- RepDistiller's VGG with BatchNorm (vgg8, vgg11, vgg13, vgg16, vgg19) -------------

VGG_CFG = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


class VGG(nn.Module):
    def __init__(self, depth, num_classes):
        super().__init__()
        inc = 3
        for i, widths in enumerate(VGG_CFG[depth]):
            layers = []
            for w in widths:
                layers += [nn.Conv2d(inc, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                inc = w
            setattr(self, f"block{i}", nn.Sequential(*layers[:-1]))
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        h = x.shape[2]
        x = F.max_pool2d(F.relu(self.block0(x)), 2)
        x = F.max_pool2d(F.relu(self.block1(x)), 2)
        x = F.max_pool2d(F.relu(self.block2(x)), 2)
        x = F.relu(self.block3(x))
        if h == 64:
            x = F.max_pool2d(x, 2)
        x = F.relu(self.block4(x))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(x.view(x.size(0), -1))


# ---- RepDistiller's MobileNetV2 (mobile_half: expansion 6, width 0.5) ------------------


def conv_bn_relu(inp, oup, k, stride):
    return nn.Sequential(
        nn.Conv2d(inp, oup, k, stride, k // 2, bias=False), nn.BatchNorm2d(oup), nn.ReLU()
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand):
        super().__init__()
        hidden = inp * expand
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Half(nn.Module):
    def __init__(self, num_classes, expand=6, width=0.5):
        super().__init__()
        setting = [  # expansion, channels, blocks, stride of the first
            (1, 16, 1, 1),
            (expand, 24, 2, 1),
            (expand, 32, 3, 2),
            (expand, 64, 4, 2),
            (expand, 96, 3, 1),
            (expand, 160, 3, 2),
            (expand, 320, 1, 1),
        ]
        inc = int(32 * width)
        self.conv1 = conv_bn_relu(3, inc, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in setting:
            out = int(c * width)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(inc, out, s if i == 0 else 1, t))
                inc = out
            self.blocks.append(nn.Sequential(*layers))
        self.conv2 = conv_bn_relu(inc, 1280, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.conv1(x)
        for b in self.blocks:
            x = b(x)
        x = self.conv2(x)
        x = F.avg_pool2d(x, 2, ceil_mode=True)  # AvgPool2d(32 // 16, ceil_mode=True)
        return self.classifier(x.view(x.size(0), -1))


# ---- RepDistiller's Wide ResNet (models/wrn.py: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2) -


class WrnBasicBlock(nn.Module):
    """models/wrn.py's BasicBlock (drop rate 0)."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(
            in_planes, out_planes, 1, stride, 0, bias=False
        ) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WrnBasicBlock(i == 0 and in_planes or out_planes, out_planes, i == 0 and stride or 1)
                for i in range(nb_layers)
            ]
        )

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes, widen_factor=1):
        super().__init__()
        nChannels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, nChannels[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, nChannels[0], nChannels[1], 1)
        self.block2 = NetworkBlock(n, nChannels[1], nChannels[2], 2)
        self.block3 = NetworkBlock(n, nChannels[2], nChannels[3], 2)
        self.bn1 = nn.BatchNorm2d(nChannels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(nChannels[3], num_classes)
        self.nChannels = nChannels[3]

    def forward(self, x):
        out = self.conv1(x)
        out = self.block3(self.block2(self.block1(out)))
        out = self.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        return self.fc(out.view(-1, self.nChannels))


# ---- RepDistiller's ShuffleNetV2 (models/ShuffleNetv2.py: ShuffleV2 = net_size 1) -------


class ShuffleBlock(nn.Module):
    def __init__(self, groups=2):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        N, C, H, W = x.size()
        g = self.groups
        return x.view(N, g, C // g, H, W).permute(0, 2, 1, 3, 4).reshape(N, C, H, W)


class SplitBlock(nn.Module):
    def __init__(self, ratio):
        super().__init__()
        self.ratio = ratio

    def forward(self, x):
        c = int(x.size(1) * self.ratio)
        return x[:, :c, :, :], x[:, c:, :, :]


class ShuffleBasicBlock(nn.Module):
    """models/ShuffleNetv2.py's BasicBlock (returning only `out`, not the pre-activation)."""

    def __init__(self, in_channels, split_ratio=0.5):
        super().__init__()
        self.split = SplitBlock(split_ratio)
        in_channels = int(in_channels * split_ratio)
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(
            in_channels, in_channels, 3, stride=1, padding=1, groups=in_channels, bias=False
        )
        self.bn2 = nn.BatchNorm2d(in_channels)
        self.conv3 = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(in_channels)
        self.shuffle = ShuffleBlock()

    def forward(self, x):
        x1, x2 = self.split(x)
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return self.shuffle(torch.cat([x1, out], 1))


class ShuffleDownBlock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid_channels = out_channels // 2
        # left
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        # right
        self.conv3 = nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid_channels)
        self.conv4 = nn.Conv2d(
            mid_channels, mid_channels, 3, stride=2, padding=1, groups=mid_channels, bias=False
        )
        self.bn4 = nn.BatchNorm2d(mid_channels)
        self.conv5 = nn.Conv2d(mid_channels, mid_channels, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid_channels)
        self.shuffle = ShuffleBlock()

    def forward(self, x):
        out1 = self.bn1(self.conv1(x))
        out1 = F.relu(self.bn2(self.conv2(out1)))
        out2 = F.relu(self.bn3(self.conv3(x)))
        out2 = self.bn4(self.conv4(out2))
        out2 = F.relu(self.bn5(self.conv5(out2)))
        return self.shuffle(torch.cat([out1, out2], 1))


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes, out_channels=(116, 232, 464, 1024), num_blocks=(3, 7, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1 = self._make_layer(out_channels[0], num_blocks[0])
        self.layer2 = self._make_layer(out_channels[1], num_blocks[1])
        self.layer3 = self._make_layer(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], 1, 1, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _make_layer(self, out_channels, num_blocks):
        layers = [ShuffleDownBlock(self.in_channels, out_channels)]
        for i in range(num_blocks):
            layers.append(ShuffleBasicBlock(out_channels))
            self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


# ---- the references ---------------------------------------------------------------------

MODELS = [
    # name, constructor, gain
    ("resnet8x4", lambda c: ResNetX4(8, c), 1.0),
    ("resnet32x4", lambda c: ResNetX4(32, c), 1.0),
    ("vgg8", lambda c: VGG(8, c), 2.0),
    ("vgg13", lambda c: VGG(13, c), 2.0),
    ("mobilenetv2", lambda c: MobileNetV2Half(c), 1.25),
    ("wrn_16_1", lambda c: WideResNet(16, c, 1), 1.0),
    ("wrn_16_2", lambda c: WideResNet(16, c, 2), 1.0),
    ("wrn_40_1", lambda c: WideResNet(40, c, 1), 1.0),
    ("wrn_40_2", lambda c: WideResNet(40, c, 2), 1.0),
    ("shufflev2", lambda c: ShuffleNetV2(c), 1.5),
]

# Names whose parameter counts are checked too (param_counts.json), without logits.
COUNT_ONLY = [
    ("vgg11", lambda c: VGG(11, c)),
    ("vgg16", lambda c: VGG(16, c)),
    ("vgg19", lambda c: VGG(19, c)),
]


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def counts(make):
    return {str(c): trainable(make(c)) for c in (10, CLASSES)}


def main():
    torch.manual_seed(0)
    n = int(np.prod(INPUT_SHAPE))
    x = torch.from_numpy((2.0 * unit_values("input", n)).astype(np.float32).reshape(INPUT_SHAPE))
    only = set(sys.argv[1:])
    for name, make, gain in MODELS:
        if only and name not in only:
            continue
        model = make(CLASSES)
        fill_model(model, gain)
        model.eval()
        with torch.no_grad():
            logits = model(x)
        sd = model.state_dict()
        out = {
            "arch": name,
            "made_with": f"PyTorch {torch.__version__}",
            "classes": CLASSES,
            "gain": gain,
            "input_shape": list(INPUT_SHAPE),
            "param_counts": counts(make),
            "state": [[k, list(v.shape)] for k, v in sd.items()],
            "logits": [[float(v) for v in row] for row in logits.numpy()],
        }
        path = os.path.join(HERE, f"{name}.json")
        with open(path, "w") as f:
            json.dump(out, f, separators=(",", ":"))
            f.write("\n")
        print(
            f"{name}: {len(sd)} state entries, {trainable(model):,} parameters "
            f"({CLASSES} classes), logits std {logits.std().item():.3f}, "
            f"max |logit| {logits.abs().max().item():.3f} -> {os.path.relpath(path)}"
        )

    if not only:
        all_counts = {name: counts(make) for name, make, _ in MODELS}
        all_counts.update({name: counts(make) for name, make in COUNT_ONLY})
        path = os.path.join(HERE, "param_counts.json")
        with open(path, "w") as f:
            json.dump(all_counts, f, indent=1)
            f.write("\n")
        print(f"parameter counts of {len(all_counts)} names -> {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
