"""precision=auto: bf16 where the hardware multiplies it natively, fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from dawn_lightning.pipeline.device import cpu_has_bf16, resolve_precision

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_bf16(SAPPHIRE_RAPIDS) and not cpu_has_bf16(ZEN3) and not cpu_has_bf16("")


def test_auto_picks_bf16_only_on_hardware_that_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("dawn_lightning.pipeline.device.cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr("dawn_lightning.pipeline.device.cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be auto or one of fp32, bf16, fp16"):
        resolve_precision("fp8", cpu)
