"""Published ImageNet weights of zoo models: torch.hub's and timm's caches, downloads that fail fast offline."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from edgecnn.checkpoint.format import first_line, torch_load
from edgecnn.checkpoint.weights import normalize_state_dict
from edgecnn.data import offline_requested
from edgecnn.errors import BadInputError


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
        return timm_published_model(spec).state_dict()
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
    return normalize_state_dict(torch_load(path, what="weights"))


def timm_published_model(spec, file: Path | None = None) -> torch.nn.Module:
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
        raise BadInputError(f"cannot load {spec.name}'s published weights: {first_line(exc)}") from None


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
