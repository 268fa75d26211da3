"""The scoring script of an MLflow no-code deployment (a model of `type: mlflow_model` deployed
without a `code_configuration`), run by the model server (`azmlinfsrv`) in the model's own
environment.

`init()` loads the MLflow model under `$AZUREML_MODEL_DIR` (the model folder keeps its name
there, so the folder holding an `MLmodel` file is looked for one level down too) with MLflow's
pyfunc flavour. `run()` takes the request bodies the product documents for MLflow models:
`{"input_data": {"columns": [...], "index": [...], "data": [[...], ...]}}` (a pandas DataFrame in
the split orientation), `{"input_data": [[...], ...]}` (rows, given the model's input columns
when its signature names them), `{"input_data": {"COLUMN": [...], ...}}`, and MLflow's own
serving formats (`dataframe_split`, `dataframe_records`, `instances`, `inputs`). It answers the
predictions as JSON: a list, or a list of records for a DataFrame.

Shipped by the reconciler (not by the user's repo) and mounted as the deployment's code.
"""

import json
import logging
import os

import mlflow.pyfunc
import numpy
import pandas
from azureml.contrib.services.aml_response import AMLResponse

model = None


def _model_folder(root):
    if os.path.isfile(os.path.join(root, "MLmodel")):
        return root
    for name in sorted(os.listdir(root)):
        candidate = os.path.join(root, name)
        if os.path.isfile(os.path.join(candidate, "MLmodel")):
            return candidate
    raise FileNotFoundError(f"no MLmodel file in {root} or the folders right below it")


def init():
    global model
    folder = _model_folder(os.environ["AZUREML_MODEL_DIR"])
    model = mlflow.pyfunc.load_model(folder)
    logging.info("loaded the MLflow model in %s", folder)


def _input_columns():
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return None
    return schema.input_names()


def _frame(rows):
    columns = _input_columns()
    if columns is not None and rows and len(rows[0]) == len(columns):
        return pandas.DataFrame(rows, columns=columns)
    return numpy.asarray(rows)


def _parse(body):
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    if "input_data" in body:
        given = body["input_data"]
        if isinstance(given, dict) and "data" in given:
            return pandas.DataFrame(
                given["data"], columns=given.get("columns"), index=given.get("index")
            )
        if isinstance(given, dict):
            return pandas.DataFrame(given)
        if isinstance(given, list):
            return _frame(given)
        raise ValueError("input_data must be a list of rows or an object")
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        return pandas.DataFrame(
            split["data"], columns=split.get("columns"), index=split.get("index")
        )
    if "dataframe_records" in body:
        return pandas.DataFrame.from_records(body["dataframe_records"])
    for key in ("instances", "inputs"):
        if key in body:
            given = body[key]
            return pandas.DataFrame(given) if isinstance(given, dict) else _frame(given)
    raise ValueError(
        "the request needs input_data (or one of dataframe_split, dataframe_records, "
        "instances, inputs)"
    )


def _answer(predictions):
    if isinstance(predictions, pandas.DataFrame):
        return predictions.to_dict(orient="records")
    if isinstance(predictions, (pandas.Series, numpy.ndarray)):
        return predictions.tolist()
    return predictions


def run(raw_data):
    try:
        data = _parse(json.loads(raw_data))
    except (ValueError, KeyError, TypeError) as err:
        return AMLResponse(f"bad request: {err}", 400)
    return _answer(model.predict(data))
