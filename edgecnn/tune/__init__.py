"""`edgecnn tune`: the fastest runtime settings on this device that still pass the accuracy gate.

For each artifact of a bundle the knobs its backend publishes (`edgecnn/backends/<name>/tuning.py`:
OpenVINO's precision hint, streams and pinning; ONNX Runtime's graph level, execution mode, spin-wait
and providers; LiteRT's API, XNNPACK and its fp16 mode; ncnn's fp16, Winograd and sgemm; threads for
all of them) are searched (`search`), each candidate timed by bench's child process and gated on the
golden set by verify's checks at the precision it computes in (`candidate`). The result goes to
`tuning/<device signature>.json` in the bundle, recorded with its sha256 in the manifest
(`edgecnn.bench.tuned`), which bench, verify and `load_bundle_runner` then apply on this machine only.
"""

from edgecnn.tune.candidate import Candidate, Gate
from edgecnn.tune.run import tune
from edgecnn.tune.search import ArtifactTuning, fastest_passing, plan, search
from edgecnn.tune.settings import DEFAULT_BUDGET_S, DEFAULT_MIN_TIME_S, TuneSettings

__all__ = ["DEFAULT_BUDGET_S", "DEFAULT_MIN_TIME_S", "ArtifactTuning", "Candidate", "Gate", "TuneSettings",
           "fastest_passing", "plan", "search", "tune"]
