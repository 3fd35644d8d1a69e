"""Each task's training recipe as its paper gives it, and the augmentations FocusNet names.

- saliency and classification (SalNAS Section 4.1, AlphaNet's settings): SGD, momentum 0.9, cosine
  annealing with warm restarts; lr 0.1 at batch 64, here 0.05 at the default batch of 32;
- salient objects (FocusNet Section 4.1): Adam, lr 1e-4, weight decay 1e-4, batch 16, "horizontal
  flipping, rotation and blurring". The paper gives no parameters for the three; hwnas takes
  TRACER's where it has them (`dataloader.py`, `get_train_augmentation`: p = 0.5, Gaussian blur
  of at most 5 px) and a rotation of up to `MAX_ROTATION` degrees (TRACER turns by multiples of
  90, which would change a non-square input's shape);
- segmentation (MoSegNAS Section IV-C, its post-search training after BiSeNet): SGD, momentum 0.9,
  lr 0.01, weight decay 1e-5, batch 8, the "poly" schedule lr x (1 - iter / maxIter)^0.9 over the
  whole run (`poly_factor`), cross entropy with online hard example mining as the BiSeNet reference
  code trains (`OHEM`; the paper names no loss beyond BiSeNet's), horizontal flips and its
  scale-and-crop ("scale": each image scaled by one of 0.75, 1.0, ..., 2.0, then a `CROP` window,
  1536x768 as the paper's Cityscapes training, or the whole training size where that is smaller,
  `hwnas.data.split.scaled_crop`; done where the rows are read: in the DataLoader workers for a
  folder). Each subnet trains on the crop at its own input scale: a subnet of half the largest
  resolution on a 768x384 image (`hwnas.data.split.training_size`).

The other tasks use cosine annealing with warm restarts every `t0` epochs (SalNAS Section 4.3).

`Augmentation.draw` picks one transform per image for a training step and `apply` runs it on a
batch at any resolution, so every subnet of a sandwich step sees the same augmented images (and
the largest one's inplace-KD target matches the others' inputs). Geometric transforms move the
image and its spatial targets together (masks nearest-neighbour so they stay binary); blur
touches the image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwnas.errors import HwnasError
from hwnas.space.tasks import base_task

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "poly")
POLY_POWER = 0.9  # MoSegNAS Section IV-C, after BiSeNet
CROP = (1536, 768)  # MoSegNAS's training crop on Cityscapes (width, height), Section IV-C
OHEM = 0.7  # the BiSeNet reference recipe's hard-pixel threshold (CoinCheung/BiSeNet `OhemCELoss(0.7)`)
AUGMENTATIONS = ("flip", "rotate", "blur", "scale")
PROBABILITY = 0.5  # of each augmentation, per image (TRACER's)
MAX_ROTATION = 15.0  # degrees either way
BLUR_KERNEL = 5  # TRACER's GaussianBlur(blur_limit=5)
BLUR_SIGMA = (0.1, 2.0)


@dataclass(frozen=True)
class Recipe:
    """What a task trains with by default."""

    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    augment: tuple[str, ...]
    schedule: str = "cosine"
    ohem: float = 0.0
    crop: tuple[int, int] | None = None  # (width, height) of segmentation's training crop


SALNAS = Recipe("sgd", 0.05, 1e-5, 32, ())
FOCUSNET = Recipe("adam", 1e-4, 1e-4, 16, ("flip", "rotate", "blur"))
MOSEGNAS = Recipe("sgd", 0.01, 1e-5, 8, ("flip", "scale"), "poly", OHEM, CROP)


def poly_factor(step: int, total: int, power: float = POLY_POWER) -> float:
    """The "poly" learning-rate factor (1 - step / total)^power at optimizer step `step` of `total`
    (MoSegNAS Section IV-C: lr = 0.01 x (1 - iter / maxIter)^0.9); 0 from `total` on."""
    return max(0.0, 1.0 - step / total) ** power


def recipe_for(task: str) -> Recipe:
    """FocusNet's recipe for a SOD task, MoSegNAS's for segmentation, SalNAS's for the others."""
    return {"sod": FOCUSNET, "segmentation": MOSEGNAS}.get(base_task(task), SALNAS)


def parse_augment(text: str | None, task: str) -> tuple[str, ...]:
    """'flip,rotate,blur' or 'none' -> the augmentations, checked against what the task allows
    (saliency cannot rotate: its fixations are single pixels; segmentation does not: a turned
    label map's corners would need a label; only segmentation scales and crops)."""
    if text is None:
        return recipe_for(task).augment
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    base = base_task(task)
    refused = {"rotate"} if base in ("saliency", "segmentation") else set()
    refused |= {"scale"} if base != "segmentation" else set()
    allowed = tuple(a for a in AUGMENTATIONS if a not in refused)
    unknown = [n for n in names if n not in allowed]
    if unknown or len(set(names)) != len(names):
        raise HwnasError(f"--augment '{text}' is not a list of distinct {', '.join(allowed)} (or none) for {task}")
    return names


@dataclass(frozen=True)
class Augmentation:
    """One step's transform per image: flip (bool), rotation angle (degrees, 0 = none), blur sigma (0 = none)."""

    flip: torch.Tensor
    angle: torch.Tensor
    sigma: torch.Tensor

    @classmethod
    def draw(cls, names: tuple[str, ...], n: int, generator: torch.Generator | None = None) -> Augmentation:
        def chosen(name: str) -> torch.Tensor:
            if name not in names:
                return torch.zeros(n, dtype=torch.bool)
            return torch.rand(n, generator=generator) < PROBABILITY

        flip, rotate, blur = chosen("flip"), chosen("rotate"), chosen("blur")
        angle = (torch.rand(n, generator=generator) * 2 - 1) * MAX_ROTATION * rotate
        lo, hi = BLUR_SIGMA
        sigma = (lo + torch.rand(n, generator=generator) * (hi - lo)) * blur
        return cls(flip, angle, sigma)

    def apply(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch with its images and spatial fields ("mask", "map", "fix", "seg") transformed."""
        out = dict(batch)
        for key, value in batch.items():
            if key == "image" or (key in ("mask", "map", "fix", "seg") and value.dim() == 4):
                out[key] = self._geometric(value, nearest=key in ("mask", "fix", "seg"))
        out["image"] = self._blur(out["image"])
        return out

    def _geometric(self, x: torch.Tensor, *, nearest: bool) -> torch.Tensor:
        x = torch.where(self.flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
        if not bool((self.angle != 0).any()):
            return x
        theta = torch.deg2rad(self.angle.double()).to(x.device)
        h, w = x.shape[-2:]
        cos, sin = torch.cos(theta), torch.sin(theta)
        # rotation about the centre in pixel units, expressed in normalized coordinates
        matrix = torch.zeros(len(x), 2, 3, dtype=torch.float64, device=x.device)
        matrix[:, 0, 0], matrix[:, 0, 1] = cos, -sin * h / w
        matrix[:, 1, 0], matrix[:, 1, 1] = sin * w / h, cos
        grid = F.affine_grid(matrix.to(x.dtype), list(x.shape), align_corners=False)
        mode = "nearest" if nearest else "bilinear"
        turned = F.grid_sample(x.float(), grid.float(), mode=mode, padding_mode="zeros", align_corners=False)
        keep = (self.angle == 0).view(-1, 1, 1, 1).to(x.device)
        return torch.where(keep, x, turned.to(x.dtype))

    def _blur(self, image: torch.Tensor) -> torch.Tensor:
        out = image.clone()
        radius = BLUR_KERNEL // 2
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=image.device)
        for i in torch.nonzero(self.sigma > 0).flatten().tolist():
            k = torch.exp(-(offsets**2) / (2 * float(self.sigma[i]) ** 2))
            k = k / k.sum()
            x = F.pad(image[i : i + 1].float(), (radius, radius, radius, radius), mode="reflect")
            c = x.shape[1]
            x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
            x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
            out[i] = x[0].to(image.dtype)
        return out


def recipe_settings(
    task: str,
    *,
    optimizer: str | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    augment: str | None = None,
    schedule: str | None = None,
    ohem: float | None = None,
    crop: str | tuple[int, int] | None = None,
) -> dict:
    """The `TrainConfig` fields of the task's recipe, each one given overriding it (the CLI's flags)."""
    base = recipe_for(task)
    if crop is not None and base_task(task) != "segmentation":
        raise HwnasError(f"--crop is segmentation's training crop; the task is {task}")
    if ohem is not None and not 0 <= ohem < 1:
        raise HwnasError(f"--ohem must be a probability in [0, 1) (0: plain cross entropy), got {ohem}")
    if ohem and base_task(task) != "segmentation":
        raise HwnasError(f"--ohem mines the hard pixels of a segmentation loss; the task is {task}")
    return {
        "crop": base.crop if crop is None else parse_crop(crop),
        "ohem": base.ohem if ohem is None else ohem,
        "optimizer": check_optimizer(optimizer or base.optimizer),
        "schedule": check_schedule(schedule or base.schedule),
        "lr": base.lr if lr is None else lr,
        "weight_decay": base.weight_decay if weight_decay is None else weight_decay,
        "batch_size": base.batch_size if batch_size is None else batch_size,
        "augment": parse_augment(augment, task),
    }


def parse_crop(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`"1536x768"` (width x height) or a pair -> (width, height), each at least 32."""
    if isinstance(value, tuple | list):
        pair = tuple(value)
    else:
        parts = str(value).lower().split("x")
        pair = tuple(int(p) for p in parts) if len(parts) == 2 and all(p.isdigit() for p in parts) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 32 for v in pair):
        raise HwnasError(f"--crop must look like 1536x768 (width x height, each at least 32), got '{value}'")
    return (int(pair[0]), int(pair[1]))


def check_optimizer(name: str) -> str:
    if name not in OPTIMIZERS:
        raise HwnasError(f"unknown optimizer '{name}'; allowed: {', '.join(OPTIMIZERS)}")
    return name


def check_schedule(name: str) -> str:
    if name not in SCHEDULES:
        raise HwnasError(f"unknown schedule '{name}'; allowed: {', '.join(SCHEDULES)}")
    return name


__all__ = [
    "AUGMENTATIONS", "CROP", "FOCUSNET", "OPTIMIZERS", "SALNAS", "SCHEDULES", "Augmentation", "Recipe",
    "check_optimizer", "check_schedule", "parse_augment", "parse_crop", "poly_factor", "recipe_for", "recipe_settings",
]  # fmt: skip
