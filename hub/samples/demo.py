"""``lineagehub demo``: a realistic lineage graph from real training, in about ten seconds.

Everything goes through the public SDK, as a user's own code would, so every write is audited
and the graph is what a real project produces:

1. a raw copy of scikit-learn's bundled breast-cancer data (no download), with the defects
   real extracts have (duplicated rows, missing values), written to a CSV file;
2. a ``prepare`` run that reads it and writes the cleaned table (``DERIVED_FROM`` the raw);
3. three training runs of a random forest with different hyper-parameters, captured by
   :func:`lineagehub.ingest.sklearn.autolog` (params, training metrics, feature importances),
   evaluated on held-out data with :func:`~lineagehub.ingest.sklearn.evaluate`, each
   registering a version of model ``tumor-classifier`` (the git commit and environment are
   captured where there is one);
4. the best version (held-out ROC AUC) asked for Production under a policy (a metric
   threshold, one approval, separation of duties; written to ``policies.toml`` so a server
   can apply it too), approved by a second person, and given the alias ``champion``;
5. a deployment record for it, a picture of where the deployment came from
   (``lineage.svg``) and one of everything the raw extract went into (``impact.svg``);
6. a week of served traffic replayed from the held-out data through the serving-side monitor
   (one window a day, with labels), the imaging calibration drifting from day 5: the alert
   rule of ``alerts.toml`` fires, and ``alert.svg`` shows the alert linked to the deployment,
   the version, its training run and training data.

Run it twice and you get a second round of runs and versions, as a team retraining would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lineagehub.files import write_atomic
from lineagehub.graph import ConfigError

PROJECT = "demo"
EXPERIMENT = "breast-cancer"
MODEL = "tumor-classifier"
REVIEWER = "demo-reviewer"
#: The three hyper-parameter settings the demo trains, in order.
CONFIGS: tuple[dict[str, Any], ...] = (
    {"n_estimators": 10, "max_depth": 2},
    {"n_estimators": 40, "max_depth": 4},
    {"n_estimators": 80, "max_depth": None},
)
THRESHOLD = ("test_roc_auc", ">=", 0.9)
STEPS = 10
#: The replayed week: requests a day, the day the shift starts (0-based), the features that
#: shift (a re-calibrated scanner measures sizes 25 % larger) and by how much.
REQUESTS_PER_DAY = 400
SHIFT_DAY = 4
SHIFTED = ("mean radius", "mean perimeter", "mean area", "worst radius", "worst perimeter")
SHIFT = 1.25
DAY = 86_400


@dataclass
class DemoResult:
    """What the demo wrote: the ids worth looking at, and the files."""

    raw: str = ""
    clean: str = ""
    prepare_run: str = ""
    runs: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    best: str = ""
    request: str = ""
    promoted_run: str = ""
    deployment: str = ""
    picture: str = ""
    impact_picture: str = ""
    raw_file: str = ""
    policies: str = ""
    alert_rules: str = ""
    windows: list[str] = field(default_factory=list)
    alert: str = ""
    alert_picture: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _needs_sklearn() -> None:
    try:
        import pandas  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the demo trains scikit-learn models: pip install 'lineagehub[sklearn]'"
        ) from None


def raw_table(seed: int = 7) -> Any:
    """The breast-cancer table as an extract would deliver it: 12 duplicated rows and 15
    missing ``mean radius`` values (fixed by ``seed``)."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(seed)
    raw = frame.copy()
    missing = rng.choice(len(raw), size=15, replace=False)
    raw.loc[missing, "mean radius"] = np.nan
    duplicates = raw.iloc[rng.choice(len(raw), size=12, replace=False)]
    return pd.concat([raw, duplicates], ignore_index=True)


def clean_table(raw: Any) -> Any:
    """Drop exact duplicates and rows with a missing value."""
    return raw.drop_duplicates().dropna().reset_index(drop=True)


def run_demo(
    client: Any,
    reviewer: Any,
    out_dir: Path,
    *,
    step: Callable[[str], None] = lambda _msg: None,
) -> DemoResult:
    """Write the demo graph through ``client`` (the requester and trainer) and ``reviewer``
    (a second person, the approver; same hub), put its files in ``out_dir``, and return what
    it wrote. ``step(message)`` is called before each of the :data:`STEPS` steps."""
    _needs_sklearn()
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    from lineagehub.ingest import sklearn as lh_sklearn

    out_dir.mkdir(parents=True, exist_ok=True)
    result = DemoResult()

    step("writing the raw extract")
    raw = raw_table()
    raw_file = out_dir / "breast_cancer_raw.csv"
    raw.to_csv(raw_file, index=False)
    result.raw_file = str(raw_file)

    step("prepare: raw -> clean")
    with client.start_run(
        "prepare", project=PROJECT, experiment="data-prep", kind="transform"
    ) as run:
        raw_version = run.log_dataset(
            raw_file, name="breast_cancer_raw", namespace=PROJECT, role="input"
        )
        frame = clean_table(pd.read_csv(raw_file))
        run.log_params({"drop_duplicates": True, "dropna": True})
        run.log_metrics({"rows_in": len(raw), "rows_out": len(frame)})
        clean_version = run.log_output_dataset(frame, name="breast_cancer_clean", namespace=PROJECT)
    result.raw, result.clean, result.prepare_run = (
        raw_version.node_id,
        clean_version.node_id,
        run.id,
    )

    features = frame.drop(columns=["target"])
    target = frame["target"]
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=0.25, random_state=42, stratify=target
    )
    lh_sklearn.autolog(client=client, log_models=False, log_datasets=False, silent=True)
    try:
        for i, config in enumerate(CONFIGS, start=1):
            step(f"training run {i} of {len(CONFIGS)}: {config}")
            name = f"rf-{config['n_estimators']}-trees"
            with client.start_run(name, project=PROJECT, experiment=EXPERIMENT) as run:
                run.log_dataset(frame, name="breast_cancer_clean", namespace=PROJECT)
                run.log_params({"split_seed": 42, "test_size": 0.25})
                model = RandomForestClassifier(random_state=0, **config)
                model.fit(x_train, y_train)  # autolog records it into this run
                metrics = lh_sklearn.evaluate(
                    model, x_test, y_test, prefix="test", run=run, dataset_name="breast_cancer_test"
                )
                version = run.log_model(model, name=MODEL, flavor="sklearn")
            result.runs.append(run.id)
            result.versions.append(version.node_id)
            result.metrics[version.node_id] = {k: float(v) for k, v in metrics.items()}
    finally:
        lh_sklearn.disable()

    step("asking for Production and approving")
    best = max(result.versions, key=lambda v: result.metrics[v].get("test_roc_auc", 0.0))
    result.best = best
    ref = best.removeprefix("mv:")
    # A second demo run archives the first one's Production version, which the production
    # deployment (require_stage Production) serves: re-point it at the new version with the
    # promotion (the registry refuses to leave it serving an archived version).
    outcome = client.request_promotion(
        ref,
        "Production",
        f"best held-out ROC AUC of {len(CONFIGS)} random forests",
        on_deployments="repoint",
    )
    request_id = getattr(outcome, "request_id", None)
    if request_id is None:
        raise ConfigError(f"the demo's promotion request was not accepted: {outcome}")
    result.request = request_id
    promoted = reviewer.approve_promotion(request_id, "held-out metrics and lineage checked")
    result.promoted_run = getattr(promoted, "run_id", "")
    client.set_alias(ref, "champion", "the Production model")

    step("recording the deployment")
    deployment = client.deploy(
        ref,
        "production",
        endpoint="http://127.0.0.1:8080/v1/models/tumor-classifier",
        require_stage="Production",
        reason="demo rollout",
    )
    result.deployment = deployment.id

    step("drawing where the deployment came from")
    sub = client.lineage([deployment.id], "UPSTREAM", upstream_depth=8)
    title = "Where did the production deployment come from?"
    result.picture = _draw(out_dir / "lineage.svg", sub, [deployment.id], title)
    # and everything the raw extract went into: the three runs, their versions, the deployment
    down = client.lineage(
        [raw_version.node_id],
        "DOWNSTREAM",
        downstream_depth=8,
        node_kinds=["DatasetVersion", "Run", "ModelVersion", "Deployment"],
    )
    title = "What did the raw extract go into?"
    result.impact_picture = _draw(out_dir / "impact.svg", down, [raw_version.node_id], title)

    step("replaying a week of traffic (drift from day 5)")
    replay_week(
        client, deployment.id, best, model_for(best, x_train, y_train), x_test, y_test, result
    )

    step("drawing the alert's lineage")
    if result.alert:
        sub = client.lineage([result.alert], "UPSTREAM", upstream_depth=6)
        title = "Which version, run and training data does the drift alert point to?"
        result.alert_picture = _draw(out_dir / "alert.svg", sub, [result.alert], title)
    return result


def model_for(version: str, x_train: Any, y_train: Any) -> Any:
    """The version's model as the serving side has it (trained again the same way: the
    forest is seeded, so it is the same model)."""
    from sklearn.ensemble import RandomForestClassifier

    n = int(version.rsplit("/", 1)[1])
    config = CONFIGS[(n - 1) % len(CONFIGS)]
    return RandomForestClassifier(random_state=0, **config).fit(x_train, y_train)


def replay_week(
    client: Any,
    deployment: str,
    version: str,
    model: Any,
    x_test: Any,
    y_test: Any,
    result: DemoResult,
    *,
    seed: int = 11,
) -> None:
    """A week of requests drawn from the held-out data, through ``client.monitor`` (one
    window a day, labels joined by request id), with :data:`SHIFTED` features scaled by
    :data:`SHIFT` from day :data:`SHIFT_DAY`; records the windows and the alert that fired."""
    import numpy as np

    rng = np.random.default_rng(seed)
    today = int(time.time()) // DAY * DAY
    start = today - 7 * DAY
    # one instance per served version: a second demo run replays its own week
    instance = f"replay-{version.removeprefix('mv:').replace('/', '-')}"
    already = {a.id for a in client.alerts(deployment, "open")}
    mon = client.monitor(
        deployment,
        window=DAY,
        flush_interval=None,
        instance=instance,
        prediction_column="target",
    )
    for day in range(7):
        rows = rng.choice(len(x_test), size=REQUESTS_PER_DAY, replace=True)
        features = x_test.iloc[rows].reset_index(drop=True)
        if day >= SHIFT_DAY:
            for column in SHIFTED:
                features[column] = features[column] * SHIFT
        proba = model.predict_proba(features)[:, 1]
        ids = [f"d{day}-{i}" for i in range(len(rows))]
        stamps = start + day * DAY + np.sort(rng.uniform(0, DAY - 1, len(rows)))
        mon.log_predictions(features, (proba > 0.5).astype(int), ids, stamps, proba)
        mon.log_labels(ids, y_test.iloc[rows].to_numpy())
        mon.flush()  # each day as it ends, so the rules see the days in order
    mon.close()
    summary = client.monitoring(deployment, datetime.fromtimestamp(start, tz=timezone.utc))
    # this replay's own (a second demo on the hub replays another week beside the first's)
    result.windows = [w.id for w in summary.windows if w.instance == instance]
    fired = [a for a in client.alerts(deployment, "open") if a.id not in already]
    result.alert = fired[0].id if fired else ""


POLICY_FILE = "policies.toml"
#: The demo's promotion policy, as a policies file (the format of ``LINEAGEHUB_POLICIES``).
POLICY_TOML = f"""\
# Promotion policies of the LineageHub demo (LINEAGEHUB_POLICIES=<this file>)
[[policy]]
model = "{MODEL}"
stage = "Production"
approvals = 1
separation_of_duties = true
thresholds = [["{THRESHOLD[0]}", "{THRESHOLD[1]}", {THRESHOLD[2]}]]
"""


ALERT_RULES_FILE = "alerts.toml"
#: The demo's alert rule, as a rules file (the format of ``LINEAGEHUB_ALERT_RULES``).
ALERT_RULES_TOML = f"""\
# Monitoring alert rules of the LineageHub demo (LINEAGEHUB_ALERT_RULES=<this file>)
[[rule]]
name = "input-drift"
expr = "drift.features_drifted >= 3"
for = "1d"
keep_firing_for = "1d"
severity = "critical"
deployment = "{MODEL}"
annotations = {{ summary = "Input drift on {{deployment}}: check the scanners' calibration" }}
"""


def write_alert_rules(out_dir: Path) -> Path:
    """Write the demo's alert rules into ``out_dir`` and return the path: three or more
    features drifted in a day's window fires a critical alert."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ALERT_RULES_FILE
    write_atomic(path, lambda f: f.write(ALERT_RULES_TOML.encode()))
    return path


def write_policies(out_dir: Path) -> Path:
    """Write the demo's policies file into ``out_dir`` and return its path: held-out ROC AUC of
    at least 0.9, one approval, by someone other than the requester and the trainer. (Not
    ``require_lineage``: the demo may run outside a git checkout, where there is no commit to
    require.)"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / POLICY_FILE
    write_atomic(path, lambda f: f.write(POLICY_TOML.encode()))
    return path


def _draw(path: Path, sub: Any, focus: list[str], title: str) -> str:
    """Write the picture; without Graphviz's ``dot`` program, the DOT source beside it (render
    it later with ``dot -Tsvg``), so the demo still completes. Returns the file written."""
    from lineagehub.services.export import export_lineage

    try:
        data = export_lineage(sub, "svg", focus=focus, title=title)
    except ConfigError:
        path = path.with_suffix(".dot")
        data = export_lineage(sub, "dot", focus=focus, title=title)
    write_atomic(path, lambda f: f.write(data))
    return str(path)


def render_hint(pictures: list[str]) -> str | None:
    """What to do with pictures the demo left as DOT source (no Graphviz): how to install
    Graphviz and the commands that render them; ``None`` when they are pictures already."""
    sources = [p for p in pictures if p.endswith(".dot")]
    if not sources:
        return None
    commands = "; ".join(f"dot -Tsvg {p} -o {p[: -len('.dot')]}.svg" for p in sources)
    return (
        "Graphviz's `dot` program was not found, so the pictures are DOT source. Install "
        "Graphviz (apt-get install graphviz, brew install graphviz or conda install graphviz) "
        f"and render them: {commands}"
    )


@contextlib.contextmanager
def clients(
    store_uri: str | None,
    artifacts: str | None,
    policy_file: Path,
    alert_rules: Path | None = None,
) -> Iterator[tuple[Any, Any]]:
    """The demo's two people on one embedded hub, under the policies in ``policy_file`` (and
    the alert rules in ``alert_rules``): the trainer (the configured user) and
    :data:`REVIEWER`, sharing one store and one artifact store."""
    from lineagehub.config import Settings
    from lineagehub.ingest.client import Client
    from lineagehub.services.registry import load_policies

    settings = Settings()
    if store_uri:
        settings = settings.model_copy(update={"store": store_uri})
    if artifacts:
        settings = settings.model_copy(update={"artifacts": artifacts})
    if alert_rules is not None:
        settings = settings.model_copy(update={"alert_rules": alert_rules})
    rules = load_policies(policy_file)
    with Client(settings=settings.model_copy(update={"url": None}), registry_policies=rules) as a:
        assert a.store is not None
        reviewer_settings = settings.model_copy(update={"user": REVIEWER, "url": None})
        with Client(
            a.store, artifacts=a.artifacts, settings=reviewer_settings, registry_policies=rules
        ) as b:
            yield a, b


def queries(result: DemoResult) -> list[tuple[str, str]]:
    """The GraphQL queries the demo suggests, with its real ids: (question, query)."""
    first, best = result.versions[0], result.best
    return [
        (
            "Where did the deployed model come from?",
            f'{{ lineage(input: {{roots: ["{result.deployment}"], upstreamDepth: 8}}) {{\n'
            "    nodes { distance node { id kind } } edges { kind source target } truncated } }",
        ),
        (
            "Which runs, models and deployments does the raw extract affect?",
            f'{{ impact(ref: "dataset:{PROJECT}/breast_cancer_raw@latest") {{ runs {{ id }} '
            "modelVersions { id } "
            "deployments { id } } }",
        ),
        (
            "What changed between the first and the best version?",
            f'{{ compareModelVersions(a: "{first}", b: "{best}") {{\n'
            "    paramsChanged { key a b } metricDeltas { key a b delta }\n"
            "    datasets { added { id } removed { id } } } }",
        ),
        (
            "The runs, best held-out AUC first",
            f'{{ runs(where: {{experiment: "{EXPERIMENT}"}}, orderBy: ["-metrics.test_roc_auc"],'
            " first: 5) {\n    edges { node { id name params metrics { key last } } } } }",
        ),
        (
            "Which alerts are open, and where do they lead?",
            '{ alerts(state: "open") { nodes { id rule state firedAt values\n'
            "    lineage { deployment { id } modelVersion { id } trainingRuns { id name }\n"
            "              trainingData { id } codeCommits { id } } } } }",
        ),
        (
            "Who moved what to Production, and when?",
            f'{{ modelHistory(model: "{MODEL}") {{ change version {{ id }} fromStage toStage '
            "alias actor at reason } }",
        ),
    ]


__all__ = [
    "CONFIGS",
    "DemoResult",
    "clients",
    "queries",
    "replay_week",
    "run_demo",
    "write_alert_rules",
    "write_policies",
]
