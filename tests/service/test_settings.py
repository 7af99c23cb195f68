"""Settings: key parsing, and unsafe defaults refused outside development mode."""

from __future__ import annotations

import pytest

from service.settings import DEV_KEY, Settings, UnsafeSettingsError

STRONG = "f3a9c0d27b1e4f5a8c6d"


def test_no_keys_refused_in_production():
    with pytest.raises(UnsafeSettingsError, match="PRUNESERVE_API_KEYS is empty"):
        Settings(API_KEYS="").check_api_safety()


@pytest.mark.parametrize("key", ["dev-key", "changeme-please-now", "short", "test1234567890abcdef"])
def test_dev_looking_keys_refused_in_production(key):
    with pytest.raises(UnsafeSettingsError, match="development key"):
        Settings(API_KEYS=f"{key}:alice").check_api_safety()


def test_development_mode_gets_a_dev_key():
    s = Settings(ENV="development")
    s.check_api_safety()
    assert s.tenant_for(DEV_KEY) == "dev"


def test_keys_from_string_and_file(tmp_path):
    s = Settings(API_KEYS=f"{STRONG}:alice, {STRONG}x:bob")
    s.check_api_safety()
    assert s.tenant_for(STRONG) == "alice" and s.tenant_for(STRONG + "x") == "bob"
    assert s.tenant_for("nope") is None
    f = tmp_path / "keys"
    f.write_text(f"# comment\n{STRONG}:carol\n")
    assert Settings(API_KEYS=str(f)).api_keys == {STRONG: "carol"}


def test_malformed_keys_refused():
    with pytest.raises(UnsafeSettingsError, match="key:tenant"):
        _ = Settings(API_KEYS="justakey,other").api_keys


def test_env_prefix_and_derived_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNESERVE_ARTIFACTS_DIR", str(tmp_path))
    monkeypatch.setenv("PRUNESERVE_JOB_TIME_LIMIT_S", "100")
    s = Settings()
    assert tmp_path / "uploads" == s.UPLOADS_DIR
    assert s.VISIBILITY_TIMEOUT_S > s.JOB_TIME_LIMIT_S
    assert s.MAX_CALIBRATION_TOKENS == 128 * 2048 and s.MAX_ATTEMPTS == 3


def test_visibility_timeout_must_exceed_time_limit():
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT_S must exceed"):
        Settings(JOB_TIME_LIMIT_S=100, VISIBILITY_TIMEOUT_S=50)


@pytest.mark.parametrize("token", ["short", "REPLACE_ME_with_openssl_rand_hex_16"])
def test_weak_metrics_token_refused_in_production(token):
    with pytest.raises(UnsafeSettingsError, match="PRUNESERVE_METRICS_TOKEN"):
        Settings(API_KEYS=f"{STRONG}:alice", METRICS_TOKEN=token).check_api_safety()


def test_request_limits_have_safe_defaults():
    s = Settings()
    assert s.MAX_BODY_BYTES == 64 * 1024 and s.METRICS_TOKEN == ""
    assert 0 < s.MAX_AUTH_HEADER_BYTES < s.MAX_HEADER_BYTES


@pytest.mark.parametrize("url", ["s3://", "s3://ab", "http://bucket/x", "bucket/prefix"])
def test_artifacts_url_must_name_an_s3_bucket(url):
    with pytest.raises(ValueError, match="PRUNESERVE_ARTIFACTS_URL must be empty or s3://"):
        Settings(ENV="development", ARTIFACTS_URL=url)


def test_s3_part_size_and_download_mode_are_bounded():
    assert (
        Settings(ENV="development", ARTIFACTS_URL="s3://bucket/p").ARTIFACT_DOWNLOAD == "redirect"
    )
    with pytest.raises(ValueError, match="S3_PART_BYTES"):
        Settings(ENV="development", S3_PART_BYTES=1024)
    with pytest.raises(ValueError, match="ARTIFACT_DOWNLOAD"):
        Settings(ENV="development", ARTIFACT_DOWNLOAD="copy")
