"""GLUE metric for `evaluate.load(PATH, task)`: distil_utils.metrics.glue_metrics, offline.

The Hub's `glue` metric script cannot be fetched offline; this module gives the same
`compute(predictions=..., references=...)` interface over our tested function (percent).
"""

import datasets
import evaluate

from distil_utils.metrics import GLUE_METRICS, glue_metrics


class GlueLocal(evaluate.Metric):
    def _info(self):
        if self.config_name not in GLUE_METRICS:
            raise ValueError(f"unknown GLUE task {self.config_name!r}; "
                             f"valid tasks: {sorted(GLUE_METRICS)}")
        dtype = "float64" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description="GLUE metrics in percent, as in the DistilBERT paper's Table 1",
            citation="Wang et al. (2018), GLUE",
            inputs_description="predictions and references: class ids (stsb: floats)",
            features=datasets.Features({"predictions": datasets.Value(dtype),
                                        "references": datasets.Value(dtype)}))

    def _compute(self, predictions, references):
        return glue_metrics(self.config_name, predictions, references)
