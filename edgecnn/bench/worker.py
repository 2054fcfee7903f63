"""The child process of `edgecnn bench`: measure one artifact at one batch size.

    python -m edgecnn.bench.worker SPEC.json RESULT.json

It imports the standard library, numpy and the one runtime named in the spec (torch only for the
PyTorch reference), so its peak resident memory is that artifact's. The result, or the error, is
written as JSON to RESULT.json; runtimes' own log lines on stdout/stderr cannot corrupt it.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m edgecnn.bench.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    from edgecnn.errors import EdgecnnError

    try:
        from edgecnn.bench.measure import measure

        payload = {"ok": True, "result": measure(json.loads(spec_path.read_text()))}
    except EdgecnnError as exc:
        payload = _error(exc, exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
        payload = _error(exc, 1)
    from edgecnn.atomic import write_text_atomic

    # Atomic, so the parent never reads half a result; runtime objects left in `applied` become strings.
    write_text_atomic(result_path, json.dumps(payload, default=_plain))
    return 0


def _error(exc: BaseException, exit_code: int) -> dict:
    return {"ok": False, "error": {
        "type": type(exc).__name__, "message": str(exc), "exit_code": exit_code,
        "traceback": traceback.format_exc(),
    }}


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
