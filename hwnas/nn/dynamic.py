"""Dynamic ops that slice one max-size weight (SalNAS Eq. 2; once-for-all's elastic layers).

Each op takes the active shape as call arguments (no hidden "active" state) and offers
`extract(...)`, which returns a plain `torch.nn` layer holding a copy of the active slice.
Kernels shrink by centre-cropping the largest kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.space.signature import make_divisible


def _check(name: str, value: int, limit: int) -> None:
    if value > limit:
        raise ValueError(f"{name} = {value} exceeds the supernet's maximum {limit}")


class DynamicConv2d(nn.Module):
    """Convolution whose weight `W[:C'_out, :C'_in]` and centre `k x k` crop are used (Eq. 2).

    `depthwise=True` gives a depthwise convolution sliced by channels.
    """

    def __init__(
        self,
        in_max: int,
        out_max: int,
        kernel_max: int,
        *,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        self.in_max, self.out_max, self.kernel_max = in_max, out_max, kernel_max
        self.stride, self.depthwise = stride, depthwise
        shape = (out_max, 1 if depthwise else in_max, kernel_max, kernel_max)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bias = nn.Parameter(torch.zeros(out_max)) if bias else None

    def active_weight(self, cin: int, cout: int, kernel: int) -> torch.Tensor:
        _check("input channels", cin, self.in_max)
        _check("output channels", cout, self.out_max)
        _check("kernel", kernel, self.kernel_max)
        start = (self.kernel_max - kernel) // 2
        crop = slice(start, start + kernel)
        if self.depthwise:
            return self.weight[:cout, :, crop, crop]
        return self.weight[:cout, :cin, crop, crop]

    def forward(self, x: torch.Tensor, cout: int, kernel: int) -> torch.Tensor:
        cin = x.shape[1]
        cout = cin if self.depthwise else cout
        weight = self.active_weight(cin, cout, kernel)
        bias = None if self.bias is None else self.bias[:cout]
        groups = cin if self.depthwise else 1
        return F.conv2d(x, weight, bias, self.stride, kernel // 2, 1, groups)

    def extract(self, cin: int, cout: int, kernel: int) -> nn.Conv2d:
        cout = cin if self.depthwise else cout
        conv = nn.Conv2d(
            cin, cout, kernel, self.stride, kernel // 2, groups=cin if self.depthwise else 1, bias=self.bias is not None
        )
        with torch.no_grad():
            conv.weight.copy_(self.active_weight(cin, cout, kernel))
            if self.bias is not None:
                conv.bias.copy_(self.bias[:cout])
        return conv


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the first C channels of its max-size parameters and running statistics.

    Running statistics of the active slice are updated in place, with the same momentum rule as
    `nn.BatchNorm2d` (`momentum=None` gives the cumulative average used for BN recalibration).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        _check("batch-norm channels", c, self.num_features)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            None if self.running_mean is None else self.running_mean[:c],
            None if self.running_var is None else self.running_var[:c],
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )

    def extract(self, c: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(c, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:c])
            bn.bias.copy_(self.bias[:c])
            bn.running_mean.copy_(self.running_mean[:c])
            bn.running_var.copy_(self.running_var[:c])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class DynamicLinear(nn.Module):
    """Linear layer over the first `in` features of a max-size weight."""

    def __init__(self, in_max: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_max, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[-1]
        _check("linear input features", cin, self.linear.in_features)
        return F.linear(x, self.linear.weight[:, :cin], self.linear.bias)

    def extract(self, cin: int) -> nn.Linear:
        linear = nn.Linear(cin, self.linear.out_features)
        with torch.no_grad():
            linear.weight.copy_(self.linear.weight[:, :cin])
            linear.bias.copy_(self.linear.bias)
        return linear


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excitation: pool, 1x1 reduce + ReLU, 1x1 expand + hard-sigmoid, scale."""

    def __init__(self, channels: int, mid: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(mid, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class DynamicSE(nn.Module):
    """Squeeze-excitation whose width follows its input (bottleneck `make_divisible(C // 4)`)."""

    def __init__(self, channels_max: int):
        super().__init__()
        mid_max = make_divisible(channels_max // 4)
        self.reduce = DynamicConv2d(channels_max, mid_max, 1, bias=True)
        self.expand = DynamicConv2d(mid_max, channels_max, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y, make_divisible(c // 4), 1))
        return x * F.hardsigmoid(self.expand(y, c, 1))

    def extract(self, c: int) -> SqueezeExcite:
        mid = make_divisible(c // 4)
        se = SqueezeExcite(c, mid)
        se.reduce = self.reduce.extract(c, mid, 1)
        se.expand = self.expand.extract(mid, c, 1)
        return se
