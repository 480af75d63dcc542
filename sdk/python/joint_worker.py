"""joint worker protocol for Python: serve joint functions from one long-lived process.

A definition names the worker once per function::

    - name: enrich
      worker: [python3, ./steps.py]

and ``steps.py`` ends with::

    from joint_worker import serve

    def enrich(order, ctx):
        return {**order, "region": "eu"}

    serve({"enrich": enrich})

Each function gets the input (any JSON value) and a ``Context`` (``run``, ``instance``,
``function``, ``cloud``, ``attempt``, ``vars``) and returns any JSON value. Raise
``FunctionError(kind, message)`` to fail with your own error kind (catch routes and retry filters
match on it); any other exception fails with kind ``HandlerError``. ``print`` goes to stderr —
stdout carries the protocol. Standard library only; the protocol is in docs/workers.md.
"""

import json
import sys
import traceback

__all__ = ["Context", "FunctionError", "serve"]


class FunctionError(Exception):
    """A function's failure with a stable kind."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Context:
    """What a function learns about its invocation."""

    def __init__(self, d):
        self.run = d.get("run", "")
        self.instance = d.get("instance", "")
        self.function = d.get("function", "")
        self.cloud = d.get("cloud", "")
        self.attempt = d.get("attempt", 1)
        self.vars = d.get("vars", {})

    def __repr__(self):
        return f"Context(instance={self.instance!r}, attempt={self.attempt})"


def _answer(out, message):
    out.write(json.dumps(message, separators=(",", ":")) + "\n")
    out.flush()


def serve(functions, stdin=None, stdout=None):
    """Answer requests from joint until stdin closes. ``functions`` maps names to callables."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    # Anything printed by user code goes to stderr: stdout belongs to the protocol.
    if stdout is None:
        sys.stdout = sys.stderr
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            rid = req["id"]
        except (ValueError, KeyError, TypeError) as e:
            print(f"joint_worker: ignoring a request that is not JSON with an id: {e}", file=sys.stderr)
            continue
        name = req.get("function", "")
        fn = functions.get(name)
        if fn is None:
            _answer(out, {"id": rid, "error": {
                "kind": "HandlerNotFound",
                "message": f"this worker has no function {name!r} (it has: {', '.join(sorted(functions))})",
            }})
            continue
        try:
            result = fn(req.get("input"), Context(req.get("context") or {}))
            _answer(out, {"id": rid, "output": result})
        except FunctionError as e:
            _answer(out, {"id": rid, "error": {"kind": e.kind, "message": e.message}})
        except Exception as e:  # noqa: BLE001 - every failure is reported, never lost
            traceback.print_exc(file=sys.stderr)
            _answer(out, {"id": rid, "error": {"kind": "HandlerError", "message": f"{type(e).__name__}: {e}"}})
