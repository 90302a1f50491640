"""Export: pruning, ONNX, int8 ONNX Runtime and TensorRT artefacts in a verified bundle."""
