"""npanalytics: where Kubernetes NodePort traffic went, and why.

The layers, with imports flowing one way (see the developers' guide):
collectors (I/O) -> schema'd frames -> analysis -> plotting -> widgets/report/CLI.
"""

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
from .collectors._source import ParseReport
from .datasets import Dataset, list_datasets, load_dataset
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
    "ParseReport",
    "Dataset",
    "list_datasets",
    "load_dataset",
    "SCHEMAS",
    "validate_frame",
]
