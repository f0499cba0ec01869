"""Evaluation metrics, one module per kind of metric, each a pure NumPy function of predictions and
labels that a task calls on the host from `Task.evaluate` (after `env.predict` has gathered the
outputs of the split). Arguments follow scikit-learn's order, labels first, where a per-sample
metric has a scikit-learn counterpart.

- `classification`: accuracy, top-k accuracy, confusion matrix, per-class recall, mean class recall,
  macro-F1, head / tail means;
- `multilabel`: per-class average precision and mAP (non-interpolated, or VOC2007 11-point);
- `retrieval`: Hamming-ranking mAP@K, precision-recall curve, precision / recall within a radius;
- `reid`: CMC rank-k, mAP and mINP with camera filtering (standard and SYSU-MM01 protocols);
- `segmentation`: confusion matrix accumulated over batches, IoU, mIoU, head / tail mIoU, pixel
  accuracy;
- `ranking`: recommendation P@k, R@k, NDCG@k, MAP, MRR, AUC with training items removed;
- `outlier`: ROC-AUC;
- `multitask`: OGB's per-task average precision and ROC-AUC over binary tasks with missing (NaN)
  labels;
- `continual`: average incremental accuracy, final average accuracy, forgetting, backward transfer;
- `ranked`: average precision and ranks of ranked relevance lists, shared by the above.
"""
