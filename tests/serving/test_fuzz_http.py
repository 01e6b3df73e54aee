"""Generated request bodies against every project's v1 predict, v1 explain and v2 infer of the
session's servers: well-formed rows and broken ones (wrong types, digits of other scripts,
huge numbers, NaN and infinity, nested objects, missing and extra fields, empty and oversized
instance lists, bodies that are not JSON). No answer may be a 5xx, a 4xx names its problem,
and the server stays ready. Bounded (`MAX_EXAMPLES` per route and project) and derandomized,
so every run sends the same bodies."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.core.projects import get_spec
from components.core.spec import Column, ProjectSpec
from serving.inputs import MAX_EXPLAIN_INSTANCES, MAX_INSTANCES
from tests.serving.support import CANDIDATES
from tests.support.servers import ServerProcess

MAX_EXAMPLES = {"predict": 150, "infer": 150, "explain": 40}
"""Explaining a valid row takes tenths of a second: fewer examples there keep the test short."""
Body = tuple[bytes, dict[str, str]]

JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.text(st.characters(categories=("Nd", "No", "Zs")), min_size=1, max_size=6),
    st.sampled_from(
        ["NaN", "nan", "Infinity", "-inf", "1e999", "1_000", " 12 ", "", "0x1A", "\u0661\u0662"]
    ),
    st.recursive(
        st.one_of(st.integers(), st.text(max_size=3), st.none()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=6,
    ),
)


ZEROS = ("\u0660", "\u06f0", "\u0966", "\u09e6", "\uff10")
"""The digit zero of scripts whose digits Python's float() reads: Arabic-Indic, Extended
Arabic-Indic, Devanagari, Bengali, fullwidth."""


def in_script(value: float, zero: str) -> str:
    """A valid number written with another script's digits ("١٢٣" for 123)."""
    return str(value).translate({ord(str(d)): chr(ord(zero) + d) for d in range(10)})


def valid_value(column: Column, blank: bool = True) -> st.SearchStrategy[Any]:
    """A value the column takes; `blank`: null too, when the column is nullable."""
    low = column.minimum if column.minimum is not None else -1e6
    high = column.maximum if column.maximum is not None else 1e6
    values: st.SearchStrategy[Any]
    if column.dtype == "int":
        values = st.integers(math.ceil(low), math.floor(high))
    elif column.dtype == "float":
        values = st.floats(low, high, allow_nan=False)
    elif column.dtype == "category":
        values = st.sampled_from(column.categories or ("x",))
    elif column.dtype == "date":
        values = st.dates().map(lambda d: d.isoformat())
    else:
        values = st.text(min_size=1, max_size=20)
    return st.one_of(values, st.none()) if column.nullable and blank else values


def valid_rows(spec: ProjectSpec) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({c.name: valid_value(c) for c in spec.columns})


def rows(spec: ProjectSpec) -> st.SearchStrategy[dict[str, Any]]:
    """A valid row, or one with fields broken, left out or added."""
    valid = valid_rows(spec)

    numeric = {c.name for c in spec.columns if c.dtype in ("int", "float")}

    @st.composite
    def broken(draw: st.DrawFn) -> dict[str, Any]:
        row = dict(draw(valid))
        for name in draw(st.lists(st.sampled_from(spec.input_columns), max_size=3)):
            change = draw(st.sampled_from(["junk", "drop", "digits"]))
            if change == "digits" and name in numeric and row.get(name) is not None:
                row[name] = in_script(row[name], draw(st.sampled_from(ZEROS)))
            elif change == "drop":
                row.pop(name, None)
            else:
                row[name] = draw(JUNK)
        row.update(draw(st.dictionaries(st.text(max_size=8), JUNK, max_size=2)))
        return row

    @st.composite
    def other_digits(draw: st.DrawFn) -> dict[str, Any]:
        """A valid row but for one number written in another script's digits."""
        row = dict(draw(valid))
        name = draw(st.sampled_from(sorted(numeric)))
        number = draw(valid_value(spec.column(name), blank=False))
        row[name] = in_script(number, draw(st.sampled_from(ZEROS)))
        return row

    return st.one_of(valid, broken(), other_digits())


def as_json(value: Any) -> Body:
    # json.dumps writes NaN and Infinity, as many clients do
    return json.dumps(value).encode(), {"Content-Type": "application/json"}


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def not_json() -> st.SearchStrategy[Body]:
    deep = st.integers(1, 5000).map(lambda n: nested(n).encode())
    huge = st.integers(4000, 6000).map(lambda n: ("9" * n).encode())  # past int's digit limit
    content_type = st.sampled_from(["application/json", "text/plain", "application/x-www-form"])
    return st.tuples(
        st.one_of(st.binary(max_size=64), deep, huge, st.just(b'{"instances": [')),
        content_type.map(lambda t: {"Content-Type": t}),
    )


def deep_fields(spec: ProjectSpec, v2: bool) -> st.SearchStrategy[Body]:
    """A field whose value is a list nested up to thousands deep (json.dumps cannot write it)."""

    def body(name: str, depth: int) -> Body:
        value = nested(depth)
        text = (
            f'{{"inputs": [{{"name": "{name}", "shape": [1], "datatype": "FP64", "data": {value}}}]}}'
            if v2
            else f'{{"instances": [{{"{name}": {value}}}]}}'
        )
        return text.encode(), {"Content-Type": "application/json"}

    return st.builds(body, st.sampled_from(spec.input_columns), st.integers(1, 3000))


def v1_bodies(spec: ProjectSpec, limit: int) -> st.SearchStrategy[Body]:
    instances = st.lists(st.one_of(rows(spec), JUNK), max_size=3)
    oversized = st.integers(limit + 1, limit + 3).map(lambda n: [{}] * n)
    return st.one_of(
        st.fixed_dictionaries(
            {"instances": st.lists(valid_rows(spec), min_size=1, max_size=2)}
        ).map(as_json),
        st.fixed_dictionaries({"instances": instances}).map(as_json),
        st.fixed_dictionaries({"instances": st.one_of(oversized, JUNK)}).map(as_json),
        JUNK.map(as_json),
        deep_fields(spec, v2=False),
        not_json(),
    )


def v2_bodies(spec: ProjectSpec) -> st.SearchStrategy[Body]:
    datatypes = st.sampled_from(["FP64", "INT64", "BYTES", "BOOL", "FP32", "UINT8", "FP16", "X"])
    output_names = ["churn_probability", "churn", "risk_band", "recommended_plan", "price"]

    @st.composite
    def well_formed(draw: st.DrawFn) -> dict[str, Any]:
        table = draw(st.lists(rows(spec), min_size=1, max_size=3))
        inputs = []
        for name in spec.input_columns:
            data = [row.get(name) for row in table]
            text = any(isinstance(v, str) for v in data)
            inputs.append(
                {
                    "name": name,
                    "shape": [len(data)],
                    "datatype": "BYTES" if text else draw(datatypes),
                    "data": data,
                }
            )
        body: dict[str, Any] = {"inputs": draw(st.permutations(inputs))}
        if draw(st.booleans()):  # outputs asked for by name, as JSON or binary data
            names = st.one_of(st.sampled_from(output_names), st.text(max_size=6))
            binary = st.fixed_dictionaries({"binary_data": st.booleans()})
            body["outputs"] = draw(
                st.lists(st.fixed_dictionaries({"name": names, "parameters": binary}), max_size=3)
            )
        return body

    loose_input = st.fixed_dictionaries(
        {
            "name": st.one_of(st.sampled_from(spec.input_columns), st.text(max_size=8)),
            "shape": st.lists(st.integers(-2, MAX_INSTANCES + 2), max_size=3),
            "datatype": datatypes,
            "data": st.one_of(st.lists(JUNK, max_size=4), JUNK),
        }
    )
    return st.one_of(
        well_formed().map(as_json),
        st.fixed_dictionaries({"inputs": st.lists(loose_input, max_size=12)}).map(as_json),
        JUNK.map(as_json),
        deep_fields(spec, v2=True),
        not_json(),
    )


ROUTES: dict[str, tuple[str, Callable[[ProjectSpec], st.SearchStrategy[Body]]]] = {
    "predict": (":predict", lambda spec: v1_bodies(spec, MAX_INSTANCES)),
    "explain": (":explain", lambda spec: v1_bodies(spec, MAX_EXPLAIN_INSTANCES)),
    "infer": ("/infer", v2_bodies),
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("project", list(CANDIDATES))
def test_generated_bodies_never_answer_5xx_and_the_server_stays_ready(
    project: str, route: str, servers: dict[str, ServerProcess]
) -> None:
    server = servers[project]
    suffix, bodies = ROUTES[route]
    prefix = "/v2/models/" if route == "infer" else "/v1/models/"
    url = f"{server.url}{prefix}{project}{suffix}"
    seen: dict[int, int] = {}

    with httpx.Client(timeout=60.0) as client:

        @settings(
            max_examples=MAX_EXAMPLES[route],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(bodies(get_spec(project)))
        def check(body: Body) -> None:
            content, headers = body
            answer = client.post(url, content=content, headers=headers)
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, (content[:500], answer.text[:1000])
            if answer.status_code >= 400:
                assert answer.json()["error"], answer.text

        check()
    assert server.status("/v2/health/ready") == 200
    assert sum(seen.values()) >= MAX_EXAMPLES[route] // 2, seen
    assert seen.get(200, 0) and seen.get(400, 0), seen  # both kinds of body were sent
