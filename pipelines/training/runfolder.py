"""A training run's folder, ``training.scaling.storage``/RUN, on a local disk or object storage.

Ray Train writes its checkpoints there (through a pyarrow filesystem); motioncast keeps the run's
manifest and its windows beside them, so that any machine that continues the run, on any node,
reads exactly what the run began with. Ray's own logs stay on the driver's disk: in the folder
when it is local, else under the system's temporary folder (the path is logged).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs

from pipelines.config import ObjectStorageConfig
from pipelines.store.objectstore import pyarrow_filesystem
from pipelines.store.repository import is_local


@dataclass(frozen=True)
class RunFolder:
    storage: str  # training.scaling.storage: a folder or an s3:// URL
    name: str
    options: ObjectStorageConfig | None = None

    @property
    def location(self) -> str:
        """Where the run lies, for people: a local path or a URL."""
        if is_local(self.storage):
            return str(Path(self.storage).resolve() / self.name)
        return f"{self.storage.rstrip('/')}/{self.name}"

    def ray_storage(self) -> tuple[str, pyarrow.fs.FileSystem]:
        """RunConfig's storage_path (inside the filesystem) and storage_filesystem."""
        fs, root = pyarrow_filesystem(self.storage, self.options)
        return root, fs

    @property
    def log_dir(self) -> Path:
        """A local folder for Ray's logs of this run."""
        if is_local(self.storage):
            return Path(self.location)
        return Path(tempfile.gettempdir()) / "motioncast-runs" / self.name

    def _file(self, name: str) -> tuple[pyarrow.fs.FileSystem, str]:
        root, fs = self.ray_storage()
        return fs, f"{root}/{self.name}/{name}"

    def read_json(self, name: str) -> Any | None:
        """A JSON file of the run, or None when it has none."""
        fs, path = self._file(name)
        if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
            return None
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.read().decode())

    def write_json(self, name: str, data: Any) -> None:
        fs, path = self._file(name)
        if isinstance(fs, pyarrow.fs.LocalFileSystem):  # object storage has no folders to make
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as stream:  # one PUT on object storage: whole or none
            stream.write((json.dumps(data, indent=1) + "\n").encode())
