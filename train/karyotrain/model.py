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


class StructureNet(nn.Module):
    """Structure branch that keeps the long axis: image [N,1,64,64] + size [N,2] + the identity
    network's logits [N,24] -> structure [N,5], arm [N,2], position [N,1].

    Preprocessing puts the chromosome's long axis on the rows, so the convs below halve the
    columns (and the rows once), columns are averaged away, and dilated 1-D convs read the band
    sequence along the length: the order of bands, which inversions and translocations change and
    global pooling discards. The identity (softmax) and size modulate the sequence channels (FiLM),
    so one small branch can hold what each chromosome's normal band sequence looks like."""

    def __init__(self, n_identity=24, n_structure=5, ch=(16, 32, 48), seq_ch=64, length=32):
        super().__init__()
        c1, c2, c3 = ch
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, (1, 2), 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, (2, 2), 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 3, (1, 2), 1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(inplace=True))
        self.where = nn.Parameter(torch.zeros(1, c3, length))      # learned position along the axis
        self.film = nn.Linear(n_identity + 2, 2 * c3)
        layers, cin = [], c3
        for dilation in (1, 2, 4, 8):
            layers += [nn.Conv1d(cin, seq_ch, 3, 1, dilation, dilation, bias=False),
                       nn.BatchNorm1d(seq_ch), nn.ReLU(inplace=True)]
            cin = seq_ch
        self.sequence = nn.Sequential(*layers)
        self.structure = nn.Linear(2 * seq_ch, n_structure)
        self.arm = nn.Linear(2 * seq_ch, 2)
        self.position = nn.Linear(2 * seq_ch, 1)

    def forward(self, image, size, identity):
        f = self.features(image).mean(3) + self.where                   # [N, c3, length]
        gamma, beta = self.film(torch.cat([torch.softmax(identity, 1), size], 1)).unsqueeze(2).chunk(2, 1)
        s = self.sequence(f * (1 + gamma) + beta)
        z = torch.cat([s.mean(2), s.amax(2)], 1)
        return self.structure(z), self.arm(z), torch.sigmoid(self.position(z))
