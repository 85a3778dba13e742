"""Loading config.yml the way `nameko run --config` does, for code outside a container
(invoke tasks, tests, the standalone RPC proxy)."""
import os
from pathlib import Path

import yaml
from nameko.cli.main import setup_yaml_parser

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = PROJECT_ROOT / "config.yml"


def load(path=None, **overrides):
    """Read config.yml with ${VAR:default} substitution from the environment."""
    setup_yaml_parser()
    with open(path or os.environ.get("EVENTPOST_CONFIG", DEFAULT_PATH)) as f:
        config = yaml.safe_load(f)
    config.update(overrides)
    return config


def setting(config, key, default=None):
    """A config value, with empty strings treated as unset (``${SMTP_HOST:}``)."""
    value = config.get(key)
    return default if value in (None, "") else value


def flag(config, key, default):
    """A true/false setting: "false", "0" and "no" (any case) are false."""
    return str(setting(config, key, default)).lower() not in ("false", "0", "no")


def public_url(config):
    """The base of every link in emails and feeds (API.md: ``PUBLIC_URL``, by default
    ``http://<WEB_SERVER_ADDRESS>``), without a trailing slash."""
    address = setting(config, "WEB_SERVER_ADDRESS", "127.0.0.1:8000")
    return setting(config, "PUBLIC_URL", f"http://{address}").rstrip("/")
