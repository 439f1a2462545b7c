"""From radar files to archive frames: discover, decode, check, batch-commit, quarantine."""

from pipelines.ingest.decode import DecodeOutcome, decode_file, decode_outcome
from pipelines.ingest.discover import discover
from pipelines.ingest.run import IngestResult, ingest, ingest_outcomes

__all__ = [
    "DecodeOutcome",
    "IngestResult",
    "decode_file",
    "decode_outcome",
    "discover",
    "ingest",
    "ingest_outcomes",
]
