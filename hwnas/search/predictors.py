"""Accuracy predictors behind one interface, `fit(X, y) -> self` and `predict(X)`, on encoded archs.

- `RankNet` (MoSegNAS Section III-C, Algorithm 3, Eq. 5-6): an MLP on one-hot encoded archs trained
  with a pairwise margin ranking loss, its training set enriched every epoch with random archs
  labelled by RBF, decision-tree and gradient-boosting teachers, cosine-annealed learning rate.
- `LightGBMEnsemble`: one LightGBM regressor per fold of a k-fold split, averaged (NATv2's default).
- `SklearnPredictor`: Gaussian process with an RBF kernel, SVR, ridge, KNN, CART (scikit-learn).

`kendall_tau(predictor, X_test, y_test)` is how each is judged: rank agreement on held-out archs.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import torch
from scipy.stats import kendalltau
from torch import nn

from hwnas.errors import HwnasError
from hwnas.space import SearchSpace
from hwnas.space.search_space import one_hot  # noqa: F401 (one_hot: the default features)

NAMES = ("ranknet", "lgbm", "gp", "svr", "ridge", "knn", "cart")


@contextmanager
def _quiet():
    """scikit-learn's convergence notes on a few dozen samples are expected, not news for the user."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _sklearn_model(name: str, seed: int):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.svm import SVR
    from sklearn.tree import DecisionTreeRegressor

    if name == "gp":
        kernel = ConstantKernel() * RBF(length_scale=3.0) + WhiteKernel(1e-3)
        return GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed)
    if name == "svr":
        return SVR(C=1.0, epsilon=0.01)
    if name == "ridge":
        return Ridge(alpha=1.0)
    if name == "knn":
        return KNeighborsRegressor(n_neighbors=5, weights="distance")
    if name == "cart":
        return DecisionTreeRegressor(min_samples_leaf=2, random_state=seed)
    raise HwnasError(f"unknown predictor '{name}'; allowed: {', '.join(NAMES)}")


class SklearnPredictor:
    """A scikit-learn regressor on the space's features (`space.features`, one-hot for SalNAS)."""

    def __init__(self, space: SearchSpace, *, name: str = "gp", seed: int = 0):
        self.space, self.name, self.seed = space, name, seed
        self.model = _sklearn_model(name, seed)

    def fit(self, x: np.ndarray, y: np.ndarray) -> SklearnPredictor:
        with _quiet():
            self.model.fit(self.space.features(x), np.asarray(y, dtype=np.float64))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(self.space.features(x)), dtype=np.float64)


class LightGBMEnsemble:
    """k LightGBM regressors, each fitted on k-1 folds, averaged; on the space's features."""

    def __init__(self, space: SearchSpace, *, folds: int = 5, seed: int = 0):
        self.space, self.folds, self.seed = space, folds, seed
        self.models: list = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> LightGBMEnsemble:
        import lightgbm
        from sklearn.model_selection import KFold

        x, y = self.space.features(x).astype(np.float64), np.asarray(y, dtype=np.float64)
        folds = max(2, min(self.folds, len(x)))
        self.models = []
        for k, (train, _) in enumerate(KFold(folds, shuffle=True, random_state=self.seed).split(x)):
            model = lightgbm.LGBMRegressor(
                n_estimators=200,
                learning_rate=0.05,
                num_leaves=15,
                min_child_samples=3,
                subsample=0.9,
                subsample_freq=1,
                colsample_bytree=0.9,
                random_state=self.seed + k,
                n_jobs=1,  # a hundred rows: threads cost more than they save, and one thread is exact
                verbose=-1,
            )
            self.models.append(model.fit(x[train], y[train]))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = self.space.features(x).astype(np.float64)
        return np.mean([m.predict(x) for m in self.models], axis=0)


class RankNet:
    """MoSegNAS's accuracy predictor (Algorithm 3).

    Eq. 5 as printed puts the sign of the *predicted* difference in front of the true one, which
    leaves no gradient to the network; the pairwise margin ranking loss it describes is
    max(0, gamma - sign(y_i - y_j) (y_hat_i - y_hat_j)) over all pairs, with y and y_hat in [0, 1]
    (labels min-max normalised, outputs through a sigmoid), plus weight decay (Eq. 6). Table I's
    settings: 3 hidden layers of 300, 500 epochs, learning rate 8e-4 cosine-annealed (line 8),
    weight decay 1e-5, margin 0.05; each epoch adds `synthetic` random archs labelled by the mean of
    the RBF, decision-tree and gradient-boosting teachers (lines 4, 10-12). Optimised with Adam.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        epochs: int = 500,
        hidden: int = 300,
        layers: int = 3,
        lr: float = 8e-4,
        weight_decay: float = 1e-5,
        margin: float = 0.05,
        synthetic: int = 32,
        seed: int = 0,
    ):
        self.space, self.epochs, self.lr, self.weight_decay = space, epochs, lr, weight_decay
        self.margin, self.synthetic, self.seed = margin, synthetic, seed
        width = space.features(np.zeros((1, space.n_var), dtype=np.int64)).shape[1]
        dims = [width] + [hidden] * layers
        blocks: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):  # every layer's initialisation from `seed` alone
            torch.manual_seed(seed)
            for a, b in zip(dims[:-1], dims[1:], strict=True):
                blocks += [nn.Linear(a, b), nn.ReLU()]
            self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], 1))

    def _teachers(self, x: np.ndarray, y: np.ndarray):
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.tree import DecisionTreeRegressor

        features = self.space.features(x)
        with _quiet():
            rbf = _sklearn_model("gp", self.seed).fit(features, y)
        tree = DecisionTreeRegressor(min_samples_leaf=2, random_state=self.seed).fit(features, y)
        boost = GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=self.seed).fit(features, y)
        return lambda f: (rbf.predict(f) + tree.predict(f) + boost.predict(f)) / 3

    def continue_from(self, other: RankNet, *, epochs: int) -> RankNet:
        """Start the next fit from `other`'s weights and train `epochs` epochs (a warm start, for a
        searcher that refits on a grown archive each generation; Algorithm 3 itself starts afresh)."""
        self.net.load_state_dict(other.net.state_dict())
        self.epochs = epochs
        return self

    def fit(self, x: np.ndarray, y: np.ndarray) -> RankNet:
        x, y = np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.float64)
        lo, span = y.min(), max(y.max() - y.min(), 1e-12)
        label = lambda v: (v - lo) / span  # noqa: E731
        real_x, real_y = torch.from_numpy(self.space.features(x)), torch.from_numpy(label(y)).float()
        if self.synthetic:  # every epoch's random archs drawn and labelled by the teachers at once
            _, xu = self.space.bounds()
            rng = np.random.default_rng(self.seed)
            fake = self.space.features(rng.integers(0, xu + 1, size=(self.epochs * self.synthetic, len(xu))))
            fake_x = torch.from_numpy(fake).split(self.synthetic)
            fake_y = torch.from_numpy(label(self._teachers(x, y)(fake))).float().split(self.synthetic)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=True)
        # fused: one kernel per step instead of Python per tensor, half a step's time at this size
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
        self.net.train()
        for epoch in range(self.epochs):
            feats, labels = real_x, real_y
            if self.synthetic:
                feats, labels = torch.cat([feats, fake_x[epoch]]), torch.cat([labels, fake_y[epoch]])
            pred = torch.sigmoid(self.net(feats)).squeeze(1)
            sign = torch.sign(labels[:, None] - labels[None, :])
            hinge = torch.clamp(self.margin - sign * (pred[:, None] - pred[None, :]), min=0)
            loss = (hinge * (sign != 0)).sum() / (2 * len(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        self.net.eval()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = torch.sigmoid(self.net(torch.from_numpy(self.space.features(x)))).squeeze(1)
        return out.double().numpy()


def make_predictor(name: str, space: SearchSpace, *, seed: int = 0, previous=None, warm_epochs: int = 0):
    """A fresh predictor `name`; a RankNet continues from `previous` (a RankNet) for `warm_epochs`
    epochs where both are given (see `RankNet.continue_from`)."""
    if name == "ranknet":
        model = RankNet(space, seed=seed)
        if isinstance(previous, RankNet) and warm_epochs:
            model.continue_from(previous, epochs=warm_epochs)
        return model
    if name == "lgbm":
        return LightGBMEnsemble(space, seed=seed)
    return SklearnPredictor(space, name=name, seed=seed)


def kendall_tau(predictor, x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau between predictions and the true values of held-out archs."""
    return float(kendalltau(predictor.predict(x), y).statistic)
