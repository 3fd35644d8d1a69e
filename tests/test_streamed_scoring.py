"""Scoring as the batches arrive: `Predictions` computes one batch at a time while the scorer reads
it, so evaluating a split needs memory for a batch of predictions, not for the split; the scores
are those of the whole split's predictions stacked, for every task."""

import pytest
import torch

from hwnas.data import load_data
from hwnas.nn.factory import create
from hwnas.space import SearchSpace
from hwnas.train.bn import recalibrated_subnet
from hwnas.train.evaluation import Predictions, evaluate, score
from hwnas.train.task import make_task


class CountingNet(torch.nn.Module):
    """A subnet that counts its forward passes (the batches computed so far)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.arch, self.calls = net, net.arch, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


@pytest.fixture(scope="module")
def saliency():
    mini = SearchSpace.load("mini")
    data = load_data("synthetic", task="saliency", size=(32, 32), seed=0, train_size=32, val_size=40)
    supernet = create(mini, task="saliency", seed=0)
    return mini, data, make_task("saliency"), supernet


def test_predictions_are_computed_a_batch_at_a_time_as_they_are_read(saliency):
    mini, data, task, supernet = saliency
    net = CountingNet(recalibrated_subnet(supernet, data, mini.max(), bn_batches=1))
    flow = iter(Predictions(net, data, task, batch_size=16))
    first = next(flow)
    assert net.calls == 1 and first.shape == (1, 64, 64)  # mini.max() runs at 64x64
    rest = list(flow)
    assert net.calls == 3 and len(rest) == 39  # 16 + 16 + 8 images


@pytest.mark.parametrize(
    "task_name, source", [("saliency", "synthetic"), ("sod", "synthetic"), ("segmentation", "synthetic"),
                          ("classification", "digits")],
)  # fmt: skip
def test_streamed_scores_equal_the_stacked_ones(task_name, source):
    mini = SearchSpace.load("mini")
    data = load_data(source, task=task_name, size=(32, 32), seed=0, train_size=32, val_size=24)
    task = make_task(task_name, data.num_classes)
    supernet = create(mini, task=task_name, num_classes=data.num_classes, seed=0)
    net = recalibrated_subnet(supernet, data, mini.max(), bn_batches=1)
    flow = Predictions(net, data, task, batch_size=10)
    stacked = torch.stack(list(flow))
    whole = score(task, data, stacked, resolution=net.arch.resolution)
    streamed = evaluate(supernet, data, task, arch=mini.max(), bn_batches=1, batch_size=10)
    assert streamed["loss"] == pytest.approx(flow.loss, rel=1e-9)
    for key, value in whole.items():
        assert streamed[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
