"""Small two-head CNN: image [N,1,64,64] + size [N,2] -> identity [N,24], structure [N,5]."""
import torch
import torch.nn as nn

STRUCTURE_LABELS = ["normal", "deletion", "duplication", "inversion", "translocation"]


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class KaryoNet(nn.Module):
    def __init__(self, widths=(32, 48, 64, 96, 128), n_identity=24, n_structure=5, dropout=0.2):
        super().__init__()
        w = widths
        self.features = nn.Sequential(       # stride-2 convs instead of max-pooling: 64->32->16->8
            block(1, w[0], 2), block(w[0], w[1], 2), block(w[1], w[2], 1),
            block(w[2], w[3], 2), block(w[3], w[4], 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.size_fc = nn.Linear(2, 16)
        self.drop = nn.Dropout(dropout)
        self.identity = nn.Linear(w[-1] + 16, n_identity)
        self.structure = nn.Linear(w[-1] + 16, n_structure)

    def forward(self, image, size):
        f = self.pool(self.features(image)).flatten(1)
        z = self.drop(torch.cat([f, torch.relu(self.size_fc(size))], 1))
        return self.identity(z), self.structure(z)


def n_params(m):
    return sum(p.numel() for p in m.parameters())
