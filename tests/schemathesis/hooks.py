"""Teach schemathesis the one rule of the API that JSON Schema cannot state.

A new user's credit_balance must not exceed its credit_limit (a rule across two fields;
the OpenAPI document states it in the operation's description, and the server refuses a
create that breaks it with 400). Generated requests that create a user keep to it: the
generators' filters drop the others, and the coverage phase, which builds its cases from
the schema's examples without those filters, has the balance lowered to the limit before
the call. So a refusal of a schema-valid create is a real failure.
"""

import schemathesis
from hypothesis.internal import lambda_sources

# Debian's CPython 3.11 can fail to parse source with "AST constructor recursion depth
# mismatch" (python/cpython#106905). Hypothesis parses whole modules only to name lambdas in
# strategy descriptions, and that failed runs of the coverage phase with a runtime error,
# not a finding. The descriptions are cosmetic, so lambdas go unnamed here.
_original_lambda_description = lambda_sources._lambda_description


def _lambda_description(f, *args, **kwargs):
    try:
        return _original_lambda_description(f, *args, **kwargs)
    except SystemError:
        return "lambda: <source not parsed>"


lambda_sources._lambda_description = _lambda_description


def _keeps_balance_within_limit(values):
    if not isinstance(values, dict):
        return True
    limit, balance = values.get("credit_limit"), values.get("credit_balance")
    if isinstance(limit, str) and isinstance(balance, str):
        try:
            limit, balance = int(limit), int(balance)
        except ValueError:
            return True
    if isinstance(limit, int) and isinstance(balance, int):
        return balance <= limit
    return True


@schemathesis.hook
def filter_body(ctx, body):
    operation = ctx.operation
    if operation is not None and operation.method.upper() == "POST" and operation.path == "/v1/users":
        return _keeps_balance_within_limit(body)
    return True


@schemathesis.hook
def filter_query(ctx, query):
    operation = ctx.operation
    if operation is None or operation.path != "/user" or not isinstance(query, dict):
        return True
    # The parameters as one exploded object (`user`), or already flattened.
    values = query.get("user", query)
    if isinstance(values, dict) and values.get("type") == "C":
        return _keeps_balance_within_limit(values)
    return True


def _lower_balance_to_limit(values):
    """Lowers a create's credit_balance to its credit_limit where it exceeds it."""
    if isinstance(values, dict) and not _keeps_balance_within_limit(values):
        values["credit_balance"] = values["credit_limit"]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    operation = case.operation
    if operation.method.upper() == "POST" and operation.path == "/v1/users":
        _lower_balance_to_limit(case.body)
    elif operation.path == "/user" and isinstance(case.query, dict):
        values = case.query.get("user", case.query)
        if isinstance(values, dict) and values.get("type") == "C":
            _lower_balance_to_limit(values)
