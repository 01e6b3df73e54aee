"""What the dashboard reads from its environment. The API token is kept out of every repr,
message and log line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

TRACKING_ENV = "MLFLOW_TRACKING_URI"
PREDICTOR_ENV = "CARVISION_PREDICTOR_URL"
DATA_ENV = "CARVISION_DATA"
TOKEN_ENV = "MLOPS_API_TOKEN"
TOKEN_FILE_ENV = "MLOPS_API_TOKEN_FILE"
DEFAULT_PREDICTOR = "http://127.0.0.1:8080"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable, never a secret."""


@dataclass(frozen=True)
class Settings:
    tracking_uri: str
    """MLflow, where the champion and its evaluation are registered ("" : none)."""
    predictor_url: str
    """The KServe predictor serving the champion, e.g. http://127.0.0.1:8080."""
    data_source: str
    """The listings: a path, an http(s) URL or `synthetic[:ROWS]` ("" : none)."""
    token: str = field(default="", repr=False)
    """The predictor's bearer token ("" : the predictor requires none)."""

    @staticmethod
    def from_env(environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        token = env.get(TOKEN_ENV, "").strip()
        token_file = env.get(TOKEN_FILE_ENV, "").strip()
        if not token and token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise SettingsError(
                    f"{TOKEN_FILE_ENV}: cannot read {token_file} ({exc.strerror})"
                ) from None
        return Settings(
            tracking_uri=env.get(TRACKING_ENV, "").strip(),
            predictor_url=(env.get(PREDICTOR_ENV, "").strip() or DEFAULT_PREDICTOR).rstrip("/"),
            data_source=env.get(DATA_ENV, "").strip(),
            token=token,
        )

    def describe(self) -> list[tuple[str, str]]:
        """Each setting as the page shows it: the token only as set or not."""
        return [
            (TRACKING_ENV, self.tracking_uri or "not set"),
            (PREDICTOR_ENV, self.predictor_url),
            (DATA_ENV, self.data_source or "not set"),
            (f"{TOKEN_ENV} / {TOKEN_FILE_ENV}", "set" if self.token else "not set"),
        ]
