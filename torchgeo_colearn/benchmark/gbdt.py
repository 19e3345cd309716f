# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Gradient-boosted trees on the flattened inputs: the strong simple baseline of tabular EO data.

scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` / ``Regressor`` (LightGBM's
histogram algorithm) is used rather than LightGBM itself: since scikit-learn 1.6 its ``fit`` takes an
explicit validation set (``X_val``, ``y_val``), so the trees early-stop on the run's own validation fold,
exactly as a user of the baseline would; it handles missing values natively, needs no native library beyond
scikit-learn, and trains on LFMC-sized tables (thousands of samples, tens of features) in seconds.
"""

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from torch import Tensor

from ..metrics import TaskType
from ..scenarios import Scenario, default_scenarios, scenario_name
from .estimator import Split, holding, score_predictions, split_arrays

#: A fitted model of one scenario: one estimator, or one binary classifier per label (multilabel).
Model: TypeAlias = (
    HistGradientBoostingRegressor
    | HistGradientBoostingClassifier
    | list[HistGradientBoostingClassifier]
)


class GradientBoostingBaseline:
    """One gradient-boosted-trees model per inference scenario, on the flattened, normalised inputs.

    Each single modality gets its own model on its own features; with *fusion*, every subset of two or
    more modalities gets a model on the concatenation of their features. Every model early-stops on the
    validation split's loss (``n_iter_no_change`` rounds). Inputs are the datamodule's normalised batches
    (same folds and statistics as the deep models); invalid time steps are missing values (NaN).
    """

    def __init__(
        self,
        task: TaskType = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        class_weights: Sequence[float] | Literal['balanced'] | None = None,
        learning_rate: float = 0.1,
        max_iter: int = 1000,
        max_leaf_nodes: int | None = 31,
        max_depth: int | None = None,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        max_bins: int = 255,
        n_iter_no_change: int = 10,
        fusion: bool = True,
    ) -> None:
        """Initialize a new GradientBoostingBaseline instance.

        Args:
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            class_weights: Class weights (a list), 'balanced' (scikit-learn's), or None.
            learning_rate: Shrinkage of each tree.
            max_iter: Maximum number of boosting rounds.
            max_leaf_nodes: Maximum leaves per tree (None: no limit).
            max_depth: Maximum tree depth (None: no limit).
            min_samples_leaf: Minimum samples per leaf.
            l2_regularization: L2 penalty on the leaf values.
            max_bins: Histogram bins per feature (at most 255).
            n_iter_no_change: Early-stopping patience on the validation loss, in rounds.
            fusion: Also train one model per subset of two or more modalities, on their concatenation.

        Raises:
            ValueError: If the class or label count the task needs is missing.
        """
        if task == 'multiclass' and num_classes is None:
            raise ValueError(
                "GradientBoostingBaseline: task='multiclass' needs num_classes"
            )
        if task == 'multilabel' and num_labels is None:
            raise ValueError(
                "GradientBoostingBaseline: task='multilabel' needs num_labels"
            )
        self.task = task
        self.num_classes = num_classes
        self.num_labels = num_labels
        self.class_weights = class_weights
        self.fusion = fusion
        self.parameters: dict[str, Any] = {
            'learning_rate': learning_rate,
            'max_iter': max_iter,
            'max_leaf_nodes': max_leaf_nodes,
            'max_depth': max_depth,
            'min_samples_leaf': min_samples_leaf,
            'l2_regularization': l2_regularization,
            'max_bins': max_bins,
            'n_iter_no_change': n_iter_no_change,
            'early_stopping': True,
        }
        self.models: dict[Scenario, Model] = {}
        self.modalities: list[str] = []

    def _new_model(
        self, seed: int
    ) -> HistGradientBoostingRegressor | HistGradientBoostingClassifier:
        """Build one unfitted estimator.

        Args:
            seed: Random state (feature binning subsample and tie breaking).

        Returns:
            A regressor for regression, else a classifier.
        """
        if self.task == 'regression':
            return HistGradientBoostingRegressor(random_state=seed, **self.parameters)
        weights: dict[int, float] | str | None
        if isinstance(self.class_weights, str) or self.class_weights is None:
            weights = self.class_weights
        else:
            weights = dict(enumerate(map(float, self.class_weights)))
        return HistGradientBoostingClassifier(
            random_state=seed, class_weight=weights, **self.parameters
        )

    def fit(self, datamodule: LightningDataModule, seed: int) -> None:
        """Fit one model per scenario on the training split, early-stopping on the validation split.

        Args:
            datamodule: The run's datamodule.
            seed: Random state of the trees.
        """
        datamodule.setup('fit')
        train, train_target = split_arrays(datamodule, 'train')
        val, val_target = split_arrays(datamodule, 'val')
        y, y_val = train_target.numpy(), val_target.numpy()
        self.models = {}
        self.modalities = list(train)
        for scenario in default_scenarios(self.modalities, self.fusion):
            # each scenario's model learns from the samples that hold its modalities
            rows, val_rows = holding(train, scenario), holding(val, scenario)
            x = np.concatenate([train[m][rows] for m in scenario], axis=1)
            x_val = np.concatenate([val[m][val_rows] for m in scenario], axis=1)
            y_s, y_val_s = y[rows], y_val[val_rows]
            if self.task == 'multilabel':
                self.models[scenario] = [
                    self._new_model(seed).fit(
                        x, y_s[:, k], X_val=x_val, y_val=y_val_s[:, k]
                    )
                    for k in range(y.shape[1])
                ]
            else:
                self.models[scenario] = self._new_model(seed).fit(
                    x, y_s, X_val=x_val, y_val=y_val_s
                )

    def _predict(self, model: Model, x: np.ndarray) -> Tensor:
        """Predict like a task: probabilities or values.

        Args:
            model: A fitted model.
            x: (N, F) features.

        Returns:
            Probability of the positive class (N,), class probabilities (N, K), label probabilities (N, L)
            or values (N,).
        """
        if isinstance(model, list):
            return torch.stack([self._positive(m, x) for m in model], dim=1)
        if isinstance(model, HistGradientBoostingRegressor):
            return torch.from_numpy(model.predict(x)).float()
        if self.task == 'binary':
            return self._positive(model, x)
        assert self.num_classes is not None
        probabilities = np.zeros((len(x), self.num_classes))
        probabilities[:, model.classes_.astype(int)] = model.predict_proba(x)
        return torch.from_numpy(probabilities).float()

    @staticmethod
    def _positive(model: HistGradientBoostingClassifier, x: np.ndarray) -> Tensor:
        """Return the probability of class 1 (0 if the training split had none).

        Args:
            model: A fitted binary classifier.
            x: (N, F) features.

        Returns:
            (N,) probabilities.
        """
        classes = list(model.classes_.astype(int))
        if 1 not in classes:
            return torch.zeros(len(x))
        return torch.from_numpy(model.predict_proba(x)[:, classes.index(1)]).float()

    def score(
        self, datamodule: LightningDataModule, split: Split
    ) -> dict[str, dict[str, float]]:
        """Score the models of every scenario on a split (as :meth:`.estimator.Estimator.score`)."""
        features, target = split_arrays(datamodule, split)
        scores: dict[str, dict[str, float]] = {}
        # each scenario on the samples that hold its modalities, as the tasks score it
        for scenario, model in self.models.items():
            rows = holding(features, scenario)
            prediction = self._predict(
                model, np.concatenate([features[m][rows] for m in scenario], axis=1)
            )
            name = scenario_name(scenario)
            scores |= score_predictions(
                self.task,
                {name: prediction},
                target[torch.from_numpy(rows)],
                self.num_classes,
                self.num_labels,
            )
        return scores

    def summary(self) -> dict[str, Any]:
        """Return the boosting rounds kept by early stopping, per scenario.

        Returns:
            ``modalities`` and ``iterations`` (scenario mapped to rounds; per-label lists for multilabel).
        """
        return {
            'modalities': self.modalities,
            'iterations': {
                scenario_name(scenario): (
                    [int(m.n_iter_) for m in model]
                    if isinstance(model, list)
                    else int(model.n_iter_)
                )
                for scenario, model in self.models.items()
            },
        }
