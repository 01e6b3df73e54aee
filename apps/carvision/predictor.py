"""The running KServe predictor over its v1 protocol: the price of one car and the reasons for it.
Every number the estimator shows comes from here; when the predictor cannot answer, the caller
gets an error that says why, never a number from elsewhere."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from apps.carvision.settings import Settings

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 60.0
"""Explanations are permutation SHAP here, tenths of a second per car; a loaded server is slower."""


class PredictorUnavailable(RuntimeError):
    """The predictor did not answer, or answered without a model to serve."""


class RequestRefused(ValueError):
    """The predictor refused the car (400): its message and its problems, as it sent them."""

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


@dataclass(frozen=True)
class Reasons:
    """One car's explanation: each field's contribution to the price, adding up with the base
    value to the price."""

    output: float
    base_value: float
    contributions: dict[str, float]
    method: str

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        """The fields that moved the price most, largest first."""
        ranked = sorted(self.contributions.items(), key=lambda item: -abs(item[1]))
        return ranked[:count]


class Predictor:
    """A client of one predictor: `model` is the name in its routes (the project)."""

    def __init__(self, settings: Settings, model: str) -> None:
        self.url = settings.predictor_url
        self.model = model
        self._headers = {"Content-Type": "application/json"}
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"

    def _post(self, route: str, car: Mapping[str, Any]) -> dict[str, Any]:
        address = f"{self.url}/v1/models/{self.model}:{route}"
        try:
            response = requests.post(
                address,
                json={"instances": [dict(car)]},
                headers=self._headers,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except requests.ConnectionError:
            raise PredictorUnavailable(
                f"the predictor at {self.url} is not answering (nothing listens there, or the "
                "network refuses): is it running?"
            ) from None
        except requests.Timeout:
            raise PredictorUnavailable(
                f"the predictor at {self.url} did not answer within {READ_TIMEOUT_S:g} s"
            ) from None
        return self._answer(response)

    def _answer(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        message = str(body.get("error") or response.reason or "")
        status = response.status_code
        if status == 200:
            return body
        if status == 400:
            raise RequestRefused(message, list(body.get("problems") or []))
        if status == 401:
            raise PredictorUnavailable(
                "the predictor requires an API token and refused this one (or none was set): "
                "set MLOPS_API_TOKEN or MLOPS_API_TOKEN_FILE"
            )
        if status == 404:
            raise PredictorUnavailable(
                f"the predictor at {self.url} serves no model named {self.model!r}: {message}"
            )
        if status == 503:
            raise PredictorUnavailable(
                f"the predictor at {self.url} has no model ready (loading, or none to load): "
                f"{message}"
            )
        raise PredictorUnavailable(f"the predictor answered {status}: {message}")

    def price(self, car: Mapping[str, Any], field: str) -> float:
        """The served price of one car (`field`: the price's name in the answer)."""
        [prediction] = self._post("predict", car)["predictions"]
        value = float(prediction[field])
        if not math.isfinite(value):
            raise PredictorUnavailable(f"the predictor answered a {field} of {value}")
        return value

    def reasons(self, car: Mapping[str, Any]) -> Reasons:
        body = self._post("explain", car)
        [explanation] = body["explanations"]
        return Reasons(
            output=float(explanation["output"]),
            base_value=float(explanation["base_value"]),
            contributions={k: float(v) for k, v in explanation["contributions"].items()},
            method=str(body.get("method", "")),
        )

    def served_version(self) -> str:
        """The model version the predictor serves ("unknown" when it does not say)."""
        try:
            response = requests.get(
                f"{self.url}/v2/models/{self.model}",
                headers=self._headers,
                timeout=(CONNECT_TIMEOUT_S, 10.0),
            )
            versions = response.json().get("versions") if response.ok else None
        except (requests.RequestException, ValueError):
            return "unknown"
        return str(versions[0]) if versions else "unknown"
