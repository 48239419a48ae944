"""The training core (torch only). Keep this file empty of imports: `dogclf.training.metrics`
is read by the control plane on hosts without torch."""
