"""Real data for estimator tests: a 5-class task from scikit-learn's digits (8x8, 1 channel)."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def digits_task(classes=(0, 1, 2, 3, 4), test_size=0.3, seed=0):
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    X = (X[keep].reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    return train_test_split(X, y[keep], test_size=test_size, random_state=seed, stratify=y[keep])
