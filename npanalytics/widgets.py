"""Explorers for notebooks: pick a dataset, a Service port, a source, a grouping and a window.

Wiring only: every callback selects rows of an :class:`~npanalytics.analysis.result.Analysis`
and hands them to :mod:`npanalytics.plotting`; no statistic is computed here. Each
explorer shows its controls, a figure (a PNG in an :class:`ipywidgets.Image`), a
line of text and a table (escaped HTML) in ``.widget``::

    from npanalytics.widgets import SkewExplorer
    SkewExplorer("etp-local-uneven").widget

A :class:`LiveSource` panel records a live cluster (Prometheus and/or the Kubernetes
API) with :func:`npanalytics.collect.collect` and adds the result to the explorers'
dataset choice; one panel can feed several explorers::

    live = LiveSource()
    TroubleshootingExplorer(live=live).widget

Needs ipywidgets and matplotlib (``pip install 'npanalytics[notebook]'``).
"""

from __future__ import annotations

import html
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .analysis.result import SEVERITIES, Analysis
from .datasets import DEFAULT_DATASET, Dataset, list_datasets, load_dataset
from .exceptions import NpaError

try:
    import ipywidgets as widgets
    from matplotlib.figure import Figure
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "npanalytics.widgets needs ipywidgets and matplotlib: pip install 'npanalytics[notebook]'"
    ) from err

__all__ = [
    "LiveSource",
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


LIVE_PREFIX = "live: "
"""How the dataset choices recorded by a :class:`LiveSource` begin."""


class LiveSource:
    """A panel that records a live cluster and offers the result to explorers.

    Its "Collect" button runs :func:`npanalytics.collect.collect` over the last
    ``minutes`` (Prometheus and/or the Kubernetes API), into a temporary folder
    the panel owns (removed by :meth:`close`), loads the dataset again with
    :func:`npanalytics.load_dataset`, analyses it once and adds it to every
    attached explorer's dataset choice as ``"live: <url> @ <time> UTC"`` (selected).
    A failure (an unreachable source, a bad step...) is shown, escaped and naming
    the source, in ``error``; the explorers keep what they showed.

    Parameters
    ----------
    minutes : int, default 60
        The initial time range: the last ``minutes`` up to the click.
    step : str, default "15s"
        The initial resolution.
    analyze : callable, optional
        Dataset -> Analysis, in place of :func:`npanalytics.analyze`.
    timeout : float, default 30.0
        Seconds per request to Prometheus.

    Attributes
    ----------
    url, kubeconfig, context, step : ipywidgets.Text
        Prometheus base URL, kubeconfig path and context (empty: its current one),
        resolution (``15s``, ``1m``...). Give a URL, a kubeconfig or both.
    token : ipywidgets.Password
        Bearer token for Prometheus (optional). It is passed to the collector
        only: never shown, logged, nor written into the dataset.
    minutes : ipywidgets.BoundedIntText
        The time range, in minutes back from the click.
    button : ipywidgets.Button
        "Collect"; ``button.click()`` collects as a click would.
    status, error : ipywidgets.HTML
        What is happening (or last happened), and the last failure.
    collected : dict of str to Dataset
        The datasets recorded, by their choice label.
    analyses : dict of str to Analysis
        Their analyses, by the same labels.
    """

    def __init__(self, *, minutes: int = 60, step: str = "15s",
                 analyze: Callable[[Dataset], Analysis] | None = None, timeout: float = 30.0) -> None:
        self._analyze = analyze or _analyze
        self.timeout = timeout
        self.url = widgets.Text(description="Prometheus", placeholder="http://prometheus:9090")
        self.token = widgets.Password(description="token", placeholder="bearer token (optional)")
        self.kubeconfig = widgets.Text(description="kubeconfig", placeholder="path (optional)")
        self.context = widgets.Text(description="context", placeholder="(current context)")
        self.minutes = widgets.BoundedIntText(value=minutes, min=1, max=7 * 24 * 60, description="last minutes")
        self.step = widgets.Text(value=step, description="step")
        self.button = widgets.Button(description="Collect", icon="download",
                                     tooltip="Record the live source into a dataset and add it to the choices")
        self.status = widgets.HTML("<p>Live source: give a Prometheus URL and/or a kubeconfig, then Collect.</p>")
        self.error = widgets.HTML()
        self.collected: dict[str, Dataset] = {}
        self.analyses: dict[str, Analysis] = {}
        self._listeners: list[Callable[..., None]] = []
        self._count = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(prefix="npa-live-")
        self.button.on_click(self._on_collect)

    # -- wiring --------------------------------------------------------------------------
    def attach(self, listener: Callable[..., None]) -> None:
        """Call ``listener(label, analysis, select=...)`` for each recording (past ones unselected)."""
        self._listeners.append(listener)
        for label, analysis in self.analyses.items():
            listener(label, analysis, select=False)

    def _source_name(self) -> str:
        """The source as the messages name it (no user:password of the URL, never the token)."""
        from .collectors.prometheus import _shown

        parts = []
        if self.url.value.strip():
            parts.append(f"Prometheus at {_shown(self.url.value.strip())}")
        if self.kubeconfig.value.strip():
            context = self.context.value.strip()
            parts.append(f"the Kubernetes API of kubeconfig {self.kubeconfig.value.strip()}"
                         + (f" (context {context})" if context else ""))
        return " and ".join(parts) or "no source"

    def _label(self, end: pd.Timestamp) -> str:
        from .collectors.prometheus import _shown

        url = self.url.value.strip()
        where = _shown(url) if url else f"kubeconfig {self.kubeconfig.value.strip()}"
        if url and self.kubeconfig.value.strip():
            where += " + Kubernetes API"
        label = f"{LIVE_PREFIX}{where} @ {end:%Y-%m-%d %H:%M:%S} UTC"
        base, n = label, 1
        while label in self.collected:
            n += 1
            label = f"{base} ({n})"
        return label

    def _redacted(self, text: str) -> str:
        token = self.token.value
        return text.replace(token, "***") if token else text

    # -- the button ----------------------------------------------------------------------
    def _on_collect(self, _button: Any = None) -> None:
        """Collect, load, analyse, then offer the result; show any failure instead of raising."""
        source = self._source_name()
        self.error.value = ""
        self.button.disabled = True
        self.status.value = (f"<p>Collecting the last {self.minutes.value} min (step "
                             f"{html.escape(self.step.value)}) from {html.escape(source)} ...</p>")
        try:
            label, notes = self._record()
        except Exception as err:  # noqa: BLE001 - the UI boundary: say it, never raise into the front end
            self.status.value = f"<p>Collection from {html.escape(source)} failed.</p>"
            self.error.value = self._failure(f"Collecting from {source} failed", err)
            return
        finally:
            self.button.disabled = False
        for listener in self._listeners:
            try:
                listener(label, self.analyses[label], select=True)
            except Exception as err:  # noqa: BLE001 - as above
                self.error.value = self._failure(f"Showing {label} failed", err)
        frames = len(self.collected[label].frames)
        said = "".join(f"<li>{html.escape(self._redacted(note))}</li>" for note in notes)
        self.status.value = (f"<p>Collected <b>{html.escape(label)}</b> from {html.escape(source)}: "
                             f"{frames} frames, analysed.</p>" + (f"<ul>{said}</ul>" if said else ""))

    def _failure(self, what: str, err: BaseException) -> str:
        kind = "" if isinstance(err, (NpaError, ValueError)) else f"{type(err).__name__}: "
        return (f"<p style='color:#b00'><b>{html.escape(self._redacted(what))}</b>: "
                f"{html.escape(self._redacted(kind + str(err)))}</p>")

    def _record(self) -> tuple[str, list[str]]:
        """Run the collector into the panel's folder, load and analyse; the label and the warnings."""
        from .collect import collect
        from .exceptions import NpaWarning

        if self._folder is None:
            raise RuntimeError("this live source is closed")
        url = self.url.value.strip() or None
        end = pd.Timestamp.now(tz="UTC").floor("s")
        start = end - pd.Timedelta(minutes=self.minutes.value)
        self._count += 1
        name = f"live-{self._count}"
        out = Path(self._folder.name) / name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NpaWarning)
            collect(out, prometheus=url, start=start, end=end, step=self.step.value.strip() or None,
                    token=(self.token.value or None) if url else None,
                    kubeconfig=self.kubeconfig.value.strip() or None, context=self.context.value.strip() or None,
                    name=name, description=f"live recording of {self._source_name()}", progress=False,
                    timeout=self.timeout)
            dataset = load_dataset(out)
            analysis = self._analyze(dataset)
        notes = []
        for w in caught:
            if issubclass(w.category, NpaWarning):
                notes.append(str(w.message))
            else:  # not ours to judge: pass it on
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        label = self._label(end)
        self.collected[label], self.analyses[label] = dataset, analysis
        return label, notes

    # -- display and cleanup -------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The panel: source fields, range and step, the button, the status and error lines."""
        if not hasattr(self, "_widget"):
            row = widgets.Layout(flex_flow="row wrap")
            self._widget = widgets.VBox([
                widgets.HBox([self.url, self.token], layout=row),
                widgets.HBox([self.kubeconfig, self.context], layout=row),
                widgets.HBox([self.minutes, self.step, self.button], layout=row),
                self.status, self.error,
            ])
        return self._widget

    def close(self) -> None:
        """Remove the recorded folders and detach the explorers (their analyses stay in memory)."""
        self._listeners.clear()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
        self.button.disabled = True
        self.status.value = "<p>Live source closed.</p>"

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a front end
        from IPython.display import display

        display(self.widget)


class _Explorer:
    """The dataset choice, the analysis cache, the figure and the refresh cycle."""

    figure_size = (11.0, 4.0)

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None,
                 live: LiveSource | bool = False) -> None:
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
        self._owns_live = live is True
        self.live: LiveSource | None = LiveSource() if live is True else (live or None)

    def _attach_live(self) -> None:
        """Take the live panel's recordings (once the controls exist: subclasses call this last)."""
        if self.live is not None:
            self.live.attach(self.add_analysis)

    def add_analysis(self, label: str, analysis: Analysis, *, select: bool = True) -> None:
        """Offer ``analysis`` as the dataset choice ``label`` and, with ``select``, show it.

        Parameters
        ----------
        label : str
            The choice's label (a :class:`LiveSource` uses ``"live: <url> @ <time> UTC"``).
        analysis : Analysis
            What the choice shows.
        select : bool, default True
            Choose it now (redraws).
        """
        self._analyses[label] = analysis
        current = self.dataset.value
        with self._quiet():
            options = list(self.dataset.options)
            self.dataset.options = options if label in options else [*options, label]
            self.dataset.value = label if select else current
        self.dataset.disabled = False
        if select:
            self._on_dataset()

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
        """A new dataset or control value: refill the controls' options, then redraw."""
        if self._updating:
            return
        with self._quiet():
            self._fill_controls()
        self.refresh()

    def _observe(self, *controls: Any) -> None:
        for control in controls:
            control.observe(self._on_dataset, names="value")

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
        """The explorer to display: the live panel (if any), controls, figure, text and table."""
        if not hasattr(self, "_widget"):
            panel = [] if self.live is None else [self.live.widget]
            self._widget = widgets.VBox([
                *panel,
                widgets.HBox(self._controls(), layout=widgets.Layout(flex_flow="row wrap")),
                self.image, self.text, self.table,
            ])
        return self._widget

    def close(self) -> None:
        """Close the live panel this explorer made (``live=True``); a shared one stays open."""
        if self.live is not None and self._owns_live:
            self.live.close()

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
    live : LiveSource or bool, default False
        A live-source panel shown above the controls, whose recordings become
        dataset choices: True makes one (closed by :meth:`close`), a
        :class:`LiveSource` is shared (every explorer attached gets its recordings).
        All explorers take it.

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

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None,
                 live: LiveSource | bool = False) -> None:
        super().__init__(data, analyze=analyze, live=live)
        self.service = widgets.Dropdown(description="service")
        self.source = widgets.Dropdown(description="source")
        self.group = widgets.Dropdown(description="grouping")
        self.window = widgets.Dropdown(description="window")
        self._observe(self.service, self.source, self.group, self.window)
        self._on_dataset()
        self._attach_live()

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

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None,
                 live: LiveSource | bool = False) -> None:
        super().__init__(data, analyze=analyze, live=live)
        self.service = widgets.Dropdown(description="service")
        self._observe(self.service)
        self._on_dataset()
        self._attach_live()

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
            whose = "any Service port" if self.service.value is None else html.escape(service)
            text += f"<p>No NodePort path recorded for {whose}: {html.escape(why)}</p>"
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
                 analyze: Callable[[Dataset], Analysis] | None = None, services: int = 0,
                 live: LiveSource | bool = False) -> None:
        super().__init__(data, analyze=analyze, live=live)
        self.statistic = widgets.Dropdown(description="statistic")
        self.services = widgets.BoundedIntText(value=services, min=0, max=10_000_000, description="your Services")
        self.published = widgets.Checkbox(value=True, description="KEP-3866 numbers")
        self._observe(self.statistic, self.services, self.published)
        self._on_dataset()
        self._attach_live()

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

    def __init__(self, data: AnalysisSource = None, *, analyze: Callable[[Dataset], Analysis] | None = None,
                 live: LiveSource | bool = False) -> None:
        super().__init__(data, analyze=analyze, live=live)
        self.severity = widgets.SelectMultiple(options=list(SEVERITIES), value=list(SEVERITIES),
                                               description="severity")
        self.service = widgets.Dropdown(description="service")
        self.node = widgets.Dropdown(description="node")
        self.rows = self.analysis.findings.iloc[0:0]
        self._observe(self.severity, self.service, self.node)
        self._on_dataset()
        self._attach_live()

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
