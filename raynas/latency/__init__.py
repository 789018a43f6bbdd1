"""Latency where the user deploys: ONNX export, ONNX Runtime timing on nodes
carrying a Ray resource (``arm``), an on-disk cache and a fitted latency model.

Importing this package does not import torch, so ARM nodes need only
onnxruntime and ray.
"""
