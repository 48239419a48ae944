"""The training core (torch). Its contracts with the control plane (hyperparameter names,
metric lines) are torch-free and live in dogclf/model/."""
