"""One step of pipeline-commands.yaml: the same functions as steps.py, one process per call."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import steps  # noqa: E402


class Ctx:
    instance = os.environ.get("JOINT_INSTANCE", "")


if __name__ == "__main__":
    fn = getattr(steps, sys.argv[1])
    json.dump(fn(json.load(sys.stdin), Ctx()), sys.stdout)
