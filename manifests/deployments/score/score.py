"""Scoring script in the product's convention: `init()` once per pod, `run(raw)` per request.

The model is a tiny linear model stored as JSON so the example needs no ML libraries.
"""

import json
import os

model = None


def init():
    global model
    folder = os.environ.get("AZUREML_MODEL_DIR", os.path.dirname(__file__))
    with open(os.path.join(folder, "model.json")) as handle:
        model = json.load(handle)


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    weights, bias = model["weights"], model["bias"]
    # Python 3.9 in green's curated image: zip() takes no `strict` there, so the width is
    # checked here.
    for row in rows:
        if len(row) != len(weights):
            raise ValueError(f"each row needs {len(weights)} numbers, not {len(row)}")
    return [sum(w * x for w, x in zip(weights, row)) + bias for row in rows]  # noqa: B905
