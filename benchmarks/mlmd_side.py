#!/usr/bin/env python
"""ML Metadata's side of ``structure_vs_mlflow.py`` (run with a Python that has ``ml-metadata``).

ML Metadata pins its own protobuf and Python versions, so it lives in a virtual environment of
its own; ``structure_vs_mlflow.py --mlmd-python PATH`` runs this script with it, in the same
benchmark run, and prints its times beside the others. The workloads, in MLMD's terms, on a
fresh SQLite file each (in process: MLMD has no server of its own):

(e) register: per version, one ``put_execution`` (the run, COMPLETE) with the version as its
    OUTPUT artifact in the model's context; then the alias and the stage as custom
    properties: the new holder and the previous one updated in one ``put_artifacts``.
(f) alias: ``get_artifacts`` filtered on the alias property (the median of F).
(g) lineage: per step, one ``put_execution`` with two new dataset artifacts and the previous
    step's version as INPUT events and the new version as OUTPUT.

Prints one JSON object: ``{"register": s, "alias_ms": ms, "lineage": s}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb


def open_store(path: Path) -> Any:
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def types(store: Any) -> dict[str, int]:
    run = pb.ExecutionType(name="Run")
    run.properties["name"] = pb.STRING
    model = pb.ArtifactType(name="ModelVersion")
    model.properties["version"] = pb.INT
    dataset = pb.ArtifactType(name="Dataset")
    dataset.properties["digest"] = pb.STRING
    context = pb.ContextType(name="Model")
    return {
        "run": store.put_execution_type(run),
        "model": store.put_artifact_type(model),
        "dataset": store.put_artifact_type(dataset),
        "context": store.put_context_type(context),
    }


def event(kind: Any) -> Any:
    e = pb.Event()
    e.type = kind
    return e


def register(store: Any, t: dict[str, int], n: int) -> float:
    context = pb.Context(type_id=t["context"], name="bench-model")
    previous: Any = None
    started = time.perf_counter()
    for i in range(n):
        run = pb.Execution(type_id=t["run"], last_known_state=pb.Execution.COMPLETE)
        run.properties["name"].string_value = f"train-{i}"
        version = pb.Artifact(type_id=t["model"], uri=f"runs:/{i}/model")
        version.properties["version"].int_value = i + 1
        _, (version_id,), (context_id,) = store.put_execution(
            run, [(version, event(pb.Event.OUTPUT))], [context],
            reuse_context_if_already_exist=True,
        )  # fmt: skip
        context.id = context_id
        (new,) = store.get_artifacts_by_id([version_id])
        new.custom_properties["alias"].string_value = "champion"
        new.custom_properties["stage"].string_value = "Staging"
        changed = [new]
        if previous is not None:
            (old,) = store.get_artifacts_by_id([previous])
            old.custom_properties["alias"].string_value = ""
            changed.append(old)
        store.put_artifacts(changed)
        previous = version_id
    return time.perf_counter() - started


def alias(store: Any, fetches: int) -> float:
    options = metadata_store.ListOptions(
        filter_query="custom_properties.alias.string_value = 'champion'"
    )
    times = []
    for _ in range(fetches):
        started = time.perf_counter()
        (_found,) = store.get_artifacts(list_options=options)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def lineage(store: Any, t: dict[str, int], steps: int) -> float:
    context = pb.Context(type_id=t["context"], name="bench-lineage")
    previous: Any = None
    started = time.perf_counter()
    for i in range(steps):
        run = pb.Execution(type_id=t["run"], last_known_state=pb.Execution.COMPLETE)
        run.properties["name"].string_value = f"step-{i}"
        pairs = []
        for k in range(2):
            data = pb.Artifact(type_id=t["dataset"], uri=f"s3://lake/step-{i}-{k}.parquet")
            data.properties["digest"].string_value = f"{i:08x}{k:04x}"
            pairs.append((data, event(pb.Event.INPUT)))
        if previous is not None:
            pairs.append((previous, event(pb.Event.INPUT)))
        version = pb.Artifact(type_id=t["model"], uri=f"runs:/step-{i}/model")
        version.properties["version"].int_value = i + 1
        pairs.append((version, event(pb.Event.OUTPUT)))
        _, ids, (context_id,) = store.put_execution(
            run, pairs, [context], reuse_context_if_already_exist=True
        )
        context.id = context_id
        (previous,) = store.get_artifacts_by_id([ids[-1]])
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--versions", type=int, default=200)
    p.add_argument("--steps", type=int, default=1250)
    p.add_argument("--fetches", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="lh-mlmd-bench-") as folder:  # removed after
        root = Path(folder)
        warm = open_store(root / "warm.db")  # imports and first use, untimed
        wt = types(warm)
        register(warm, wt, 2), lineage(warm, wt, 2)
        store = open_store(root / "e.db")
        t = types(store)
        result = {"register": register(store, t, args.versions)}
        result["alias_ms"] = alias(store, args.fetches)
        store = open_store(root / "g.db")
        result["lineage"] = lineage(store, types(store), args.steps)
        del warm, store  # MLMD's connections closed before their files go
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
