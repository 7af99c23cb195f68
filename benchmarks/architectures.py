"""Sweep every model type of transformers' causal-LM mapping: build it tiny, prune it with
Wanda and SparseGPT through the engine, check it; write benchmarks/results/architectures.json.

    python benchmarks/architectures.py [model_type ...]
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

from tests.support.arch_sweep import calibration_text, prune_and_check

OUT = Path(__file__).parent / "results" / "architectures.json"


def summarize(results: dict) -> dict:
    import transformers

    both = {
        mt: next((v[0] for v in r.values() if v[0] != "pass"), "pass") for mt, r in results.items()
    }
    return {
        "transformers": transformers.__version__,
        "counts": Counter(both.values()),
        "passing": sorted(m for m, s in both.items() if s == "pass"),
    }


def main(types: list[str]) -> None:
    """Sweep `types` (default: the whole mapping), resuming from the results file; the file
    is rewritten after each family, so an interrupted sweep keeps what it did."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)  # unexpected errors are logged by the engine; keep quiet
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    results = json.loads(OUT.read_text())["families"] if OUT.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        calib = calibration_text(Path(tmp) / "calib.txt")
        for mt in types or [m for m in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if m not in results]:
            results[mt] = {}
            for method in ("wanda", "sparsegpt"):
                o = prune_and_check(mt, method, Path(tmp) / mt, calib)
                results[mt][method] = [o.status, o.detail]
                print(mt, method, o.status, o.detail[:200], flush=True)
                if o.status == "build":
                    break
            shutil.rmtree(Path(tmp) / mt, ignore_errors=True)
            doc = {"summary": summarize(results), "families": results}
            OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(summarize(results)["counts"]))


if __name__ == "__main__":
    main(sys.argv[1:])
