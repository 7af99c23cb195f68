"""One Settings object, read from PRUNESERVE_* environment variables by the api and the worker.

Unsafe defaults (no API keys, dev-looking keys) are refused outside development mode.
"""

from __future__ import annotations

import hmac
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_KEY = "dev-key"
_WEAK_PREFIXES = (
    "dev",
    "test",
    "changeme",
    "change-me",
    "replace",
    "secret",
    "example",
    "password",
    "key",
)
MIN_KEY_LEN = 16


class UnsafeSettingsError(ValueError):
    """The configuration is only acceptable in development mode."""


class Settings(BaseSettings):
    """Configuration shared by the api and the worker (env prefix PRUNESERVE_)."""

    model_config = SettingsConfigDict(env_prefix="PRUNESERVE_", extra="ignore")

    ENV: str = "production"
    DEV_MODE: bool = False
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    QUEUE: str = "gpu"
    ARTIFACTS_DIR: Path = Path("artifacts")  # the store; with ARTIFACTS_URL, local scratch
    # where artifacts and uploads live: "" (ARTIFACTS_DIR) or s3://bucket/prefix (docs/storage.md)
    ARTIFACTS_URL: str = ""
    S3_ENDPOINT_URL: str = ""  # a non-AWS S3 server (SeaweedFS, MinIO, Ceph RGW); "" for AWS
    S3_PART_BYTES: int = Field(64 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024**3)
    # s3 downloads: a redirect to a presigned URL valid PRESIGN_TTL_S, or streamed by the API
    ARTIFACT_DOWNLOAD: Literal["redirect", "stream"] = "redirect"
    PRESIGN_TTL_S: int = Field(300, gt=0, le=7 * 24 * 3600)
    MODELS_DIR: Path = Path("models")
    DATA_DIR: Path = Path("data")  # the one default: the worker and `pruneserve prune` read it
    # local lm-eval task directories (<name>/ with a task YAML and its data) that jobs may name
    # in evaluation.tasks, beside the shipped ones; nothing outside it is ever read
    TASKS_DIR: Path = Path("tasks")
    UPLOADS_DIR: Path | None = None
    API_KEYS: str = ""
    MAX_UPLOAD_BYTES: int = 100 * 1024 * 1024
    MAX_BODY_BYTES: int = 64 * 1024  # JSON bodies; uploads have MAX_UPLOAD_BYTES
    MAX_HEADER_BYTES: int = 16 * 1024  # all request headers together
    MAX_AUTH_HEADER_BYTES: int = 1024
    # seconds to wait for the next part of a request body before answering 408 and closing
    BODY_TIMEOUT_S: float = Field(30.0, gt=0)
    METRICS_TOKEN: str = ""  # /metrics needs `Authorization: Bearer <it>`; unset: /metrics is 404
    MAX_CALIBRATION_TOKENS: int = 128 * 2048
    PLAN_DEVICES: str = "1x80GiB"  # the workers' devices a dry run plans for (COUNTxSIZE)
    MAX_TRAIN_TOKENS: int = 2**28  # steps x batch_size x seqlen of one training stage
    JOB_TIME_LIMIT_S: int = 6 * 3600
    VISIBILITY_TIMEOUT_S: int | None = None
    MAX_ATTEMPTS: int = 3
    HEARTBEAT_S: float = 5.0
    REDIS_RETRY_S: float = 120.0  # a worker retries job writes this long through a Redis outage
    IDEMPOTENCY_TTL_S: int = 24 * 3600
    MAX_EVENTS: int = 2000
    API_WORKERS: int = 1  # uvicorn processes of `pruneserve api` (--workers overrides)
    API_ACCESS_LOG: bool = True  # one log line per request (--no-access-log overrides)
    FAST_POLL: bool = True  # GET /v1/jobs/{id} from a per-job render cache (service/fast_poll.py)
    ARTIFACT_TTL_DAYS: float | None = None  # ended jobs older than this are deleted; None: kept
    RETENTION_SWEEP_S: float = 300.0  # how often a worker sweeps expired and deleted jobs

    @field_validator("PLAN_DEVICES")
    @classmethod
    def _plan_devices(cls, value: str) -> str:
        from service.planner.devices import parse_devices

        parse_devices(value)  # a ValueError names what is allowed
        return value

    @field_validator("ARTIFACT_TTL_DAYS", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ARTIFACTS_URL")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        bucket = value.removeprefix("s3://").partition("/")[0]
        if value and (not value.startswith("s3://") or len(bucket) < 3):
            raise ValueError("PRUNESERVE_ARTIFACTS_URL must be empty or s3://<bucket>[/<prefix>]")
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.UPLOADS_DIR is None:
            self.UPLOADS_DIR = self.ARTIFACTS_DIR / "uploads"
        if self.VISIBILITY_TIMEOUT_S is None:
            self.VISIBILITY_TIMEOUT_S = self.JOB_TIME_LIMIT_S + 3600
        if self.VISIBILITY_TIMEOUT_S <= self.JOB_TIME_LIMIT_S and not self.is_dev:
            raise UnsafeSettingsError(
                "PRUNESERVE_VISIBILITY_TIMEOUT_S must exceed PRUNESERVE_JOB_TIME_LIMIT_S, "
                "or a long job is delivered twice"
            )
        if self.MAX_ATTEMPTS < 1:
            raise UnsafeSettingsError("PRUNESERVE_MAX_ATTEMPTS must be >= 1")
        if self.ARTIFACT_TTL_DAYS is not None and not self.ARTIFACT_TTL_DAYS > 0:
            raise UnsafeSettingsError(
                "PRUNESERVE_ARTIFACT_TTL_DAYS must be > 0 days (unset it to keep jobs forever)"
            )
        if not self.RETENTION_SWEEP_S > 0:
            raise UnsafeSettingsError("PRUNESERVE_RETENTION_SWEEP_S must be > 0 seconds")
        return self

    @property
    def is_dev(self) -> bool:
        return self.DEV_MODE or self.ENV.lower() in ("dev", "development")

    @property
    def jobs_dir(self) -> Path:
        return self.ARTIFACTS_DIR / "jobs"

    @cached_property
    def api_keys(self) -> dict[str, str]:
        """key -> tenant, parsed from `key:tenant,...` or a file with one `key:tenant` a line."""
        raw = self.API_KEYS.strip()
        looks_like_path = ":" not in raw or raw.startswith(("/", "./"))
        if raw and looks_like_path and Path(raw).is_file():
            raw = Path(raw).read_text()
        keys: dict[str, str] = {}
        for item in raw.replace("\n", ",").split(","):
            item = item.strip()
            if not item or item.startswith("#"):
                continue
            key, sep, tenant = item.partition(":")
            if not sep or not key.strip() or not tenant.strip():
                raise UnsafeSettingsError(
                    "PRUNESERVE_API_KEYS entries must look like key:tenant "
                    "(comma-separated, or one a line in a file)"
                )
            keys[key.strip()] = tenant.strip()
        if not keys and self.is_dev:
            keys[DEV_KEY] = "dev"
        return keys

    def check_api_safety(self) -> None:
        """Raise UnsafeSettingsError when the api would run with unsafe keys outside dev mode."""
        if self.is_dev:
            return
        if not self.api_keys:
            raise UnsafeSettingsError(
                "PRUNESERVE_API_KEYS is empty; set key:tenant pairs (or a file path), "
                "or set PRUNESERVE_ENV=development for a local dev key"
            )
        token = self.METRICS_TOKEN
        if token and (len(token) < MIN_KEY_LEN or token.lower().startswith(_WEAK_PREFIXES)):
            raise UnsafeSettingsError(
                f"PRUNESERVE_METRICS_TOKEN needs >= {MIN_KEY_LEN} random characters, not starting "
                f"with {', '.join(_WEAK_PREFIXES)}; set PRUNESERVE_ENV=development to allow it"
            )
        for key in self.api_keys:
            lowered = key.lower()
            if len(key) < MIN_KEY_LEN or lowered.startswith(_WEAK_PREFIXES):
                raise UnsafeSettingsError(
                    f"API key {key[:4]}... looks like a development key (needs >= {MIN_KEY_LEN} "
                    f"random characters, not starting with {', '.join(_WEAK_PREFIXES)}); "
                    "set PRUNESERVE_ENV=development to allow it"
                )

    def tenant_for(self, key: str) -> str | None:
        """Constant-time lookup of the tenant owning `key`."""
        found = None
        for known, tenant in self.api_keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                found = tenant
        return found
