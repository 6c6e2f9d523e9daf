"""The detector's measured accuracy: daily mAP on labeled frames, a label-free estimate between
labels, and the performance verdict that ``drift_monitor`` folds into its decision."""
