"""Prometheus metrics of one daemon, on its own `CollectorRegistry`.

The series the Flyte SDK's server (`c0`) exports keep its names, types and label values,
so its dashboards and alerts keep working: `flyte_connector_requests_success_total`,
`..._requests_failure_total` (`error_code` "404" for an unknown task type, "500" for any
other failure, as `c0` labels them, and beside it our `grpc_code`), and the summaries
`..._request_latency_seconds` and `..._input_literal_bytes`. Ours sit beside them:
requests by status code, latency and input size as histograms
(`..._request_duration_seconds`, `..._input_size_bytes`), in-flight requests and plugin
load results. `metrics_http` adds prometheus_client's default registry (process_*,
python_*, a connector's own metrics) on the same endpoint, as `c0` serves it.

Recording sits on the request hot path, so it is plain integer arithmetic on the event
loop thread (no locks, no label lookups); a custom collector turns the tallies into metric
families only when /metrics is scraped. prometheus_client (about 150 ms of imports with
its exposition code) is imported by the first scrape (`metrics_http`), never at start-up.
`MergedMetrics` sums the snapshots of `serve --processes` workers the same way.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from typing import Any, Iterable, Iterator, Optional

PREFIX = "flyte_connector_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BYTES_BUCKETS = tuple(float(4**i) for i in range(3, 14))
_REQUEST = ("task_type", "operation")
_FAILURE_DOC = ("Failed requests: error_code as the Flyte SDK server labels them (404 unknown "
                "task type, else 500), grpc_code the status.")
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "requests_success": ("counter", "Successful requests.", _REQUEST),
    "requests_failure": ("counter", _FAILURE_DOC, (*_REQUEST, "error_code", "grpc_code")),
    "requests": ("counter", "Requests, by gRPC status code (OK included).", (*_REQUEST, "code")),
    "request_latency_seconds": ("summary", "Time to answer a request.", _REQUEST),
    "request_duration_seconds": ("histogram", "Time to answer a request.", _REQUEST),
    "input_literal_bytes": ("summary", "Size of CreateTask inputs.", ("task_type",)),
    "input_size_bytes": ("histogram", "Size of CreateTask inputs.", ("task_type",)),
    "requests_in_flight": ("gauge", "Requests being answered now.", ("operation",)),
    "plugins_loaded": ("gauge", "Plugins and modules that loaded.", ()),
    "plugins_failed": ("gauge", "Plugins and modules that failed to load.", ()),
    "plugin_failure": ("gauge", "1 for each plugin that failed to load.", ("plugin", "reason")),
    "get_shielded": ("counter", ("GetTask answered with the job's last state while its status "
                     "check failed transiently."), ("task_type",)),
    "connections_reload_failures": ("counter", ("Changed connections files that could not be "
                                    "loaded (the last good one stays)."), ()),
}
# The Flyte SDK server's error_code label: http.HTTPStatus values, 404 only for NOT_FOUND.
C0_ERROR_CODES = {"NOT_FOUND": "404"}
C0_OTHER_ERROR = "500"


def _created_series() -> bool:
    """prometheus_client's own switch for the `_created` samples of counters and summaries."""
    value = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False")
    return value.lower() not in ("true", "1", "t")


class _Tally:
    """Count, sum and per-bucket counts (not cumulative) of observed values."""

    __slots__ = ("count", "total", "buckets", "bounds", "created")

    def __init__(self, bounds: tuple[float, ...], created: Optional[float] = None) -> None:
        self.count = 0
        self.total = 0.0
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.created = time.time() if created is None else created

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.buckets[bisect_left(self.bounds, value)] += 1

    def merge(self, other: _Tally) -> None:
        self.created = min(self.created, other.created)
        self.count += other.count
        self.total += other.total
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]

    def histogram(self) -> list[tuple[str, float]]:
        from prometheus_client.utils import floatToGoString

        running, out = 0, []
        for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), self.buckets):
            running += n
            out.append((bound, float(running)))
        return out


class Metrics:
    """The daemon's request tallies and plugin state (served by `metrics_http`)."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str], _Tally] = {}
        self._inputs: dict[str, _Tally] = {}
        self._in_flight: dict[str, int] = {}
        self._plugins: tuple[int, list[tuple[str, str]]] = (0, [])
        self._events: dict[tuple[str, str], int] = {}
        self._registry: Optional[Any] = None

    @property
    def registry(self) -> Any:
        """The `prometheus_client.CollectorRegistry` holding this daemon's collector."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self)
        return self._registry

    def started(self, operation: str) -> None:
        """A request began."""
        flight = self._in_flight
        flight[operation] = flight.get(operation, 0) + 1

    def finished(self, operation: str, task_type: str, code: str, seconds: float) -> None:
        """A request ended with gRPC status `code` ('OK', 'NOT_FOUND', ...)."""
        self._in_flight[operation] -= 1
        key = (operation, task_type, code)
        tally = self._requests.get(key)
        if tally is None:
            tally = self._requests[key] = _Tally(LATENCY_BUCKETS)
        tally.observe(seconds)

    def inputs(self, task_type: str, size: int) -> None:
        """Record the byte size of a CreateTask's inputs."""
        tally = self._inputs.get(task_type)
        if tally is None:
            tally = self._inputs[task_type] = _Tally(BYTES_BUCKETS)
        tally.observe(size)

    def event(self, name: str, task_type: str = "") -> None:
        """Count one `name` event (a counter family of `FAMILIES`)."""
        key = (name, task_type)
        self._events[key] = self._events.get(key, 0) + 1

    def plugins(self, loaded: int, failed: Iterable[tuple[str, str]]) -> None:
        """Plugin load results: how many loaded, and each failed (plugin, reason)."""
        self._plugins = (loaded, list(failed))

    def snapshot(self) -> dict[str, Any]:
        """The tallies as JSON data: what one `serve --processes` worker hands the parent."""
        def tally(t: _Tally) -> list[Any]:
            return [t.count, t.total, t.buckets, t.created]

        return {
            "requests": [[*key, *tally(t)] for key, t in list(self._requests.items())],
            "inputs": [[key, *tally(t)] for key, t in list(self._inputs.items())],
            "in_flight": dict(self._in_flight),
            "plugins": [self._plugins[0], self._plugins[1]],
            "events": [[*key, n] for key, n in list(self._events.items())],
        }

    def absorb(self, snapshot: dict[str, Any], live: bool = True) -> None:
        """Add a worker's `snapshot` to these tallies (in-flight only when it is `live`)."""
        for operation, task_type, code, *tally in snapshot["requests"]:
            theirs = _restore(LATENCY_BUCKETS, *tally)
            mine = self._requests.setdefault((operation, task_type, code),
                                             _Tally(LATENCY_BUCKETS, theirs.created))
            mine.merge(theirs)
        for task_type, *tally in snapshot["inputs"]:
            theirs = _restore(BYTES_BUCKETS, *tally)
            mine = self._inputs.setdefault(task_type, _Tally(BYTES_BUCKETS, theirs.created))
            mine.merge(theirs)
        for operation, n in snapshot["in_flight"].items():
            self._in_flight[operation] = self._in_flight.get(operation, 0) + (n if live else 0)
        for name, task_type, n in snapshot.get("events", ()):
            self._events[(name, task_type)] = self._events.get((name, task_type), 0) + n
        loaded, failed = snapshot["plugins"]
        self._plugins = (max(loaded, self._plugins[0]), [tuple(f) for f in failed])

    def collect(self) -> Iterator[Any]:
        """Metric families for a scrape (called by prometheus_client in its HTTP thread)."""
        rows: dict[str, list[tuple[list[str], Any]]] = {name: [] for name in FAMILIES}
        latency: dict[tuple[str, str], _Tally] = {}
        for (operation, task_type, code), tally in list(self._requests.items()):
            rows["requests"].append(([task_type, operation, code], tally))
            if code == "OK":
                rows["requests_success"].append(([task_type, operation], tally))
            else:
                error = C0_ERROR_CODES.get(code, C0_OTHER_ERROR)
                rows["requests_failure"].append(([task_type, operation, error, code], tally))
            merged = latency.get((task_type, operation))
            if merged is None:
                merged = latency[(task_type, operation)] = _Tally(LATENCY_BUCKETS, tally.created)
            merged.merge(tally)
        rows["request_latency_seconds"] = rows["request_duration_seconds"] = [
            (list(k), t) for k, t in latency.items()]
        rows["input_literal_bytes"] = rows["input_size_bytes"] = [
            ([k], t) for k, t in list(self._inputs.items())]
        rows["requests_in_flight"] = [([op], n) for op, n in list(self._in_flight.items())]
        loaded, failed = self._plugins
        rows["plugins_loaded"] = [([], loaded)]
        rows["plugins_failed"] = [([], len(failed))]
        rows["plugin_failure"] = [([plugin, reason], 1) for plugin, reason in failed]
        for (name, task_type), n in list(self._events.items()):
            rows[name].append(([task_type] if FAMILIES[name][2] else [], n))
        created = _created_series()
        for name, data in rows.items():
            yield _family(name, data, created)


def _restore(bounds: tuple[float, ...], count: int, total: float, buckets: list[int],
             created: float) -> _Tally:
    tally = _Tally(bounds, created)
    tally.count, tally.total, tally.buckets = count, total, list(buckets)
    return tally


class MergedMetrics:
    """The /metrics of a whole `serve --processes` daemon: the workers' snapshot files
    (`<pid>.json` in one directory) summed at scrape time under the same series names.

    Counters of a worker that died stay in the sums (they never go backwards); its
    in-flight requests do not."""

    def __init__(self, directory: str, live: Any) -> None:
        self.directory = directory
        self.live = live

    def collect(self) -> Iterator[Any]:
        """Read every worker's latest snapshot and yield the summed families."""
        import json

        total, live = Metrics(), set(self.live())
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.directory, name)) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue
            total.absorb(data, live=int(name[:-5]) in live)
        yield from total.collect()


def _family(name: str, rows: list[tuple[list[str], Any]], created: bool) -> Any:
    """One metric family; counters and summaries carry `_created` as prometheus_client's own
    metrics (and so the Flyte SDK server's) do, unless it is switched off."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        SummaryMetricFamily,
    )
    from prometheus_client.samples import Sample

    kind, doc, labels = FAMILIES[name]
    cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
           "histogram": HistogramMetricFamily, "summary": SummaryMetricFamily}[kind]
    family = cls(PREFIX + name, doc, labels=list(labels))
    for values, value in rows:
        if kind == "gauge":
            family.add_metric(values, value)
        elif kind == "counter" and isinstance(value, _Tally):
            family.add_metric(values, value.count, created=value.created if created else None)
        elif kind == "counter":  # an event count of ours (no c0 counterpart, no _created)
            family.add_metric(values, value)
        elif kind == "summary":
            family.add_metric(values, value.count, value.total)
            if created:
                family.samples.append(Sample(family.name + "_created",
                                             dict(zip(labels, values)), value.created))
        else:
            family.add_metric(values, value.histogram(), value.total)
    return family


def exported_series() -> dict[str, set[str]]:
    """Every sample name /metrics can carry, with its label names (for checking
    dashboards and alert rules against what the daemon really exports)."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "summary": ("_count", "_sum", "_created"),
                "histogram": ("_bucket", "_sum", "_count")}
    series = {}
    for name, (kind, _doc, labels) in FAMILIES.items():
        for suffix in suffixes[kind]:
            extra = {"le"} if suffix == "_bucket" else set()
            series[PREFIX + name + suffix] = set(labels) | extra
    return series
