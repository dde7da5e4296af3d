"""Explorers for notebooks: pick a dataset, a Service port, a source, a grouping and a window.

Wiring only: every callback selects rows of an :class:`~npanalytics.analysis.result.Analysis`
and hands them to :mod:`npanalytics.plotting`; no statistic is computed here. Each
explorer shows its controls, a figure (a PNG in an :class:`ipywidgets.Image`), a
line of text and a table (escaped HTML) in ``.widget``::

    from npanalytics.widgets import SkewExplorer
    SkewExplorer("etp-local-uneven").widget

Needs ipywidgets and matplotlib (``pip install 'npanalytics[notebook]'``).
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from .analysis.result import SEVERITIES, Analysis
from .datasets import DEFAULT_DATASET, Dataset, list_datasets, load_dataset

try:
    import ipywidgets as widgets
    from matplotlib.figure import Figure
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "npanalytics.widgets needs ipywidgets and matplotlib: pip install 'npanalytics[notebook]'"
    ) from err

__all__ = [
    "SkewExplorer",
    "AffinityExplorer",
    "OverheadExplorer",
    "TroubleshootingExplorer",
]

GIVEN = "(given analysis)"
"""The dataset choice shown when an explorer is built from an Analysis."""

WHOLE_RECORDING = "whole recording"
"""The window choice for the whole-recording rows (``window_start`` NaT)."""

AnalysisSource = Analysis | Dataset | str | os.PathLike[str] | None


def _analyze(dataset: Dataset) -> Analysis:
    from .analysis.analyze import analyze

    return analyze(dataset)


def _labels(series: pd.Series) -> list[str]:
    return sorted(str(v) for v in series.dropna().unique())


def _table_html(frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        return f"<p><i>{html.escape(empty)}</i></p>"
    return frame.to_html(index=False, escape=True, na_rep="", border=0, classes="npa-table")


def _set_options(dropdown: Any, options: list[Any]) -> None:
    """Replace a dropdown's options, keeping its value when it is still offered."""
    current = dropdown.value
    dropdown.options = options
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    if current in values:
        dropdown.value = current
    elif values:
        dropdown.value = values[0]


class _Explorer:
    """The dataset choice, the analysis cache, the figure and the refresh cycle."""

    figure_size = (11.0, 4.0)

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None) -> None:
        self._analyze = analyze or _analyze
        self._analyses: dict[str, Analysis] = {}
        self._datasets: dict[str, Dataset] = {}
        self._updating = False
        if isinstance(data, Analysis):
            self._analyses[GIVEN] = data
            options, value = [GIVEN], GIVEN
        elif isinstance(data, Dataset):
            self._datasets[data.name] = data
            options, value = [data.name], data.name
        else:
            options = list_datasets()
            value = DEFAULT_DATASET if data is None else os.fspath(data)
            if value not in options:
                options = [*options, value]
        self.dataset = widgets.Dropdown(options=options, value=value, description="dataset")
        self.dataset.disabled = len(options) == 1
        self.image = widgets.Image(format="png")
        self.text = widgets.HTML()
        self.table = widgets.HTML()
        self.figure: Figure | None = None
        self.dataset.observe(self._on_dataset, names="value")

    # -- data ----------------------------------------------------------------------------
    @property
    def analysis(self) -> Analysis:
        """The Analysis of the chosen dataset (analysed once, then cached)."""
        name = self.dataset.value
        if name not in self._analyses:
            dataset = self._datasets.get(name) or load_dataset(name)
            self._analyses[name] = self._analyze(dataset)
        return self._analyses[name]

    # -- refresh cycle -------------------------------------------------------------------
    @contextmanager
    def _quiet(self) -> Iterator[None]:
        """Change several controls without a refresh per change."""
        was, self._updating = self._updating, True
        try:
            yield
        finally:
            self._updating = was

    def _on_dataset(self, _change: Any = None) -> None:
        with self._quiet():
            self._fill_controls()
        self.refresh()

    def _on_control(self, _change: Any = None) -> None:
        if self._updating:
            return
        with self._quiet():
            self._fill_controls()
        self.refresh()

    def _observe(self, *controls: Any) -> None:
        for control in controls:
            control.observe(self._on_control, names="value")

    def _fill_controls(self) -> None:
        """Set the options of the controls from the analysis (subclasses)."""

    def refresh(self) -> None:
        """Redraw the figure, the text and the table from the controls' values."""
        figure = Figure(figsize=self.figure_size, layout="constrained")
        text, table = self._draw(figure)
        self.figure = figure
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        self.image.value = buffer.getvalue()
        self.text.value = text
        self.table.value = table

    def _draw(self, figure: Figure) -> tuple[str, str]:
        raise NotImplementedError

    def _missing(self, figure: Figure, topic: str) -> str:
        """Say on the figure and in the text what is missing for ``topic`` and how to get it."""
        why = self.analysis.missing.get(topic, f"the analysis has no {topic!r} section")
        ax = figure.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"{topic}: not available", ha="center", va="center")
        return f"<p><b>{html.escape(topic)}</b> cannot be shown: {html.escape(why)}</p>"

    def _controls(self) -> list[Any]:
        return [self.dataset]

    @property
    def widget(self) -> Any:
        """The explorer to display: controls, figure, text and table."""
        if not hasattr(self, "_widget"):
            self._widget = widgets.VBox([
                widgets.HBox(self._controls(), layout=widgets.Layout(flex_flow="row wrap")),
                self.image, self.text, self.table,
            ])
        return self._widget

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a front end
        from IPython.display import display

        display(self.widget)


class SkewExplorer(_Explorer):
    """Observed against expected shares per backend, the Lorenz curve and the findings of a Service port.

    Parameters
    ----------
    data : Analysis, Dataset, dataset name or path, optional
        What to explore; default the default dataset (any bundled dataset can
        then be chosen). Datasets are analysed with :func:`npanalytics.analyze`.
    analyze : callable, optional
        Dataset -> Analysis, in place of :func:`npanalytics.analyze`.

    Attributes
    ----------
    dataset, service, source, group, window : ipywidgets.Dropdown
        The controls; setting ``.value`` redraws.
    figure : matplotlib.figure.Figure
        The last figure drawn: share vs expected, the Lorenz curve and, when the
        choice has per-window rows, the shares over time.
    text, table : ipywidgets.HTML
        The skew summary line and the findings of the Service port.
    """

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None) -> None:
        super().__init__(data, analyze=analyze)
        self.service = widgets.Dropdown(description="service")
        self.source = widgets.Dropdown(description="source")
        self.group = widgets.Dropdown(description="grouping")
        self.window = widgets.Dropdown(description="window")
        self._observe(self.service, self.source, self.group, self.window)
        self._on_dataset()

    def _controls(self) -> list[Any]:
        return [self.dataset, self.service, self.source, self.group, self.window]

    def _rows(self, frame: pd.DataFrame, *, window: bool = True) -> pd.DataFrame:
        keep = frame["service_port_name"].astype("str") == self.service.value
        for column, control in (("source", self.source), ("group", self.group)):
            keep &= frame[column].astype("str") == control.value
        if window:
            chosen = self._window()
            keep &= frame["window_start"].isna() if chosen is None else frame["window_start"] == chosen
        return frame[keep]

    def _window(self) -> pd.Timestamp | None:
        """The chosen window start; None for the whole recording."""
        return None if self.window.value == WHOLE_RECORDING else self.window.value

    def _fill_controls(self) -> None:
        skew = self.analysis.skew
        _set_options(self.service, _labels(skew["service_port_name"]))
        rows = skew[skew["service_port_name"].astype("str") == self.service.value]
        _set_options(self.source, _labels(rows["source"]))
        rows = rows[rows["source"].astype("str") == self.source.value]
        _set_options(self.group, _labels(rows["group"]))
        rows = rows[rows["group"].astype("str") == self.group.value]
        windows = [(WHOLE_RECORDING, WHOLE_RECORDING)] if rows["window_start"].isna().any() else []
        windows += [(f"{pd.Timestamp(w):%Y-%m-%d %H:%M:%S} UTC", pd.Timestamp(w))
                    for w in sorted(rows["window_start"].dropna().unique())]
        _set_options(self.window, windows)

    def _draw(self, figure: Figure) -> tuple[str, str]:
        from .plotting import plot_lorenz, plot_share_vs_expected, plot_shares_over_time

        if self.service.value is None:
            figure.subplots().set_axis_off()
            return "<p>No Service port with skew results in this analysis.</p>", ""
        skew = self.analysis.skew
        windowed = self._rows(skew, window=False)["window_start"].notna().any()
        axes = figure.subplots(1, 3 if windowed else 2, width_ratios=(2, 1, 2) if windowed else (2, 1))
        choice = {"source": self.source.value, "group": self.group.value, "window_start": self._window()}
        plot_share_vs_expected(skew, self.service.value, ax=axes[0], **choice)
        plot_lorenz(skew, self.service.value, summary=self.analysis.skew_summary, ax=axes[1], **choice)
        if windowed:
            plot_shares_over_time(skew, self.service.value, source=self.source.value, group=self.group.value,
                                  ax=axes[2])
        summary = self._rows(self.analysis.skew_summary)
        text = "<p>No summary row for this choice.</p>"
        if len(summary):
            row = summary.iloc[0]
            text = (
                f"<p><b>{html.escape(self.service.value)}</b>: model {html.escape(str(row['model']))}; "
                f"max/mean {row['max_mean']:.2f}, Gini {row['gini']:.3f}, Jain {row['jain']:.3f}, "
                f"G-test p = {row['p_value']:.3g} over {row['total']:.0f} {html.escape(self.source.value)} "
                "observations</p>"
            )
        findings = self.analysis.findings
        mine = findings[findings["service"].astype("str") == self.service.value]
        return text, _table_html(mine, "No finding for this Service port.")


class AffinityExplorer(_Explorer):
    """Session affinity and the NodePort path of a Service port: clients, entry nodes, pods.

    The figure shows the clients of ``sections["affinity"]`` (flows on their top
    backend, left) and the flow diagram of ``sections["node_path"]`` (entry node
    -> backend node, right); the table the affinity rows of the Service port,
    then its affinity, SNAT and path findings.

    Attributes
    ----------
    dataset, service : ipywidgets.Dropdown
    figure, text, table
        As in :class:`SkewExplorer`.
    """

    CODES = ("affinity-concentration", "snat-source-lost", "cross-node-hops", "local-policy-blackhole")

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None) -> None:
        super().__init__(data, analyze=analyze)
        self.service = widgets.Dropdown(description="service")
        self._observe(self.service)
        self._on_dataset()

    def _controls(self) -> list[Any]:
        return [self.dataset, self.service]

    def _fill_controls(self) -> None:
        names: set[str] = set(_labels(self.analysis.skew["service_port_name"]))
        for topic in ("affinity", "node_path"):
            frame = self.analysis.sections.get(topic)
            if frame is not None and "service_port_name" in frame.columns:
                names.update(_labels(frame["service_port_name"]))
        _set_options(self.service, sorted(names))

    def _of_service(self, topic: str) -> pd.DataFrame | None:
        frame = self.analysis.sections.get(topic)
        if frame is None:
            return None
        return frame[frame["service_port_name"].astype("str") == str(self.service.value)]

    def _draw(self, figure: Figure) -> tuple[str, str]:
        from .plotting import plot_affinity, plot_flow_diagram

        service = str(self.service.value)
        left, right = figure.subplots(1, 2)
        affinity = self._of_service("affinity")
        node_path = self._of_service("node_path")
        text = ""
        if affinity is None or affinity.empty:
            left.set_axis_off()
            why = self.analysis.missing.get("affinity", "no conntrack flows of this Service port")
            text += f"<p>Affinity per client cannot be shown: {html.escape(why)}</p>"
        else:
            plot_affinity(affinity, service, ax=left)
        if node_path is None or node_path.empty:
            right.set_axis_off()
            why = self.analysis.missing.get("node_path", "no conntrack flows of this Service port")
            text += f"<p>No NodePort path recorded for {html.escape(service)}: {html.escape(why)}</p>"
        else:
            plot_flow_diagram(node_path, service, ax=right)
        table = "" if affinity is None else _table_html(affinity, "No affinity rows for this Service port.")
        findings = self.analysis.findings
        mine = findings[(findings["service"].astype("str") == service) & findings["code"].astype("str").isin(self.CODES)]
        return text, table + _table_html(mine, "No affinity or path finding for this Service port.")


class OverheadExplorer(_Explorer):
    """The proxy-mode sweep: connect time per mode against the Service count, the fit and your count.

    Attributes
    ----------
    dataset, statistic : ipywidgets.Dropdown
        ``statistic``: the percentile column of ``sections["overhead"]``.
    services : ipywidgets.IntText
        Your cluster's Service count, marked on the plot (0: no mark).
    published : ipywidgets.Checkbox
        Show KEP-3866's published numbers beside the lab's.
    figure, text, table
        As in :class:`SkewExplorer`; the text says what the fit adds at your
        Service count (:func:`npanalytics.analysis.overhead.extrapolate_overhead`),
        the table holds ``sections["overhead_fit"]``.
    """

    figure_size = (8.0, 4.5)

    def __init__(self, data: AnalysisSource = "proxy-mode-sweep", *,
                 analyze: Callable[[Dataset], Analysis] | None = None, services: int = 0) -> None:
        super().__init__(data, analyze=analyze)
        self.statistic = widgets.Dropdown(description="statistic")
        self.services = widgets.BoundedIntText(value=services, min=0, max=10_000_000, description="your Services")
        self.published = widgets.Checkbox(value=True, description="KEP-3866 numbers")
        self._observe(self.statistic, self.services, self.published)
        self._on_dataset()

    def _controls(self) -> list[Any]:
        return [self.dataset, self.statistic, self.services, self.published]

    def _fill_controls(self) -> None:
        from .plotting.overhead import STATISTICS

        overhead = self.analysis.sections.get("overhead")
        _set_options(self.statistic, [] if overhead is None else list(STATISTICS))

    def _draw(self, figure: Figure) -> tuple[str, str]:
        from .analysis.published import KEP3866_SOURCE, kep3866_first_packet
        from .plotting import plot_overhead

        overhead = self.analysis.sections.get("overhead")
        if overhead is None or self.statistic.value is None:
            return self._missing(figure, "overhead"), ""
        fit = self.analysis.sections.get("overhead_fit")
        services = self.services.value if self.services.value > 0 else None
        published = kep3866_first_packet() if self.published.value else None
        plot_overhead(overhead, fit, services, statistic=self.statistic.value, published=published,
                      ax=figure.subplots())
        text = "<p>Lab sweep: connect() time through a NodePort per proxy mode.</p>"
        if fit is not None and services is not None:
            from .analysis.overhead import describe_overhead, extrapolate_overhead

            extrapolation = extrapolate_overhead(fit, services, statistic=self.statistic.value)
            text += f"<p><b>{html.escape(describe_overhead(extrapolation))}</b></p>"
        if published is not None:
            text += f"<p><small>Published: {html.escape(KEP3866_SOURCE)}.</small></p>"
        table = "" if fit is None else _table_html(fit, "No fit.")
        return text, table


class TroubleshootingExplorer(_Explorer):
    """The troubleshooting checklist: the findings, filtered by severity, Service and node.

    Attributes
    ----------
    dataset, service, node : ipywidgets.Dropdown
        ``"(all)"`` keeps every row.
    severity : ipywidgets.SelectMultiple
        The severities shown.
    rows : pandas.DataFrame
        The findings shown in the table.
    figure, text, table
        As in :class:`SkewExplorer`; the figure is the conntrack pressure per node.
    """

    ALL = "(all)"

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None) -> None:
        super().__init__(data, analyze=analyze)
        self.severity = widgets.SelectMultiple(options=list(SEVERITIES), value=list(SEVERITIES),
                                               description="severity")
        self.service = widgets.Dropdown(description="service")
        self.node = widgets.Dropdown(description="node")
        self.rows = self.analysis.findings.iloc[0:0]
        self._observe(self.severity, self.service, self.node)
        self._on_dataset()

    def _controls(self) -> list[Any]:
        return [self.dataset, self.severity, self.service, self.node]

    def _fill_controls(self) -> None:
        findings = self.analysis.findings
        _set_options(self.service, [self.ALL, *_labels(findings["service"])])
        _set_options(self.node, [self.ALL, *_labels(findings["node"])])

    def _draw(self, figure: Figure) -> tuple[str, str]:
        from .plotting import plot_conntrack_pressure

        findings = self.analysis.findings
        keep = findings["severity"].astype("str").isin(self.severity.value)
        for column, control in (("service", self.service), ("node", self.node)):
            if control.value != self.ALL:
                keep &= findings[column].astype("str") == control.value
        self.rows = findings[keep]
        pressure = self.analysis.sections.get("conntrack_pressure")
        if pressure is None:
            text = self._missing(figure, "conntrack_pressure")
        else:
            plot_conntrack_pressure(pressure, ax=figure.subplots())
            text = ""
        shown = f"<p>{len(self.rows)} of {len(findings)} findings shown.</p>"
        return shown + text, _table_html(self.rows, "No finding matches.")
