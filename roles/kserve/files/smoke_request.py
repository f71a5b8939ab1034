"""KServe smoke request, run inside the predictor pod (python3 -c SCRIPT NAME [BASE_URL]):
one V1 :predict and one V2 /infer call on the local model server; prints a one-line JSON
verdict and exits non-zero when either protocol fails. Standard library only (the pod
has no extras). Tested against the KServe Python server in
tests/unit/test_platform_kserve_smoke.py."""

import json
import sys
import urllib.request

NAME = sys.argv[1] if len(sys.argv) > 1 else "sklearn-iris"
BASE = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080"
ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


def post(path, body):
    req = urllib.request.Request(
        BASE + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


verdict = {}
try:
    status, out = post(f"/v1/models/{NAME}:predict", {"instances": ROWS})
    verdict["v1"] = {"status": status, "predictions": out.get("predictions")}
    v2_body = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}
    status, out = post(f"/v2/models/{NAME}/infer", v2_body)
    verdict["v2"] = {"status": status, "outputs": [o.get("data") for o in out.get("outputs", [])]}
except Exception as exc:  # report any failure as the verdict
    verdict["error"] = repr(exc)
ok = (
    "error" not in verdict
    and len(verdict["v1"]["predictions"] or []) == len(ROWS)
    and len((verdict["v2"]["outputs"] or [[]])[0]) == len(ROWS)
)
verdict["ok"] = ok
print(json.dumps(verdict))
sys.exit(0 if ok else 1)
