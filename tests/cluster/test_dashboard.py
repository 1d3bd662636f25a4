"""The Grafana dashboard shows what the code emits: every metric a panel queries is one `actors/metrics.py` defines,
under the name Ray exports it with, grouped only by labels it carries; and every metric the code emits has a panel.

The emitted metrics are read from the objects themselves: each metrics class in `actors/metrics.py` is built (a
`ray.util.metrics` object needs no running Ray until it records) and its Counter, Gauge and Histogram attributes
listed. A test below keeps every other module from creating metrics of its own."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml
from ray.util import metrics as ray_metrics

from actors import metrics as distillery_metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "cluster" / "grafana" / "distillery.json"
CONFIGMAP = REPO / "cluster" / "kuberay" / "grafana-dashboard-configmap.yaml"
PROVISIONING = REPO / "cluster" / "grafana" / "provisioning.yaml"
# Labels Ray adds to every metric it exports (besides the metric's own tag keys).
RAY_LABELS = {"SessionName", "NodeAddress", "Component", "WorkerId", "Version", "instance", "job"}


def emitted_metrics() -> dict[str, ray_metrics.Metric]:
    """Every metric the metrics classes create, by name."""
    found = {}
    for _, cls in inspect.getmembers(distillery_metrics, inspect.isclass):
        if cls.__module__ != distillery_metrics.__name__:
            continue
        params = [p for p in inspect.signature(cls).parameters.values() if p.default is inspect.Parameter.empty]
        instance = cls(*["label" for _ in params])
        for value in vars(instance).values():
            for metric in value.values() if isinstance(value, dict) else [value]:
                if isinstance(metric, ray_metrics.Metric):
                    found[metric.info["name"]] = metric
    return found


def exported_names(name: str, metric: ray_metrics.Metric) -> set[str]:
    """The Prometheus series Ray exports for a metric: a `ray_` prefix, `_total` on counters, the histogram's parts."""
    if isinstance(metric, ray_metrics.Counter):
        return {f"ray_{name}_total"}
    if isinstance(metric, ray_metrics.Histogram):
        return {f"ray_{name}_{part}" for part in ("bucket", "sum", "count")}
    return {f"ray_{name}"}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: the panels' targets and the template variables' queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


def series_in(query: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', query)
    return set(re.findall(r"\bray_[A-Za-z0-9_]+", without_strings))


def labels_in(query: str) -> set[str]:
    """Labels the expression groups by, or selects on."""
    without_strings = re.sub(r'"[^"]*"', '""', query)
    groups = re.findall(r"\bby \(([^)]*)\)", without_strings)
    grouped = [label.strip() for group in groups for label in group.split(",")]
    selected = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", " ".join(re.findall(r"\{([^}]*)\}", query)))
    label_values = re.findall(r"label_values\([^,]+,\s*([A-Za-z_][A-Za-z0-9_]*)\)", query)
    return {label for label in grouped + selected + label_values if label}


def series_labels() -> dict[str, set[str]]:
    labels = {}
    for name, metric in emitted_metrics().items():
        keys = set(metric.info["tag_keys"]) | RAY_LABELS
        for series in exported_names(name, metric):
            labels[series] = keys | ({"le"} if series.endswith("_bucket") else set())
    return labels


def test_the_code_emits_the_metrics_the_readme_names():
    assert {"distillery_accepted", "distillery_rejected", "distillery_attempts", "distillery_generated_tokens",
            "distillery_in_flight", "distillery_verifier_latency_s", "distillery_train_loss",
            "distillery_train_tokens_per_s", "distillery_train_mfu"} <= set(emitted_metrics())


@pytest.mark.parametrize("query", dashboard_queries())
def test_every_dashboard_query_names_series_the_code_exports_with_their_labels(query):
    known = series_labels()
    used = series_in(query)
    assert used, f"a query of no distillery metric: {query}"
    assert used <= set(known), f"not emitted by actors/metrics.py (as exported by Ray): {used - set(known)}"
    allowed = set.intersection(*(known[s] for s in used))
    assert labels_in(query) <= allowed, f"labels the series do not carry: {labels_in(query) - allowed}"


def test_every_metric_the_code_emits_has_a_panel():
    shown = set().union(*(series_in(q) for q in dashboard_queries()))
    missing = [name for name, metric in emitted_metrics().items() if not exported_names(name, metric) & shown]
    assert not missing, f"emitted but on no panel of cluster/grafana/distillery.json: {missing}"


def test_no_module_but_actors_metrics_creates_metrics():
    """So that emitted_metrics() sees them all: a new metric goes into actors/metrics.py."""
    creators = []
    for folder in ("actors", "pipeline", "jobs", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            if path == REPO / "actors" / "metrics.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                imported = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom)
                    else []
                )
                if any(name.startswith("ray.util.metrics") for name in imported):
                    creators.append(str(path.relative_to(REPO)))
    assert not creators


def test_panels_are_laid_out_on_the_grid_with_the_chosen_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"] and panel["title"] and panel["description"]
    assert [v["name"] for v in dashboard["templating"]["list"]][0] == "datasource"


def test_the_configmap_holds_the_dashboard_as_it_is_and_is_labelled_for_grafana():
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {"distillery.json": DASHBOARD.read_text()}


def test_the_provisioning_file_is_a_grafana_file_provider():
    provisioning = yaml.safe_load(PROVISIONING.read_text())
    assert provisioning["apiVersion"] == 1
    [provider] = provisioning["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


@pytest.mark.parametrize("query", dashboard_queries())
def test_the_preview_gives_every_grafana_variable_a_value(query):
    """`cluster/grafana/preview.py` draws the dashboard from Prometheus alone, so no Grafana variable may be left."""
    from cluster.grafana.preview import substitute

    assert "$" not in substitute(query, rate_interval_s=20, range_s=600), query
