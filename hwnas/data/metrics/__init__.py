"""Metrics as the benchmarks compute them, one module per task: `saliency` (the MIT benchmark code
and pysaliency), `sod` (PySODMetrics), `segmentation` (Cityscapes' mIoU), `classification` (top-1);
`names` lists their keys and the names the papers' tables use."""
