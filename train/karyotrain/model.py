"""Small CNN: image [N,1,64,64] + size [N,2] -> identity [N,24], structure [N,5], arm [N,2] (p, q),
position [N,1] (sigmoid: breakpoint fraction from p-ter; arm and position mean something only
when structure is abnormal) and, with `pair_dim`, homolog [N,pair_dim]: a unit vector trained so
that the two homologs of a cell lie close (the cell step's pairing term, metrics.pair_swaps)."""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

STRUCTURE_LABELS = ["normal", "deletion", "duplication", "inversion", "translocation"]
ARM_LABELS = ["p", "q"]
POSITION_LABELS = ["p_ter_fraction"]
OUTPUTS = ["identity", "structure", "arm", "position", "homolog"]


def block(cin, cout, stride, kernel=3):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def parse_block(spec):
    """`96`, `128s2` (stride 2) or `192k1` (1×1 kernel): -> (channels, stride, kernel)."""
    m = re.fullmatch(r"(\d+)(k1)?(s2)?", spec)
    if not m:
        raise ValueError(f"conv block {spec!r}: expected channels, then optionally k1 and/or s2")
    return int(m.group(1)), 2 if m.group(3) else 1, 1 if m.group(2) else 3


DEFAULT_ARCH = "32s2,48s2,64,96s2,128"


class KaryoNet(nn.Module):
    """`arch`: comma-separated conv blocks (`parse_block`): channels, `k1` for a 1×1 kernel
    (tract runs those nearest onnxruntime's speed: README, speed), `s2` for stride 2 (tract runs
    stride-2 convs faster than max-pooling)."""

    def __init__(self, arch=DEFAULT_ARCH, n_identity=24, n_structure=5, dropout=0.2, pair_dim=0):
        super().__init__()
        blocks, cin = [], 1
        for spec in arch.split(","):
            cout, stride, kernel = parse_block(spec)
            blocks.append(block(cin, cout, stride, kernel))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.size_fc = nn.Linear(2, 16)
        self.drop = nn.Dropout(dropout)
        self.identity = nn.Linear(cin + 16, n_identity)
        self.structure = nn.Linear(cin + 16, n_structure)
        self.arm = nn.Linear(cin + 16, 2)
        self.position = nn.Linear(cin + 16, 1)
        self.homolog = nn.Linear(cin + 16, pair_dim) if pair_dim else None

    def forward(self, image, size):
        f = self.pool(self.features(image)).flatten(1)
        z = torch.cat([f, torch.relu(self.size_fc(size))], 1)
        heads = self.drop(z)
        out = (self.identity(heads), self.structure(heads), self.arm(heads), torch.sigmoid(self.position(heads)))
        if self.homolog is None:
            return out
        return out + (F.normalize(self.homolog(z), dim=1),)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


class StructureNet(nn.Module):
    """Structure branch on the identity network's first feature map: stem [N,C,32,32] (the
    int8 graph's first conv block output, rows along the long axis) + size [N,2] + the identity
    network's logits [N,24] -> structure [N,5], arm [N,2], position [N,1].

    Preprocessing puts the chromosome's long axis on the rows, so pooling the stem across the
    columns (mean and max) gives a band profile per stem channel, 32 steps along the length; dilated
    1-D convs read it: the order of bands, which inversions and translocations change and global
    pooling discards. Reusing the stem makes the branch 2.1x faster in tract than the previous
    one with 2-D convs of its own (README, speed). The identity (softmax) and size modulate the
    sequence channels (FiLM), so one small branch can hold what each chromosome's normal band
    sequence looks like."""

    def __init__(self, stem_ch=32, length=32, width=32, n_identity=24, n_structure=5, seq_ch=64,
                 dilations=(1, 2, 4, 8, 1)):
        super().__init__()
        self.length, self.width = length, width          # static pool sizes for the ONNX export
        c = 2 * stem_ch
        self.norm = nn.BatchNorm1d(c)
        self.where = nn.Parameter(torch.zeros(1, c, length))      # learned position along the axis
        self.film = nn.Linear(n_identity + 2, 2 * c)
        layers, cin = [], c
        for dilation in dilations:
            layers += [nn.Conv1d(cin, seq_ch, 3, 1, dilation, dilation, bias=False),
                       nn.BatchNorm1d(seq_ch), nn.ReLU(inplace=True)]
            cin = seq_ch
        self.sequence = nn.Sequential(*layers)
        self.structure = nn.Linear(2 * seq_ch, n_structure)
        self.arm = nn.Linear(2 * seq_ch, 2)
        self.position = nn.Linear(2 * seq_ch, 1)

    def forward(self, stem, size, identity):
        # maxima as MaxPool: the same values, and tract runs it 5x faster than a ReduceMax over
        # the innermost axis (examples/time_onnx.rs)
        column_max = F.max_pool2d(stem, (1, self.width)).squeeze(3)
        f = self.norm(torch.cat([stem.mean(3), column_max], 1)) + self.where   # [N, 2C, length]
        gamma, beta = self.film(torch.cat([torch.softmax(identity, 1), size], 1)).unsqueeze(2).chunk(2, 1)
        s = self.sequence(f * (1 + gamma) + beta)
        z = torch.cat([s.mean(2), F.max_pool1d(s, self.length).squeeze(2)], 1)
        return self.structure(z), self.arm(z), torch.sigmoid(self.position(z))
