"""A stand-in for an accelerator this host lacks (named as such wherever a test uses it): the `meta`
device plays the GPU, and a dispatch mode asserts that no torch operation mixes it with the CPU.

Every aten operation's tensor arguments are checked: one on `meta` beside one on the CPU (other than
a 0-dim CPU scalar, which torch itself allows beside a GPU tensor) is the bug a real GPU would raise
on (`Expected all tensors to be on the same device`), recorded with the operation's name. Copies
from the stand-in to the host (`.cpu()`: predictions going to the scorer) return zeros and `.item()`
returns True, 1 or 0.0 (a finite check passes, a count is non-zero, a loss is zero), as a real
device would return numbers, since `meta` holds shapes only.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten


NETWORK_OPS = {aten.convolution.default, aten.addmm.default, aten.mm.default, aten.linear.default}


class MetaAccelerator(TorchDispatchMode):
    """`with MetaAccelerator() as gpu:` ... `gpu.mixed` lists the operations that mixed devices,
    `gpu.on_host` the network operations (convolutions, matrix products) that ran wholly on the CPU;
    `gpu.ops` counts the operations that ran on the stand-in."""

    def __init__(self) -> None:
        super().__init__()
        self.mixed: list[str] = []
        self.on_host: list[str] = []
        self.ops = 0

    def __enter__(self):
        from torch.fx.experimental import _config

        # boolean masks (the NSS loss) have data-dependent sizes, unknown on `meta`: take them whole
        self._patch = _config.patch(meta_nonzero_assume_all_nonzero=True)
        self._patch.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._patch.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_meta = [t for t in tensors if t.device.type == "meta"]
        on_host = [t for t in tensors if t.device.type == "cpu" and t.dim() > 0]
        if on_meta:
            self.ops += 1
        if func is aten._to_copy.default and on_meta and str(kwargs.get("device", "meta")) == "cpu":
            source = args[0]
            return torch.zeros(source.shape, dtype=kwargs.get("dtype") or source.dtype)
        if func is aten.copy_.default and args[0].device.type == "cpu" and args[1].device.type == "meta":
            return args[0].zero_()
        if func is aten._local_scalar_dense.default and on_meta:
            dtype = args[0].dtype  # a finite check passes, a count is non-zero, a float (a loss) is 0.0
            return True if dtype == torch.bool else (0.0 if dtype.is_floating_point else 1)
        if on_meta and on_host and func not in (aten._to_copy.default, aten.copy_.default):
            self.mixed.append(f"{func}: {[str(t.device) for t in tensors]}")
        if func in NETWORK_OPS and not on_meta:
            self.on_host.append(str(func))
        return func(*args, **kwargs)
