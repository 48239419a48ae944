"""`dogclf predict`: the local, endpoint and Lambda predictors, and walking files and folders."""
