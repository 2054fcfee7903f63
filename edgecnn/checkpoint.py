"""Checkpoints and model loading: everywhere a model is taken (eval, export) goes through `load_model`.

A checkpoint (`model.pt`) is plain data — architecture name, class count and names, the
preprocessing spec, the state dict, training metrics, versions — so it loads with
`torch.load(..., weights_only=True)`: a checkpoint is data, never code.

A model source is either such a checkpoint (or a folder holding `model.pt`), or a zoo name with
`weights`: "imagenet" (published torchvision/timm weights), "random", or a weights file; or a zoo
name with `state_dict`, a user's own torchvision-style state dict.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import torch

import edgecnn
from edgecnn.data import offline_requested
from edgecnn.atomic import write_atomic
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec

CHECKPOINT_FORMAT = "edgecnn.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
WEIGHT_CHOICES = ("imagenet", "random")
# Heads that the published ImageNet weights carry but the zoo builds without (aux_logits=False).
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")
# torchvision's DenseNet weights predate a rename ("norm.1" -> "norm1"); torchvision remaps them on
# load with this pattern, and so do we.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to feed it and to trust its output."""

    model: torch.nn.Module  # eval mode, on CPU
    spec: Any  # edgecnn.zoo.ModelSpec
    preprocess: PreprocessSpec  # from the checkpoint, or the model's default input for a zoo name
    class_names: tuple[str, ...]
    provenance: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def accuracy_meaningful(self) -> bool:
        """False for random weights: latency is real, accuracy means nothing."""
        return bool(self.provenance.get("accuracy_meaningful", False))

    @property
    def from_checkpoint(self) -> bool:
        return self.provenance.get("source") == "checkpoint"

    @property
    def checkpoint(self) -> dict | None:
        """The checkpoint's metadata (everything but the state dict), when loaded from one."""
        return self.provenance.get("checkpoint")


# ---------------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | Path,
    *,
    arch: str,
    state_dict: Mapping[str, torch.Tensor],
    preprocess: PreprocessSpec,
    metrics: Mapping[str, Any] | None = None,
    data: str | None = None,
    data_root: str | None = None,
    seed: int | None = None,
    init: str = "random",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an edgecnn checkpoint atomically (temp file, then rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": arch,
        "num_classes": len(preprocess.class_names),
        "class_names": list(preprocess.class_names),
        "preprocess": preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "metrics": _plain(dict(metrics or {})),
        "data": data if data is not None else preprocess.data,
        "data_root": str(data_root) if data_root else None,
        "seed": seed,
        "init": init,
        "edgecnn_version": str(edgecnn.__version__),
        "torch_version": str(torch.__version__),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "extra": _plain(dict(extra or {})),
    }
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Any, path: str | Path) -> Path:
    """torch.save through a temp file in the same folder, then an atomic rename."""
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | Path) -> dict:
    """Load and validate an edgecnn checkpoint (weights_only); one BadInputError for any problem."""
    path = Path(path)
    payload = _torch_load(path, what="checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise BadInputError(
                f"{path} is a bare state dict, not an edgecnn checkpoint: pass the architecture and the file,"
                f" e.g. `NAME --state-dict {path}`"
            )
        raise BadInputError(f"{path} is not an edgecnn checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise BadInputError(
            f"{path} has checkpoint format {version!r}; this edgecnn ({edgecnn.__version__}) reads up to"
            f" {CHECKPOINT_VERSION}: upgrade edgecnn"
        )
    for key, kind in (("arch", str), ("num_classes", int), ("state_dict", dict), ("preprocess", dict),
                      ("class_names", list)):
        if not isinstance(payload.get(key), kind):
            raise BadInputError(f"{path}: checkpoint field {key!r} is missing or malformed")
    try:
        payload["preprocess_spec"] = PreprocessSpec.from_dict(payload["preprocess"])
    except BadInputError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    if len(payload["class_names"]) != payload["num_classes"]:
        raise BadInputError(
            f"{path}: {len(payload['class_names'])} class names for num_classes={payload['num_classes']}"
        )
    return payload


def _torch_load(path: Path, *, what: str) -> Any:
    if not path.is_file():
        raise BadInputError(f"no such {what} file: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise BadInputError(f"reading {path} needs safetensors: pip install safetensors") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise BadInputError(f"cannot read {what} {path}: corrupt safetensors file ({_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        message = _first_line(exc)
        # Only a named global means real Python objects; torch words garbage bytes
        # ("Unsupported operand") as a weights-only failure too, and that is a corrupt file.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            culprit = f" ({found.group(1)})"
            raise BadInputError(
                f"{path} holds Python objects{culprit}, not plain data: edgecnn loads {what}s with"
                " weights_only=True (save a state dict instead)"
            ) from None
        if message.startswith("Weights only load failed"):
            detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
            message = detail.group(1).strip()[:120] if detail else "unreadable pickle data"
        raise BadInputError(f"cannot read {what} {path}: not a torch file or corrupt ({message})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # torch's messages run on with advice about its own internals: the first sentence is the fact.
    return line.split(". ")[0][:200]


def _plain(value: Any) -> Any:
    """Metrics as plain Python data (weights_only loads refuse numpy scalars)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        return value.item()
    if isinstance(value, (str, Path)):
        return str(value)  # also str subclasses such as torch.__version__ (TorchVersion)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


# ------------------------------------------------------------------------------------ state dicts


def head_keys(spec) -> list[str]:
    """State-dict keys of the classifier: the ones whose shape changes with num_classes."""
    try:
        with torch.device("meta"):
            a, b = spec.build(7).state_dict(), spec.build(11).state_dict()
    except Exception:  # noqa: BLE001 - a builder that does not support meta tensors
        a, b = spec.build(7).state_dict(), spec.build(11).state_dict()
    return [k for k in a if k in b and a[k].shape != b[k].shape]


def infer_num_classes(spec, state_dict: Mapping[str, torch.Tensor]) -> int:
    """The class count a state dict was trained for, read from its classifier weights."""
    heads = head_keys(spec)
    for key in heads:
        if key in state_dict and state_dict[key].ndim >= 1:
            return int(state_dict[key].shape[0])
    raise BadInputError(
        f"the weights do not fit {spec.name}: no classifier key ({', '.join(heads) or 'none'}) found;"
        " wrong architecture?"
    )


def normalize_state_dict(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Unwrap common containers and prefixes: {'state_dict': ...}, {'model': ...}, DDP's 'module.'."""
    for key in ("state_dict", "model_state_dict", "model"):
        inner = state_dict.get(key) if isinstance(state_dict, Mapping) else None
        if isinstance(inner, Mapping):
            state_dict = inner
            break
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise BadInputError("the weights file holds no state dict (expected a mapping of names to tensors)")
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise BadInputError("the weights file holds no tensors")
    prefix = "module."
    if all(k.startswith(prefix) for k in tensors):
        tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    renamed = {}
    for key, value in tensors.items():
        match = _DENSENET_OLD_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def load_weights_into(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, arch: str,
                      skip_keys: tuple[str, ...] = (), origin: str = "the weights") -> None:
    """Load a state dict strictly; a mismatch becomes one BadInputError that says what is wrong.

    `skip_keys` are left at their fresh initialisation (the classifier when fine-tuning published
    weights on another class count).
    """
    expected = model.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if k not in skip_keys}
    # Auxiliary ImageNet heads exist only in the published files: drop them when the model has none.
    state_dict = {k: v for k, v in state_dict.items() if k in expected or not k.startswith(_AUX_PREFIXES)}
    missing = [k for k in expected if k not in state_dict and k not in skip_keys]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        if len(missing) > len(expected) // 2:
            raise BadInputError(
                f"{origin} do not fit {arch}: {len(missing)} of {len(expected)} keys missing"
                f" (e.g. {missing[0]}); wrong architecture?"
            )
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
        raise BadInputError(f"{origin} do not fit {arch}: {', '.join(parts)}; wrong architecture?")
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise BadInputError(
                f"{origin} do not fit {arch}: {key} is {tuple(value.shape)}, the model expects"
                f" {tuple(expected[key].shape)} (a different class count or architecture?)"
            )
    model.load_state_dict(state_dict, strict=not skip_keys)


# ------------------------------------------------------------------------------ published weights


def published_weights_file(spec) -> tuple[Path, str]:
    """Where torch.hub caches a torchvision model's published weights: (cache path, download URL)."""
    enum_name = _weights_id(spec, "torchvision")
    import torchvision

    weights = torchvision.models.get_weight(enum_name)
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename, weights.url


def _weights_id(spec, source: str) -> str:
    if not spec.weights:
        raise BadInputError(
            f"{spec.name} has no published weights: train it (`edgecnn train {spec.name} --data digits`),"
            " or pass --weights random for a latency-only model"
        )
    kind, _, ident = spec.weights.partition(":")
    if kind != source:
        raise BadInputError(f"{spec.name}: weights {spec.weights!r} are not {source} weights")
    return ident


# Seconds without an answer before a download counts as offline: a blackholed network would
# otherwise hold `edgecnn eval NAME --weights imagenet` for minutes before saying anything.
DOWNLOAD_TIMEOUT_S = 30.0


def _download_url(url: str, destination: Path) -> None:
    """Download one file into torch.hub's cache layout, failing fast when the host is unreachable."""
    host = urlparse(url).hostname or ""
    if offline_requested() or not _host_reachable(host):
        raise ConnectionError(f"{host} is not reachable")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(destination), progress=False)
    finally:
        socket.setdefaulttimeout(previous)


def published_state_dict(spec) -> dict[str, torch.Tensor]:
    """The published ImageNet state dict of a zoo model (1,000 classes), from the cache or the network."""
    source = (spec.weights or "").partition(":")[0]
    if source == "timm":
        return _timm_published_model(spec).state_dict()
    if source != "torchvision":
        _weights_id(spec, "torchvision")  # raises the "no published weights" error
    path, url = published_weights_file(spec)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _download_url(url, path)
        except Exception:  # noqa: BLE001 - offline, proxy, HTTP error: all the same fix
            path.unlink(missing_ok=True)
            raise BadInputError(
                f"cannot download {spec.name}'s ImageNet weights (offline?): place {path.name}"
                f" (from {url}) in {path.parent}/, or pass --weights random for a latency-only model"
            ) from None
    return normalize_state_dict(_torch_load(path, what="weights"))


def _timm_published_model(spec, file: Path | None = None) -> torch.nn.Module:
    """A timm model with its published weights: from `file`, the caches, or the network."""
    import timm
    from timm.models import get_pretrained_cfg

    tag = _weights_id(spec, "timm")
    cfg = get_pretrained_cfg(tag)
    overlay = {}
    if file is not None:
        overlay = {"file": str(file)}
    else:
        hint, cached = _timm_cache_hint(cfg)
        if cached is not None:
            overlay = {"file": str(cached)}
        elif offline_requested() or not _host_reachable(hint["host"]):
            raise BadInputError(
                f"cannot download {spec.name}'s ImageNet weights (offline?): {hint['where']},"
                f" or pass --weights FILE, or --weights random for a latency-only model"
            )
    try:
        return timm.create_model(tag, pretrained=True, num_classes=1000,
                                 pretrained_cfg_overlay=overlay or None)
    except Exception as exc:  # noqa: BLE001
        raise BadInputError(f"cannot load {spec.name}'s published weights: {_first_line(exc)}") from None


def _timm_cache_hint(cfg) -> tuple[dict, Path | None]:
    if getattr(cfg, "hf_hub_id", None):
        from huggingface_hub import constants, try_to_load_from_cache

        repo = cfg.hf_hub_id
        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(repo, filename)
            if isinstance(cached, str) and os.path.isfile(cached):
                return {}, Path(cached)
        folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        return {
            "host": urlparse(constants.ENDPOINT).hostname or "huggingface.co",
            "where": f"the Hugging Face cache {folder} has no snapshot of {repo} (copy one there from an online"
                     f" machine: `hf download {repo}`)",
        }, None
    url = cfg.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if path.is_file():
        return {}, path
    return {"host": urlparse(url).hostname or "", "where": f"place {path.name} (from {url}) in {path.parent}/"}, None


def _host_reachable(host: str, timeout: float = 3.0) -> bool:
    # A name lookup fails at once offline, where huggingface_hub would retry for most of a minute.
    if not host:
        return False
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)


def imagenet_class_names(spec) -> tuple[str, ...]:
    """The 1,000 ImageNet class names for a model with published weights."""
    try:
        if (spec.weights or "").startswith("torchvision:"):
            import torchvision

            return tuple(torchvision.models.get_weight(spec.weights.partition(":")[2]).meta["categories"])
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return tuple(info.index_to_description(i) for i in range(1000))
    except Exception:  # noqa: BLE001 - names are a nicety; numbers are still correct
        return tuple(str(i) for i in range(1000))


def initial_weights(spec, num_classes: int, weights: str | None) -> tuple[torch.nn.Module, str]:
    """A fresh model of `num_classes` outputs, initialised as asked: (model, provenance label).

    "imagenet" loads the published weights (the classifier is re-initialised when num_classes is
    not 1,000, for fine-tuning); "random" keeps the fresh init; a path loads that weights file.
    """
    model = spec.build(num_classes)
    if weights in (None, "random"):
        return model, "random"
    if weights == "imagenet":
        state = published_state_dict(spec)
        label = "imagenet"
    else:
        path = Path(weights)
        if not path.is_file():
            raise BadInputError(
                f"--weights must be one of {', '.join(WEIGHT_CHOICES)} or a weights file; no file {weights!r}"
            )
        if (spec.weights or "").startswith("timm:") and path.suffix in (".safetensors", ".bin", ".pth", ".pt"):
            state = _timm_published_model(spec, path).state_dict()
        else:
            state = normalize_state_dict(_torch_load(path, what="weights"))
        label = f"file:{path}"
    heads = head_keys(spec)
    skip = tuple(k for k in heads if k in state and state[k].shape != model.state_dict()[k].shape)
    load_weights_into(model, state, arch=spec.name, skip_keys=skip, origin=f"{spec.name}'s {label} weights")
    return model, label


# ------------------------------------------------------------------------------------- load_model


def resolve_checkpoint_path(source: str | Path) -> Path | None:
    """The checkpoint file a source names (a file, or a folder with model.pt), or None for a zoo name."""
    path = Path(source).expanduser()
    if path.is_dir():
        candidate = path / "model.pt"
        if candidate.is_file():
            return candidate
        raise BadInputError(f"{path} is a folder without model.pt (train into it with `edgecnn train ... --out {path}`)")
    if path.is_file():
        return path
    text = str(source)
    if path.suffix in CHECKPOINT_SUFFIXES or os.sep in text or "/" in text:
        raise BadInputError(f"no such checkpoint file: {path}")
    return None


def load_model(source: str | Path, *, weights: str | None = None, state_dict: str | Path | None = None,
               num_classes: int | None = None) -> LoadedModel:
    """Load a checkpoint path or a zoo name (+ weights / state dict) as an eval-mode CPU model.

    weights: "imagenet" (the default for a zoo name), "random", or a weights file; state_dict: a
    user's torchvision-style state dict for the named architecture (its class count is read from
    it). num_classes, when given, must match what the weights hold.
    """
    from edgecnn.zoo import get_spec

    path = resolve_checkpoint_path(source)
    if path is not None:
        if weights not in (None,) or state_dict is not None:
            raise BadInputError("--weights/--state-dict go with a model NAME, not with a checkpoint")
        return _load_checkpoint_model(path, num_classes)

    spec = get_spec(str(source))
    if state_dict is not None:
        if weights not in (None,):
            raise BadInputError("pass either --weights or --state-dict, not both")
        file = Path(state_dict).expanduser()
        state = normalize_state_dict(_torch_load(file, what="state dict"))
        found = infer_num_classes(spec, state)
        if num_classes is not None and num_classes != found:
            raise BadInputError(f"{file} has {found} classes, not the {num_classes} asked for")
        model = spec.build(found)
        load_weights_into(model, state, arch=spec.name, origin=str(file))
        class_names = tuple(str(i) for i in range(found))
        provenance = {"source": "state_dict", "weights": f"file:{file}", "accuracy_meaningful": True}
        preprocess = _default_preprocess(spec, class_names, "model")
    else:
        choice = weights or ("imagenet" if spec.weights else "random")
        if choice == "random":
            count = num_classes or 1000
            model = spec.build(count)
            class_names = tuple(str(i) for i in range(count))
            provenance = {"source": "zoo", "weights": "random", "accuracy_meaningful": False}
        else:
            model, label = initial_weights(spec, 1000, choice)
            if num_classes not in (None, 1000):
                raise BadInputError(
                    f"{spec.name}'s {label} weights have 1000 classes, not {num_classes}: fine-tune with"
                    f" `edgecnn train {spec.name} --weights {choice} --data SPEC`"
                )
            class_names = imagenet_class_names(spec)
            provenance = {"source": "zoo", "weights": label, "accuracy_meaningful": True}
        preprocess = _default_preprocess(spec, class_names, "model")
    model.eval()
    provenance.update(arch=spec.name, torch_version=str(torch.__version__), edgecnn_version=edgecnn.__version__)
    return LoadedModel(model=model, spec=spec, preprocess=preprocess, class_names=class_names,
                       provenance=provenance)


def _load_checkpoint_model(path: Path, num_classes: int | None) -> LoadedModel:
    from edgecnn.zoo import get_spec

    payload = read_checkpoint(path)
    try:
        spec = get_spec(payload["arch"])
    except BadInputError:
        raise BadInputError(
            f"{path} was trained as {payload['arch']!r}, which this edgecnn does not know (`edgecnn models`)"
        ) from None
    count = payload["num_classes"]
    if num_classes is not None and num_classes != count:
        raise BadInputError(f"{path} has {count} classes, not the {num_classes} asked for")
    model = spec.build(count)
    load_weights_into(model, normalize_state_dict(payload["state_dict"]), arch=spec.name,
                      origin=f"the weights in {path}")
    model.eval()
    metadata = {k: v for k, v in payload.items() if k not in ("state_dict", "preprocess_spec")}
    provenance = {
        "source": "checkpoint",
        "path": str(path),
        "weights": f"checkpoint:{path}",
        "accuracy_meaningful": True,
        "arch": spec.name,
        "checkpoint": metadata,
        "torch_version": str(torch.__version__),
        "edgecnn_version": edgecnn.__version__,
    }
    return LoadedModel(model=model, spec=spec, preprocess=payload["preprocess_spec"],
                       class_names=tuple(payload["class_names"]), provenance=provenance)


def _default_preprocess(spec, class_names, normalization: str) -> PreprocessSpec:
    from edgecnn.data import published_normalization

    mean, std = published_normalization(spec)
    channels = spec.channels
    if len(mean) != channels:
        mean, std = (mean[0],) * channels, (std[0],) * channels
    return PreprocessSpec(size=spec.input_size[1], channels=channels, mean=mean, std=std,
                          class_names=tuple(class_names), data=None, normalization=normalization)


__all__ = [
    "CHECKPOINT_FORMAT",
    "LoadedModel",
    "atomic_torch_save",
    "head_keys",
    "infer_num_classes",
    "initial_weights",
    "load_model",
    "load_weights_into",
    "normalize_state_dict",
    "published_state_dict",
    "published_weights_file",
    "read_checkpoint",
    "resolve_checkpoint_path",
    "save_checkpoint",
]
