"""The scheduled report: an :class:`~npanalytics.analysis.result.Analysis` as HTML, JSON and Markdown.

Wiring only (nothing is recomputed): :func:`render_report` writes the files,
:func:`report_payload` is the JSON report's content. Needs jinja2 and matplotlib
(``pip install 'npanalytics[report]'``), both imported only when a report is made.
"""

from ._payload import PAYLOAD_FORMAT, PAYLOAD_VERSION, report_payload
from .render import REPORT_FORMATS, render_report, report_filename

__all__ = [
    "render_report",
    "report_payload",
    "report_filename",
    "REPORT_FORMATS",
    "PAYLOAD_FORMAT",
    "PAYLOAD_VERSION",
]
