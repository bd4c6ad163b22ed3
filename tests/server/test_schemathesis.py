"""Property-based requests generated from the OpenAPI document: no server errors, ever."""

from __future__ import annotations

from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from .conftest import LiveServer, auth, make_site


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_site(tmp_path_factory.mktemp("fuzz-home"))


@pytest.fixture(scope="module")
def fuzz_live(fuzz_site) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    server = LiveServer(fuzz_site.env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_live: LiveServer):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{fuzz_live.url}/openapi.json")


def test_no_generated_request_causes_a_server_error(api_schema, fuzz_site) -> None:  # type: ignore[no-untyped-def]
    """Every operation, 15 valid and 15 invalid generated requests each, sent to a real uvicorn as an admin."""
    headers = auth(fuzz_site.tokens["root"])
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) > 25
    failures: list[str] = []
    statuses: list[int] = []
    for op, mode in [(op, mode) for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=60)
            statuses.append(response.status_code)

        try:
            run()
        except Unsatisfiable:
            continue  # no invalid input exists for this operation (no parameters, no body)
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    # the requests really went out, and reached past validation into the handlers
    assert len(statuses) > 200
    assert {200, 201, 404, 422} <= set(statuses), sorted(set(statuses))
