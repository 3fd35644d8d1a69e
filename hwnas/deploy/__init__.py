"""What ships: `export` (a checkpoint's subnet to ONNX, LiteRT, Core ML and TensorRT files, each
verified against PyTorch and timed on its device), the export formats (`formats`), verification
(`verify`) and SalNAS's seven measures of one subnet (`report`)."""
