"""A dataset folder streamed from disk (`FolderSplit`, read by DataLoader worker processes) gives
what the same files read whole into memory give: the same rows at every resolution, the same
training batches, the same ground truth and the same scores, for saliency, SOD and segmentation."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from hwnas.data import Step, load_data
from hwnas.data.split import Split, scaled_crop, training_size
from hwnas.data.stream import FolderSplit
from hwnas.nn.factory import create
from hwnas.space import SearchSpace
from hwnas.train.evaluation import evaluate
from hwnas.train.task import make_task
from tests.formats import write_duts, write_salicon
from tests.segdata import write_images_masks

SIZE = (24, 32)  # (height, width) the sets are stored at
OTHER = (20, 28)  # (width, height) of a subnet at another resolution


def _write(root, task):
    if task == "saliency":
        write_salicon(root, counts=(("train", 6), ("val", 5)), test=0)
    elif task == "sod":
        write_duts(root, train=10, test=0)
    else:
        write_images_masks(root, classes=["sky", "tree", "road"], n=10, size=(40, 30))


@pytest.fixture(scope="module", params=["saliency", "sod", "segmentation"])
def both(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    _write(root, request.param)
    streamed = load_data(str(root), task=request.param, size=SIZE)
    streamed.train, streamed.val = (replace(s, workers=2) for s in (streamed.train, streamed.val))  # real workers
    in_memory = load_data(str(root), task=request.param, size=SIZE, stream=False)
    return request.param, streamed, in_memory


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_a_folder_is_streamed_by_default_and_read_whole_on_request(both):
    _, streamed, in_memory = both
    assert isinstance(streamed.train, FolderSplit) and isinstance(streamed.val, FolderSplit)
    assert isinstance(in_memory.train, Split) and isinstance(in_memory.val, Split)
    assert (len(streamed.train), len(streamed.val)) == (len(in_memory.train), len(in_memory.val))


def test_streamed_batches_equal_the_in_memory_ones_at_every_resolution(both):
    _, streamed, in_memory = both
    for resolution in ((SIZE[1], SIZE[0]), OTHER):
        a = list(streamed.batches(streamed.split("val", resolution), 2))
        b = list(in_memory.batches(in_memory.split("val", resolution), 2))
        assert len(a) == len(b) == -(-len(streamed.val) // 2)
        for x, y in zip(a, b, strict=True):
            _equal(x, y)


def test_streamed_training_steps_equal_the_in_memory_ones(both):
    task, streamed, in_memory = both
    crop = 7 if task == "segmentation" else None  # MoSegNAS's scale-and-crop, where the rows are read
    plan = [Step(np.array([3, 0, 5]), [(SIZE[1], SIZE[0]), OTHER], crop), Step(np.array([1, 2]), [OTHER], crop)]
    a, b = list(streamed.training_batches(plan)), list(in_memory.training_batches(plan))
    assert [list(step) for step in a] == [list(step) for step in b] == [[(32, 24), OTHER], [OTHER]]
    for x, y in zip(a, b, strict=True):
        for resolution in x:
            _equal(x[resolution], y[resolution])


def test_streamed_ground_truth_equals_the_in_memory_one(both):
    task, streamed, in_memory = both
    for original in (True, False):
        a = streamed.split("val", OTHER).ground_truth(original=original)
        b = in_memory.split("val", OTHER).ground_truth(original=original)
        assert len(a) == len(b)
        for s, m in zip(a, b, strict=True):
            assert s.size == m.size and np.array_equal(s.array(), m.array())
            if task == "saliency":
                assert np.array_equal(s.points, m.points)


def test_scores_on_streamed_data_equal_the_in_memory_ones(both):
    task_name, streamed, in_memory = both
    mini = SearchSpace.load("mini")
    classes = streamed.num_classes if task_name == "segmentation" else 1
    supernet = create(mini, task=task_name, num_classes=classes, seed=0)
    task = make_task(task_name, num_classes=classes)
    for original in (True, False):
        a = evaluate(supernet, streamed, task, arch=mini.min(), bn_batches=1, batch_size=3, original=original)
        b = evaluate(supernet, in_memory, task, arch=mini.min(), bn_batches=1, batch_size=3, original=original)
        assert a.keys() == b.keys() and len(a) > 2
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9, nan_ok=True), key


def test_scale_and_crop_keeps_the_size_and_pairs_each_label_with_its_pixel():
    """A row whose pixel values encode their class: after any scale and crop, every labelled pixel
    still shows its class's value (nearest labels and bilinear pixels stay aligned), padding is
    ignored (255) and black, and scales and places vary."""
    seg = torch.zeros((1, 12, 16), dtype=torch.uint8)
    seg[:, :, 8:] = 1
    image = (seg * 200).repeat(3, 1, 1)
    sizes, padded = set(), False
    for seed in range(40):
        out = scaled_crop({"image": image, "seg": seg}, np.random.default_rng(seed))
        assert out["image"].shape == (3, 12, 16) and out["seg"].shape == (1, 12, 16)
        inside = out["seg"][0] != 255
        left, right = inside & (out["seg"][0] == 0), inside & (out["seg"][0] == 1)
        assert (out["image"][0][left] < 150).all() and (out["image"][0][right] > 50).all()  # blends at the edge
        padded |= bool((~inside).any()) and bool((out["image"][:, ~inside] == 0).all())
        sizes.add((int(inside.sum()), int(right.sum())))
    assert padded and len(sizes) > 2


def test_a_crop_never_leaves_the_scaled_image_and_labels_are_only_ever_class_ids():
    """A 2:1 row cut to a smaller window: at scale 1 the window is a piece of the row (never past its
    edge); at any scale the labels are ids of the row (nearest neighbour, no blends) or padding."""
    rng = np.random.default_rng(0)
    seg = torch.from_numpy(rng.integers(0, 5, (1, 32, 64), dtype=np.uint8))
    image = torch.from_numpy(rng.integers(0, 255, (3, 32, 64), dtype=np.uint8))
    places = set()
    for seed in range(30):
        out = scaled_crop({"image": image, "seg": seg}, np.random.default_rng(seed), crop=(24, 48), scale=False)
        assert out["seg"].shape == (1, 24, 48)
        found = [
            (top, left) for top in range(32 - 24 + 1) for left in range(64 - 48 + 1)
            if torch.equal(out["seg"], seg[:, top : top + 24, left : left + 48])
            and torch.equal(out["image"], image[:, top : top + 24, left : left + 48])
        ]  # fmt: skip
        assert found  # the window lies inside the image
        places.add(found[0])
        scaled = scaled_crop({"image": image, "seg": seg}, np.random.default_rng(seed), crop=(24, 48))
        assert set(scaled["seg"].unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    assert len(places) > 10


def test_each_subnet_trains_on_the_crop_at_its_own_scale():
    """MoSegNAS: a 1536x768 crop of Cityscapes' 2048x1024; a subnet of input 1024x512 (scale 1/2) sees
    it at 768x384, one of 512x256 at 384x192; sizes stay multiples of 32 for BiSeNet's heads."""
    assert training_size((1024, 512), (1024, 2048), (768, 1536), 32) == (384, 768)
    assert training_size((512, 256), (1024, 2048), (768, 1536), 32) == (192, 384)
    assert training_size((768, 384), (1024, 2048), (768, 1536), 32) == (288, 576)
    assert training_size((100, 50), (64, 128), (48, 96), 1) == (38, 75)
    rows = {
        "image": torch.zeros((2, 3, 64, 128), dtype=torch.uint8),
        "seg": torch.zeros((2, 1, 64, 128), dtype=torch.uint8),
    }
    step = Step(np.array([0, 1]), [(128, 64), (64, 32)], crop_seed=1, crop=(32, 64), scale=True, multiple=32)
    at = step.at_sizes(rows)
    assert {k: tuple(v["image"].shape[-2:]) for k, v in at.items()} == {(64, 128): (32, 64), (32, 64): (32, 32)}
    whole = Step(np.array([0, 1]), [(128, 64)], crop_seed=1, crop=(768, 1536), scale=False)  # larger: the whole row
    assert tuple(whole.at_sizes(rows)[(64, 128)]["image"].shape[-2:]) == (64, 128)


@pytest.mark.slow
def test_training_on_a_streamed_folder_gives_the_weights_of_the_in_memory_one(both, tmp_path):
    """One epoch of a `mini` supernet (sandwich steps at several resolutions; segmentation with its
    default flip and MoSegNAS scale-and-crop) on the same folder both ways: the same weights."""
    from hwnas.train.recipe import recipe_for
    from hwnas.train.trainer import TrainConfig, fit

    task_name, streamed, in_memory = both
    mini = SearchSpace.load("mini")
    classes = streamed.num_classes if task_name == "segmentation" else 1
    config = TrainConfig(epochs=1, batch_size=2, sandwich=1, bn_batches=1, augment=recipe_for(task_name).augment)
    weights = []
    for name, data in (("streamed", streamed), ("in_memory", in_memory)):
        torch.manual_seed(0)
        model = create(mini, task=task_name, num_classes=classes, seed=0)
        fit(model, space=mini, data=data, task=make_task(task_name, num_classes=classes), config=config,
            out=tmp_path / f"{name}.pt", resume=False)  # fmt: skip
        weights.append(model.state_dict())
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
