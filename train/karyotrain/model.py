"""Small CNN: image [N,1,64,64] + size [N,2] -> identity [N,24], structure [N,5], arm [N,2] (p, q),
position [N,1] (sigmoid: breakpoint fraction from p-ter; arm and position mean something only
when structure is abnormal)."""
import torch
import torch.nn as nn

STRUCTURE_LABELS = ["normal", "deletion", "duplication", "inversion", "translocation"]
ARM_LABELS = ["p", "q"]
POSITION_LABELS = ["p_ter_fraction"]
OUTPUTS = ["identity", "structure", "arm", "position"]


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


DEFAULT_ARCH = "32s2,48s2,64,96s2,128"


class KaryoNet(nn.Module):
    """`arch`: comma-separated conv blocks, channels with `s2` for stride 2 (tract runs stride-2
    convs faster than max-pooling)."""

    def __init__(self, arch=DEFAULT_ARCH, n_identity=24, n_structure=5, dropout=0.2):
        super().__init__()
        blocks, cin = [], 1
        for spec in arch.split(","):
            cout, stride = (int(spec[:-2]), 2) if spec.endswith("s2") else (int(spec), 1)
            blocks.append(block(cin, cout, stride))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.size_fc = nn.Linear(2, 16)
        self.drop = nn.Dropout(dropout)
        self.identity = nn.Linear(cin + 16, n_identity)
        self.structure = nn.Linear(cin + 16, n_structure)
        self.arm = nn.Linear(cin + 16, 2)
        self.position = nn.Linear(cin + 16, 1)

    def forward(self, image, size):
        f = self.pool(self.features(image)).flatten(1)
        z = self.drop(torch.cat([f, torch.relu(self.size_fc(size))], 1))
        return self.identity(z), self.structure(z), self.arm(z), torch.sigmoid(self.position(z))


def n_params(m):
    return sum(p.numel() for p in m.parameters())
