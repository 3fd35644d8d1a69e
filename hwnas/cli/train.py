"""`hwnas train supernet|selfkd|postprocess`: the one training loop behind three verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwnas.cli.common import (
    SeedOpt,
    SpaceOpt,
    TorchDeviceOpt,
    check_early,
    err,
    flag,
    progress_bar,
    say,
    user_errors,
)
from hwnas.space.tasks import TASKS, head_task

DataOpt = Annotated[
    str, typer.Option("--data", help="synthetic, digits, or a dataset folder (`hwnas data check` reads it)")
]
EpochsOpt = Annotated[int, typer.Option(help="epochs to train (a resumed run continues up to this many)")]
BatchOpt = Annotated[
    int | None,
    typer.Option(help="images per step and process (default: 32; sod: FocusNet's 16; segmentation: MoSegNAS's 8)"),
]
LrOpt = Annotated[
    float | None,
    typer.Option(
        help="learning rate (default: SGD 0.05, SalNAS's 0.1 at batch 64; sod: Adam 1e-4; segmentation: SGD 0.01)"
    ),
]
OptimizerOpt = Annotated[str | None, typer.Option(help="sgd or adam (default: sgd; sod: adam, FocusNet's)")]
WeightDecayOpt = Annotated[float | None, typer.Option(help="weight decay (default: 1e-5; sod: FocusNet's 1e-4)")]
AugmentOpt = Annotated[
    str | None,
    typer.Option(
        help="flip,rotate,blur,scale or none, drawn per image and step (default: none; sod: flip,rotate,blur, "
        "FocusNet's; segmentation: flip,scale, MoSegNAS's scale 0.75-2.0 and crop)"
    ),
]
T0Opt = Annotated[int, typer.Option("--t0", help="epochs between warm restarts of the cosine schedule")]
ScheduleOpt = Annotated[
    str | None,
    typer.Option(
        help="cosine (warm restarts every --t0 epochs) or poly, lr x (1 - step/steps)^0.9 over the run "
        "(default: cosine; segmentation: poly, MoSegNAS's)"
    ),
]
OhemOpt = Annotated[
    float | None,
    typer.Option(
        help="segmentation: train on the pixels whose label probability is under this (at least 1/16 of them), "
        "0 for plain cross entropy (default: 0.7, the BiSeNet reference recipe's OHEM)"
    ),
]
CropOpt = Annotated[
    str | None,
    typer.Option(
        help="segmentation: WxH window of the scaled image each step trains on, each subnet at its own scale of "
        "it (default: MoSegNAS's 1536x768, or the whole training size where smaller)"
    ),
]
AlphaOpt = Annotated[float, typer.Option(help="weight left on the ground truth after epoch 1 (SalNAS Eq. 3)")]
MaxStepsOpt = Annotated[int, typer.Option(help="cap on steps per epoch (0: the whole split)")]
SizeOpt = Annotated[int, typer.Option(help="synthetic data: training images")]
ValSizeOpt = Annotated[int, typer.Option(help="synthetic data: validation images")]
FreshOpt = Annotated[bool, flag("--fresh", help="ignore an existing checkpoint at --out and start over")]
AmpOpt = Annotated[bool, flag("--amp", help="SalNAS's mixed precision: the same as --precision fp16 (CUDA only)")]
PrecisionOpt = Annotated[
    str, typer.Option(help="fp32, bf16 (autocast, CPU or CUDA) or fp16 (autocast with loss scaling, CUDA only)")
]
ChannelsLastOpt = Annotated[bool, flag("--channels-last", help="weights and images in NHWC (tensor cores want it)")]
ClipOpt = Annotated[float, typer.Option(help="gradient-norm clipping (0: off)")]
TaskOpt = Annotated[
    str,
    typer.Option(help=f"head: {', '.join(TASKS)} (or saliency/noblur, without the eval blur; or a sod variant: "
                 "sod/cfem, sod/unet, +focus; or segmentation+aux, with BiSeNet's auxiliary heads)"),
]  # fmt: skip
FocusOpt = Annotated[bool, flag("--focus", help="sod: FocusNet's FOCUS cascade (localization net + FRM)")]
AfeOpt = Annotated[bool, typer.Option("--afe/--no-afe", help="sod: the ascending CFEM chain (FocusNet Eq. 1-2)")]
CfemOpt = Annotated[bool, typer.Option("--cfem/--no-cfem", help="sod: CFEMs; --no-afe --no-cfem is the U-Net baseline")]
RESUME = "from the last finished epoch"


def epoch_line(event) -> str:
    r = event.record
    parts = [
        f"epoch {event.epoch}/{event.epochs}",
        f"train loss {r['train_loss']:.4f}",
        f"val loss {r['val_loss']:.4f}",
    ]
    for name, scores in r["val"].items():
        shown = [k for k in ("cc", "nss", "kld", "top1", "sm", "wfm", "mae", "miou", "pixel_acc") if k in scores]
        parts.append(f"{name}: " + " ".join(f"{k} {scores[k]:.3f}" for k in shown))
    parts.append(f"{r['images_per_s']:.0f} img/s, {r['seconds']:.1f} s")
    if r.get("teacher_updated"):
        parts.append("teacher updated")
    return " | ".join(parts)


def _events(bar, job, title: str):
    """The trainer's events rendered: resume and epoch lines as they happen, steps on the bar."""
    from hwnas.train.trainer import EpochEvent, ResumeEvent

    def on_event(event) -> None:
        if isinstance(event, ResumeEvent):
            err.print(f"resumed from epoch {event.epoch} of {event.epochs}", highlight=False)
        elif isinstance(event, EpochEvent):
            say(epoch_line(event))
        else:
            bar.update(
                job, description=f"{title} epoch {event.epoch + 1}/{event.epochs}", completed=event.step,
                total=event.steps, label=f"loss {event.loss:.4f}  {event.images_per_s:.0f} img/s",
            )  # fmt: skip

    return on_event


def _train(verb, *, title: str, **kwargs) -> None:
    with progress_bar() as bar:
        job = bar.add_task(title, total=None, label="")
        run = verb(on_event=_events(bar, job, title), **kwargs)
    if run.rank != 0:
        return
    result = run.result
    if result.trained == 0:
        say(
            f"{result.checkpoint} already has {len(result.history)} epochs: nothing trained "
            "(raise --epochs to continue, or --fresh to start over)"
        )
        return
    say(f"wrote {result.checkpoint} ({len(result.history)} epochs, {run.world} process(es))")


def train_supernet(
    space_name: SpaceOpt = None,
    task: TaskOpt = "saliency",
    focus: FocusOpt = False,
    afe: AfeOpt = True,
    cfem: CfemOpt = True,
    data: DataOpt = "synthetic",
    epochs: EpochsOpt = 3,
    selfkd: Annotated[bool, flag("--selfkd", help="Self-KD teacher (SalNAS Algorithm 1)")] = False,
    inplace_kd: Annotated[
        bool | None,
        typer.Option(
            help="the largest subnet teaches the others (default: on, off with --selfkd, where every "
            "subnet trains on gt_bar as train_salnas.py does)"
        ),
    ] = None,
    dropout: Annotated[float, typer.Option(help="dropout on the largest subnet (SalNAS / AlphaNet: 0.2)")] = 0.2,
    drop_connect: Annotated[
        float, typer.Option(help="drop-connect on the largest subnet's last two stages (SalNAS / AlphaNet: 0.2)")
    ] = 0.2,
    sandwich: Annotated[int, typer.Option(help="random subnets per step besides the largest and smallest")] = 2,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    optimizer: OptimizerOpt = None,
    weight_decay: WeightDecayOpt = None,
    augment: AugmentOpt = None,
    t0: T0Opt = 10,
    schedule: ScheduleOpt = None,
    ohem: OhemOpt = None,
    crop: CropOpt = None,
    alpha: AlphaOpt = 0.5,
    grad_clip: ClipOpt = 5.0,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = 0,
    train_size: SizeOpt = 512,
    val_size: ValSizeOpt = 128,
    ckpt: Annotated[
        Path | None, typer.Option("--out", "-o", help="checkpoint (default runs/SPACE-TASK/supernet.pt)")
    ] = None,
    fresh: FreshOpt = False,
    torch_device: TorchDeviceOpt = "cpu",
    amp: AmpOpt = False,
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = False,
    check_replicas: Annotated[
        bool, flag("--check-replicas", help="under torchrun: verify after every step that all ranks agree")
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            help="start from these weights: an hwnas supernet (any task: the encoder is reused) or "
            "the authors' AlphaNet/AttentiveNAS or SalNAS checkpoint"
        ),
    ] = None,
) -> None:
    """Train a weight-sharing supernet with the sandwich rule, inplace KD and optional Self-KD (resumable)."""
    check_early(space=space_name, task=task, torch_device=torch_device, batch_size=batch_size)
    from hwnas.train.runner import train_supernet

    with user_errors(resume=RESUME):
        _train(
            train_supernet, title="supernet", space=space_name, task=head_task(task, focus=focus, afe=afe, cfem=cfem),
            data=data, out=ckpt, fresh=fresh, selfkd=selfkd, init=init, torch_device=torch_device,
            train_size=train_size, val_size=val_size, on_inherited=_say_inherited, epochs=epochs, batch_size=batch_size,
            lr=lr, optimizer=optimizer, weight_decay=weight_decay, augment=augment, t0=t0, schedule=schedule,
            ohem=ohem, crop=crop, alpha=alpha, grad_clip=grad_clip, seed=seed, max_steps=max_steps,
            sandwich=sandwich,
            inplace_kd=inplace_kd, dropout=dropout, drop_connect=drop_connect, precision=_precision(precision, amp),
            channels_last=channels_last, check_replicas=check_replicas,
        )  # fmt: skip


def _precision(precision: str, amp: bool) -> str:
    """--amp is --precision fp16; with another --precision it is a contradiction."""
    from hwnas.errors import HwnasError

    if amp and precision not in ("fp32", "fp16"):
        raise HwnasError(f"--amp means --precision fp16, not {precision}: pass one of them")
    return "fp16" if amp else precision


def _say_inherited(done) -> None:
    fresh = f"; initialised fresh: {', '.join(done.fresh)}" if done.fresh else "; nothing initialised fresh"
    say(f"--init {done.source} ({done.kind}): {done.loaded} tensors loaded{fresh}")


def train_selfkd(
    arch_pick: Annotated[str, typer.Option("--arch", help="min, max, an arch .json file or an arch line")] = "min",
    space_name: SpaceOpt = None,
    task: TaskOpt = "saliency",
    focus: FocusOpt = False,
    afe: AfeOpt = True,
    cfem: CfemOpt = True,
    data: DataOpt = "synthetic",
    method: Annotated[str, typer.Option(help="selfkd, baseline (no KD), pkd or pskd (SalNAS Table 6)")] = "selfkd",
    init: Annotated[
        Path | None, typer.Option(help="inherit the subnet's weights from this supernet checkpoint")
    ] = None,
    epochs: EpochsOpt = 5,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    optimizer: OptimizerOpt = None,
    weight_decay: WeightDecayOpt = None,
    augment: AugmentOpt = None,
    t0: T0Opt = 10,
    schedule: ScheduleOpt = None,
    ohem: OhemOpt = None,
    crop: CropOpt = None,
    alpha: AlphaOpt = 0.5,
    grad_clip: ClipOpt = 5.0,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = 0,
    train_size: SizeOpt = 512,
    val_size: ValSizeOpt = 128,
    ckpt: Annotated[
        Path | None, typer.Option("--out", "-o", help="checkpoint (default runs/SPACE-TASK/subnet-METHOD.pt)")
    ] = None,
    fresh: FreshOpt = False,
    torch_device: TorchDeviceOpt = "cpu",
    amp: AmpOpt = False,
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = False,
    teacher_precision: Annotated[
        str,
        typer.Option(
            help="the teacher's predictions (selfkd, pskd): fp32, bf16, or auto = bf16 where the device "
            "has native bf16 (AMX / AVX512-BF16 CPUs, bf16 GPUs)"
        ),
    ] = "auto",
) -> None:
    """Train one subnet with Self-KD (SalNAS Algorithm 1) or a comparison method (resumable)."""
    check_early(space=space_name, task=task, torch_device=torch_device, batch_size=batch_size)
    from hwnas.train.runner import train_subnet

    with user_errors(resume=RESUME):
        _train(
            train_subnet, title=method, arch=arch_pick, space=space_name,
            task=head_task(task, focus=focus, afe=afe, cfem=cfem), method=method, data=data, out=ckpt, fresh=fresh,
            init=init, torch_device=torch_device, train_size=train_size, val_size=val_size, epochs=epochs,
            batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay, augment=augment, t0=t0,
            schedule=schedule, ohem=ohem, crop=crop, alpha=alpha, grad_clip=grad_clip, seed=seed, max_steps=max_steps,
            precision=_precision(precision, amp),
            channels_last=channels_last, teacher_precision=teacher_precision,
        )  # fmt: skip


def train_postprocess(
    supernet: Annotated[Path, typer.Option(help="the supernet checkpoint the search scored on (or its adapted one)")],
    arch_pick: Annotated[str, typer.Option("--arch", help="the chosen subnet: best.json, min, max or an arch line")],
    max_epochs: Annotated[int, typer.Option(help="phase 1: most fine-tuning epochs to try")] = 10,
    patience: Annotated[int, typer.Option(help="phase 1: stop after this many epochs without improvement")] = 3,
    selfkd: Annotated[bool, flag("--selfkd", help="phase 2 with Self-KD (SalNAS Algorithm 1)")] = False,
    batch_size: Annotated[int, typer.Option(help="images per step and process")] = 32,
    lr: Annotated[float, typer.Option(help="SGD learning rate of the fine-tune")] = 0.01,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = 0,
    data: Annotated[str | None, typer.Option(help="data folder (default: what the supernet trained on)")] = None,
    ckpt: Annotated[
        Path | None, typer.Option("--out", "-o", help="checkpoint (default: ARCH-postprocessed.pt)")
    ] = None,
    torch_device: TorchDeviceOpt = "cpu",
) -> None:
    """NATv2 post-processing: find the best epoch count on val, fine-tune on train+val, report the test score."""
    check_early(torch_device=torch_device, batch_size=batch_size)
    from hwnas.train.postprocess import post_process
    from hwnas.train.trainer import EpochEvent, ResumeEvent

    with user_errors(), progress_bar() as bar:
        job = bar.add_task("fine-tune", total=None, label="")

        def report(event) -> None:
            if isinstance(event, EpochEvent):
                say(epoch_line(event))
            elif not isinstance(event, ResumeEvent):  # phase 1 continues its own checkpoint epoch by epoch
                bar.update(job, completed=event.step, total=event.steps, label=f"loss {event.loss:.4f}")

        result = post_process(
            supernet, arch_pick, out=ckpt, max_epochs=max_epochs, patience=patience,
            method="selfkd" if selfkd else "baseline", batch_size=batch_size, lr=lr, seed=seed,
            max_steps=max_steps, data=data, on_event=report, device=torch_device,
        )  # fmt: skip
    m = result.metric
    say("phase 1 (val): " + ", ".join(f"epoch {r['epoch']} {m} {r[m]:.4f}" for r in result.phase1))
    say(f"best epoch count: {result.best_epochs}; phase 2 fine-tuned that long on train+val")
    say(f"test {m}: {result.test[m]:.4f} after post-processing, {result.inherited[m]:.4f} inherited from the supernet")
    say(f"wrote {result.checkpoint} and {result.report}")


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(help="Train a supernet (sandwich rule, Self-KD) or one subnet.", no_args_is_help=True)
    train_app.command("supernet")(train_supernet)
    train_app.command("selfkd")(train_selfkd)
    train_app.command("postprocess")(train_postprocess)
    app.add_typer(train_app, name="train")
