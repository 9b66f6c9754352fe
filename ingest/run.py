"""A run in progress: what training code logs to (``with lh.start_run() as run: ...``).

Every logging call checks its input at once, so a mistake raises at the line that made it,
and buffers it; the buffer is written through the client's backend in batches (see
:mod:`lineagehub.ingest.client`). Evaluation results (confusion matrices, curves, reports,
feature importances) are kept as data on their artifact nodes, and as JSON in the artifact
store.
"""

from __future__ import annotations

import io
import json
import math
import mimetypes
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lineagehub.artifacts import ArtifactInfo
from lineagehub.graph import ConflictError, HubError, NotFoundError, ValidationError
from lineagehub.graph.model import MAX_PROPS_BYTES, check_time
from lineagehub.ingest.datasets import fingerprint, reference_fingerprint, reference_name
from lineagehub.ingest.flavors import PICKLE, Flavor, flavor_names, save_model, write_archive
from lineagehub.services.tracking import Metric, check_metric, metric_step
from lineagehub.vocabulary import (
    Artifact,
    ArtifactKind,
    DatasetVersion,
    ModelVersion,
    Run,
    RunStatus,
    UsedRole,
    check_key,
    check_scalar,
    check_text,
    member,
    same_param,
)

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client

FLUSH_POINTS = 10_000
_I32 = 2**31
MAX_DATA_IN_GRAPH = 256 * 1024  # evaluation data above this stays in the artifact only
#: The media type of a directory stored as an artifact (a deterministic tar of it)
DIRECTORY_MEDIA_TYPE = "application/vnd.lineagehub.directory+tar"


class ActiveRun:
    """A run in progress. Logging calls check their input at once and buffer it."""

    def __init__(self, client: Client, run: Run) -> None:
        self.client = client
        self.info = run
        self.id = run.id
        self._lock = threading.Lock()
        self._params: dict[str, Any] = {}
        self._logged: dict[str, Any] = dict(run.params)
        self._params_size = _json_size(run.params) if run.params else 0
        self._tag_sizes = {k: _json_size({k: v}) for k, v in run.tags.items()}
        self._tags_size = sum(self._tag_sizes.values())
        self._tags: dict[str, str] = {}
        self._points: list[Metric] = []
        self._steps: dict[str, int] = {}
        # keys whose latest value the run holds (or will): their room is counted once
        self._metric_keys: set[str] = set(run.metrics)
        self._metrics_size = sum(map(_metric_size, run.metrics))
        self._ended = False
        # A copy a forked child inherited: the run is its parent's, which writes and ends it
        self._inherited = False
        self._pid = os.getpid()
        # values refused for good by a flush nobody waited for (the heartbeat's): end raises
        self._unseen: HubError | None = None
        #: How the run ends if it is still open when its client closes or the process exits,
        #: and who set it: a framework adapter's own run (a training that raised never
        #: reaches the adapter's end of training, so the run did not finish)
        self.left_open: tuple[RunStatus, str] | None = None
        self.owner: object | None = None

    def __repr__(self) -> str:
        return f"ActiveRun({self.id!r}, name={self.info.name!r})"

    # --- params, metrics, tags ------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log hyper-parameters: JSON scalars (str, int, float, bool, None). A param is
        immutable: logging a key again with another value raises :class:`ConflictError`."""
        if not isinstance(params, Mapping):
            raise ValidationError("params must be a mapping", field="params")
        checked = {
            k: check_scalar(v, f"params.{check_key(k, 'params')}") for k, v in params.items()
        }
        with self._lock:
            self._check_open()
            for key, value in checked.items():
                if key in self._logged and not same_param(self._logged[key], value):
                    raise ConflictError(
                        f"param {key!r} is already {self._logged[key]!r}; params are immutable"
                    )
            new = {k: v for k, v in checked.items() if k not in self._logged}
            size = self._params_size + (_json_size(new) if new else 0)
            others = self._tags_size + self._metrics_size
            _check_room("params", len(new), size, MAX_PARAMS_SIZE, "half", others, "logged")
            self._params_size = size
            self._logged.update(checked)
            self._params.update(checked)

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: datetime | None = None
    ) -> None:
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(
        self,
        metrics: Mapping[str, float],
        step: int | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Log metric values at a step (default: one past the key's last step). NaN and
        infinities are kept as they are."""
        if not isinstance(metrics, Mapping):
            raise ValidationError("metrics must be a mapping", field="metrics")
        # Checked here, when logged: a bad value is refused now and never reaches the buffer,
        # where it would fail every later flush.
        ts = datetime.now(timezone.utc) if timestamp is None else check_time(timestamp, "timestamp")
        step = metric_step(step)
        with self._lock:
            self._check_open()
            new = []
            steps = self._steps
            known = self._metric_keys  # every key in steps is in it
            added: set[str] = set()
            for key, value in metrics.items():
                at = steps.get(key, -1) + 1 if step is None else step
                if type(value) is float and key in steps and type(at) is int and -_I32 <= at < _I32:
                    new.append(Metric(key, value, at, ts))  # a known key and a plain float
                else:
                    new.append(Metric(key, check_metric(key, value, at), at, ts))
                    if key not in known:
                        added.add(key)
            if added:
                size = self._metrics_size + sum(map(_metric_size, added))
                others = self._params_size + self._tags_size
                _check_room("metrics", len(added), size, None, "", others, "logged")
                self._metrics_size = size
                known |= added
            for m in new:
                if m.step > steps.get(m.key, -1):
                    steps[m.key] = m.step
            self._points.extend(new)
            full = len(self._points) >= FLUSH_POINTS
        if full:
            self.flush()

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags (strings; tags stay editable, unlike params)."""
        checked = {k: check_text(v, f"tags.{check_key(k, 'tags')}") for k, v in tags.items()}
        with self._lock:
            self._check_open()
            sizes = {k: _json_size({k: v}) for k, v in checked.items()}
            size = self._tags_size + sum(n - self._tag_sizes.get(k, 0) for k, n in sizes.items())
            others = self._params_size + self._metrics_size
            _check_room("tags", len(checked), size, MAX_TAGS_SIZE, "a quarter", others, "set")
            self._tags_size = size
            self._tag_sizes.update(sizes)
            self._tags.update(checked)

    def flush(self, heartbeat: bool = False) -> None:
        """Write the buffered params, metrics and tags now (and refresh the heartbeat).

        A value the hub refuses for good is dropped and named in the error raised, once the
        rest has been logged (refused by a heartbeat's flush, the run's end raises it)."""
        with self._lock:
            if self._ended:
                return
            params, tags, points = self._take()
            if not (params or tags or points or heartbeat):
                return
            try:
                self.client.tracking.log_batch(self.id, params=params, metrics=points, tags=tags)
            except (ValidationError, ConflictError) as refusal:
                # The hub refused a value it will never take (a param another writer logged
                # with another value, a run grown past its size elsewhere): kept, it would
                # refuse every later flush, the heartbeat and the run's end with it.
                try:
                    refused = self._log_apart(params, tags, points)
                finally:
                    if self._ended:  # ended elsewhere: this one is over too
                        self.client._ended(self)
                error = _partly_refused(self.id, refused, refusal)
                if error is None:
                    return
                if heartbeat:  # the heartbeat's caller drops it: the run's end raises it
                    self._unseen = error
                raise error from refusal
            except BaseException:
                self._put_back(params, tags, points)
                raise

    # --- data, artifacts, evaluations, models -----------------------------------------------

    def log_dataset(
        self,
        data: Any,
        *,
        name: str | None = None,
        namespace: str | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        derived_from: Iterable[DatasetVersion | str] = (),
        profile: bool = True,
    ) -> DatasetVersion:
        """Record data the run used: a file, a directory, a pandas DataFrame or a numpy
        array. Its content digest, schema, row count and column profile are computed here
        (nothing is copied); the same content is the same :class:`DatasetVersion`."""
        return self._dataset(data, name, namespace, role, False, derived_from, profile)

    def log_output_dataset(
        self,
        data: Any,
        *,
        name: str | None = None,
        namespace: str | None = None,
        derived_from: Iterable[DatasetVersion | str] = (),
        profile: bool = True,
    ) -> DatasetVersion:
        """Record data the run generated; it is DERIVED_FROM the run's input data (and
        ``derived_from``)."""
        return self._dataset(data, name, namespace, UsedRole.INPUT, True, derived_from, profile)

    def log_input_model(
        self, ref: ModelVersion | str, *, role: UsedRole | str = UsedRole.BASE_MODEL
    ) -> ModelVersion:
        """Record that this run used a registered model version (``churn@3``,
        ``churn@champion``, a :class:`ModelVersion`): the base model it fine-tunes, the one it
        evaluates or distils (``role``: ``base-model`` by default, ``input``, ``test``...).
        Lineage then shows the version upstream of the run."""
        self._check_open()
        key = ref.node_id if isinstance(ref, ModelVersion) else ref
        return self.client.tracking.log_input_model(self.id, key, role=role)

    def log_dataset_ref(
        self,
        uri: str,
        digest: str,
        *,
        name: str | None = None,
        namespace: str | None = None,
        schema: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
        row_count: int | None = None,
        size_bytes: int | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        output: bool = False,
        derived_from: Iterable[DatasetVersion | str] = (),
    ) -> DatasetVersion:
        """Record data by reference, reading none of it: where it is (``uri``) and its content
        digest (``sha256:<64 hex>``, as :func:`~lineagehub.ingest.datasets.fingerprint` gives
        it), with an optional ``schema`` (``{"column": "dtype"}`` or ``[{"name", "dtype"}]``)
        and row count. The run USED it (``role``) or, with ``output=True``, generated it.
        Naming follows OpenLineage: ``file://`` URIs as :meth:`log_dataset` names files (so
        a matching digest is the very version logging the file gives), other URIs
        ``scheme://host`` and the path (``s3://lake/customers.parquet``: namespace
        ``s3://lake``, name ``customers.parquet``) unless ``name``/``namespace`` are given.
        Data logged later with the same digest adds its profile to the same version."""
        self._check_open()
        fp = reference_fingerprint(uri, digest, schema=schema, row_count=row_count,
                                   size_bytes=size_bytes)  # fmt: skip
        namespace, name = reference_name(uri, name, namespace)
        sources = [
            d.node_id if isinstance(d, DatasetVersion) else str(d) for d in derived_from or ()
        ]
        return self.client.tracking.log_dataset(
            self.id,
            fp,
            name=name,
            namespace=namespace,
            role=UsedRole.INPUT if output else role,
            output=output,
            derived_from=sources,
        )

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        kind: ArtifactKind | str = ArtifactKind.OTHER,
        media_type: str | None = None,
    ) -> Artifact:
        """Store a file, or a directory, in the artifact store (streamed, content-addressed)
        as an artifact the run generated. A directory is stored as one deterministic tar
        (sorted members, no times or owners: the same content, the same digest) of media
        type :data:`DIRECTORY_MEDIA_TYPE`, which ``client.download`` unpacks back into a
        directory."""
        p = Path(path)
        artifact_kind = member(ArtifactKind, kind, "kind")  # before any bytes are stored
        if p.is_dir():
            self._check_open()
            info = self._put_tar(p)
            return self.client.tracking.log_artifact(
                self.id,
                info,
                name=name or p.resolve().name,
                kind=artifact_kind,
                media_type=media_type or DIRECTORY_MEDIA_TYPE,
            )
        if not p.is_file():
            raise NotFoundError(f"path: no file or directory {str(p)!r}", ids=[str(p)])
        self._check_open()
        info = self.client.artifacts.put_file(p)
        guessed = mimetypes.guess_type(p.name)[0]
        return self.client.tracking.log_artifact(
            self.id,
            info,
            name=name or p.name,
            kind=artifact_kind,
            media_type=media_type or guessed or "application/octet-stream",
        )

    def log_dict(
        self,
        data: Mapping[str, Any] | Sequence[Any],
        name: str,
        *,
        kind: ArtifactKind | str = ArtifactKind.REPORT,
    ) -> Artifact:
        """Store JSON-serializable data as an artifact (``name`` like ``config.json``)."""
        try:
            raw = json.dumps(data, indent=2, sort_keys=True, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise ValidationError(f"data: not JSON-serializable: {e}", field="data") from None
        return self._log_bytes(raw, name=name, kind=kind, media_type="application/json")

    def log_text(
        self, text: str, name: str, *, kind: ArtifactKind | str = ArtifactKind.REPORT
    ) -> Artifact:
        """Store text as an artifact (``name`` like ``notes.md``)."""
        if not isinstance(text, str):
            raise ValidationError("text must be a string", field="text")
        media = mimetypes.guess_type(name)[0] or "text/plain"
        return self._log_bytes(text.encode(), name=name, kind=kind, media_type=media)

    def log_figure(self, figure: Any, name: str, *, format: str = "png") -> Artifact:
        """Store a matplotlib figure as an image artifact (``format``: png, svg or pdf)."""
        if not hasattr(figure, "savefig"):
            raise ValidationError(
                f"figure: expected a matplotlib Figure, got {type(figure).__name__}",
                field="figure",
            )
        media = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
        if format not in media:
            raise ValidationError(f"format must be one of {sorted(media)}", field="format")
        buf = io.BytesIO()
        figure.savefig(buf, format=format)
        return self._log_bytes(
            buf.getvalue(), name=name, kind=ArtifactKind.PLOT, media_type=media[format]
        )

    def log_confusion_matrix(
        self,
        matrix: Any,
        labels: Sequence[Any] | None = None,
        *,
        name: str = "confusion_matrix.json",
    ) -> Artifact:
        """A confusion matrix (rows: true class, columns: predicted class), kept as data."""
        rows = _matrix(matrix, "matrix")
        if any(len(r) != len(rows) for r in rows):
            raise ValidationError("matrix must be square", field="matrix")
        names = (
            [str(x) for x in labels] if labels is not None else [str(i) for i in range(len(rows))]
        )
        if len(names) != len(rows):
            raise ValidationError(
                f"labels: {len(names)} labels for a {len(rows)}x{len(rows)} matrix", field="labels"
            )
        return self._evaluation(
            ArtifactKind.CONFUSION_MATRIX, {"labels": names, "matrix": rows}, name
        )

    def log_classification_report(
        self, report: Mapping[str, Any], *, name: str = "classification_report.json"
    ) -> Artifact:
        """A classification report (e.g. scikit-learn's ``output_dict=True``), kept as data."""
        if not isinstance(report, Mapping):
            raise ValidationError("report must be a mapping", field="report")
        return self._evaluation(ArtifactKind.CLASSIFICATION_REPORT, _jsonable(report), name)

    def log_roc_curve(
        self,
        fpr: Sequence[float],
        tpr: Sequence[float],
        thresholds: Sequence[float] | None = None,
        *,
        auc: float | None = None,
        name: str = "roc_curve.json",
    ) -> Artifact:
        """A ROC curve (false and true positive rates by threshold), kept as data."""
        data = _curve({"fpr": fpr, "tpr": tpr, "thresholds": thresholds})
        if auc is not None:
            data["auc"] = _float(auc, "auc")
        return self._evaluation(ArtifactKind.ROC_CURVE, data, name)

    def log_pr_curve(
        self,
        precision: Sequence[float],
        recall: Sequence[float],
        thresholds: Sequence[float] | None = None,
        *,
        average_precision: float | None = None,
        name: str = "pr_curve.json",
    ) -> Artifact:
        """A precision-recall curve, kept as data."""
        data = _curve({"precision": precision, "recall": recall, "thresholds": thresholds})
        if average_precision is not None:
            data["average_precision"] = _float(average_precision, "average_precision")
        return self._evaluation(ArtifactKind.PR_CURVE, data, name)

    def log_evaluation(
        self, data: Mapping[str, Any], name: str, *, kind: ArtifactKind | str = ArtifactKind.REPORT
    ) -> Artifact:
        """Any other evaluation result (residual statistics, calibration, fairness metrics),
        a JSON object kept as data on its artifact node like the confusion matrix is, and as
        JSON in the artifact store."""
        if not isinstance(data, Mapping):
            raise ValidationError("data must be a JSON object (a mapping)", field="data")
        check_text(name, "name")
        artifact_kind = member(ArtifactKind, kind, "kind")
        return self._evaluation(artifact_kind, _jsonable(dict(data)), name)

    def log_feature_importances(
        self,
        features: Sequence[str],
        values: Any,
        *,
        shap: bool = False,
        name: str | None = None,
    ) -> Artifact:
        """Feature importances (one value per feature), or SHAP values (``shap=True``: one
        row per sample, one column per feature; the mean absolute value per feature is kept
        as a summary). Kept as data."""
        names = [str(f) for f in features]
        if shap:
            rows = _matrix(values, "values")
            if any(len(r) != len(names) for r in rows):
                raise ValidationError("values: one column per feature", field="values")
            mean_abs = [
                sum(abs(r[i]) for r in rows if r[i] is not None) / max(len(rows), 1)
                for i in range(len(names))
            ]
            data: dict[str, Any] = {"features": names, "mean_abs": mean_abs, "values": rows}
            kind = ArtifactKind.SHAP_VALUES
        else:
            flat = _floats(values, "values")
            if len(flat) != len(names):
                raise ValidationError(
                    f"values: {len(flat)} values for {len(names)} features", field="values"
                )
            data = {"features": names, "importances": flat}
            kind = ArtifactKind.FEATURE_IMPORTANCES
        default = "shap_values.json" if shap else "feature_importances.json"
        return self._evaluation(kind, data, name or default)

    def evaluations(self) -> list[tuple[str, Artifact]]:
        """The artifacts this run generated, with their names (evaluations carry ``data``)."""
        return self.client.tracking.artifacts_of(self.id)

    def log_model(
        self,
        model: Any,
        *,
        name: str,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
        flavor_options: Mapping[str, Any] | None = None,
        custom_objects: Iterable[Any] = (),
    ) -> ModelVersion:
        """Register the next version of model ``name``, generated by this run, with the run's
        metrics as its snapshot. ``primary_metric`` names its headline metric
        (:mod:`lineagehub.services.headline`).

        ``model`` is a file or a directory (stored as one deterministic tar; ``flavor`` is
        then only a label), or a Python object, saved through its flavor
        (:mod:`lineagehub.ingest.flavors`: ``flavor`` names it, else it is detected, e.g.
        ``xgboost`` for a Booster, ``pickle`` for anything else; ``flavor_options`` go to the
        flavor's ``save``). A flavor-saved version records how to load it back
        (``client.load_model``): the flavor's metadata, the training environment, and the
        source of the user-defined classes and functions the model needs (found by the
        flavor, plus ``custom_objects``), each an ``Artifact`` it is ``DERIVED_FROM``."""
        self._check_open()
        self.flush()
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if path.is_file():
                info = self.client.artifacts.put_file(path)
            elif path.is_dir():
                info = self._put_tar(path, field="model")
            else:
                raise NotFoundError(f"model: no file or directory {str(path)!r}", ids=[str(path)])
            return self.client.tracking.log_model(
                self.id,
                info,
                name=name,
                flavor=flavor,
                signature=signature,
                description=description,
                primary_metric=primary_metric,
                # how it downloads: a file that is itself a tar (model.nemo) came back a folder
                metadata={"layout": "directory" if path.is_dir() else "file"},
            )
        label = flavor
        chosen: str | Flavor | None = flavor
        if flavor is not None and flavor not in flavor_names():
            chosen = PICKLE  # a label of the caller's for a pickled object, as before flavors
        with save_model(model, chosen, flavor_options, custom_objects) as saved:
            if saved.metadata["layout"] == "file":
                info = self.client.artifacts.put_file(saved.path)
            else:
                info = self._put_tar(saved.path, field="model")
        sources = [
            {k: c[k] for k in ("name", "module", "qualname", "kind", "source")}
            for c in saved.custom_objects
        ]
        return self.client.tracking.log_model(
            self.id,
            info,
            name=name,
            flavor=label or saved.flavor.name,
            signature=signature,
            description=description,
            primary_metric=primary_metric,
            metadata=saved.metadata,
            custom_objects=sources or None,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def end(self, status: RunStatus | str = RunStatus.FINISHED, error: str | None = None) -> Run:
        """End the run (flushing what is buffered in the same transaction). Should the hub
        refuse a buffered value, the rest is logged, the run ends as asked, and then the
        refusal is raised, naming what was not stored."""
        if self._inherited:
            self._check_open()  # raises: a forked child never ends its parent's run
        refusal: HubError | None = None
        try:
            with self._lock:
                if self._ended:
                    return self.info
                params, tags, points = self._take()
                try:
                    self.info = self.client.tracking.end_run(
                        self.id, status, error, params=params, metrics=points, tags=tags
                    )
                except (ValidationError, ConflictError) as e:
                    # see flush; with nothing buffered this still tells a run ended elsewhere
                    refused = self._log_apart(params, tags, points)
                    refusal = _partly_refused(self.id, refused, e)
                    self.info = self.client.tracking.end_run(self.id, status, error)
                except BaseException:
                    self._put_back(params, tags, points)
                    raise
                self._ended = True
        finally:
            if self._ended:  # here, or found ended elsewhere on the way
                self.client._ended(self)
        refusal = refusal or self._unseen
        if refusal is not None:
            raise refusal
        return self.info

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._inherited:
            return  # a forked child leaving its parent's block: the parent's run goes on
        self.end(*status_for(exc))

    # --- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise ConflictError(
                f"run {self.id!r} has ended ({self.info.status.value}); writes to a finished "
                "run are rejected"
            )
        if self._inherited:
            raise ConflictError(
                f"run {self.id!r} belongs to process {self._pid}, which this process was "
                "forked from: a forked process does not log into, or end, its parent's runs. "
                f"Start a run here (lh.start_run(..., parent={self.id!r}) makes it a child "
                "of that one)"
            )

    def _forked(self) -> None:
        """In a child process just forked: this copy is the parent's run, which the parent
        flushes and ends. Its buffer (the parent's to write) is dropped, writes to it raise,
        and its lock is made anew (a thread of the parent's, the heartbeat mid-flush, may
        have held it: it does not exist here to release it)."""
        self._lock = threading.Lock()
        self._take()
        self._inherited = True

    def _take(self) -> tuple[dict[str, Any], dict[str, str], list[Metric]]:
        taken = (self._params, self._tags, self._points)
        self._params, self._tags, self._points = {}, {}, []
        return taken

    def _log_apart(
        self, params: dict[str, Any], tags: dict[str, str], points: list[Metric]
    ) -> dict[str, str]:
        """After the hub refused a batch: log its metric points, tags and params apart (a
        refused part key by key), so that only the values it refuses are dropped; returns
        them (``"params.lr"``: why). A run ended elsewhere takes nothing: this ActiveRun is
        then ended too, and that is raised. A transient failure puts back what was not
        logged and is raised."""
        tracking = self.client.tracking
        series: dict[str, list[Metric]] = {}
        for m in points:
            series.setdefault(m.key, []).append(m)
        todo: list[tuple[str, dict[str, Any]]] = [
            ("metrics", series),
            ("tags", tags),
            ("params", params),
        ]
        refused: dict[str, str] = {}
        try:
            run = tracking.get_run(self.id)
            if run.status is not RunStatus.RUNNING:
                self.info, self._ended = run, True
                raise ConflictError(
                    f"run {self.id!r} was ended elsewhere ({run.status.value}): the "
                    f"{len(params)} params, {len(tags)} tags and {len(points)} metric points "
                    "logged here since the last flush were not stored"
                )
            while todo:
                what, values = todo[0]
                if values:
                    try:
                        tracking.log_batch(self.id, **{what: _part(what, values)})
                        values.clear()
                    except (ValidationError, ConflictError):
                        for key in list(values):
                            try:
                                tracking.log_batch(self.id, **{what: _part(what, values, key)})
                            except (ValidationError, ConflictError) as e:
                                refused[f"{what}.{key}"] = e.message
                            del values[key]
                todo.pop(0)
        except BaseException:
            if not self._ended:
                rest = dict(todo)
                kept = [m for ms in rest.get("metrics", {}).values() for m in ms]
                self._put_back(rest.get("params", {}), rest.get("tags", {}), kept)
            raise
        return refused

    def _put_back(self, params: dict[str, Any], tags: dict[str, str], points: list[Metric]) -> None:
        self._params = {**params, **self._params}
        self._tags = {**tags, **self._tags}
        self._points = points + self._points

    def _dataset(
        self,
        data: Any,
        name: str | None,
        namespace: str | None,
        role: UsedRole | str,
        output: bool,
        derived_from: Iterable[DatasetVersion | str],
        profile: bool,
    ) -> DatasetVersion:
        self._check_open()
        fp = fingerprint(data, profile=profile)
        sources = [
            d.node_id if isinstance(d, DatasetVersion) else str(d) for d in derived_from or ()
        ]
        return self.client.tracking.log_dataset(
            self.id,
            fp,
            name=name,
            namespace=namespace,
            role=role,
            output=output,
            derived_from=sources,
        )

    def _log_bytes(
        self,
        raw: bytes,
        *,
        name: str,
        kind: ArtifactKind | str,
        media_type: str,
        data: Mapping[str, Any] | None = None,
    ) -> Artifact:
        artifact_kind = member(ArtifactKind, kind, "kind")  # before any bytes are stored
        self._check_open()
        info = self.client.artifacts.put_bytes(raw)
        return self.client.tracking.log_artifact(
            self.id, info, name=name, kind=artifact_kind, media_type=media_type, data=data
        )

    def _evaluation(self, kind: ArtifactKind, data: dict[str, Any], name: str) -> Artifact:
        raw = json.dumps(data, sort_keys=True, allow_nan=False).encode()
        return self._log_bytes(
            raw,
            name=name,
            kind=kind,
            media_type="application/json",
            data=data if len(raw) <= MAX_DATA_IN_GRAPH else None,
        )

    def _put_tar(self, folder: Path, field: str = "path") -> ArtifactInfo:
        # Deterministic: sorted members, no times or owners, so the same folder content
        # always gives the same digest (and is stored once).
        with tempfile.TemporaryFile() as tmp:
            write_archive(folder, tmp, field=field)
            tmp.seek(0)
            return self.client.artifacts.put_stream(tmp)


def status_for(exc: BaseException | None) -> tuple[RunStatus, str | None]:
    """How a run ends when ``exc`` ends its ``with`` block, its client's, or the script:
    FINISHED with none, or a clean exit (``sys.exit()``, ``sys.exit(0)``); KILLED by Ctrl-C;
    else FAILED with the error (``sys.exit(2)`` too: ``"SystemExit: 2"``)."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
        return RunStatus.FINISHED, None
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.KILLED, "KeyboardInterrupt"
    return RunStatus.FAILED, f"{type(exc).__name__}: {exc}"


# --- numbers to JSON ----------------------------------------------------------------------------


def _float(value: Any, field: str) -> float | None:
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            f"{field}: expected a number, got {type(value).__name__}", field=field
        )
    value = float(value)
    return value if math.isfinite(value) else None  # JSON has no NaN; curves start at inf


def _floats(values: Any, field: str) -> list[float | None]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValidationError(f"{field}: expected a sequence of numbers", field=field)
    return [_float(v, f"{field}[{i}]") for i, v in enumerate(values)]


def _matrix(values: Any, field: str) -> list[list[Any]]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValidationError(f"{field}: expected a 2-D array", field=field)
    return [_floats(row, f"{field}[{i}]") for i, row in enumerate(values)]


#: What a run's params may take as JSON, all together (the rest of the node's properties —
#: tags, metrics' latest values, times — keep the other half of MAX_PROPS_BYTES).
MAX_PARAMS_SIZE = MAX_PROPS_BYTES // 2
#: What its tags may take (each ``"key":"value"`` counted; a tag set again counts once).
MAX_TAGS_SIZE = MAX_PROPS_BYTES // 4
#: What its params, tags and metrics' latest values may take together (each metric key at
#: the longest number's width; a key's points beyond its first take no more room): the rest
#: of a node's properties is left for its name, times, status and an error message. A run
#: without params or tags holds about 14,000 metric keys of 40 characters.
MAX_RUN_DATA_SIZE = MAX_PROPS_BYTES - 50_000


def _metric_size(key: str) -> int:
    """The room one metric key takes in the run's map of latest values: the key as JSON, a
    colon, a comma and the longest number (``-1.2345678901234567e-308``: 24 characters)."""
    return len(json.dumps(key, ensure_ascii=False)) + 26


def _json_size(params: Mapping[str, Any]) -> int:
    return len(json.dumps(params, ensure_ascii=False, separators=(",", ":")))


def _part(what: str, values: dict[str, Any], key: str | None = None) -> Any:
    """A part of a batch for ``log_batch``: the metric points (of one key), the tags or the
    params (one of them)."""
    if what == "metrics":
        return values[key] if key is not None else [m for ms in values.values() for m in ms]
    return {key: values[key]} if key is not None else values


def _partly_refused(run_id: str, refused: Mapping[str, str], refusal: HubError) -> HubError | None:
    """The error a flush or an end raises when the hub refused some buffered values and took
    the rest: of the refusal's kind, naming each refused value and why; None when it took
    every value apart (refused only together, e.g. too large as one write)."""
    if not refused:
        return None
    names = ", ".join(sorted(refused)[:10]) + (" and more" if len(refused) > 10 else "")
    reasons = "; ".join(f"{k}: {v}" for k, v in sorted(refused.items())[:3])
    message = (
        f"run {run_id!r}: {len(refused)} buffered value(s) refused and not stored ({names}); "
        f"every other buffered value was logged. {reasons}"
    )
    if isinstance(refusal, ValidationError):
        return ValidationError(message, field=refusal.field)
    return ConflictError(message)


def _check_room(
    what: str, count: int, size: int, limit: int | None, share: str, others: int, verb: str
) -> None:
    """Refuse values past a run's room when they are logged: in the buffer they would fail
    every later flush and the run's end (a run's properties are at most MAX_PROPS_BYTES).
    ``size`` is what ``what`` would take, ``limit`` its own cap (``share`` of a node's
    properties), ``others`` what the run's other data takes."""
    if limit is not None and size > limit:
        raise ValidationError(
            f"{what}: with these {count} the run's {what} would be {size:,} characters of "
            f"JSON; a run holds at most {limit:,} ({share} of what a node's properties may "
            f"take); none of them was {verb}",
            field=what,
        )
    if size + others > MAX_RUN_DATA_SIZE:
        raise ValidationError(
            f"{what}: with these {count} the run's params, tags and metrics' latest values "
            f"would take {size + others:,} characters of JSON together; a run holds at most "
            f"{MAX_RUN_DATA_SIZE:,} (what a node's properties may take, less room for its "
            f"name, times and status); none of them was {verb}",
            field=what,
        )


def _curve(columns: Mapping[str, Any]) -> dict[str, Any]:
    data = {k: _floats(v, k) for k, v in columns.items() if v is not None}
    lengths = {len(v) for k, v in data.items() if k != "thresholds"}
    if len(lengths) > 1:
        raise ValidationError("curve coordinates must have equal lengths", field="curve")
    return data


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):
        return _jsonable(value.item())
    raise ValidationError(f"not JSON data: {type(value).__name__}", field="report")


__all__ = ["DIRECTORY_MEDIA_TYPE", "FLUSH_POINTS", "MAX_DATA_IN_GRAPH", "ActiveRun"]
