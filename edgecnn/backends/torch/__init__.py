"""PyTorch eager: the fp32 baseline bench and verify compare against (never an export target)."""

from edgecnn.registry import Backend, register

BACKEND = register(Backend(
    name="torch",
    label="PyTorch eager",
    format="pytorch",
    suffixes=(".pt", ".pth"),
    aliases=("pytorch", "eager"),
    runner="edgecnn.backends.torch.runner:TorchEagerRunner",
    device_extra="torch",
    host_extra="torch",
    applied_keys=("num_threads", "num_interop_threads"),
    order=90,
    deploy=False,
))
