"""The bounds of every value a request carries, declared once.

A route that takes `Id`, `Amount`, `Title`, `Email` or `Description`, in
its path, query or body, rejects what the database would refuse with a 422
that says why, before a query runs: integers beyond bigint, NUL characters
(PostgreSQL text cannot hold them), empty or overlong text. The same bounds
appear in the OpenAPI document, so clients and fuzzers see them too.
"""

from typing import Annotated

from annotated_types import Ge, Le
from pydantic import BeforeValidator, StringConstraints

# Within bigint (2**63 - 1), and the largest integer that JSON numbers hold
# exactly in every client (JavaScript's Number.MAX_SAFE_INTEGER). Near 2**63
# floats are 1024 apart, and the OpenAPI document's bounds are read, and
# written by FastAPI, as floats: such a bound would not say what it means.
INTEGER_MAX = 2**53 - 1
NO_NUL = r"^[^\x00]*$"


def json_integer(value: object) -> object:
    """An integer as JSON Schema means it: 2 and 2.0, but not true, not "2".

    For bodies; a path or a query carries text, which FastAPI converts.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        # ValueError: pydantic turns it into a 422, and a TypeError into a 500.
        raise ValueError("Input should be a JSON integer")  # noqa: TRY004
    return value


# A row's id, in a path or a query: identity columns count from 1.
Id = Annotated[int, Ge(1), Le(INTEGER_MAX)]
# A price or a quantity in a body: a bigint, never negative.
Amount = Annotated[int, Ge(0), Le(INTEGER_MAX), BeforeValidator(json_integer)]
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=NO_NUL),
]
# An address with one @ and no spaces, as its OpenAPI pattern says. Whether
# it is someone's is for a confirmation mail to find out, not for a
# validator that refuses what the document promises (reserved domains).
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$"),
]
Description = Annotated[
    str,
    StringConstraints(max_length=2000, pattern=NO_NUL),
]
