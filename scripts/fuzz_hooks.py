"""Schemathesis hooks for scripts/fuzz-command-api.sh.

`positive_data_acceptance` is told (in schemathesis.toml) to let 422 through, because some
well-formed requests are refused by design with 422. This check takes its place for 422s: a
schema-valid request may be refused only for one of those reasons, never because the server's
validation is stricter than the OpenAPI document.
"""

import json
import os

import schemathesis

# Scope -> a bearer token of a role holding it (set by scripts/fuzz-command-api.sh).
TOKENS = json.loads(os.environ.get("MILESTONE_FUZZ_TOKENS", "{}"))


def _scope(case):
    security = case.operation.definition.raw.get("security") or []
    scopes = [scope for requirement in security for scope in requirement.get("bearer", [])]
    return scopes[0] if scopes else None


# Schemathesis's own auth checks (a request without the token, or with a bad one, must be 401)
# know a token set here and leave it out or spoil it themselves.
@schemathesis.auth(refresh_interval=None)
class ScopeToken:
    """Each operation gets a token of a role holding the scope the operation declares."""

    def get(self, case, ctx):
        return TOKENS.get(_scope(case))

    def set(self, case, data, ctx):
        if data:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# Refusals of a well-formed request that the design makes on purpose (README, "REST command API").
BY_DESIGN = {
    # The same Idempotency-Key with a different body; generated keys repeat ("0"), bodies differ.
    "idempotency_key_reused",
    # A payment must equal the order's total, which the document cannot know.
    "amount_mismatch",
    # A return names an order, its SKUs and quantities, and its refund must equal what the
    # accepted lines refund; inspected lines must be the returned ones. The document cannot know
    # the orders and returns that exist.
    "order_not_found",
    "sku_not_ordered",
    "quantity_exceeds_ordered",
    "refund_amount_mismatch",
    "line_not_inspected",
    "line_not_returned",
}

# What Rust's `str::trim` removes (Unicode White_Space); Python's `str.strip` removes other
# characters too.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


def _has_duplicate_skus(body):
    """Distinct SKUs per order (and per return) is the one rule of a body the schema cannot
    state."""
    lines = body.get("lines") if isinstance(body, dict) else None
    if not isinstance(lines, list):
        return False
    skus = [line.get("sku", "").strip(WHITESPACE) for line in lines if isinstance(line, dict)]
    return len(skus) != len(set(skus))


@schemathesis.check
def schema_valid_requests_are_refused_only_by_design(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        problem = json.loads(response.content)
    except ValueError:
        raise AssertionError("a 422 that is not a problem+json document")
    code = problem.get("code")
    if code in BY_DESIGN:
        return None
    if code == "validation_failed" and _has_duplicate_skus(case.body):
        fields = {e.get("field", "") for e in problem.get("errors", [])}
        if all(f.startswith("lines[") and f.endswith("].sku") for f in fields):
            return None
    raise AssertionError(
        f"a schema-valid request was refused with 422 {code}: {problem.get('detail')} "
        f"{problem.get('errors', '')}"
    )
