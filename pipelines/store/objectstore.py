"""Object storage settings, resolved once for every client: Icechunk (the stores) and pyarrow's
filesystems (training run folders, which Ray Train writes through pyarrow)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.config import ObjectStorageConfig


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None
    region: str | None
    allow_http: bool
    force_path_style: bool
    access_key_id: str | None  # None: the SDK's own chain (environment, profile, role)
    secret_access_key: str | None

    @classmethod
    def resolve(cls, options: ObjectStorageConfig | None) -> S3Settings:
        """The configured values, else the standard AWS_* variables."""
        o = options or ObjectStorageConfig()
        endpoint = o.endpoint_url or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        allow_http = o.allow_http
        if allow_http is None:
            allow_http = bool(endpoint and endpoint.startswith("http://"))
        keys = o.access_key_id and o.secret_access_key
        return cls(
            endpoint_url=endpoint,
            region=o.region or _env("AWS_REGION", "AWS_DEFAULT_REGION"),
            allow_http=allow_http,
            force_path_style=o.force_path_style,
            access_key_id=o.access_key_id if keys else None,
            secret_access_key=o.secret_access_key if keys else None,
        )


def split_url(location: str) -> tuple[str, str, str]:
    """'s3://bucket/a/b' -> ('s3', 'bucket', 'a/b')."""
    scheme, rest = location.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    return scheme, bucket, prefix.strip("/")


def pyarrow_filesystem(location: str | Path, options: ObjectStorageConfig | None = None):
    """(pyarrow filesystem, path inside it) for a folder or an s3:// URL."""
    import pyarrow.fs

    text = str(location)
    if "://" not in text:
        return pyarrow.fs.LocalFileSystem(), str(Path(text).resolve())
    scheme, bucket, prefix = split_url(text)
    if scheme != "s3":
        raise ValueError(f"{text}: only local folders and s3:// URLs are supported here")
    s = S3Settings.resolve(options)
    kwargs: dict[str, object] = {"region": s.region, "force_virtual_addressing": False}
    if s.endpoint_url:  # pyarrow does not read AWS_ENDPOINT_URL itself
        parts = urlsplit(s.endpoint_url)
        kwargs["endpoint_override"] = parts.netloc or s.endpoint_url
        kwargs["scheme"] = parts.scheme or ("http" if s.allow_http else "https")
    if s.access_key_id:
        kwargs["access_key"], kwargs["secret_key"] = s.access_key_id, s.secret_access_key
    fs = pyarrow.fs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})
    return fs, f"{bucket}/{prefix}".rstrip("/")
