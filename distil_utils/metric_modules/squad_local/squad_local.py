"""SQuAD v1.1 metric for `evaluate.load(PATH)`: distil_utils.metrics.squad_metrics, offline.

Inputs follow the Hub `squad` metric: predictions [{"id", "prediction_text"}], references
[{"id", "answers": {"text", "answer_start"}}]. Scores in percent, like the official script.
"""

import datasets
import evaluate

from distil_utils.metrics import squad_metrics


class SquadLocal(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD v1.1 exact match and F1 (official normalisation), in percent",
            citation="Rajpurkar et al. (2016), SQuAD", inputs_description="see module docstring",
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"),
                                "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"),
                               "answers": datasets.Sequence({
                                   "text": datasets.Value("string"),
                                   "answer_start": datasets.Value("int32")})}}))

    def _compute(self, predictions, references):
        preds = {p["id"]: p["prediction_text"] for p in predictions}
        return squad_metrics(preds, references)
