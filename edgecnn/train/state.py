"""What a run leaves on disk: the best epoch as DIR/model.pt, and DIR/last.pt for `--resume`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from edgecnn.checkpoint import atomic_torch_save, save_checkpoint
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec
from edgecnn.train.config import TrainConfig

LAST_FORMAT = "edgecnn.last"


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder."""

    out_dir: Path
    checkpoint: Path
    last: Path
    metrics: Path

    @classmethod
    def of(cls, out_dir: Path) -> "RunPaths":
        return cls(out_dir, out_dir / "model.pt", out_dir / "last.pt", out_dir / "metrics.json")


def save_model(path: Path, *, arch: str, state_dict: dict, preprocess: PreprocessSpec, metrics: dict,
               config: TrainConfig, init_label: str) -> None:
    """The best epoch's weights as an edgecnn checkpoint, with the run's metrics and config."""
    summary = {k: v for k, v in metrics.items() if k not in ("history",)}
    summary["history"] = [dict(h) for h in metrics.get("history", [])]
    save_checkpoint(path, arch=arch, state_dict=state_dict, preprocess=preprocess, metrics=summary,
                    data=config.data, data_root=config.data_root, seed=config.seed, init=init_label,
                    extra={"config": config.to_dict()})


def save_last(path: Path, **state) -> None:
    """Everything --resume needs to continue after `state["epoch"]` (model, optimizer, RNG, history)."""
    atomic_torch_save({"format": LAST_FORMAT, **state}, path)


def read_last(paths: RunPaths) -> dict:
    """The saved training state of an interrupted run; BadInputError when there is none to resume."""
    last_path, checkpoint_path = paths.last, paths.checkpoint
    if not last_path.is_file():
        if checkpoint_path.is_file():
            raise BadInputError(
                f"nothing to resume in {last_path.parent}: the run finished ({checkpoint_path.name} is its result);"
                " pass --force to train again"
            )
        raise BadInputError(f"nothing to resume: {last_path} does not exist")
    try:
        state = torch.load(last_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise BadInputError(f"cannot read {last_path}: corrupt ({str(exc).splitlines()[0][:160]}); pass --force to start over") from None
    if not isinstance(state, dict) or state.get("format") != LAST_FORMAT:
        raise BadInputError(f"{last_path} is not an edgecnn training state; pass --force to start over")
    return state


def merge_resume_config(requested: TrainConfig, saved: dict) -> TrainConfig:
    """Resume with the saved recipe; an explicit different model or data is refused."""
    from edgecnn.zoo import resolve_name

    known = {f.name for f in fields(TrainConfig)}
    merged = TrainConfig(**{k: v for k, v in saved.items() if k in known})
    if resolve_name(requested.model) != merged.model:
        raise BadInputError(f"{requested.out_dir} holds a {merged.model} run, not {requested.model}")
    if requested.data != merged.data:
        raise BadInputError(f"{requested.out_dir} was trained on {merged.data}, not {requested.data}")
    merged.out_dir = requested.out_dir
    merged.threads = requested.threads
    return merged
