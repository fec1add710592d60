"""What the adapters of diffusers pipelines share: finding a pipeline folder offline, checking it
holds the expected files, and the noise schedule of its scheduler config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.schedule import NoiseSchedule
from ..errors import WeightsError


def resolve_folder(weights: str | os.PathLike[str], expected: tuple[str, ...]) -> Path:
    """A local pipeline folder, a Hugging Face cache folder (``models--org--name``), or a repo id
    already in the local cache (``CompVis/ldm-super-resolution-4x-openimages``): never downloads."""
    path = Path(weights)
    if path.is_dir():
        snapshots = sorted((path / "snapshots").glob("*")) if (path / "snapshots").is_dir() else []
        return snapshots[-1] if snapshots else path
    text = str(weights)
    looks_like_repo_id = text.count("/") == 1 and not text.startswith(("/", ".", "~")) and not path.exists()
    if looks_like_repo_id:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception as e:
            raise WeightsError(f"{weights} is not in the local Hugging Face cache and nothing is downloaded; "
                               f"give the folder of the pipeline ({', '.join(expected)})") from e
    raise WeightsError(f"pipeline folder not found: {weights} (it must hold {', '.join(expected)})")


def check_folder(folder: Path, expected: tuple[str, ...], models: tuple[str, ...], what: str) -> None:
    """One error naming every missing file: the configs and each model's weights."""
    missing = [name for name in expected if not (folder / name).is_file()]
    for sub in models:
        if not any((folder / sub / f"diffusion_pytorch_model.{ext}").is_file() for ext in ("safetensors", "bin")):
            missing.append(f"{sub}/diffusion_pytorch_model.safetensors")
    if missing:
        raise WeightsError(f"{folder}: not {what} folder; missing {', '.join(missing)}")


def schedule_from_config(config: dict[str, Any]) -> NoiseSchedule:
    """The betas of a diffusers scheduler config (``trained_betas`` are not supported)."""
    if config.get("trained_betas") is not None:
        raise WeightsError("schedulers with trained_betas are not supported")
    return NoiseSchedule.from_betas(
        config.get("num_train_timesteps", 1000),
        config.get("beta_start", 0.0001),
        config.get("beta_end", 0.02),
        config.get("beta_schedule", "linear"),
    )
