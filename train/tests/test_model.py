"""KaryoNet's architecture string and the distillation term."""
import pytest
import torch

from karyotrain.model import KaryoNet, parse_block


def test_blocks_parse_channels_kernel_and_stride():
    assert parse_block("96") == (96, 1, 3)
    assert parse_block("128s2") == (128, 2, 3)
    assert parse_block("192k1") == (192, 1, 1)
    assert parse_block("64k1s2") == (64, 2, 1)
    with pytest.raises(ValueError, match="'12x'"):
        parse_block("12x")


def test_one_by_one_blocks_keep_the_map_size():
    net = KaryoNet("32s2,64k1,48s2").eval()
    convs = [m for m in net.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (1, 1), (3, 3)]
    assert net.features(torch.zeros(1, 1, 64, 64)).shape == (1, 48, 16, 16)
    identity, structure, arm, position = net(torch.zeros(2, 1, 64, 64), torch.zeros(2, 2))
    assert identity.shape == (2, 24) and structure.shape == (2, 5)


def test_distillation_term_vanishes_only_when_the_student_matches_the_teachers():
    from karyotrain.train import distill_loss
    torch.manual_seed(0)
    a, b = torch.randn(8, 24), torch.randn(8, 24)
    assert distill_loss(a, [a, a], 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(b, [a], 2.0).item() > 0.01
    # the teachers are averaged as softened distributions, not as logits: only a student whose
    # softened distribution is their mean scores zero
    mean = torch.log(torch.stack([torch.softmax(a / 2, 1), torch.softmax(b / 2, 1)]).mean(0)) * 2
    assert distill_loss(mean, [a, b], 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss((a + b) / 2, [a, b], 2.0).item() > 1e-3
