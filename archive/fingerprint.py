"""Code identity: two sources that differ only in comments, docstrings or layout are the same
candidate."""

import ast
import hashlib


def normalised_source(code: str) -> str:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting
        return code.strip()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    try:
        return ast.unparse(tree)
    except (ValueError, RecursionError):  # an integer literal too long to print (over 4300 digits)
        return code.strip()


def code_hash(code: str) -> str:
    return hashlib.sha256(normalised_source(code).encode()).hexdigest()
