"""Each task's recipe (FocusNet's for SOD) and the augmentations it names."""

from __future__ import annotations

import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.train.recipe import FOCUSNET, SALNAS, Augmentation, parse_augment, poly_factor, recipe_settings
from tests.cli import one_error_line, run_cli


def test_sod_defaults_to_focusnets_recipe_and_flags_override_it():
    assert recipe_settings("sod+focus") == {
        "optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "batch_size": 16, "augment": ("flip", "rotate", "blur"),
        "schedule": "cosine", "ohem": 0.0, "crop": None,
    }  # fmt: skip
    assert recipe_settings("saliency") == {
        "optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-5, "batch_size": 32, "augment": (), "schedule": "cosine",
        "ohem": 0.0, "crop": None,
    }  # fmt: skip
    assert recipe_settings("sod", lr=3e-4, augment="none", batch_size=8)["augment"] == ()
    assert recipe_settings("saliency", augment="flip,blur")["augment"] == ("flip", "blur")
    assert FOCUSNET.optimizer == "adam" and SALNAS.optimizer == "sgd"
    with pytest.raises(HwnasError, match="not a list of distinct flip, blur .or none. for saliency"):
        parse_augment("rotate", "saliency")  # fixations are single pixels
    assert recipe_settings("segmentation")["augment"] == ("flip", "scale")  # MoSegNAS's scale-and-crop
    with pytest.raises(HwnasError, match="not a list of distinct flip, rotate, blur .or none. for sod"):
        parse_augment("scale", "sod")  # a mask would be cropped, scale-and-crop is segmentation's
    with pytest.raises(HwnasError, match="unknown optimizer 'rmsprop'; allowed: sgd, adam"):
        recipe_settings("sod", optimizer="rmsprop")


def test_segmentation_trains_with_mosegnas_recipe_and_its_poly_schedule():
    """MoSegNAS Section IV-C (after BiSeNet): SGD, momentum 0.9, weight decay 1e-5, batch 8, lr 0.01 x
    (1 - iter / maxIter)^0.9; the values by hand: 0.5^0.9 = 0.535887, 0.9^0.9 = 0.909533."""
    assert recipe_settings("segmentation") == {
        "optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-5, "batch_size": 8, "augment": ("flip", "scale"),
        "schedule": "poly", "ohem": 0.7,  # OHEM: the BiSeNet reference code's (the paper names no loss)
        "crop": (1536, 768),  # the paper's Cityscapes crop, width x height
    }  # fmt: skip
    assert recipe_settings("segmentation", crop="1024x512")["crop"] == (1024, 512)
    with pytest.raises(HwnasError, match="--crop is segmentation's training crop; the task is sod"):
        recipe_settings("sod", crop="64x64")
    with pytest.raises(HwnasError, match="--crop must look like 1536x768 .width x height, each at least 32., got '64'"):
        recipe_settings("segmentation", crop="64")
    assert recipe_settings("segmentation", ohem=0)["ohem"] == 0
    with pytest.raises(HwnasError, match="--ohem mines the hard pixels of a segmentation loss; the task is saliency"):
        recipe_settings("saliency", ohem=0.7)
    with pytest.raises(HwnasError, match=r"--ohem must be a probability in \[0, 1\)"):
        recipe_settings("segmentation", ohem=1.5)
    assert recipe_settings("segmentation", schedule="cosine")["schedule"] == "cosine"
    assert [round(poly_factor(step, 100), 6) for step in (0, 10, 50, 100, 120)] == [1.0, 0.909533, 0.535887, 0, 0]
    with pytest.raises(HwnasError, match="unknown schedule 'step'; allowed: cosine, poly"):
        recipe_settings("segmentation", schedule="step")


def test_the_poly_schedule_sets_the_optimizers_learning_rate_step_by_step():
    from hwnas.train.trainer import TrainConfig, make_scheduler

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.01, momentum=0.9)
    scheduler = make_scheduler(optimizer, TrainConfig(lr=0.01, schedule="poly", epochs=2), steps=2)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.01 * (1 - step / 4) ** 0.9 for step in range(4)])


def _batch(h: int, w: int) -> dict[str, torch.Tensor]:
    image = torch.arange(2 * 3 * h * w, dtype=torch.float32).reshape(2, 3, h, w) / (h * w)
    mask = torch.zeros(2, 1, h, w)
    mask[:, :, h // 4 : h // 2, : w // 3] = 1  # an object on the left
    return {"image": image, "mask": mask, "index": torch.tensor([0, 1])}


def test_one_draw_transforms_images_and_masks_together_at_any_resolution():
    torch.manual_seed(0)
    draw = Augmentation(torch.tensor([True, False]), torch.zeros(2), torch.zeros(2))
    for h, w in ((16, 24), (32, 48)):  # the step's subnets run at different resolutions
        batch = _batch(h, w)
        out = draw.apply(batch)
        assert torch.equal(out["image"][0], batch["image"][0].flip(-1))  # flipped, image and mask alike
        assert torch.equal(out["mask"][0], batch["mask"][0].flip(-1))
        assert torch.equal(out["image"][1], batch["image"][1]) and torch.equal(out["index"], batch["index"])


def test_rotation_keeps_masks_binary_and_blur_touches_only_the_image():
    batch = _batch(32, 48)
    turned = Augmentation(torch.zeros(2, dtype=torch.bool), torch.tensor([10.0, 0.0]), torch.zeros(2)).apply(batch)
    assert set(turned["mask"].unique().tolist()) <= {0.0, 1.0} and not torch.equal(turned["mask"][0], batch["mask"][0])
    assert torch.equal(turned["mask"][1], batch["mask"][1])
    # rotating 10 degrees about the centre keeps the object's area within a few pixels
    assert abs(float(turned["mask"][0].sum() - batch["mask"][0].sum())) < 0.1 * float(batch["mask"][0].sum())
    blurred = Augmentation(torch.zeros(2, dtype=torch.bool), torch.zeros(2), torch.tensor([0.0, 1.5])).apply(batch)
    assert torch.equal(blurred["mask"], batch["mask"]) and torch.equal(blurred["image"][0], batch["image"][0])
    assert not torch.equal(blurred["image"][1], batch["image"][1])
    assert float(blurred["image"][1].mean()) == pytest.approx(float(batch["image"][1].mean()), rel=0.05)


def test_draws_follow_the_probability_and_the_names():
    torch.manual_seed(1)
    drawn = Augmentation.draw(("flip",), 1000)
    assert 400 < int(drawn.flip.sum()) < 600 and not drawn.angle.any() and not drawn.sigma.any()
    drawn = Augmentation.draw(("rotate", "blur"), 1000)
    assert float(drawn.angle.abs().max()) <= 15 and 0.1 <= float(drawn.sigma[drawn.sigma > 0].min())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--augment", "rotate"], "--augment 'rotate' is not a list of distinct flip, blur (or none) for saliency"),
        (["--task", "sod", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'; allowed: sgd, adam"),
        (["--task", "sod", "--weight-decay", "-1"], "weight decay must be a non-negative number"),
        (["--task", "segmentation", "--schedule", "step"], "unknown schedule 'step'; allowed: cosine, poly"),
        (["--ohem", "0.7"], "--ohem mines the hard pixels of a segmentation loss; the task is saliency"),
    ],
)
def test_bad_recipe_flags_get_one_line(tmp_path, args, message):
    proc = run_cli("train", "supernet", "--space", "mini", *args, "--out", str(tmp_path / "x.pt"), check=False)
    assert message in one_error_line(proc)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_augmenting_a_table_teacher_is_refused(tmp_path):
    proc = run_cli("train", "selfkd", "--space", "mini", "--task", "sod", "--method", "selfkd", "--epochs", "1",
                   "--train-size", "32", "--val-size", "16", "--out", str(tmp_path / "x.pt"), check=False)  # fmt: skip
    assert "--augment with --method selfkd on one subnet" in one_error_line(proc)
