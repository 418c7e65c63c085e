"""Loading metric weights from local files, with errors that name the setting and the file."""

from __future__ import annotations

from pathlib import Path

import torch


class WeightsFormatError(ValueError):
    """A weights file exists but is not what the metric needs; the message names the file."""


def existing_file(path: str | Path, setting: str, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{setting}: {path} does not exist ({what})")
    return path


def load_state_dict(path: str | Path, setting: str, what: str) -> dict[str, torch.Tensor]:
    """A plain {name: tensor} state dict from ``path`` (``torch.load(weights_only=True)``)."""
    path = existing_file(path, setting, what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsFormatError(
            f"{setting}: {path} is not a PyTorch state dict ({what}): {str(error).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFormatError(
            f"{setting}: {path} holds a {type(state).__name__}, not a state dict ({what})"
        )
    return state


def load_into(module: torch.nn.Module, state: dict, path: str | Path, setting: str, what: str) -> None:
    """``module.load_state_dict(state)`` (strict), a mismatch reported against the file."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines()[1:3]]
        raise WeightsFormatError(f"{setting}: {path} does not fit {what}: {' '.join(lines)}") from None


def load_torchscript(path: str | Path, setting: str, what: str) -> torch.jit.ScriptModule:
    path = existing_file(path, setting, what)
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as error:
        raise WeightsFormatError(
            f"{setting}: {path} is not a TorchScript file ({what}): {str(error).splitlines()[0]}"
        ) from None
