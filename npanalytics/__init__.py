"""npanalytics: where Kubernetes NodePort traffic went, and why.

The layers, with imports flowing one way (see the developers' guide):
collectors (I/O) -> schema'd frames -> analysis -> plotting -> widgets/report/CLI.
"""

from __future__ import annotations

from .exceptions import (
    CollectorError,
    DatasetError,
    LabError,
    NpaError,
    NpaWarning,
    ParseError,
    ParseWarning,
    SchemaError,
)
from .schemas import SCHEMAS, validate_frame

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "CollectorError",
    "DatasetError",
    "LabError",
    "NpaError",
    "NpaWarning",
    "ParseError",
    "ParseWarning",
    "SchemaError",
    "SCHEMAS",
    "validate_frame",
]
