"""What training, serving, predict and upload share: architectures, the dataset layout,
the network builder, preprocessing and the artifact format.

Keep this file empty of imports: `archs` and `dataset` are read without torch."""
