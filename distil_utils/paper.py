"""The paper's own numbers (Sanh et al., 2019), labelled as such wherever they are printed.

Every table the suite prints puts its measured rows beside these. Nothing in this module is
a measurement of ours.
"""

from __future__ import annotations

SOURCE = "Sanh et al. (2019), DistilBERT, arXiv:1910.01108"

# Table 1: GLUE dev, median of 5 runs. MRPC/QQP as the paper reports them (F1/acc mixed
# into one figure), STS-B Pearson/Spearman likewise, CoLA Matthews corr., others accuracy.
TABLE1_GLUE: dict[str, dict[str, float]] = {
    "ELMo (paper)": dict(score=68.7, cola=44.1, mnli=68.6, mrpc=76.6, qnli=71.1, qqp=86.2,
                         rte=53.4, sst2=91.5, stsb=70.4, wnli=56.3),
    "BERT-base (paper)": dict(score=79.5, cola=56.3, mnli=86.7, mrpc=88.6, qnli=91.8, qqp=89.6,
                              rte=69.3, sst2=92.7, stsb=89.0, wnli=53.5),
    "DistilBERT (paper)": dict(score=77.0, cola=51.3, mnli=82.2, mrpc=87.5, qnli=89.2,
                               qqp=88.5, rte=59.9, sst2=91.3, stsb=86.9, wnli=56.3),
}

# Table 2: IMDb test accuracy, SQuAD v1.1 dev EM / F1.
TABLE2_DOWNSTREAM: dict[str, dict[str, float]] = {
    "BERT-base (paper)": dict(imdb=93.46, squad_em=81.2, squad_f1=88.5),
    "DistilBERT (paper)": dict(imdb=92.82, squad_em=77.7, squad_f1=85.8),
    "DistilBERT (D) (paper)": dict(squad_em=79.1, squad_f1=86.9),
}

# Table 3: parameters (millions) and CPU time (s) of a full pass over STS-B dev, batch 1.
TABLE3_SPEED: dict[str, dict[str, float]] = {
    "ELMo (paper)": dict(params_m=180, seconds=895),
    "BERT-base (paper)": dict(params_m=110, seconds=668),
    "DistilBERT (paper)": dict(params_m=66, seconds=410),
}

# Table 4: change in GLUE macro-score against the full triple loss.
TABLE4_ABLATION: dict[str, float] = {
    "triple loss (paper)": 0.0,
    "without L_cos (paper)": -1.46,
    "without L_mlm (paper)": -0.31,
    "without L_ce (paper)": -2.96,
    "triple loss, random init (paper)": -3.69,
}

GLUE_COLUMNS = ("score", "cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli")
