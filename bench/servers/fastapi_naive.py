"""Peer: the tutorial's naive FastAPI server (shared/seed, "FastAPI pour serving simple").
Usage: uvicorn-free start: fastapi_naive.py MODEL.joblib PORT"""

import sys

import joblib
import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
model = joblib.load(sys.argv[1])


class PredictionRequest(BaseModel):
    features: list[float]


@app.post("/predict")
def predict(request: PredictionRequest):
    features = np.array(request.features).reshape(1, -1)
    return {"prediction": int(model.predict(features)[0])}


@app.get("/health")
def health():
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]))
