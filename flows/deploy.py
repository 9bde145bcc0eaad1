"""Serve the deployments declared in prefect.yaml from this process (no work pool needed).

`prefect.yaml` is the one place deployments are declared: `prefect deploy --all` registers them for a
work pool and a worker; `curation-loop serve` reads the same file and serves them here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import serve as prefect_serve

from flows.analysis import predict_generalization
from flows.chain import curation_chain
from flows.curation import curation_loop

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
FLOWS = {"flows/curation.py:curation_loop": curation_loop, "flows/chain.py:curation_chain": curation_chain,
         "flows/analysis.py:predict_generalization": predict_generalization}


def deployments_from_yaml(path: Path = PREFECT_YAML) -> list:
    spec = yaml.safe_load(path.read_text())
    out = []
    for item in spec.get("deployments", []):
        entry = item.get("entrypoint", "")
        if entry not in FLOWS:
            raise ValueError(f"{path}: deployment {item.get('name')!r} names entrypoint {entry!r}; "
                             f"known: {sorted(FLOWS)}")
        out.append(FLOWS[entry].to_deployment(
            name=item["name"], parameters=item.get("parameters", {}), description=item.get("description"),
            tags=item.get("tags", [])))
    if not out:
        raise ValueError(f"{path} declares no deployment")
    return out


def serve(path: Path = PREFECT_YAML) -> None:
    prefect_serve(*deployments_from_yaml(path))
