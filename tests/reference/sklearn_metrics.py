"""scikit-learn reference values for tests/metrics_reference.rs.

Usage: python sklearn_metrics.py CASES_JSON OUT_JSON

CASES_JSON is {"cases": [{"k": int, "actual": [int], "probs": [[float] * k],
"target_recall": float | null}, ...]}. OUT_JSON gets {"sklearn_version": str,
"results": [...]} with one result per case, in order. Every float is written
as a JSON number, except +inf / -inf / NaN, written as the strings "inf",
"-inf", "nan". `null` marks a value scikit-learn leaves undefined for that
case (it raises, returns NaN, or only warns and returns a placeholder); each
such rule is noted where the value is computed.
"""

import json
import math
import sys
import warnings

import numpy as np
import sklearn
from sklearn import metrics as skm


def enc(x):
    """A float (or None) as JSON: numbers, or "inf" / "-inf" / "nan"."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def enc_list(xs):
    return [enc(x) for x in xs]


def undefined_on_error(f):
    """f(), or None where scikit-learn raises (e.g. empty input)."""
    try:
        return f()
    except ValueError:
        return None


def roc(y, s):
    # null where sklearn returns NaN rates: no positive or no negative rows.
    if y.size == 0 or y.all() or not y.any():
        return None
    fpr, tpr, thr = skm.roc_curve(y, s)
    assert not (np.isnan(fpr).any() or np.isnan(tpr).any())
    return {"fpr": enc_list(fpr), "tpr": enc_list(tpr), "thresholds": enc_list(thr)}


def pr(y, s):
    # null where there is no positive row: sklearn only warns and sets recall
    # to 1 at every threshold (average_precision_score then returns 0.0).
    if not y.any():
        return None
    precision, recall, thr = skm.precision_recall_curve(y, s)
    ap = skm.average_precision_score(y, s)
    return {
        "precision": enc_list(precision),
        "recall": enc_list(recall),
        "thresholds": enc_list(thr),
        "average_precision": enc(ap),
    }


def roc_auc(y, s):
    # null where sklearn raises (only one class present in y_true).
    if y.size == 0 or y.all() or not y.any():
        return None
    return enc(skm.roc_auc_score(y, s))


def threshold_point(y, s, thresholds, precision, recall, i):
    """The operating point `s >= thresholds[i]`, from sklearn's own curve
    arrays plus confusion_matrix at that threshold."""
    t = thresholds[i]
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(
        y.astype(np.int64), (s >= t).astype(np.int64), labels=[0, 1]
    ).ravel())
    f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return {
        "threshold": enc(t),
        "precision": enc(precision[i]),
        "recall": enc(recall[i]),
        "f1": enc(f1),
        "confusion": [tn, fp, fn, tp],
    }


def threshold_report(y, s, target_recall):
    """Binary operating points on class 1, chosen among sklearn's
    precision_recall_curve thresholds (null without positive rows)."""
    if not y.any():
        return {"best_f1": None, "at_target_recall": None}
    precision, recall, thr = skm.precision_recall_curve(y, s)
    # Exact integer counts per threshold (rule s >= t) to compare F1 exactly:
    # F1_i = 2 tp_i / (2 tp_i + fp_i + fn_i); ties go to the highest threshold.
    predicted = s[None, :] >= thr[:, None]
    tps = (predicted & y[None, :]).sum(axis=1).astype(np.int64)
    fps = (predicted & ~y[None, :]).sum(axis=1).astype(np.int64)
    n_pos = int(y.sum())
    best = None
    for i in range(len(thr)):  # thresholds increase with i
        num, den = int(tps[i]), int(tps[i] + fps[i] + n_pos)
        if best is None or num * best[2] >= best[1] * den:
            best = (i, num, den)
    result = {"best_f1": threshold_point(y, s, thr, precision, recall, best[0])}
    at = None
    if target_recall is not None:
        # Highest threshold whose recall (sklearn's float) reaches the target.
        hits = [i for i in range(len(thr)) if recall[i] >= target_recall]
        if hits:
            at = threshold_point(y, s, thr, precision, recall, max(hits))
    result["at_target_recall"] = at
    return result


def one_case(case):
    k = int(case["k"])
    actual = np.asarray(case["actual"], dtype=np.int64)
    probs = np.asarray(case["probs"], dtype=np.float64).reshape(len(actual), k)
    labels = list(range(k))
    predicted = np.argmax(probs, axis=1) if k > 0 else np.zeros(0, dtype=np.int64)

    per_class = []
    for c in range(k):
        y = actual == c
        s = probs[:, c]
        per_class.append({"roc": roc(y, s), "pr": pr(y, s), "roc_auc": roc_auc(y, s)})

    defined_aps = [pc["pr"]["average_precision"] for pc in per_class if pc["pr"] is not None]
    # sklearn's own multiclass macro AP, where it is defined (every class present).
    sk_macro_ap = None
    if k > 2 and len(np.unique(actual)) == k:
        sk_macro_ap = enc(skm.average_precision_score(actual, probs, average="macro"))
    # sklearn's own multiclass OvR macro AUC, where it accepts the input.
    sk_ovr_auc = None
    if k > 2 and len(np.unique(actual)) == k:
        sk_ovr_auc = undefined_on_error(
            lambda: enc(
                skm.roc_auc_score(actual, probs, multi_class="ovr", average="macro", labels=labels)
            )
        )

    p, r, f, support = skm.precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0
    )
    averages = {}
    for avg in ("macro", "weighted"):
        ap_, ar_, af_, _ = skm.precision_recall_fscore_support(
            actual, predicted, labels=labels, zero_division=0, average=avg
        )
        averages[avg] = [enc(ap_), enc(ar_), enc(af_)]

    if k == 2:
        brier = undefined_on_error(lambda: enc(skm.brier_score_loss(actual, probs[:, 1])))
    else:
        brier = undefined_on_error(lambda: enc(skm.brier_score_loss(actual, probs, labels=labels)))

    result = {
        "per_class": per_class,
        "macro_average_precision": enc(np.mean(defined_aps)) if defined_aps else None,
        "sklearn_macro_average_precision": sk_macro_ap,
        "sklearn_ovr_macro_roc_auc": sk_ovr_auc,
        "balanced_accuracy": undefined_on_error(
            lambda: enc(skm.balanced_accuracy_score(actual, predicted))
        ),
        "mcc": undefined_on_error(lambda: enc(skm.matthews_corrcoef(actual, predicted))),
        "log_loss": undefined_on_error(lambda: enc(skm.log_loss(actual, probs, labels=labels))),
        "brier": brier,
        "accuracy": undefined_on_error(lambda: enc(skm.accuracy_score(actual, predicted))),
        "confusion_matrix": [
            int(v) for v in skm.confusion_matrix(actual, predicted, labels=labels).ravel()
        ],
        "precision": enc_list(p),
        "recall": enc_list(r),
        "f1": enc_list(f),
        "support": [int(v) for v in support],
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "threshold_report": None,
    }
    if k == 2:
        result["threshold_report"] = threshold_report(
            actual == 1, probs[:, 1], case.get("target_recall")
        )
    return result


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: sklearn_metrics.py CASES_JSON OUT_JSON")
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)["cases"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = [one_case(c) for c in cases]
    with open(sys.argv[2], "w") as fh:
        json.dump(
            {"sklearn_version": sklearn.__version__, "results": results}, fh, allow_nan=False
        )


if __name__ == "__main__":
    main()
